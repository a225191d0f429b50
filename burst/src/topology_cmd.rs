//! `percid-burst topology`: prints a machine's topology and its benchmark configurations.
//!
//! ```text
//! percid-burst topology                      # this machine (sysfs)
//! percid-burst topology --preset epyc-9654
//! percid-burst topology --describe machine.json
//! percid-burst topology --json               # the description JSON instead
//! ```
//!
//! Exit status, as for every command: 0 on success, 2 for bad usage (options, an unknown
//! preset, an unreadable or invalid description), 1 when this machine's topology cannot be
//! read or the output cannot be written.

use crate::BurstError;
use crate::cli::TopologyArgs;
use crate::machine::{Configurations, MachineDescription, PRESETS};

/// The command.
pub fn run(args: &TopologyArgs) -> Result<i32, BurstError> {
    let machine = match (&args.preset, &args.describe) {
        (Some(name), _) => MachineDescription::preset(name).map_err(BurstError::Target)?,
        (None, Some(path)) => {
            MachineDescription::from_json_file(path).map_err(BurstError::Target)?
        }
        (None, None) => MachineDescription::sysfs().map_err(BurstError::Topology)?,
    };
    let text = if args.json {
        format!("{}\n", machine.to_json())
    } else {
        let mut text = format!("{}configurations:\n", machine.topology);
        for config in machine.topology.configurations() {
            text += &format!("  {config}\n");
        }
        if args.preset.is_none() && args.describe.is_none() {
            text += &format!("presets: {}\n", PRESETS.join(", "));
        }
        text
    };
    crate::write_stdout(&text)?;
    Ok(0)
}
