//! # Machines the suite runs on or models
//!
//! A [`MachineDescription`] is a [`Topology`] plus, for machines the suite models rather than
//! runs on, the cost model of the simulator (an opaque JSON object here, interpreted by
//! [`crate::CostModel`]). Descriptions come from this machine's sysfs
//! ([`MachineDescription::sysfs`]), from JSON ([`MachineDescription::from_json`]) or from
//! the built-in presets ([`MachineDescription::preset`], [`PRESETS`]). The benchmark
//! configurations (`8c-1l3`, `24c-24l3`, ...) are derived from any topology
//! ([`Configurations`]).
//!
//! | file | concern |
//! |---|---|
//! | `description.rs` | JSON descriptions (format below) |
//! | `presets.rs` | built-in descriptions ([`PRESETS`]) |
//! | `configurations.rs` | [`Configuration`]s: `8c-1l3`, `24c-24l3`, ... |
//!
//! ## JSON descriptions
//!
//! A machine that is not this one is described in JSON ([`MachineDescription::from_json`],
//! [`MachineDescription::to_json`]); CPU sets are strings in Linux list syntax, sizes are bytes:
//!
//! ```json
//! {
//!   "format": "percid-topology/1",
//!   "name": "two-cores",
//!   "note": "free text: where the figures come from",
//!   "possible": "0-1",
//!   "online": "0-1",
//!   "packages": [ { "id": 0, "cpus": "0-1" } ],
//!   "nodes": [ { "id": 0, "cpus": "0-1" } ],
//!   "cores": [ "0", "1" ],
//!   "l1d": [ { "cpus": "0", "size": 49152 }, { "cpus": "1", "size": 49152 } ],
//!   "l2": [ { "cpus": "0", "size": 2097152 }, { "cpus": "1", "size": 2097152 } ],
//!   "l3": [ { "cpus": "0-1", "size": 314572800, "origin": "cache" } ],
//!   "cost_model": { "anything": "kept as is" }
//! }
//! ```
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `format` | yes | `"percid-topology/1"` |
//! | `name` | yes | short name |
//! | `note` | no | free text |
//! | `cores` | yes | one CPU list per core: its SMT siblings |
//! | `l3` | yes | L3 domains: `{ "cpus", "size"?, "origin"? }` |
//! | `packages` | yes | `{ "id"?, "cpus" }` (id defaults to the position) |
//! | `online` | no | defaults to the union of the cores |
//! | `possible` | no | defaults to `online`; may add offline CPUs and holes |
//! | `l2` | no | like `l3`; default one per core, origin `core`, no size |
//! | `l1d` | no | like `l3`; default unknown (`[]`) |
//! | `nodes` | no | like `packages`; default one node 0 of all online CPUs |
//! | `cost_model` | no | any JSON object, kept verbatim and written back, not interpreted here |
//!
//! `size` is bytes or `null` (unknown); `origin` is `cache` (default), `die`, `package`,
//! `core` or `synthetic` (what a sysfs fallback produced). Domain order does not matter.
//! Errors are typed [`MachineError`]s: invalid JSON (with line and column), wrong or missing
//! `format`, missing field, unknown field (a typo, or a domain kind such as `"l4"`), wrong
//! type, bad CPU list, a CPU listed in two domains of one kind, an online CPU in none, a
//! domain naming a CPU that is not online, an empty domain, duplicate ids, a cost model that
//! is not an object. The allowed CPUs are not part of a description: a loaded description
//! allows all its online CPUs.
//!
//! ## Configurations
//!
//! See [`Configurations::configurations`]: `Nc-1l3`, `Nc-Nl3`, `Cc-Ll3`, `Tt-Ll3`, computed on the
//! allowed CPUs, duplicates dropped. The `epyc-9654` preset yields `8c-1l3`, `24c-24l3`,
//! `192c-24l3`, `384t-24l3`.

mod configurations;
mod description;
mod presets;

use std::fmt;
use std::path::PathBuf;

use percid::topology::{CpuSetError, Topology, TopologyError};

pub use configurations::{Configuration, ConfigurationKind, Configurations};
pub use description::{FORMAT, MAX_CPUS, MAX_DESCRIPTION_BYTES};
pub use presets::PRESETS;

/// A machine: its topology and, for a modelled machine, the simulator's cost model.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineDescription {
    /// CPUs, cores, caches, packages, nodes.
    pub topology: Topology,
    /// The description's `cost_model` object, kept verbatim (see [`crate::CostModel`]).
    pub cost_model: Option<serde_json::Value>,
}

impl MachineDescription {
    /// This machine, from `/sys`, with the allowed CPUs of the calling thread; no cost model.
    pub fn sysfs() -> Result<MachineDescription, MachineError> {
        Ok(MachineDescription {
            topology: Topology::from_sysfs()?,
            cost_model: None,
        })
    }

    /// The machine's short name.
    pub fn name(&self) -> &str {
        self.topology.name()
    }
}

/// What went wrong loading a description, finding a preset or deriving a configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum MachineError {
    /// The topology is invalid or could not be read (see [`TopologyError`]).
    Topology(TopologyError),
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The description is not valid JSON (syntax), with line and column.
    Json(serde_json::Error),
    /// The description's `"format"` is not one this version reads.
    UnsupportedFormat {
        /// The `"format"` found.
        found: String,
    },
    /// A required field is missing from the description.
    MissingField {
        /// The field (`name`, `l3[0].cpus`).
        field: String,
    },
    /// A field this format does not define (a typo, or an unknown domain kind such as `"l4"`).
    UnknownField {
        /// The field.
        field: String,
    },
    /// A field has the wrong JSON type.
    WrongType {
        /// The field.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// A CPU list in a JSON field did not parse.
    BadCpuList {
        /// The JSON field (`l3[2].cpus`).
        context: String,
        /// Why.
        source: CpuSetError,
    },
    /// No preset has this name.
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The presets that exist.
        available: Vec<String>,
    },
    /// The topology derives no configuration of this name.
    UnknownConfiguration {
        /// The name asked for.
        name: String,
        /// The names it derives.
        available: Vec<String>,
    },
    /// A field that contradicts the others or a limit (cache sharing that does not nest,
    /// more CPUs than [`MAX_CPUS`]).
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

impl From<TopologyError> for MachineError {
    fn from(e: TopologyError) -> Self {
        MachineError::Topology(e)
    }
}

impl fmt::Display for MachineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MachineError::*;
        match self {
            Topology(e) => write!(f, "{e}"),
            Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            Json(e) => write!(f, "invalid JSON: {e}"),
            UnsupportedFormat { found } => write!(
                f,
                "unsupported description format '{found}' (expected '{FORMAT}')"
            ),
            MissingField { field } => write!(f, "missing field '{field}'"),
            UnknownField { field } => write!(f, "unknown field '{field}'"),
            WrongType { field, expected } => write!(f, "field '{field}' must be {expected}"),
            BadCpuList { context, source } => write!(f, "bad CPU list in {context}: {source}"),
            UnknownPreset { name, available } => write!(
                f,
                "no preset named '{name}' (presets: {})",
                available.join(", ")
            ),
            UnknownConfiguration { name, available } => write!(
                f,
                "no configuration named '{name}' on this topology (configurations: {})",
                available.join(", ")
            ),
            Invalid { field, reason } => write!(f, "field '{field}': {reason}"),
        }
    }
}

impl std::error::Error for MachineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MachineError::Topology(e) => Some(e),
            MachineError::Io { source, .. } => Some(source),
            MachineError::Json(e) => Some(e),
            MachineError::BadCpuList { source, .. } => Some(source),
            _ => None,
        }
    }
}
