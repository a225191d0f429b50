//! Command-line parsing of the burst benchmark, including errors and exit status.

use std::time::Duration;

use percid::burst::{Command, Options, OptionsError, Target, cli_main, parse_duration, parse_size};
use percid::{Index, Policy};

fn parse(args: &[&str]) -> Result<Command, OptionsError> {
    Options::parse(args.iter().copied())
}

fn run_options(args: &[&str]) -> Options {
    match parse(args) {
        Ok(Command::Run(o)) => *o,
        other => panic!("{args:?} gave {other:?}"),
    }
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
}

#[test]
fn every_option_parses() {
    let o = run_options(&[
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
        "--simulate",
        "epyc-9654",
        "--quiet",
    ]);
    assert_eq!(
        o.indices,
        vec![Index::User(Policy::Legacy), Index::User(Policy::CacheLocal)]
    );
    assert_eq!(o.configs, vec!["8c-1l3", "24c-24l3"]);
    assert_eq!(
        o.delays,
        vec![
            Duration::from_secs(1),
            Duration::from_micros(500),
            Duration::from_millis(3)
        ]
    );
    assert_eq!(
        (o.runs, o.passes, o.warmup, o.item_size, o.seed),
        (3, 7, 0, 4096, 42)
    );
    assert_eq!(o.json.as_deref(), Some(std::path::Path::new("out.json")));
    assert_eq!(o.target, Target::Preset("epyc-9654".into()));
    assert!(o.quiet);

    let o = run_options(&["--cpus", "0-1", "--describe", "m.json"]);
    assert_eq!(o.cpus.unwrap().to_string(), "0-1");
    assert_eq!(o.target, Target::Describe("m.json".into()));
    assert_eq!(parse(&["--help"]), Ok(Command::Help));
}

#[test]
fn bad_options_are_typed_errors() {
    use OptionsError::*;
    assert_eq!(parse(&["--bogus"]), Err(Unknown("--bogus".into())));
    assert_eq!(parse(&["--runs"]), Err(MissingValue("--runs")));
    assert!(matches!(
        parse(&["--runs", "0"]),
        Err(BadValue {
            option: "--runs",
            ..
        })
    ));
    assert!(matches!(
        parse(&["--runs", "x"]),
        Err(BadValue {
            option: "--runs",
            ..
        })
    ));
    assert!(matches!(
        parse(&["--index", "gpu"]),
        Err(BadValue {
            option: "--index",
            ..
        })
    ));
    assert!(matches!(
        parse(&["--delay", "0ms"]),
        Err(BadValue {
            option: "--delay",
            ..
        })
    ));
    assert!(matches!(
        parse(&["--delay", "5 parsecs"]),
        Err(BadValue { .. })
    ));
    assert!(matches!(
        parse(&["--item-size", "128KiB"]),
        Err(BadValue { .. })
    ));
    assert!(matches!(
        parse(&["--cpus", "3-1"]),
        Err(BadValue {
            option: "--cpus",
            ..
        })
    ));
    assert_eq!(
        parse(&["--config", "2c-1l3", "--cpus", "0"]),
        Err(Conflict("--config", "--cpus"))
    );
    assert_eq!(
        parse(&["--simulate", "x", "--describe", "y"]),
        Err(Conflict("--simulate", "--describe"))
    );
    let msg = parse(&["--warmup", "-1"]).unwrap_err().to_string();
    assert!(msg.contains("--warmup") && msg.contains("-1"), "{msg}");
}

#[test]
fn units() {
    assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
    assert_eq!(parse_duration("10"), Ok(Duration::from_millis(10)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
    assert!(parse_duration("ms").is_err());
    assert_eq!(parse_size("16KiB"), Ok(16384));
    assert_eq!(parse_size("64K"), Ok(65536));
    assert_eq!(parse_size("100"), Ok(100));
    assert!(parse_size("1GiB").is_err());
}

#[test]
fn exit_status_two_for_bad_options_and_targets() {
    assert_eq!(cli_main(["--nope"]), 2);
    assert_eq!(cli_main(["--delay", "fast"]), 2);
    assert_eq!(cli_main(["--simulate", "no-such-machine", "--quiet"]), 2);
    assert_eq!(
        cli_main(["--simulate", "epyc-9654", "--config", "7c-9l3", "--quiet"]),
        2
    );
    assert_eq!(cli_main(["--help"]), 0);
}
