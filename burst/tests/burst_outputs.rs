//! Outputs never harm what they name: devices and FIFOs are written in place (never
//! replaced), a symbolic link's target is replaced and the link kept, two options naming one
//! file are refused, a read-only file is refused (checked on the mode bits: CI runs as root,
//! where `access(2)` allows everything), and a failed write never claims a partial report.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use percid_burst::Report;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_percid-burst"));
    c.env_remove("PERCID_FORCE_FALLBACK");
    c
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burst-out-{}-{name}", std::process::id()));
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

/// A short simulation (one configuration, one run) with `extra` arguments.
fn simulate(extra: &[&std::ffi::OsStr]) -> Output {
    bin()
        .args([
            "--simulate",
            "xeon-e-2388g",
            "--config",
            "8c-1l3",
            "--delay",
            "200ms",
            "--runs",
            "1",
            "-q",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("spawn percid-burst")
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn is_char_device(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .unwrap()
        .file_type()
        .is_char_device()
}

/// A private copy of the memory device `1:minor` (`/dev/null` is 1:3, `/dev/full` 1:7) in a
/// fresh directory, so that a regression replaces this node and never the machine's own.
/// `None` where device nodes cannot be made (not root, or a filesystem mounted `nodev`
/// refuses to open them): the test then says so and checks nothing.
fn private_device(name: &str, minor: u32) -> Option<PathBuf> {
    let path = temp_dir(name).join(name);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mknod with a NUL-terminated path that lives across the call; it creates a node
    // in our own fresh directory and touches nothing else.
    let made = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, minor)) };
    if made != 0 || std::fs::OpenOptions::new().write(true).open(&path).is_err() {
        eprintln!("skipped: cannot make a usable device node here (needs root, no nodev)");
        return None;
    }
    Some(path)
}

#[test]
fn dev_null_stays_a_character_device() {
    let Some(null) = private_device("null", 3) else {
        return;
    };
    for option in ["--json", "--svg"] {
        let out = simulate(&[os(option), null.as_os_str()]);
        assert!(out.status.success(), "{}", describe(&out));
        assert!(is_char_device(&null), "{option} {null:?} replaced it");
    }
}

#[test]
fn dev_full_is_an_output_error_and_stays_a_device() {
    let Some(full) = private_device("full", 7) else {
        return;
    };
    let name = full.to_str().unwrap();
    for option in ["--json", "--svg"] {
        let out = simulate(&[os(option), full.as_os_str()]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = text(&out.stderr);
        assert!(err.contains(name) && err.contains("space"), "{err}");
        assert!(!err.contains("partial report"), "{err}");
        assert!(is_char_device(&full), "{option} {full:?} replaced it");
    }
}

#[test]
fn a_fifo_is_written_in_place_once() {
    let dir = temp_dir("fifo");
    let fifo = dir.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::fs::File::open(&reader_path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    });
    let out = simulate(&[os("--json"), fifo.as_os_str()]);
    assert!(out.status.success(), "{}", describe(&out));
    let got = reader.join().unwrap();
    let report = Report::from_json(&got).expect("one whole report through the FIFO");
    // One configuration, one delay: a cell per index source.
    assert_eq!(report.results.len(), percid::Index::ALL.len(), "{got}");
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo(),
        "the FIFO was replaced"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_symlink_is_followed_and_its_target_replaced() {
    let dir = temp_dir("link");
    std::fs::create_dir(dir.join("real")).unwrap();
    let target = dir.join("real").join("r.json");
    std::fs::write(&target, "old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink("real/r.json", &link).unwrap();
    let out = simulate(&[os("--json"), link.as_os_str()]);
    assert!(out.status.success(), "{}", describe(&out));
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the link was replaced");
    let report = Report::read(&target).expect("the target holds the report");
    assert!(!report.results.is_empty());
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the target's permissions are kept");
    // A dangling link: its target is created.
    let dangling = dir.join("dangling.json");
    std::os::unix::fs::symlink("real/new.json", &dangling).unwrap();
    let out = simulate(&[os("--json"), dangling.as_os_str()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    Report::read(&dir.join("real").join("new.json")).expect("created through the link");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_options_naming_one_file_are_refused() {
    let dir = temp_dir("same");
    let a = dir.join("a.out");
    std::fs::write(&a, "keep").unwrap();
    std::fs::hard_link(&a, dir.join("hard.out")).unwrap();
    std::os::unix::fs::symlink("a.out", dir.join("soft.out")).unwrap();
    let dot = dir.join(".").join("a.out");
    let cases: Vec<(PathBuf, PathBuf)> = vec![
        (a.clone(), dot.clone()),
        (a.clone(), dir.join("hard.out")),
        (dir.join("soft.out"), a.clone()),
        // Not yet existing: by the canonical directory and name.
        (dir.join("new.out"), dir.join(".").join("new.out")),
    ];
    for (json, svg) in cases {
        let out = simulate(&[os("--json"), json.as_os_str(), os("--svg"), svg.as_os_str()]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            text(&out.stderr).contains("name one file"),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "keep");
    assert!(!dir.join("new.out").exists());
    // --resume with --svg on the same file, and --json naming the --resume file.
    let r = dir.join("r.json");
    let out = simulate(&[os("--json"), r.as_os_str()]);
    assert!(out.status.success(), "{}", describe(&out));
    let before = std::fs::read_to_string(&r).unwrap();
    for other in ["--svg", "--json"] {
        let out = bin()
            .args(["run", "--resume"])
            .arg(&r)
            .arg(other)
            .arg(dir.join(".").join("r.json"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            text(&out.stderr).contains("name one file"),
            "{}",
            describe(&out)
        );
    }
    // `report`'s outputs may not overwrite its inputs.
    let out = bin()
        .arg("report")
        .arg(&r)
        .arg("--svg")
        .arg(&r)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&r).unwrap(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_read_only_file_is_refused() {
    let dir = temp_dir("ro");
    let ro = dir.join("ro.json");
    std::fs::write(&ro, "keep").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
    for option in ["--json", "--svg"] {
        let out = simulate(&[os(option), ro.as_os_str()]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            text(&out.stderr).contains("read-only"),
            "{}",
            describe(&out)
        );
        assert_eq!(std::fs::read_to_string(&ro).unwrap(), "keep");
    }
    // Also through a link, and with `report --json`.
    let link = dir.join("link.json");
    std::os::unix::fs::symlink(&ro, &link).unwrap();
    let out = simulate(&[os("--json"), link.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(std::fs::read_to_string(&ro).unwrap(), "keep");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The first CPU this process may use.
fn first_cpu() -> String {
    percid::topology::allowed_cpus()
        .expect("affinity")
        .first()
        .expect("at least one CPU")
        .to_string()
}

#[test]
fn a_failed_write_does_not_claim_a_partial_report() {
    // A real run whose directory disappears before the first save: every save fails, so the
    // run stops with an output error and must not point at a partial report.
    let dir = temp_dir("lost");
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let json = sub.join("r.json");
    let mut child = bin()
        .args([
            "run",
            "--allow-debug",
            "--warmup",
            "10",
            "--passes",
            "2",
            "--runs",
            "3",
            "--delay",
            "1s",
            "--index",
            "cpu",
            "--cpus",
        ])
        .arg(first_cpu())
        .arg("--json")
        .arg(&json)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "stderr: {seen}");
        seen.push_str(&line);
        if line.contains("is saved to") {
            break;
        }
    }
    std::fs::remove_dir_all(&sub).unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    seen.push_str(&rest);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(seen.contains("r.json"), "{seen}");
    assert!(!seen.contains("partial report"), "{seen}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn compare_and_report_write_a_verdict_per_cell_as_json() {
    let dir = temp_dir("verdicts");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    // Different machines, no configuration name in common: matched by shape.
    for (path, preset, config) in [(&a, "xeon-e-2388g", "1c-1l3"), (&b, "epyc-9654", "8c-1l3")] {
        let out = bin()
            .args([
                "--simulate",
                preset,
                "--config",
                config,
                "--runs",
                "3",
                "-q",
                "--json",
            ])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
    }
    let out = bin()
        .arg("compare")
        .arg(&a)
        .arg(&b)
        .args(["--json", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        c["matched"].as_str().unwrap().starts_with("by shape"),
        "{c}"
    );
    let ratios = c["ratios"].as_array().unwrap();
    assert_eq!(ratios.len(), 4, "two delays x two ratios: {c}");
    assert!(
        ratios
            .iter()
            .all(|r| r["verdict"].is_string() && r["b_config"] == "8c-1l3")
    );
    assert!(c["machine_difference"].is_string(), "{c}");
    // The same machine twice: every cell compared, each with a verdict.
    let out = bin()
        .arg("compare")
        .arg(&a)
        .arg(&a)
        .args(["--json", "-"])
        .output()
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cells = c["cells"].as_array().unwrap();
    // Two delays of one configuration: a cell per delay and index source.
    assert_eq!(cells.len(), 2 * percid::Index::ALL.len(), "{c}");
    assert!(
        cells.iter().all(|x| x["verdict"] == "within the noise"),
        "{c}"
    );
    assert!((c["drift"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    // `report --json`: the report (it reads back) plus a verdict per ratio.
    let r = dir.join("r.json");
    let out = bin()
        .arg("report")
        .arg(&a)
        .arg("--json")
        .arg(&r)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    Report::read(&r).expect("reads back as a report");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
    let verdicts = v["verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 4, "{v}");
    assert!(verdicts.iter().all(|x| x["verdict"].is_string()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tables_fit_100_columns_unless_wide() {
    let run = |extra: &[&str]| {
        let out = bin()
            .args(["--simulate", "epyc-9654", "--runs", "1", "-q"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        text(&out.stdout)
    };
    // Everything but the conclusions' prose (one line per configuration).
    let widest = |t: &str| {
        t.lines()
            .filter(|l| !l.contains(" CPUs): ") && !l.contains(" CPU): "))
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(0)
    };
    let narrow = run(&[]);
    assert!(widest(&narrow) <= 100, "{narrow}");
    assert!(narrow.contains("legacy/local"), "{narrow}");
    let wide = run(&["--wide"]);
    assert!(widest(&wide) > 100, "{wide}");
}
