//! Charging near the limit after threads exit, with and without orphan adoption.
//!
//! ```text
//! cargo bench --bench orphans
//! cargo bench --bench orphans -- --runs 7 --generations 20 --indexes mmcid,cpu,user-local
//! ```
//!
//! Each run is a fresh process (this program re-executes itself), so the kernel's thread
//! count, and with it the `mm_cid` live bound, is the workload's alone. In a run, the main
//! thread is the survivor, pinned to one CPU; `--generations` times, 8 workers pinned to
//! another CPU charge 8 units each, give them back (leaving that stock in their slot) and
//! exit; then the survivor charges `K` units one at a time against a limit of `K`, so it needs
//! every unit the workers left in stock: with adoption it takes them on a refill (the
//! orphans only), without it a charge reaches the limit and drains every slot. Then it
//! uncharges.
//!
//! Reported per index and policy (medians over `--runs` alternating runs): ns per survivor
//! charge, and per generation: `membarrier` fences (the `Limit`'s stats: drains, adoptions and
//! reaps each fence once under rseq; leases need none), full drains, adoptions, refused
//! charges. On a machine with few CPUs the kernel bound hides few slots; see the README.

use std::process::Command;
use std::time::Instant;

use percid::orphans::OrphanPolicy;
use percid::{Index, Limit};

const K: u64 = 512;
const WORKERS: usize = 8;
const WORKER_UNITS: u64 = 8;
const BATCH: u64 = 64;

const USAGE: &str = "\
orphans: charging near the limit after threads exit, with and without adoption

  --runs N          alternating runs per cell (default 5)
  --generations N   worker generations per run (default 20)
  --indexes LIST    cpu, mmcid, user-local, user-legacy (default mmcid,cpu,user-local)
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        let index = Index::parse(&args[pos + 1]).expect("index");
        let adopt = args[pos + 2] == "adopt";
        let generations: usize = args[pos + 3].parse().expect("generations");
        child(index, adopt, generations);
        return;
    }
    let mut runs = 5usize;
    let mut generations = 20usize;
    let mut indexes = vec![
        Index::MmCid,
        Index::CpuId,
        Index::User(percid::Policy::CacheLocal),
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--generations" => {
                generations = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--generations N")
            }
            "--indexes" => {
                indexes = it
                    .next()
                    .expect("--indexes LIST")
                    .split(',')
                    .map(|s| Index::parse(s).expect("index"))
                    .collect()
            }
            "--bench" => {} // passed by cargo bench
            "-h" | "--help" => {
                print!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    println!(
        "{:<11} {:<9} {:>10} {:>8} {:>8} {:>9} {:>8}  access",
        "index", "policy", "ns/charge", "fences", "drains", "adoptions", "refused"
    );
    println!("{:>52}(per generation, medians of {runs} runs)", "");
    for index in indexes {
        let mut cells: [Vec<Row>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (i, policy) in ["adopt", "never"].iter().enumerate() {
                let out = Command::new(std::env::current_exe().unwrap())
                    .args(["--child", index.name(), policy, &generations.to_string()])
                    .output()
                    .expect("spawn child");
                assert!(
                    out.status.success(),
                    "child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                cells[i].push(Row::parse(&String::from_utf8_lossy(&out.stdout)));
            }
        }
        for (i, policy) in ["adopt", "never"].iter().enumerate() {
            let rows = &cells[i];
            let med = |f: fn(&Row) -> f64| median(rows.iter().map(f).collect());
            let g = generations as f64;
            println!(
                "{:<11} {:<9} {:>10.1} {:>8.2} {:>8.2} {:>9.2} {:>8.2}  {}",
                index.name(),
                policy,
                med(|r| r.ns_per_charge),
                med(|r| r.fences) / g,
                med(|r| r.drains) / g,
                med(|r| r.adoptions) / g,
                med(|r| r.refused) / g,
                rows[0].access
            );
        }
        let t = |i: usize| median(cells[i].iter().map(|r| r.ns_per_charge).collect());
        println!("{:<11} never/adopt time ratio {:.2}", "", t(1) / t(0));
    }
}

struct Row {
    ns_per_charge: f64,
    fences: f64,
    drains: f64,
    adoptions: f64,
    refused: f64,
    access: String,
}

impl Row {
    fn parse(line: &str) -> Row {
        let v: Vec<&str> = line.split_whitespace().collect();
        let f = |i: usize| v[i].parse::<f64>().expect("number");
        Row {
            ns_per_charge: f(0),
            fences: f(1),
            drains: f(2),
            adoptions: f(3),
            refused: f(4),
            access: v[5..].join(" "),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn child(index: Index, adopt: bool, generations: usize) {
    let allowed = percid::topology::allowed_cpus().expect("affinity");
    let (mine, theirs) = (allowed.first().unwrap(), allowed.last().unwrap());
    percid::topology::pin_current_thread_to_cpu(mine).expect("pin");
    let policy = if adopt {
        OrphanPolicy::DEFAULT
    } else {
        OrphanPolicy::NEVER
    };
    let limit: &'static Limit = Box::leak(Box::new(
        Limit::with_index(index, K + 32, BATCH).with_orphan_policy(policy),
    ));
    limit.try_charge(1).unwrap();
    limit.uncharge(1);
    let mut charging = std::time::Duration::ZERO;
    for _ in 0..generations {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                std::thread::spawn(move || {
                    percid::topology::pin_current_thread_to_cpu(theirs).expect("pin");
                    for _ in 0..WORKER_UNITS {
                        limit.try_charge(1).expect("far below the limit");
                    }
                    for _ in 0..WORKER_UNITS {
                        limit.uncharge(1);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        // The kernel bound's cache and the allocator's expiry (leases) see the exits.
        std::thread::sleep(
            percid::index::user_cid::DEFAULT_EXPIRY + std::time::Duration::from_millis(20),
        );
        let start = Instant::now();
        let mut held = 0;
        while held < K {
            if limit.try_charge(1).is_ok() {
                held += 1;
            }
        }
        charging += start.elapsed();
        for _ in 0..K {
            limit.uncharge(1);
        }
    }
    let s = limit.stats();
    println!(
        "{:.1} {} {} {} {} {:?}",
        charging.as_nanos() as f64 / (generations as u64 * K) as f64,
        s.fences,
        s.drains,
        s.adoptions,
        s.refused,
        limit.access().unwrap()
    );
}
