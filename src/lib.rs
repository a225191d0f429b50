//! # percid: per-CPU and per-concurrency-ID data structures for Linux
//!
//! Programs that scale on many-core machines shard hot data per CPU. `percid` shards it by
//! one of three *index sources* (see [`Index`]):
//!
//! * `cpu_id`, the CPU a thread runs on, read from the kernel's restartable-sequence (rseq)
//!   area: one slot per possible CPU;
//! * the kernel's concurrency ID `mm_cid` (Linux >= 6.3), dense in
//!   `[0, min(allowed CPUs, threads))`: few slots for a process with few threads;
//! * a user-space concurrency-ID allocator ([`index::user_cid`]) that imitates the kernel's
//!   (both the cache-local policy of Linux 6.13-6.18 and the legacy policy before it). It is
//!   the fallback wherever rseq or mm_cid is missing, and a comparator in benchmarks.
//!
//! Every structure is `const`-constructible (a `static` needs no `LazyLock`), creates its
//! slots on first use in [`Pool::global`] (or now, in a given pool, with `in_pool`), and
//! fixes its index source and access at creation: see [`per_cpu`].
//!
//! ## Which structure do I want
//!
//! | you need | use | update | read |
//! |---|---|---|---|
//! | an exact event count | [`Counter`] | one critical section | `sum()` adds every slot; `sum_and_reset()` |
//! | a count read often, approximately | [`BatchedCounter`] | one critical section, a shared add every `batch` | `read()`: one load, with its error bound |
//! | a hard cap (connections, bytes), a high watermark, a reserve for [`reclaim_scope`]s | [`Limit`] | from the slot's stock; the shared usage every `batch` | `usage()` |
//! | a free list, a per-CPU cache of objects | [`List`] | push/pop of caller-owned nodes, no allocation | `drain()` takes everything |
//! | a small struct of counters per slot | [`PerCpu<T>`] with [`slot_safe!`] | `add` / `run` with a [`ops::Current`] | `iter()` |
//! | arbitrary data per slot, mutated in place | [`PerCpuLock<T>`] | a per-slot lock taken with a critical section | `with_each` |
//! | raw per-slot memory | [`Pool`] | item pointers, `base + slot * stride` | |
//!
//! Threads exit and the concurrency-ID space shrinks: [`orphans`] says what the structures do
//! with the slots left behind.
//!
//! ## Map of the crate
//!
//! | module | concern |
//! |---|---|
//! | [`rseq`] | the rseq ABI: registration (glibc's or our own), field readers, the critical sections (`rseq/arch/x86_64.rs` beside the portable path) |
//! | [`status()`] | what mode the process runs in, and why |
//! | [`index`] | index sources, the default choice, the user-space CID allocator (real and deterministic fronts) |
//! | [`ops`] | the per-slot operations every structure is built from, the same API on rseq and on leases |
//! | [`pool`] | per-slot memory pools (one item exists once per slot, `base + slot * stride`) |
//! | [`per_cpu`] | typed per-slot handles on a pool |
//! | [`counter`] | exact, batched and limit counters |
//! | [`list`] | per-slot LIFO lists |
//! | [`lock`] | per-slot locks over arbitrary data |
//! | [`orphans`] | the live bound of an index, and orphaned slots |
//! | [`topology`] | CPUs, cores, SMT siblings, L2/L3 domains from sysfs, CPU sets of any width, pinning |
//!
//! The layers go one way: `rseq` knows no index policy; `index` builds on it; `ops` on both;
//! the structures on `ops`, `pool` and `per_cpu`. The intermittent-burst benchmark suite is
//! a separate package of the workspace, `percid-burst` (`burst/`).
//!
//! ## Quick start
//!
//! ```
//! use percid::{Counter, Limit};
//!
//! static HITS: Counter = Counter::new();
//! static INFLIGHT: Limit = Limit::new(1000, 16);
//!
//! HITS.inc();
//! INFLIGHT.try_charge(1).expect("below the limit");
//! INFLIGHT.uncharge(1);
//! assert_eq!(HITS.sum(), 1);
//! println!("{}", percid::status());
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod counter;
pub mod index;
pub mod list;
pub mod lock;
pub mod ops;
pub mod orphans;
pub mod per_cpu;
pub mod pool;
pub mod rseq;
pub mod status;
pub mod topology;

pub(crate) mod remote;
pub(crate) mod util;

/// This crate's version (`CARGO_PKG_VERSION`), for reports and diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub use counter::{BatchedCounter, Counter, Limit, ReclaimScope, reclaim_scope};
pub use index::{Index, Policy};
pub use list::{List, ListHandle, Node};
pub use lock::{LockHandle, PerCpuLock};
pub use per_cpu::PerCpu;
pub use pool::Pool;
pub use rseq::{current_cpu, current_mm_cid, current_node};
pub use status::{Status, status};
