//! `percid-burst`: the intermittent-burst locality benchmark (see the README and the
//! `percid_burst` library docs).
//!
//! ```text
//! percid-burst                                   # the published method on this machine
//! percid-burst --help
//! percid-burst run --index cpu,user-legacy,user-local --delay 200ms --json out.json
//! percid-burst run --resume out.json             # continue an interrupted run
//! percid-burst --simulate epyc-9654 --json epyc.json --svg epyc.svg
//! percid-burst report out.json --svg out.svg
//! percid-burst compare a.json b.json
//! percid-burst topology --preset epyc-9654
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = percid_burst::cli::cli_main(std::env::args_os().skip(1));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
