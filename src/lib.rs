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
//! ## Map of the crate
//!
//! | module | concern |
//! |---|---|
//! | [`rseq`] | the rseq ABI: registration (glibc's or our own), readers, [`status()`], the x86_64 critical sections |
//! | [`ops`] | the per-slot operations every structure is built from, the same API on rseq and on the fallback |
//! | [`index`] | index sources, the default choice, the user-space CID allocator |
//! | [`pool`] | per-slot memory pools (one item exists once per slot, `base + slot * stride`) |
//! | [`per_cpu`] | typed per-slot handles on a pool |
//! | [`counter`] | exact, batched and limit counters |
//! | [`list`] | per-slot LIFO lists |
//! | [`topology`] | CPUs, cores, SMT siblings, L2/L3 domains, CPU sets and pinning |
//! | [`burst`] | the intermittent-burst locality benchmark: real runs, a topology model, reports |
//!
//! ## Quick start
//!
//! ```
//! let hits = percid::Counter::new();
//! hits.add(1);
//! assert_eq!(hits.sum(), 1);
//! println!("{}", percid::status());
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod burst;
pub mod counter;
pub mod index;
pub mod list;
pub mod ops;
pub mod per_cpu;
pub mod pool;
pub mod rseq;
pub mod topology;

pub(crate) mod remote;
pub(crate) mod util;

pub use counter::{BatchedCounter, Counter, Limit};
pub use index::{Index, Policy};
pub use list::List;
pub use per_cpu::PerCpu;
pub use pool::Pool;
pub use rseq::status::{Status, status};
pub use rseq::{current_cpu, current_mm_cid, current_node};
