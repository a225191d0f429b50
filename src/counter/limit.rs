//! [`Limit`]: a counter with a hard limit and a per-slot stock, as memory controllers do
//! (Linux's memcg `page_counter` with its per-CPU charge stock).
//!
//! # Algorithm
//!
//! A shared `usage` counts everything charged to the limit, *including* the stock that
//! slots hold in advance; each slot keeps a `stock` word of pre-charged units.
//!
//! * `try_charge(n)`: if the calling thread's slot has `stock >= n`, take `n` from it with
//!   one compare-and-store critical section (or under a lease). Otherwise charge
//!   `max(batch, n)` to `usage` with a compare-exchange loop that refuses to cross the
//!   limit, and put the surplus in the slot's stock. If that would cross the limit, retry
//!   with exactly `n`; if even that fails, drain every slot's stock back to `usage` and
//!   retry `n` once more. So batching never makes a charge fail that fits under the limit:
//!   a charge fails only if `charged + n > limit` at the moment of the final attempt, where
//!   `charged` counts what callers hold (stocks excluded), up to charges racing with it.
//! * `uncharge(n)`: put `n` back in the slot's stock while it stays at most `batch`;
//!   otherwise subtract `n` from `usage`.
//! * `drain()`: take every slot's stock (leases, or a lock bit and
//!   the membarrier rseq fence) and subtract it from `usage`.
//!
//! # Invariants
//!
//! * `usage <= limit` at every instant: `usage` only grows through the compare-exchange
//!   that checks the limit.
//! * `usage = charged + Σ stock` whenever no operation is in flight; after every charge has
//!   been uncharged and `drain()` ran, `usage() == 0`.
//! * Stock words use the top bit as the drain lock: a stock never reaches 2^63.

use crate::index::{Index, Resolved};
use crate::ops::Outcome;
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolError};
use crate::remote;
use crate::util::CachePadded;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

const LOCK: u64 = 1 << 63;

/// A charge would cross the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitError {
    /// The units asked for.
    pub requested: u64,
    /// `usage()` when the charge failed (stocks drained).
    pub usage: u64,
    /// The limit.
    pub limit: u64,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "charging {} would exceed the limit: usage {} of {}",
            self.requested, self.usage, self.limit
        )
    }
}

impl std::error::Error for LimitError {}

/// A counter with a hard limit and per-slot stock: see the [module docs](crate::counter).
pub struct Limit {
    usage: CachePadded<AtomicU64>,
    stock: PerCpu<AtomicU64>,
    limit: u64,
    batch: u64,
    resolved: Resolved,
    /// Serialises drains (see [`remote::take_slots`]).
    draining: Mutex<()>,
}

impl Limit {
    /// A limit of `limit` units, stocking up to `batch` units per slot, indexed by the
    /// default source.
    pub fn new(limit: u64, batch: u64) -> Result<Limit, PoolError> {
        Limit::with_index(Index::default(), limit, batch)
    }

    /// As [`Limit::new`] with an explicit index.
    pub fn with_index(index: Index, limit: u64, batch: u64) -> Result<Limit, PoolError> {
        Limit::in_pool(index, limit, batch, Pool::global())
    }

    /// As [`Limit::with_index`], with the stocks in `pool`.
    pub fn in_pool(index: Index, limit: u64, batch: u64, pool: &Pool) -> Result<Limit, PoolError> {
        Ok(Limit {
            usage: CachePadded(AtomicU64::new(0)),
            stock: PerCpu::new_in(pool, AtomicU64::new(0))?,
            limit,
            batch: batch.min(LOCK - 1),
            resolved: remote::resolve_drainable(index),
            draining: Mutex::new(()),
        })
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The batch.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Everything charged to the limit, including the slots' stock. Never above the limit.
    pub fn usage(&self) -> u64 {
        self.usage.load(Ordering::Acquire)
    }

    /// Charges `n` units, or fails if that would exceed the limit (see the module docs).
    pub fn try_charge(&self, n: u64) -> Result<(), LimitError> {
        if n == 0 {
            return Ok(());
        }
        if self.take_from_stock(n) {
            return Ok(());
        }
        let want = n.max(self.batch);
        if self.charge_usage(want) {
            self.put_in_stock_or_usage(want - n);
            return Ok(());
        }
        if want > n && self.charge_usage(n) {
            return Ok(());
        }
        // Headroom may sit in other slots' stock: return it and try once more.
        self.drain();
        if self.charge_usage(n) {
            return Ok(());
        }
        Err(LimitError {
            requested: n,
            usage: self.usage(),
            limit: self.limit,
        })
    }

    /// Uncharges `n` units. Uncharging more than was charged is a logic error: `usage`
    /// saturates at 0 rather than wrapping.
    pub fn uncharge(&self, n: u64) {
        if n != 0 {
            self.put_in_stock_or_usage(n);
        }
    }

    /// Returns every slot's stock to the shared usage.
    pub fn drain(&self) {
        let _serialised = self.draining.lock().unwrap_or_else(|e| e.into_inner());
        let mut drained = 0u64;
        remote::take_slots(
            self.resolved,
            self.stock.nr_slots(),
            |s| self.stock.get(s).expect("slot below nr_slots"),
            LOCK,
            |_, v| drained += v,
        );
        self.uncharge_usage(drained);
    }

    /// Takes `n` from the calling thread's stock if it holds that much.
    fn take_from_stock(&self, n: u64) -> bool {
        loop {
            let Some((current, stock)) = self.stock.enter(self.resolved) else {
                return false;
            };
            let s = stock.load(Ordering::Relaxed);
            if s & LOCK != 0 || s < n {
                return false;
            }
            match current.compare_and_store(stock, s, s - n) {
                Outcome::Committed => return true,
                Outcome::CompareFailed | Outcome::Aborted => continue,
            }
        }
    }

    /// Puts `n` pre-charged units in the calling thread's stock while it stays within the
    /// batch, otherwise returns them to the shared usage.
    fn put_in_stock_or_usage(&self, n: u64) {
        if n == 0 {
            return;
        }
        loop {
            let Some((current, stock)) = self.stock.enter(self.resolved) else {
                break;
            };
            let s = stock.load(Ordering::Relaxed);
            if s & LOCK != 0 || s + n > self.batch {
                break;
            }
            match current.compare_and_store(stock, s, s + n) {
                Outcome::Committed => return,
                Outcome::CompareFailed | Outcome::Aborted => continue,
            }
        }
        self.uncharge_usage(n);
    }

    /// `usage += n` unless that crosses the limit.
    fn charge_usage(&self, n: u64) -> bool {
        self.usage
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&v| v <= self.limit)
            })
            .is_ok()
    }

    fn uncharge_usage(&self, n: u64) {
        if n != 0 {
            let _ = self
                .usage
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                    Some(u.saturating_sub(n))
                });
        }
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("usage", &self.usage())
            .field("limit", &self.limit)
            .field("batch", &self.batch)
            .finish()
    }
}
