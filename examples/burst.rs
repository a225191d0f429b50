//! The intermittent-burst locality benchmark (see the README and `percid::burst`).
//!
//! ```text
//! cargo run --release --example burst -- --help
//! cargo run --release --example burst -- --index cpu,mmcid,user-legacy,user-local --delay 200ms
//! cargo run --release --example burst -- --simulate epyc-9654 --json epyc.json --svg epyc.svg
//! ```

fn main() {
    std::process::exit(percid::burst::cli_main(std::env::args_os().skip(1)));
}
