//! Bounded inputs: every file read has a size limit, every cost-model figure a physical
//! bound, descriptions at most 8192 CPUs with cache sharing that nests, reports with
//! impossible values refused, an edited method refused by `--resume`, control characters
//! escaped. Each case exits 2 with a message naming what is wrong (never a panic).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_percid-burst"));
    c.env_remove("PERCID_FORCE_FALLBACK");
    c.stdin(Stdio::null());
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burst-in-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/machine-template.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `args` and checks exit 2 with every one of `words` on stderr, and no panic.
fn refused(out: Output, words: &[&str]) {
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    for w in words {
        assert!(err.contains(w), "missing {w:?}: {err}");
    }
}

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p
}

/// A simulation of `description` (one configuration, one run).
fn simulate(description: &Path) -> Output {
    bin()
        .args(["--describe"])
        .arg(description)
        .args(["--config", "2c-1l3", "--runs", "1", "-q"])
        .output()
        .unwrap()
}

#[test]
fn endless_files_are_refused_at_their_limit() {
    for args in [
        &["topology", "--describe", "/dev/zero"][..],
        &["report", "/dev/zero"],
        &["compare", "/dev/zero", "/dev/zero"],
    ] {
        let out = bin().args(args).output().unwrap();
        refused(out, &["/dev/zero", "limit"]);
    }
}

#[test]
fn cost_model_figures_have_physical_bounds() {
    let dir = temp_dir("cost");
    for (field, value, named) in [
        ("latency_ns.dram_remote", 1e18_f64, "latency_ns.dram_remote"),
        ("latency_ns.dram_local", 1e18, "latency_ns.dram_local"),
        ("idle.deep_idle_ms", 1e300, "idle.deep_idle_ms"),
        ("lines_in_flight.stream", 1e9, "lines_in_flight.stream"),
        ("draws", 1e9, "draws"),
        ("line_bytes", 1e9, "line_bytes"),
    ] {
        let mut d = template();
        let model = d["cost_model"].as_object_mut().unwrap();
        model.remove("ranges");
        let mut at = &mut d["cost_model"];
        let mut parts = field.split('.').peekable();
        while let Some(p) = parts.next() {
            if parts.peek().is_none() {
                at[p] = if value.fract() == 0.0 && value < 1e19 {
                    Value::from(value as u64)
                } else {
                    Value::from(value)
                };
            } else {
                at = &mut at[p];
            }
        }
        if field == "latency_ns.dram_local" {
            d["cost_model"]["latency_ns"]["dram_remote"] = Value::from(2e18);
        }
        let p = write_json(&dir, "m.json", &d);
        refused(simulate(&p), &[named]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A description of `cpus` CPUs, one core each, 8 cores per L3 domain, two packages.
fn big(cpus: usize) -> Value {
    let mut d = template();
    let half = cpus / 2;
    d["possible"] = format!("0-{}", cpus - 1).into();
    d["online"] = format!("0-{}", cpus - 1).into();
    let two = serde_json::json!([
        { "id": 0, "cpus": format!("0-{}", half - 1) },
        { "id": 1, "cpus": format!("{half}-{}", cpus - 1) }
    ]);
    d["packages"] = two.clone();
    d["nodes"] = two;
    d["cores"] = (0..cpus).map(|c| Value::from(c.to_string())).collect();
    d["l1d"] = (0..cpus)
        .map(|c| serde_json::json!({ "cpus": c.to_string(), "size": 32768 }))
        .collect();
    d["l2"] = (0..cpus)
        .map(|c| serde_json::json!({ "cpus": c.to_string(), "size": 1048576 }))
        .collect();
    d["l3"] = (0..cpus)
        .step_by(8)
        .map(|c| serde_json::json!({ "cpus": format!("{c}-{}", c + 7), "size": 33554432 }))
        .collect();
    d
}

#[test]
fn descriptions_of_up_to_8192_cpus_load_and_larger_are_refused() {
    let dir = temp_dir("big");
    let p = write_json(&dir, "8192.json", &big(8192));
    let out = bin()
        .arg("topology")
        .arg("--describe")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).contains("8192"), "{}", describe(&out));
    let p = write_json(&dir, "8200.json", &big(8200));
    let out = bin()
        .arg("topology")
        .arg("--describe")
        .arg(&p)
        .output()
        .unwrap();
    refused(out, &["8192"]);
    // A huge CPU number alone is refused before any set is built for it.
    let mut d = template();
    d["possible"] = "0-4000000000".into();
    let p = write_json(&dir, "huge.json", &d);
    let out = bin()
        .arg("topology")
        .arg("--describe")
        .arg(&p)
        .output()
        .unwrap();
    refused(out, &["possible", "8192"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An edit of a description.
type Edit = Box<dyn Fn(&mut Value)>;

#[test]
fn contradictory_cache_sharing_is_refused_naming_the_field() {
    let dir = temp_dir("nest");
    let cases: Vec<(&str, Edit)> = vec![
        // A core whose two CPUs are in two L3 domains.
        (
            "cores",
            Box::new(|d: &mut Value| {
                d["cores"] = serde_json::json!(["0", "1-2", "3", "4", "5", "6", "7"]);
                d["l1d"] = serde_json::json!([
                {"cpus": "0", "size": 32768}, {"cpus": "1-2", "size": 32768},
                {"cpus": "3", "size": 32768}, {"cpus": "4", "size": 32768},
                {"cpus": "5", "size": 32768}, {"cpus": "6", "size": 32768},
                {"cpus": "7", "size": 32768}]);
                d["l2"] = serde_json::json!([
                {"cpus": "0", "size": 1048576}, {"cpus": "1-2", "size": 1048576},
                {"cpus": "3", "size": 1048576}, {"cpus": "4", "size": 1048576},
                {"cpus": "5", "size": 1048576}, {"cpus": "6", "size": 1048576},
                {"cpus": "7", "size": 1048576}]);
            }),
        ),
        // An L2 shared across two L3 domains.
        (
            "l2",
            Box::new(|d: &mut Value| {
                d["l2"] = serde_json::json!([
                {"cpus": "0", "size": 1048576}, {"cpus": "1-2", "size": 1048576},
                {"cpus": "3", "size": 1048576}, {"cpus": "4", "size": 1048576},
                {"cpus": "5", "size": 1048576}, {"cpus": "6", "size": 1048576},
                {"cpus": "7", "size": 1048576}]);
            }),
        ),
        // An L3 across the two packages.
        (
            "l3",
            Box::new(|d: &mut Value| {
                d["l3"] = serde_json::json!([
                {"cpus": "0-1", "size": 33554432}, {"cpus": "2-5", "size": 33554432},
                {"cpus": "6-7", "size": 33554432}]);
            }),
        ),
        // An L3 smaller than the L2s it contains.
        (
            "l3",
            Box::new(|d: &mut Value| {
                d["l3"][0]["size"] = Value::from(4096);
            }),
        ),
    ];
    for (field, edit) in cases {
        let mut d = template();
        edit(&mut d);
        let p = write_json(&dir, "m.json", &d);
        let out = bin()
            .arg("topology")
            .arg("--describe")
            .arg(&p)
            .output()
            .unwrap();
        refused(out, &[&format!("'{field}'")]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A finished simulated report (one configuration, 3 runs) as JSON.
fn saved_report(dir: &Path) -> (PathBuf, Value) {
    let p = dir.join("saved.json");
    let out = bin()
        .args([
            "--simulate",
            "xeon-e-2388g",
            "--config",
            "8c-1l3",
            "--runs",
            "3",
            "-q",
            "--json",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    (p, v)
}

#[test]
fn impossible_reports_are_refused() {
    let dir = temp_dir("impossible");
    let (_, good) = saved_report(&dir);
    let edits: Vec<(&str, Edit)> = vec![
        (
            "negative ns",
            Box::new(|r: &mut Value| {
                r["results"][0]["runs"][0] = Value::from(-5.0);
            }),
        ),
        (
            "1e308 ns",
            Box::new(|r: &mut Value| {
                for c in r["results"].as_array_mut().unwrap() {
                    c["ns_per_pass"] = Value::from(1e308);
                    for x in c["runs"].as_array_mut().unwrap() {
                        *x = Value::from(1e308);
                    }
                }
            }),
        ),
        (
            "more migrations than passes",
            Box::new(|r: &mut Value| {
                let passes = r["results"][0]["passes"].as_u64().unwrap();
                r["results"][0]["slot_migrations"] = Value::from(passes + 1);
            }),
        ),
        (
            "negative delay",
            Box::new(|r: &mut Value| {
                r["results"][0]["delay_ms"] = Value::from(-1.0);
            }),
        ),
        (
            "a cell twice",
            Box::new(|r: &mut Value| {
                let c = r["results"][0].clone();
                r["results"].as_array_mut().unwrap().push(c);
            }),
        ),
        (
            "passes 0",
            Box::new(|r: &mut Value| {
                r["method"]["passes"] = Value::from(0);
            }),
        ),
    ];
    for (what, edit) in edits {
        let mut r = good.clone();
        edit(&mut r);
        let p = write_json(&dir, "bad.json", &r);
        let out = bin().arg("report").arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}: {}", describe(&out));
        assert!(
            text(&out.stderr).contains("impossible report"),
            "{what}: {}",
            describe(&out)
        );
        let out = bin().arg("compare").arg(&p).arg(&p).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{what}: {}", describe(&out));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_refuses_an_edited_method() {
    let dir = temp_dir("edited");
    let (_, good) = saved_report(&dir);
    for passes in [0, 6] {
        let mut r = good.clone();
        r["method"]["passes"] = Value::from(passes);
        r["complete"] = Value::from(false);
        let p = write_json(&dir, "edited.json", &r);
        let before = std::fs::read_to_string(&p).unwrap();
        let out = bin().args(["run", "--resume"]).arg(&p).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "passes {passes}: {}",
            describe(&out)
        );
        assert!(text(&out.stderr).contains("passes"), "{}", describe(&out));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            before,
            "left as it was"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn control_characters_in_names_are_escaped() {
    let dir = temp_dir("ansi");
    let (_, mut r) = saved_report(&dir);
    for c in r["results"].as_array_mut().unwrap() {
        c["config"] = Value::from("\u{1b}[31mred\u{1b}[0m\r");
    }
    r["machine"]["name"] = Value::from("evil\u{1b}]0;title\u{7}");
    let p = write_json(&dir, "ansi.json", &r);
    for args in [vec!["report"], vec!["compare"]] {
        let mut cmd = bin();
        cmd.args(&args).arg(&p);
        if args[0] == "compare" {
            cmd.arg(&p);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        for stream in [&out.stdout, &out.stderr] {
            let s = text(stream);
            assert!(
                !s.contains('\u{1b}') && !s.contains('\r') && !s.contains('\u{7}'),
                "{s:?}"
            );
        }
        assert!(
            text(&out.stdout).contains("\\u{1b}[31mred"),
            "{}",
            describe(&out)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_template_header_names_no_part_from_its_note() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/machine-template.json");
    let out = simulate(&p);
    assert!(out.status.success(), "{}", describe(&out));
    let first = text(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(!first.contains("Template for"), "{first}");
    assert!(
        first.contains("on 2 packages, 8 cores, 8 CPUs, 4 L3 domains (modelled: template-2s-4l3)"),
        "{first}"
    );
    // A preset's note still names its part.
    let out = bin()
        .args([
            "--simulate",
            "epyc-9654",
            "--config",
            "8c-1l3",
            "--runs",
            "1",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("on 2 x AMD EPYC 9654,"),
        "{}",
        describe(&out)
    );
}
