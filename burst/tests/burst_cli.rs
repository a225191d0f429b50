//! The `percid-burst` binary as a user runs it: files checked before any work, the JSON saved
//! after every run, SIGINT/SIGTERM and SIGKILL in the middle of a run and `--resume`, JSON
//! on stdout, stdout errors, the forced fallback, `report` and `compare` round trips.
//! Behaviour only: no assertion on a duration. Real runs use tiny parameters.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use percid_burst::{Report, run_seed};
use serde_json::Value;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_percid-burst"));
    c.env_remove("PERCID_FORCE_FALLBACK");
    c
}

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burst-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first CPU this process may use.
fn first_cpu() -> String {
    percid::topology::allowed_cpus()
        .expect("affinity")
        .first()
        .expect("at least one CPU")
        .to_string()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .expect("spawn percid-burst")
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

/// A tiny real run on one CPU: 2 runs at a 1 ms delay, then `extra`.
fn tiny_real(extra: &[&str]) -> Vec<String> {
    tiny_real_with("2", "1ms", extra)
}

/// A tiny real run on one CPU with `runs` and `delays`, then `extra`.
fn tiny_real_with(runs: &str, delays: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--allow-debug",
        "--warmup",
        "10",
        "--passes",
        "2",
        "--runs",
        runs,
        "--delay",
        delays,
        "--cpus",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(first_cpu());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A short simulation writing `json` (arguments after the preset).
fn simulate(preset: &str, json: &Path, extra: &[&str]) -> Output {
    let out = run(bin()
        .args(["--simulate", preset, "--runs", "3", "-q", "--json"])
        .arg(json)
        .args(extra));
    assert!(out.status.success(), "{}", describe(&out));
    out
}

fn read(path: &Path) -> Report {
    Report::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits until `path` holds a report with at least `runs` runs; fails if the child exits
/// first. (The bound only keeps a broken build from hanging the suite.)
fn wait_for_runs(child: &mut Child, path: &Path, runs: usize) -> Report {
    let give_up = Instant::now() + Duration::from_secs(300);
    loop {
        if let Ok(r) = Report::read(path)
            && r.runs_done() >= runs
        {
            return r;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("percid-burst exited ({status}) before saving {runs} run(s)");
        }
        assert!(
            Instant::now() < give_up,
            "no run saved to {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: `kill` has no memory effects; the pid is our own child's, not yet reaped.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill: {}", std::io::Error::last_os_error());
}

/// No temporary files (`.NAME.tmp-PID`) left in `dir`.
fn assert_no_temp_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "left behind: {name}");
    }
}

#[test]
fn resume_after_a_killed_run_keeps_the_saved_runs() {
    let dir = temp_dir("resume");
    let json = dir.join("r.json");
    // 2 index sources x 2 delays x 2 runs: the 20 ms runs are quick, the 200 ms runs take
    // about 0.4 s each, so the process is killed with runs left.
    let args = tiny_real_with("2", "20ms,200ms", &["-q", "--index", "cpu,user-local"]);
    let mut child = bin()
        .args(&args)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_runs(&mut child, &json, 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = read(&json);
    assert!(!killed.complete, "killed after the first run: {killed:?}");
    assert_eq!(killed.runs_planned(), 8);
    assert!(killed.runs_done() >= 1 && killed.runs_done() < 8);
    let killed_text = std::fs::read_to_string(&json).unwrap();

    let out = run(bin()
        .args(["run", "--allow-debug", "-q", "--resume"])
        .arg(&json));
    assert!(out.status.success(), "{}", describe(&out));
    let done = read(&json);
    assert!(done.complete);
    assert_eq!(done.runs_done(), 8);
    assert_eq!(done.results.len(), 2 * 2);
    for row in &done.results {
        assert_eq!(row.per_run.len(), 2, "{row:?}");
        for r in &row.per_run {
            assert_eq!(
                r.seed,
                run_seed(1, r.run),
                "seeds derive from --seed and the run"
            );
        }
        assert_eq!(
            row.runs,
            row.per_run
                .iter()
                .map(|r| r.ns_per_pass)
                .collect::<Vec<_>>()
        );
    }
    // Every run saved before the kill is kept as it was, value for value.
    let before: Value = serde_json::from_str(&killed_text).unwrap();
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let mut kept = 0;
    for row in before["results"].as_array().unwrap() {
        let same = after["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["config"] == row["config"]
                    && r["delay_ms"] == row["delay_ms"]
                    && r["index"] == row["index"]
            })
            .expect("cell kept");
        for run in row["per_run"].as_array().unwrap() {
            assert!(
                same["per_run"].as_array().unwrap().contains(run),
                "run {run} changed or lost"
            );
            kept += 1;
        }
    }
    assert_eq!(kept, killed.runs_done());
    assert_eq!(before["plan"], after["plan"]);
    // Resuming a complete report runs nothing and changes nothing.
    let again = run(bin()
        .args(["run", "--allow-debug", "-q", "--resume"])
        .arg(&json));
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(read(&json).results, done.results);
    assert_no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn interrupted_by(sig: i32, status: i32, name: &str) {
    let dir = temp_dir(name);
    let json = dir.join("r.json");
    // The first run (20 ms) is quick; the second sleeps 3 s after its first pass. A signal
    // sent once the first run is saved must end that sleep: the report then holds exactly
    // one run (a run finished after the signal would be saved too).
    let args = tiny_real_with("1", "20ms,3s", &["--index", "cpu"]);
    let mut child = bin()
        .args(&args)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_runs(&mut child, &json, 1);
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(status), "{}", describe(&out));
    let r = read(&json);
    assert!(!r.complete);
    assert_eq!(r.runs_done(), 1, "the 3 s run was stopped, not completed");
    assert_eq!(r.runs_planned(), 2);
    let err = text(&out.stderr);
    assert!(err.contains(&format!("interrupted by {name}")), "{err}");
    assert!(err.contains("--resume") && err.contains("r.json"), "{err}");
    // The partial tables are printed.
    assert!(
        text(&out.stdout).contains("PARTIAL: 1 of 2 runs"),
        "{}",
        describe(&out)
    );
    assert_no_temp_files(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigint_stops_the_run_and_writes_the_partial_report() {
    interrupted_by(libc::SIGINT, 130, "SIGINT");
}

#[test]
fn sigterm_stops_the_run_and_writes_the_partial_report() {
    interrupted_by(libc::SIGTERM, 143, "SIGTERM");
}

#[test]
fn bad_output_paths_are_refused_before_any_work() {
    let dir = temp_dir("badpath");
    let missing_dir = dir.join("no-such-dir").join("r.json");
    for (option, path, why) in [
        ("--json", missing_dir.clone(), "does not exist"),
        ("--svg", missing_dir.clone(), "does not exist"),
        ("--json", dir.clone(), "is a directory"),
        ("--svg", dir.clone(), "is a directory"),
    ] {
        let out = run(bin().args(tiny_real(&[option])).arg(&path));
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let err = text(&out.stderr);
        assert!(err.contains(option) && err.contains(why), "{err}");
        // Nothing ran: no progress line, no table.
        assert!(!err.contains("run 1/"), "{err}");
        assert!(out.stdout.is_empty(), "{}", describe(&out));
    }
    let out = run(bin()
        .args(tiny_real(&["--json"]))
        .arg(dir.join("same"))
        .arg("--svg")
        .arg(dir.join("same")));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(!dir.join("no-such-dir").exists());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no file written"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn real_run_names_its_files_and_json_goes_to_stdout() {
    let dir = temp_dir("files");
    let json = dir.join("r.json");
    let svg = dir.join("r.svg");
    let out = run(bin()
        .args(tiny_real(&["--index", "cpu,user-local", "--json"]))
        .arg(&json)
        .arg("--svg")
        .arg(&svg));
    assert!(out.status.success(), "{}", describe(&out));
    let err = text(&out.stderr);
    for f in [&json, &svg] {
        assert!(
            err.contains(&format!("wrote {}", f.display())),
            "{} not named: {err}",
            f.display()
        );
    }
    assert!(
        err.contains("run 1/2"),
        "progress lines on a non-terminal: {err}"
    );
    let r = read(&json);
    assert!(r.complete && r.runs_done() == 4);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // The same tables and conclusions as `report`.
    let rendered = run(bin().arg("report").arg(&json));
    assert_eq!(text(&rendered.stdout), text(&out.stdout));

    // `--json -`: the report on stdout, the tables on stderr.
    let out = run(bin().args(tiny_real(&["-q", "--index", "cpu", "--json", "-"])));
    assert!(out.status.success(), "{}", describe(&out));
    let r = Report::from_json(&text(&out.stdout)).expect("stdout is the JSON report");
    assert_eq!((r.schema, r.runs_done()), (2, 2));
    assert!(
        text(&out.stderr).contains("ns per pass"),
        "{}",
        describe(&out)
    );
    assert!(!dir.join("-").exists() && !Path::new("-").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn to_dev_full(cmd: &mut Command) -> Output {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    cmd.stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn stdout_write_errors_exit_1_with_a_message() {
    let dir = temp_dir("devfull");
    let json = dir.join("a.json");
    simulate(
        "xeon-e-2388g",
        &json,
        &["--config", "1c-1l3", "--delay", "10ms"],
    );
    let json_arg = json.to_str().unwrap();
    for args in [
        &["topology", "--preset", "epyc-9654"][..],
        &[
            "--simulate",
            "xeon-e-2388g",
            "--config",
            "1c-1l3",
            "--delay",
            "10ms",
            "--runs",
            "1",
            "-q",
        ],
        &["report", json_arg],
        &["compare", json_arg, json_arg],
        &["--help"],
        &["--version"],
    ] {
        let out = to_dev_full(bin().args(args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            err.contains("stdout") || err.contains("No space left"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn forced_fallback_gives_the_real_reason_and_fails_when_nothing_runs() {
    let out = run(bin()
        .env("PERCID_FORCE_FALLBACK", "1")
        .args(tiny_real(&["--index", "mmcid"])));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(err.contains("no index source can run here"), "{err}");
    assert!(err.contains("mmcid") && err.contains("forced by"), "{err}");
    assert!(!err.contains("kernel provides no"), "{err}");
    assert!(out.stdout.is_empty(), "no empty tables: {}", describe(&out));

    let out = run(bin()
        .env("PERCID_FORCE_FALLBACK", "1")
        .args(tiny_real(&["--index", "mmcid,cpu"])));
    assert!(out.status.success(), "{}", describe(&out));
    let err = text(&out.stderr);
    assert!(err.contains("skipping mmcid: percid uses no rseq"), "{err}");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("skipped mmcid: percid uses no rseq"),
        "{stdout}"
    );
    assert!(stdout.contains("cpu"), "{stdout}");
}

#[test]
fn huge_values_are_refused_at_once() {
    for args in [
        &[
            "--simulate",
            "epyc-9654",
            "--passes",
            "18446744073709551615",
        ][..],
        &["--simulate", "epyc-9654", "--runs", "18446744073709551615"],
        &[
            "--simulate",
            "epyc-9654",
            "--runs",
            "1000",
            "--passes",
            "10000",
        ],
    ] {
        let out = run(bin().args(args));
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(out.stdout.is_empty());
    }
    let out = run(bin().args([
        "--simulate",
        "epyc-9654",
        "--runs",
        "1000",
        "--passes",
        "10000",
    ]));
    let err = text(&out.stderr);
    assert!(
        err.contains("estimated at about") && err.contains("--max-duration"),
        "{err}"
    );
}

#[test]
fn debug_builds_refuse_timed_runs_without_the_flag() {
    let mut args = tiny_real(&["-q"]);
    args.retain(|a| a != "--allow-debug");
    let out = run(bin().args(&args));
    if cfg!(debug_assertions) {
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(text(&out.stderr).contains("--allow-debug"));
    } else {
        assert!(out.status.success(), "{}", describe(&out));
    }
}

#[test]
fn report_and_compare_round_trips() {
    let dir = temp_dir("report");
    let a1 = dir.join("a1.json");
    let a2 = dir.join("a2.json");
    let b = dir.join("b.json");
    let run_a1 = simulate("xeon-e-2388g", &a1, &["--config", "8c-1l3"]);
    simulate("xeon-e-2388g", &a2, &["--config", "1c-1l3"]);
    simulate("epyc-9654", &b, &["--config", "8c-1l3", "--delay", "200ms"]);

    // report renders what the run printed.
    let out = run(bin().arg("report").arg(&a1));
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), text(&run_a1.stdout));
    assert!(text(&out.stdout).contains("conclusions"));

    // Two compatible reports merge, into JSON and SVG too.
    let m = dir.join("m.json");
    let svg = dir.join("m.svg");
    let out = run(bin()
        .arg("report")
        .arg(&a1)
        .arg(&a2)
        .arg("--json")
        .arg(&m)
        .arg("--svg")
        .arg(&svg));
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("merged 2 reports"), "{stdout}");
    let merged = read(&m);
    let configs: Vec<&str> = merged.results.iter().map(|r| r.config.as_str()).collect();
    assert!(configs.contains(&"8c-1l3") && configs.contains(&"1c-1l3"));
    let chart = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "ns per pass (log scale)",
        "slot migrations (% of timed passes)",
        "8c-1l3, 200ms",
    ] {
        assert!(chart.contains(label), "chart lacks {label:?}");
    }
    assert!(!chart.contains("100000.0"));

    // Reports of different machines are rendered one after another; no merged outputs.
    let out = run(bin().arg("report").arg(&a1).arg(&b));
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("not merged:"), "{stdout}");
    assert!(
        stdout.contains(&format!("== {} ==", b.display())),
        "{stdout}"
    );
    let out = run(bin().arg("report").arg(&a1).arg(&b).arg("--svg").arg(&svg));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));

    // compare: matched cells with the ratio B/A, the others listed.
    let out = run(bin().arg("compare").arg(&a1).arg(&b));
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    let (ra, rb) = (read(&a1), read(&b));
    let (ca, cb) = (
        ra.find("8c-1l3", 200.0, "user-legacy").unwrap(),
        rb.find("8c-1l3", 200.0, "user-legacy").unwrap(),
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("8c-1l3") && l.contains("200ms") && l.contains("user-legacy"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.contains(&format!("{:.2}x", cb.ns_per_pass / ca.ns_per_pass)),
        "{line}"
    );
    assert!(stdout.contains("only in A: 8c-1l3 10ms\n"), "{stdout}");
    assert!(!stdout.contains("only in B"), "{stdout}");

    // A schema 1 file (no schema, generator, plan, per-run records) still renders, and
    // cannot be resumed.
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&a1).unwrap()).unwrap();
    let obj = v.as_object_mut().unwrap();
    for key in ["schema", "generator", "plan", "complete"] {
        obj.remove(key);
    }
    obj["machine"].as_object_mut().unwrap().remove("summary");
    for r in obj["results"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("per_run");
    }
    let v1 = dir.join("v1.json");
    std::fs::write(&v1, serde_json::to_string(&v).unwrap()).unwrap();
    let out = run(bin().arg("report").arg(&v1));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(text(&out.stdout).contains("8c-1l3"));
    assert_eq!(read(&v1).schema, 1);
    let out = run(bin().args(["run", "-q", "--resume"]).arg(&v1));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("cannot resume"));

    // A report of another machine is refused by --resume, with the reason.
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&a1).unwrap()).unwrap();
    v["machine"]["cores"] = Value::from(7);
    v["complete"] = Value::from(false);
    let other = dir.join("other.json");
    std::fs::write(&other, serde_json::to_string(&v).unwrap()).unwrap();
    let out = run(bin().args(["run", "-q", "--resume"]).arg(&other));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("another machine: cores"),
        "{}",
        describe(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
