//! JSON machine descriptions: loading (with typed errors) and writing. The format is documented
//! in the [module docs](super#json-descriptions).

use std::path::Path;

use percid::topology::{
    CacheDomain, Core, CpuSet, Domain, DomainOrigin, Topology, TopologyParts, TopologySource,
};
use serde_json::{Map, Value, json};

use super::{MachineDescription, MachineError};

/// The `"format"` this version reads and writes.
pub const FORMAT: &str = "percid-topology/1";

/// Top-level fields of a description, in the order [`Topology::to_json`] writes them.
const FIELDS: &[&str] = &[
    "format",
    "name",
    "note",
    "possible",
    "online",
    "packages",
    "nodes",
    "cores",
    "l1d",
    "l2",
    "l3",
    "cost_model",
];

/// Rejects keys of `obj` that are not in `known`; `prefix` is the object's own path.
fn check_keys(obj: &Map<String, Value>, known: &[&str], prefix: &str) -> Result<(), MachineError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(MachineError::UnknownField {
            field: format!("{prefix}{k}"),
        }),
        None => Ok(()),
    }
}

fn missing(field: impl Into<String>) -> MachineError {
    MachineError::MissingField {
        field: field.into(),
    }
}

fn wrong(field: impl Into<String>, expected: &'static str) -> MachineError {
    MachineError::WrongType {
        field: field.into(),
        expected,
    }
}

/// The string at `v`, named `field`.
fn as_str<'v>(v: &'v Value, field: &str) -> Result<&'v str, MachineError> {
    v.as_str().ok_or_else(|| wrong(field, "a string"))
}

/// The CPU list at `v`, named `field`.
fn as_cpus(v: &Value, field: &str) -> Result<CpuSet, MachineError> {
    let text = as_str(v, field)?;
    // Refuse CPU numbers beyond the limit before any set is built for them.
    for number in text.split([',', '-']) {
        if let Ok(n) = number.trim().parse::<u64>()
            && n >= MAX_CPUS as u64
        {
            return Err(MachineError::Invalid {
                field: field.to_string(),
                reason: format!(
                    "CPU {n}: a description has at most {MAX_CPUS} CPUs (0 to {}, Linux's NR_CPUS maximum)",
                    MAX_CPUS - 1
                ),
            });
        }
    }
    CpuSet::parse(text).map_err(|source| MachineError::BadCpuList {
        context: field.to_string(),
        source,
    })
}

/// A non-negative integer at `v`, named `field`.
fn as_u64(v: &Value, field: &str) -> Result<u64, MachineError> {
    v.as_u64()
        .ok_or_else(|| wrong(field, "a non-negative integer"))
}

/// The array at `v`, named `field`.
fn as_array<'v>(v: &'v Value, field: &str) -> Result<&'v Vec<Value>, MachineError> {
    v.as_array().ok_or_else(|| wrong(field, "an array"))
}

/// The object at `v`, named `field`.
fn as_object<'v>(v: &'v Value, field: &str) -> Result<&'v Map<String, Value>, MachineError> {
    v.as_object().ok_or_else(|| wrong(field, "an object"))
}

/// A list of cache domains (`l1d`, `l2`, `l3`).
fn cache_list(v: &Value, kind: &str) -> Result<Vec<CacheDomain>, MachineError> {
    as_array(v, kind)?
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let at = format!("{kind}[{i}]");
            let obj = as_object(d, &at)?;
            check_keys(obj, &["cpus", "size", "origin"], &format!("{at}."))?;
            let cpus_at = format!("{at}.cpus");
            let cpus = as_cpus(obj.get("cpus").ok_or_else(|| missing(&cpus_at))?, &cpus_at)?;
            let size = match obj.get("size") {
                None | Some(Value::Null) => None,
                Some(s) => Some(as_u64(s, &format!("{at}.size"))?),
            };
            let origin = match obj.get("origin") {
                None => DomainOrigin::Cache,
                Some(o) => {
                    let field = format!("{at}.origin");
                    DomainOrigin::from_name(as_str(o, &field)?).ok_or_else(|| {
                        wrong(field, "one of cache, die, package, core, synthetic")
                    })?
                }
            };
            Ok(CacheDomain { size, cpus, origin })
        })
        .collect()
}

/// A list of packages or nodes.
fn domain_list(v: &Value, kind: &str) -> Result<Vec<Domain>, MachineError> {
    as_array(v, kind)?
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let at = format!("{kind}[{i}]");
            let obj = as_object(d, &at)?;
            check_keys(obj, &["id", "cpus"], &format!("{at}."))?;
            let cpus_at = format!("{at}.cpus");
            let cpus = as_cpus(obj.get("cpus").ok_or_else(|| missing(&cpus_at))?, &cpus_at)?;
            let id = match obj.get("id") {
                None => i,
                Some(v) => usize::try_from(as_u64(v, &format!("{at}.id"))?)
                    .map_err(|_| wrong(format!("{at}.id"), "a CPU-sized integer"))?,
            };
            Ok(Domain { id, cpus })
        })
        .collect()
}

/// The most CPUs of a description (CPU numbers 0 to 8191): Linux's largest `NR_CPUS`.
pub const MAX_CPUS: usize = 8192;

/// Checks that the cache sharing nests, naming the field that breaks it: every core within
/// one L2 domain, every L1d and L2 domain within one L3 domain, every L3 domain within one
/// package, and no cache smaller than a level below it. Linear in the CPUs.
fn check_nesting(t: &Topology) -> Result<(), MachineError> {
    use std::collections::HashMap;
    fn index(list: &[&CpuSet]) -> HashMap<usize, usize> {
        let mut m = HashMap::new();
        for (i, cpus) in list.iter().enumerate() {
            for cpu in cpus.iter() {
                m.insert(cpu, i);
            }
        }
        m
    }
    fn sets(l: &[CacheDomain]) -> Vec<&CpuSet> {
        l.iter().map(|d| &d.cpus).collect()
    }
    let (l2, l3) = (sets(t.l2()), sets(t.l3()));
    let packages: Vec<&CpuSet> = t.packages().iter().map(|d| &d.cpus).collect();
    let cores: Vec<&CpuSet> = t.cores().iter().map(|c| &c.cpus).collect();
    let l1d = sets(t.l1d());
    let (in_l2, in_l3, in_pkg) = (index(&l2), index(&l3), index(&packages));
    let within = |inner: &[&CpuSet],
                  inner_name: &str,
                  outer: &HashMap<usize, usize>,
                  outer_name: &str|
     -> Result<(), MachineError> {
        for cpus in inner {
            let mut at = cpus.iter().map(|c| outer.get(&c));
            let first = at.next().flatten();
            if at.any(|o| o != first) {
                return Err(MachineError::Invalid {
                    field: inner_name.to_string(),
                    reason: format!("the domain of CPUs {cpus} spans more than one {outer_name}"),
                });
            }
        }
        Ok(())
    };
    within(&cores, "cores", &in_l2, "L2 domain")?;
    within(&cores, "cores", &in_l3, "L3 domain")?;
    within(&l1d, "l1d", &in_l2, "L2 domain")?;
    within(&l2, "l2", &in_l3, "L3 domain")?;
    within(&l3, "l3", &in_pkg, "package")?;
    // Sizes: a cache is at least as large as each one below it that it contains.
    let sizes = |inner: &[CacheDomain],
                 name: &str,
                 outer: &[CacheDomain],
                 map: &HashMap<usize, usize>,
                 oname: &str|
     -> Result<(), MachineError> {
        for d in inner {
            let o = d.cpus.first().and_then(|c| map.get(&c)).map(|&i| &outer[i]);
            if let (Some(small), Some(o)) = (d.size, o)
                && let Some(big) = o.size
                && big < small
            {
                return Err(MachineError::Invalid {
                    field: oname.to_string(),
                    reason: format!(
                        "the domain of CPUs {} ({big} bytes) is smaller than the {name} domain of CPUs {} ({small} bytes) it contains",
                        o.cpus, d.cpus
                    ),
                });
            }
        }
        Ok(())
    };
    sizes(t.l1d(), "l1d", t.l2(), &in_l2, "l2")?;
    sizes(t.l2(), "l2", t.l3(), &in_l3, "l3")?;
    Ok(())
}

/// The largest machine description file read: 64 MiB (a description of 8192 CPUs, the
/// most accepted, takes a few MiB).
pub const MAX_DESCRIPTION_BYTES: u64 = 64 << 20;

impl MachineDescription {
    /// Loads a JSON description (format in the [module docs](super#json-descriptions)).
    pub fn from_json(text: &str) -> Result<MachineDescription, MachineError> {
        let value: Value = serde_json::from_str(text).map_err(MachineError::Json)?;
        MachineDescription::from_json_value(&value)
    }

    /// Loads a JSON description from a file.
    pub fn from_json_file(path: impl AsRef<Path>) -> Result<MachineDescription, MachineError> {
        let path = path.as_ref();
        let text = crate::output::read_bounded(path, MAX_DESCRIPTION_BYTES).map_err(|source| {
            MachineError::Io {
                path: path.to_path_buf(),
                source,
            }
        })?;
        MachineDescription::from_json(&text)
    }

    /// Loads a description already parsed as JSON.
    pub fn from_json_value(value: &Value) -> Result<MachineDescription, MachineError> {
        let obj = as_object(value, "(top level)")?;
        check_keys(obj, FIELDS, "")?;
        let get = |f: &str| obj.get(f).ok_or_else(|| missing(f));
        let format = as_str(get("format")?, "format")?;
        if format != FORMAT {
            return Err(MachineError::UnsupportedFormat {
                found: format.to_string(),
            });
        }
        let name = as_str(get("name")?, "name")?.to_string();
        let note = obj
            .get("note")
            .map(|n| as_str(n, "note").map(str::to_string))
            .transpose()?;
        let cores: Vec<Core> = as_array(get("cores")?, "cores")?
            .iter()
            .enumerate()
            .map(|(i, c)| as_cpus(c, &format!("cores[{i}]")).map(|cpus| Core { cpus }))
            .collect::<Result<_, _>>()?;
        let in_cores = cores
            .iter()
            .fold(CpuSet::new(), |acc, c| acc.union(&c.cpus));
        let online = match obj.get("online") {
            Some(v) => as_cpus(v, "online")?,
            None => in_cores,
        };
        let possible = match obj.get("possible") {
            Some(v) => as_cpus(v, "possible")?,
            None => online.clone(),
        };
        let l3 = cache_list(get("l3")?, "l3")?;
        let l2 = match obj.get("l2") {
            Some(v) => cache_list(v, "l2")?,
            None => cores
                .iter()
                .map(|c| CacheDomain {
                    size: None,
                    cpus: c.cpus.clone(),
                    origin: DomainOrigin::Core,
                })
                .collect(),
        };
        let l1d = match obj.get("l1d") {
            Some(v) => cache_list(v, "l1d")?,
            None => Vec::new(),
        };
        let packages = domain_list(get("packages")?, "packages")?;
        let nodes = match obj.get("nodes") {
            Some(v) => domain_list(v, "nodes")?,
            None => vec![Domain {
                id: 0,
                cpus: online.clone(),
            }],
        };
        let cost_model = match obj.get("cost_model") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(wrong("cost_model", "an object")),
        };
        let topology = Topology::from_parts(
            TopologyParts {
                name,
                note,
                possible,
                online,
                cores,
                l1d,
                l2,
                l3,
                packages,
                nodes,
            },
            TopologySource::Description,
        )?;
        check_nesting(&topology)?;
        Ok(MachineDescription {
            topology,
            cost_model,
        })
    }

    /// The description as JSON (all fields written out; the allowed CPUs and the source are
    /// not part of it). It loads back with [`from_json`](Self::from_json).
    pub fn to_json_value(&self) -> Value {
        let t = &self.topology;
        let caches = |list: &[CacheDomain]| -> Value {
            list.iter()
                .map(|d| {
                    json!({
                        "cpus": d.cpus.to_string(),
                        "size": d.size,
                        "origin": d.origin.as_str(),
                    })
                })
                .collect()
        };
        let domains = |list: &[Domain]| -> Value {
            list.iter()
                .map(|d| json!({ "id": d.id, "cpus": d.cpus.to_string() }))
                .collect()
        };
        let mut obj = Map::new();
        obj.insert("format".into(), FORMAT.into());
        obj.insert("name".into(), t.name().into());
        if let Some(note) = t.note() {
            obj.insert("note".into(), note.into());
        }
        obj.insert("possible".into(), t.possible().to_string().into());
        obj.insert("online".into(), t.online().to_string().into());
        obj.insert("packages".into(), domains(t.packages()));
        obj.insert("nodes".into(), domains(t.nodes()));
        obj.insert(
            "cores".into(),
            t.cores()
                .iter()
                .map(|c| Value::from(c.cpus.to_string()))
                .collect(),
        );
        obj.insert("l1d".into(), caches(t.l1d()));
        obj.insert("l2".into(), caches(t.l2()));
        obj.insert("l3".into(), caches(t.l3()));
        if let Some(model) = &self.cost_model {
            obj.insert("cost_model".into(), model.clone());
        }
        Value::Object(obj)
    }

    /// [`to_json_value`](Self::to_json_value) as text for people: fields in the documented
    /// order, one domain per line.
    pub fn to_json(&self) -> String {
        let value = self.to_json_value();
        let Value::Object(obj) = value else {
            return String::new();
        };
        // `Value`'s `Display` is compact JSON and cannot fail.
        let fields: Vec<String> = FIELDS
            .iter()
            .filter_map(|&key| obj.get(key).map(|v| (key, v)))
            .map(|(key, v)| {
                let body = match v {
                    Value::Array(items) if !items.is_empty() => {
                        let lines: Vec<String> =
                            items.iter().map(|item| format!("    {item}")).collect();
                        format!("[\n{}\n  ]", lines.join(",\n"))
                    }
                    Value::Object(_) => serde_json::to_string_pretty(v)
                        .unwrap_or_default()
                        .replace('\n', "\n  "),
                    other => other.to_string(),
                };
                format!("  \"{key}\": {body}")
            })
            .collect();
        format!("{{\n{}\n}}", fields.join(",\n"))
    }
}
