//! `PERCID_INDEX` overrides the default index; a bad value is a clear, typed error.

use percid::{Index, Policy};
use std::process::Command;

/// Runs the ignored test `name` of this binary in a child with `PERCID_INDEX=value`.
fn child(name: &str, value: &str, expect: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PERCID_INDEX", value)
        .env("PERCID_EXPECT_INDEX", expect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{value}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn percid_index_overrides_the_default() {
    for (value, expect) in [
        ("cpu", "cpu"),
        ("mmcid", "mmcid"),
        ("user", "user-local"),
        ("user-legacy", "user-legacy"),
        ("user-task", "user-task"),
    ] {
        child("index_child", value, expect);
    }
}

#[test]
fn a_bad_percid_index_is_reported() {
    child("bad_index_child", "gpu", "");
}

#[test]
#[ignore = "run by percid_index_overrides_the_default in a child process"]
fn index_child() {
    // Only meaningful in the child that `percid_index_overrides_the_default` starts: run
    // directly (`--include-ignored`), there is nothing to check.
    let Ok(expect) = std::env::var("PERCID_EXPECT_INDEX") else {
        eprintln!("index_child: not started by its parent test: nothing to check");
        return;
    };
    assert_eq!(Index::from_env().unwrap().unwrap().name(), expect);
    assert_eq!(Index::default().name(), expect);
    assert_eq!(percid::status().default_index.name(), expect);
    assert_eq!(percid::Counter::new().index().name(), expect);
}

#[test]
#[ignore = "run by a_bad_percid_index_is_reported in a child process"]
fn bad_index_child() {
    if std::env::var_os("PERCID_EXPECT_INDEX").is_none() {
        eprintln!("bad_index_child: not started by its parent test: nothing to check");
        return;
    }
    let err = Index::from_env().unwrap_err();
    assert!(
        err.to_string().contains("\"gpu\"") && err.to_string().contains("user-legacy"),
        "{err}"
    );
    let st = percid::status();
    assert!(
        st.index_env_error
            .as_deref()
            .is_some_and(|e| e.contains("gpu")),
        "{st}"
    );
    assert_eq!(
        Index::default(),
        Index::auto(),
        "a bad value falls back to auto()"
    );
}

#[test]
fn auto_prefers_mm_cid_then_cpu_then_user() {
    let st = percid::status();
    let expected = if !st.rseq_in_use {
        Index::User(Policy::CacheLocal)
    } else if st.mm_cid {
        Index::MmCid
    } else {
        Index::CpuId
    };
    assert_eq!(Index::auto(), expected);
}
