//! Prints a machine's topology and its benchmark configurations.
//!
//! ```text
//! cargo run --example topology                      # this machine (sysfs)
//! cargo run --example topology -- --preset epyc-9654
//! cargo run --example topology -- --describe machine.json
//! cargo run --example topology -- --json            # the description JSON instead
//! ```
//!
//! Exit status: 0 on success, 1 when the topology cannot be read or loaded, 2 for bad options.

use std::io::Write;
use std::process::ExitCode;

use percid::topology::{PRESETS, Topology, TopologyError};

const USAGE: &str = "usage: topology [--preset NAME | --describe FILE] [--json]";

/// Where to take the topology from.
enum Input {
    Sysfs,
    Preset(String),
    Describe(String),
}

/// Parses the command line: the input and whether to print JSON.
fn parse_args(args: impl Iterator<Item = String>) -> Result<(Input, bool), String> {
    let mut input = Input::Sysfs;
    let mut json = false;
    let mut args = args;
    while let Some(arg) = args.next() {
        let mut value = |opt: &str| args.next().ok_or_else(|| format!("{opt} needs a value"));
        let next = match arg.as_str() {
            "--json" => {
                json = true;
                continue;
            }
            "--preset" => Input::Preset(value("--preset")?),
            "--describe" => Input::Describe(value("--describe")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option '{other}'")),
        };
        if !matches!(input, Input::Sysfs) {
            return Err("give at most one of --preset and --describe".to_string());
        }
        input = next;
    }
    Ok((input, json))
}

fn main() -> ExitCode {
    let (input, json) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) if message.is_empty() => {
            println!("{USAGE}\npresets: {}", PRESETS.join(", "));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("topology: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let topology = match &input {
        Input::Sysfs => Topology::from_sysfs(),
        Input::Preset(name) => Topology::preset(name),
        Input::Describe(path) => Topology::from_json_file(path),
    };
    let topology = match topology {
        Ok(t) => t,
        Err(e @ TopologyError::UnknownPreset { .. }) => {
            eprintln!("topology: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("topology: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if json {
        format!("{}\n", topology.to_json())
    } else {
        let mut text = format!("{topology}configurations:\n");
        for config in topology.configurations() {
            text += &format!("  {config}\n");
        }
        text
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("topology: cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}
