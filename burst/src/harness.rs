//! Real runs: one pinned thread per CPU, a [`Pool`] item per slot, the index sources read for
//! real (rseq `cpu_id`, rseq `mm_cid`, leases of a fresh [`CidAllocator`]).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use super::BurstError;
use super::interrupt::Interrupt;
use super::report::Method;
use super::schedule::Plan;
use super::stats::PassRecord;
use percid::index::Index;
use percid::index::user_cid::{AllocatorConfig, CidAllocator};
use percid::pool::{Pool, PoolConfig};
use percid::rseq::registration::Owner;
use percid::topology::pin_current_thread_to_cpu;

/// Bytes of the per-slot guard item: a lock word and the last writer's CPU + 1.
const GUARD_SIZE: usize = 64;

/// Why an index source cannot run here, or `None` if it can. For `mmcid` the reason is the
/// one [`percid::status()`] gives: a forced or imposed fallback (no rseq in use, whatever the
/// kernel offers), or a kernel that provides no `mm_cid`.
pub fn unavailable_reason(index: Index) -> Option<String> {
    match index {
        Index::MmCid => {
            let s = percid::status();
            if let Owner::None(reason) = s.owner {
                Some(format!(
                    "percid uses no rseq in this process ({reason}), so there is no rseq                      mm_cid to read"
                ))
            } else if !s.mm_cid {
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

/// Runs one (configuration, delay, index) cell once on the real machine: one thread per CPU
/// of `cpus`, pinned, following `plan`. Returns every timed pass.
pub fn run_real(
    cpus: &[usize],
    index: Index,
    plan: &Plan,
    method: &Method,
) -> Result<Vec<PassRecord>, BurstError> {
    run_real_with(cpus, index, plan, method, &Interrupt::new())
}

/// [`run_real`] that stops early when `interrupt` fires: the sleeps of the schedule wake at
/// once and the run returns [`BurstError::Interrupted`] (its passes are discarded).
pub fn run_real_with(
    cpus: &[usize],
    index: Index,
    plan: &Plan,
    method: &Method,
    interrupt: &Interrupt,
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
                    interrupt
                        .sleep_until(t0 + plan.start_offset(t))
                        .map_err(BurstError::Interrupted)?;
                    thread_body(
                        t,
                        cpu,
                        index,
                        plan,
                        method,
                        slots,
                        allocator.as_ref(),
                        interrupt,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(BurstError::ThreadPanicked)))
            .collect()
    });
    // A thread stopped by the interrupt makes the run incomplete: that wins over the other
    // errors. A run that completed before any thread saw the interrupt is kept.
    if let Some(e) = results.iter().find_map(|r| match r {
        Err(BurstError::Interrupted(s)) => Some(*s),
        _ => None,
    }) {
        return Err(BurstError::Interrupted(e));
    }
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
) -> Result<(usize, Option<percid::index::CidLease<'a>>), BurstError> {
    match index {
        Index::CpuId => {
            let c = percid::current_cpu().ok_or(BurstError::IndexRead { index: "cpu" })? as usize;
            if c != cpu {
                return Err(BurstError::Pin {
                    cpu,
                    reason: format!("pinned thread runs on CPU {c}"),
                });
            }
            Ok((c, None))
        }
        Index::MmCid => {
            let c = percid::current_mm_cid().ok_or(BurstError::IndexRead { index: "mmcid" })?;
            Ok((c as usize, None))
        }
        Index::User(_) => {
            let lease = allocator.expect("user index has an allocator").acquire();
            Ok((lease.cid() as usize, Some(lease)))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn thread_body(
    thread: usize,
    cpu: usize,
    index: Index,
    plan: &Plan,
    method: &Method,
    slots: &Slots,
    allocator: Option<&CidAllocator>,
    interrupt: &Interrupt,
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
        interrupt
            .sleep(plan.sleep_between())
            .map_err(BurstError::Interrupted)?;
    }
    Ok(records)
}

/// Rough duration of one real run of `threads` threads: the last thread starts at
/// `delay * (threads - 1)`, then warms up (`warmup`) and does `passes` timed passes, each
/// followed by `delay * threads` (saturating, for estimates of absurd requests).
pub fn estimate_with_warmup(
    threads: usize,
    delay: Duration,
    passes: usize,
    warmup: Duration,
) -> Duration {
    let mul = |d: Duration, n: usize| {
        d.checked_mul(u32::try_from(n).unwrap_or(u32::MAX))
            .unwrap_or(Duration::MAX)
    };
    let sleep = mul(delay, threads);
    mul(delay, threads.saturating_sub(1))
        .saturating_add(warmup)
        .saturating_add(mul(sleep, passes))
}
