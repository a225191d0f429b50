//! The opt-out of the membarrier registration before `main` (issue 17, item 9):
//! `PERCID_EARLY_MEMBARRIER=0` (and a bad value) leave the registration to the first
//! drainable structure. Each case runs in a child process (this binary again), so that
//! nothing of percid ran there before the check.

use percid::rseq::membarrier::{self, EarlyRegistration};
use std::process::Command;

const CASE: &str = "PERCID_OPT_OUT_CASE";

fn child(value: &str) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "early_registration_cases", "--nocapture"])
        .env(CASE, value)
        .env("PERCID_EARLY_MEMBARRIER", value)
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "PERCID_EARLY_MEMBARRIER={value}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    stdout
}

#[test]
fn early_registration_cases() {
    if let Ok(value) = std::env::var(CASE) {
        // Nothing of percid ran in this process yet: only the constructor can have acted.
        let early = membarrier::early_registration();
        let attempted = membarrier::registration_attempted();
        println!("early: {early:?}, attempted: {attempted:?}");
        match value.as_str() {
            // Built with the `no-early-membarrier` feature: the constructor never registers.
            _ if early == EarlyRegistration::DisabledByFeature => {
                assert_eq!(attempted, None, "no registration before main");
            }
            "1" => {
                assert_eq!(early, EarlyRegistration::Attempted);
                assert!(attempted.is_some(), "registered before main");
            }
            "0" => {
                assert_eq!(early, EarlyRegistration::DisabledByEnv);
                assert_eq!(attempted, None, "no registration before main");
            }
            _ => {
                assert_eq!(early, EarlyRegistration::InvalidEnv);
                assert_eq!(attempted, None, "a bad value does not register early");
                assert!(
                    percid::status()
                        .to_string()
                        .contains("invalid PERCID_EARLY_MEMBARRIER"),
                    "status reports the bad value"
                );
            }
        }
        // The first drainable structure registers then (where it may use rseq), and works.
        let list = percid::List::new();
        list.push(7u64);
        assert_eq!(list.drain(), [7]);
        if percid::status().rseq_in_use {
            assert!(membarrier::registration_attempted().is_some());
        }
        return;
    }
    for value in ["1", "0", "false", ""] {
        child(value);
    }
}
