//! The command line (clap): defaults, every option, short flags, repeated and conflicting
//! options, ranges, the one spelling of index sources, exit statuses, limits.

use std::time::Duration;

use clap::Parser;
use clap::error::ErrorKind;
use percid::{Index, Policy};
use percid_burst::cli::{Cli, Command, cli_main};
use percid_burst::{
    BurstError, Options, Target, parse_duration, parse_index, parse_size, parse_time_limit,
    plan_run,
};

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("percid-burst").chain(args.iter().copied()))
}

/// The run options of a command line that runs the benchmark.
fn run_options(args: &[&str]) -> Options {
    let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        None => cli.run.options(),
        Some(Command::Run(r)) => r.options(),
        Some(other) => panic!("{args:?} gave {other:?}"),
    }
}

fn error_kind(args: &[&str]) -> ErrorKind {
    match parse(args) {
        Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
            e.kind()
        }
    }
}

fn error_text(args: &[&str]) -> String {
    parse(args).expect_err("must fail").to_string()
}

#[test]
fn defaults_are_the_published_method() {
    let o = run_options(&[]);
    assert_eq!(o, Options::default());
    assert_eq!(o.indices, Index::ALL.to_vec());
    assert_eq!(
        o.delays,
        vec![Duration::from_millis(200), Duration::from_millis(10)]
    );
    assert_eq!((o.runs, o.passes, o.warmup), (5, 5, 20_000));
    assert_eq!(o.item_size, 16 * 1024);
    assert!(o.configs.is_empty() && o.cpus.is_none());
    assert_eq!(o.target, Target::Real);
    assert!(!o.allow_debug && !o.quiet);
    assert_eq!(run_options(&["run"]), Options::default());
}

#[test]
fn every_option_parses_long_short_and_with_equals() {
    let long = run_options(&[
        "--index",
        "user-legacy,user-local",
        "--config=8c-1l3,24c-24l3",
        "--delay",
        "1s,500us,3",
        "--runs",
        "3",
        "--passes=7",
        "--warmup",
        "0",
        "--item-size",
        "4KiB",
        "--seed",
        "42",
        "--json",
        "out.json",
        "--svg",
        "out.svg",
        "--simulate",
        "epyc-9654",
        "--max-duration",
        "2h",
        "--allow-debug",
        "--quiet",
    ]);
    assert_eq!(
        long.indices,
        vec![Index::User(Policy::Legacy), Index::User(Policy::CacheLocal)]
    );
    assert_eq!(long.configs, vec!["8c-1l3", "24c-24l3"]);
    assert_eq!(
        long.delays,
        vec![
            Duration::from_secs(1),
            Duration::from_micros(500),
            Duration::from_millis(3)
        ]
    );
    assert_eq!(
        (
            long.runs,
            long.passes,
            long.warmup,
            long.item_size,
            long.seed
        ),
        (3, 7, 0, 4096, 42)
    );
    assert_eq!(long.json.as_deref(), Some(std::path::Path::new("out.json")));
    assert_eq!(long.svg.as_deref(), Some(std::path::Path::new("out.svg")));
    assert_eq!(long.target, Target::Preset("epyc-9654".into()));
    assert_eq!(long.max_duration, Duration::from_secs(7200));
    assert!(long.quiet && long.allow_debug);

    let short = run_options(&[
        "run",
        "-i",
        "user-legacy,user-local",
        "-c",
        "8c-1l3,24c-24l3",
        "-d",
        "1s,500us,3",
        "-r",
        "3",
        "-p",
        "7",
        "-w",
        "0",
        "--item-size",
        "4KiB",
        "-s",
        "42",
        "-j",
        "out.json",
        "--svg",
        "out.svg",
        "--simulate",
        "epyc-9654",
        "--max-duration",
        "2h",
        "--allow-debug",
        "-q",
    ]);
    assert_eq!(short, long);

    let o = run_options(&["--cpus", "0-1", "--describe", "m.json"]);
    assert_eq!(o.cpus.unwrap().to_string(), "0-1");
    assert_eq!(o.target, Target::Describe("m.json".into()));
}

#[test]
fn subcommands_parse() {
    let cli = parse(&["report", "a.json", "b.json", "--svg", "x.svg"]).unwrap();
    let Some(Command::Report(r)) = cli.command else {
        panic!("not report")
    };
    assert_eq!(r.files.len(), 2);
    assert!(r.svg.is_some() && r.json.is_none());
    let cli = parse(&["compare", "a.json", "b.json"]).unwrap();
    assert!(matches!(cli.command, Some(Command::Compare(_))));
    let cli = parse(&["topology", "--preset", "epyc-9654", "--json"]).unwrap();
    let Some(Command::Topology(t)) = cli.command else {
        panic!("not topology")
    };
    assert!(t.json && t.preset.as_deref() == Some("epyc-9654"));
    let cli = parse(&["run", "--resume", "r.json", "-q"]).unwrap();
    let Some(Command::Run(r)) = cli.command else {
        panic!("not run")
    };
    assert_eq!(r.resume.as_deref(), Some(std::path::Path::new("r.json")));
}

#[test]
fn repeated_options_are_rejected() {
    for args in [
        &["--runs", "3", "--runs", "4"][..],
        &["-q", "-q"],
        &["--index", "cpu", "--index", "mmcid"],
        &["--delay", "1ms", "-d", "2ms"],
        &["run", "--json", "a", "--json", "b"],
        &["topology", "--json", "--json"],
    ] {
        assert_eq!(error_kind(args), ErrorKind::ArgumentConflict, "{args:?}");
    }
}

#[test]
fn conflicting_options_are_rejected() {
    for args in [
        &["--config", "2c-1l3", "--cpus", "0"][..],
        &["--simulate", "x", "--describe", "y"],
        &["--resume", "r.json", "--runs", "3"],
        &["--resume", "r.json", "--simulate", "epyc-9654"],
        &["topology", "--preset", "x", "--describe", "y"],
        &["--runs", "3", "report", "a.json"],
    ] {
        assert_eq!(error_kind(args), ErrorKind::ArgumentConflict, "{args:?}");
    }
}

#[test]
fn bad_values_are_rejected_with_the_option_named() {
    for (args, option) in [
        (&["--runs", "0"][..], "--runs"),
        (&["--runs", "x"], "--runs"),
        (&["--runs", "18446744073709551615"], "--runs"),
        (&["--passes", "18446744073709551615"], "--passes"),
        (&["--passes", "10001"], "--passes"),
        (&["--warmup", "-1"], "--warmup"),
        (&["--delay", "0ms"], "--delay"),
        (&["--delay", "5 parsecs"], "--delay"),
        (&["--delay", "2h"], "--delay"),
        (&["--item-size", "128KiB"], "--item-size"),
        (&["--cpus", "3-1"], "--cpus"),
        (&["--max-duration", "0"], "--max-duration"),
        (&["--bogus"], "--bogus"),
    ] {
        let text = error_text(args);
        assert!(text.contains(option), "{args:?}: {text}");
        error_kind(args);
    }
    assert!(parse(&["report"]).is_err(), "report needs a file");
    assert!(parse(&["compare", "a.json"]).is_err(), "compare needs two");
}

#[test]
fn one_spelling_of_index_sources() {
    for i in Index::ALL {
        assert_eq!(parse_index(i.name()), Ok(i));
    }
    let text = error_text(&["--index", "user"]);
    assert!(
        text.contains("cpu, mmcid, user-legacy, user-local"),
        "{text}"
    );
    assert!(!text.contains("cache-local"), "{text}");
    let text = error_text(&["--index", "gpu"]);
    assert!(
        text.contains("gpu") && text.contains("user-legacy, user-local"),
        "{text}"
    );
}

#[test]
fn units() {
    assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
    assert_eq!(parse_duration("10"), Ok(Duration::from_millis(10)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
    assert!(parse_duration("ms").is_err());
    assert!(parse_duration("2h").is_err());
    assert_eq!(parse_time_limit("90"), Ok(Duration::from_secs(90)));
    assert_eq!(parse_time_limit("30min"), Ok(Duration::from_secs(1800)));
    assert_eq!(parse_time_limit("1.5h"), Ok(Duration::from_secs(5400)));
    assert!(parse_time_limit("1 fortnight").is_err());
    assert_eq!(parse_size("16KiB"), Ok(16384));
    assert_eq!(parse_size("64K"), Ok(65536));
    // SI-looking units are ambiguous: refused, as the docs list only B, KiB/K and MiB/M.
    for ambiguous in ["16KB", "16kB", "16k", "1MB"] {
        let e = parse_size(ambiguous).unwrap_err();
        assert!(e.contains("ambiguous"), "{ambiguous}: {e}");
    }
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("1GiB").is_err());
}

#[test]
fn exit_status_two_for_bad_usage_in_every_command() {
    let dir = std::env::temp_dir().join(format!("burst-options-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_description = dir.join("bad.json");
    std::fs::write(&bad_description, "{ \"format\": \"percid-topology/1\" ").unwrap();
    let bad = bad_description.to_str().unwrap();
    let missing = dir.join("missing.json");
    let missing = missing.to_str().unwrap();
    for args in [
        &["--nope"][..],
        &["--delay", "fast"],
        &["--simulate", "no-such-machine", "--quiet"],
        &["--simulate", "epyc-9654", "--config", "7c-9l3", "--quiet"],
        &["--describe", bad, "--quiet"],
        &["run", "--describe", missing, "--quiet"],
        &["topology", "--preset", "no-such-machine"],
        &["topology", "--describe", bad],
        &["topology", "--describe", missing],
        &["report", missing],
        &["report", bad],
        &["compare", missing, missing],
        &["run", "--resume", missing],
    ] {
        assert_eq!(cli_main(args.iter().copied()), 2, "{args:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_simulations_are_refused_with_an_estimate() {
    // Issue 10.11: each value is in range, together they are days of simulation.
    let o = Options {
        target: Target::Preset("epyc-9654".into()),
        runs: 1000,
        passes: 10_000,
        quiet: true,
        ..Options::default()
    };
    match plan_run(&o) {
        Err(e @ BurstError::TooLong { .. }) => {
            assert_eq!(e.exit_code(), 2);
            let text = e.to_string();
            assert!(text.contains("--max-duration"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        cli_main([
            "--simulate",
            "epyc-9654",
            "--runs",
            "1000",
            "--passes",
            "10000",
            "-q"
        ]),
        2
    );
    // A limit raised past the estimate lets the plan through (not run here).
    let o = Options {
        max_duration: Duration::from_secs(1 << 40),
        ..o
    };
    assert!(plan_run(&o).is_ok());
}

#[test]
fn timed_runs_of_a_debug_build_need_allow_debug() {
    let o = Options {
        indices: vec![Index::CpuId],
        runs: 1,
        passes: 1,
        warmup: 1,
        delays: vec![Duration::from_millis(1)],
        ..Options::default()
    };
    let refused = matches!(plan_run(&o), Err(BurstError::DebugBuild));
    assert_eq!(refused, cfg!(debug_assertions));
    let allowed = Options {
        allow_debug: true,
        ..o
    };
    assert!(plan_run(&allowed).is_ok());
    // Simulations are not timings: no flag needed.
    let simulated = Options {
        target: Target::Preset("xeon-e-2388g".into()),
        ..allowed
    };
    assert!(
        plan_run(&Options {
            allow_debug: false,
            ..simulated
        })
        .is_ok()
    );
}
