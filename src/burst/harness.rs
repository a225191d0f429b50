//! Real runs: one pinned thread per CPU, a [`Pool`] item per slot, the index sources read for
//! real (rseq `cpu_id`, rseq `mm_cid`, leases of a fresh [`CidAllocator`]).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use super::BurstError;
use super::report::Method;
use super::schedule::Plan;
use super::stats::PassRecord;
use crate::index::Index;
use crate::index::user_cid::{AllocatorConfig, CidAllocator};
use crate::pool::{Pool, PoolConfig};
use crate::topology::pin_current_thread_to_cpu;

/// Bytes of the per-slot guard item: a lock word and the last writer's CPU + 1.
const GUARD_SIZE: usize = 64;

/// Why an index source cannot run here, or `None` if it can.
pub fn unavailable_reason(index: Index) -> Option<String> {
    match index {
        Index::MmCid => {
            let s = crate::status();
            if !s.mm_cid {
                Some(format!(
                    "the kernel provides no rseq mm_cid to this process (rseq feature size {}, \
                     needs 28; Linux >= 6.3 with rseq registered)",
                    s.feature_size
                ))
            } else {
                None
            }
        }
        Index::CpuId | Index::User(_) => None,
    }
}

/// The memory of one run: the 16 KiB item and the guard item, both from one [`Pool`] (64 KiB
/// stride), so that slot `s` of each is at `handle + s * stride`.
struct Slots {
    pool: Pool,
    item: NonNull<u8>,
    guard: NonNull<u8>,
    item_size: usize,
}

// SAFETY: the handles point into the pool's mappings, which live as long as `pool` (a field);
// all accesses through them go through `Slots`' methods, which take the per-slot lock (atomic)
// before touching the item of a slot.
unsafe impl Sync for Slots {}
// SAFETY: as above; the pool is `Send`.
unsafe impl Send for Slots {}

impl Slots {
    fn new(item_size: usize) -> Result<Slots, BurstError> {
        let pool = Pool::new(PoolConfig::new())?;
        let item = pool.alloc(item_size)?;
        let guard = pool.alloc(GUARD_SIZE)?;
        Ok(Slots {
            pool,
            item,
            guard,
            item_size,
        })
    }

    fn nr_slots(&self) -> usize {
        self.pool.nr_slots()
    }

    /// The lock word and last-writer word of `slot` (`slot < nr_slots`).
    fn guard_words(&self, slot: usize) -> (&AtomicU32, &AtomicU32) {
        let p = self
            .pool
            .slot_ptr(self.guard, slot)
            .expect("slot checked against nr_slots")
            .as_ptr()
            .cast::<u32>();
        // SAFETY: the guard item is 64 bytes, aligned to 64 (its size class), zero-initialised
        // by `alloc`, and lives as long as the pool; it is only ever accessed atomically.
        unsafe { (AtomicU32::from_ptr(p), AtomicU32::from_ptr(p.add(1))) }
    }

    /// One pass over `slot` from `cpu`: lock the slot, time `byte += 1` over the item, record
    /// the last writer. Returns (ns, migrated). The lock is outside the timed region.
    fn pass(&self, slot: usize, cpu: usize) -> (f64, bool) {
        let (lock, last) = self.guard_words(slot);
        while lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        let p = self
            .pool
            .slot_ptr(self.item, slot)
            .expect("slot checked against nr_slots");
        let start = Instant::now();
        // SAFETY: slot `slot` of the item is `item_size` bytes inside the pool's mapping
        // (item_size <= size class <= stride), alive while `self.pool` is; the slot's lock,
        // taken above with acquire ordering, makes this the only access to it.
        unsafe { increment(p.as_ptr(), self.item_size) };
        let ns = start.elapsed().as_nanos() as f64;
        let prev = last.swap(cpu as u32 + 1, Ordering::Relaxed);
        lock.store(0, Ordering::Release);
        (ns, prev != 0 && prev != cpu as u32 + 1)
    }
}

/// `byte += 1` over `len` bytes at `p`.
///
/// # Safety
/// `p..p + len` must be valid for reads and writes and not accessed by anyone else meanwhile.
#[inline(never)]
unsafe fn increment(p: *mut u8, len: usize) {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts_mut(p, len) };
    for b in bytes.iter_mut() {
        *b = b.wrapping_add(1);
    }
    std::hint::black_box(p);
}

/// Sleeps until `deadline` (returns at once if it passed).
fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

/// Runs one (configuration, delay, index) cell once on the real machine: one thread per CPU
/// of `cpus`, pinned, following `plan`. Returns every timed pass.
pub fn run_real(
    cpus: &[usize],
    index: Index,
    plan: &Plan,
    method: &Method,
) -> Result<Vec<PassRecord>, BurstError> {
    if let Some(reason) = unavailable_reason(index) {
        return Err(BurstError::Unavailable {
            index: index.name(),
            reason,
        });
    }
    let slots = Slots::new(method.item_size)?;
    let allocator = match index {
        Index::User(policy) => Some(CidAllocator::new(AllocatorConfig::new(policy))),
        _ => None,
    };
    let barrier = Barrier::new(cpus.len());
    let start: OnceLock<Instant> = OnceLock::new();
    let results: Vec<Result<Vec<PassRecord>, BurstError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cpus
            .iter()
            .enumerate()
            .map(|(t, &cpu)| {
                let (slots, allocator, barrier, start) = (&slots, &allocator, &barrier, &start);
                scope.spawn(move || {
                    let pinned = pin_current_thread_to_cpu(cpu);
                    barrier.wait();
                    pinned.map_err(|e| BurstError::Pin {
                        cpu,
                        reason: e.to_string(),
                    })?;
                    let t0 = *start.get_or_init(Instant::now);
                    sleep_until(t0 + plan.start_offset(t));
                    thread_body(t, cpu, index, plan, method, slots, allocator.as_ref())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(BurstError::ThreadPanicked)))
            .collect()
    });
    let mut records = Vec::new();
    for r in results {
        records.extend(r?);
    }
    Ok(records)
}

/// The slot of the calling thread for `index` on `cpu`, and the lease that holds it.
fn read_index<'a>(
    index: Index,
    cpu: usize,
    allocator: Option<&'a CidAllocator>,
) -> Result<(usize, Option<crate::index::CidLease<'a>>), BurstError> {
    match index {
        Index::CpuId => {
            let c = crate::current_cpu().ok_or(BurstError::IndexRead { index: "cpu" })? as usize;
            if c != cpu {
                return Err(BurstError::Pin {
                    cpu,
                    reason: format!("pinned thread runs on CPU {c}"),
                });
            }
            Ok((c, None))
        }
        Index::MmCid => {
            let c = crate::current_mm_cid().ok_or(BurstError::IndexRead { index: "mmcid" })?;
            Ok((c as usize, None))
        }
        Index::User(_) => {
            let lease = allocator.expect("user index has an allocator").acquire();
            Ok((lease.cid() as usize, Some(lease)))
        }
    }
}

fn thread_body(
    thread: usize,
    cpu: usize,
    index: Index,
    plan: &Plan,
    method: &Method,
    slots: &Slots,
    allocator: Option<&CidAllocator>,
) -> Result<Vec<PassRecord>, BurstError> {
    let one = |timed: bool| -> Result<PassRecord, BurstError> {
        let (slot, lease) = read_index(index, cpu, allocator)?;
        if slot >= slots.nr_slots() {
            return Err(BurstError::SlotOutOfRange {
                slot,
                slots: slots.nr_slots(),
            });
        }
        let (ns, migrated) = slots.pass(slot, cpu);
        drop(lease);
        Ok(PassRecord {
            thread,
            cpu,
            slot,
            timed,
            ns,
            migrated,
        })
    };
    for _ in 0..method.warmup {
        one(false)?;
    }
    let mut records = Vec::with_capacity(method.passes);
    for _ in 0..method.passes {
        records.push(one(true)?);
        std::thread::sleep(plan.sleep_between());
    }
    Ok(records)
}

/// Rough duration of one real run, for progress estimates: the schedule's expected duration
/// with a warm-up of about 1 µs per pass.
pub fn estimate(plan: &Plan, method: &Method) -> Duration {
    plan.expected_duration(
        method.passes,
        Duration::from_nanos(method.warmup as u64 * 1_000),
    )
}
