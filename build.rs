//! Build script: one cfg flag per architecture whose rseq critical sections exist in `asm!`.
//!
//! `percid_rseq_asm` is set on Linux x86_64. Everywhere else only the portable fallback is
//! compiled (it is compiled on x86_64 too, and tested on every CI run).

fn main() {
    println!("cargo:rustc-check-cfg=cfg(percid_rseq_asm)");
    println!("cargo:rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" && arch == "x86_64" {
        println!("cargo:rustc-cfg=percid_rseq_asm");
    }
}
