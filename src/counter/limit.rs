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
//!   with exactly `n`; if even that fails, headroom may sit in other slots' stock: drain it
//!   back to `usage` (see below) and retry `n` once more. So batching never makes a charge
//!   fail that fits under the limit: a charge fails only if `charged + n > limit` at the
//!   moment of the final attempt, where `charged` counts what callers hold (stocks excluded),
//!   up to charges racing with it.
//! * `uncharge(n)`: put `n` back in the slot's stock while it stays at most `batch` (and at
//!   most `usage`); otherwise subtract `n` from `usage`.
//! * `drain()`: take every slot's stock (leases, or a lock bit and the membarrier rseq
//!   fence: see `remote`) and subtract it from `usage`.
//!
//! # At the limit
//!
//! A workload that sits at its limit has many refused charges. A drain is a mutex, a read of
//! every slot and a membarrier IPI to every CPU of the process, so a refused charge drains
//! only when it can help and only once for all charges refused together:
//!
//! * a *stocked* hint is set after any stock is put in a slot and cleared by a drain before
//!   it looks at the slots: when it is clear, no slot holds stock, and the charge fails
//!   without a drain;
//! * a *drain generation* counts finished drains: a refused charge that finds a drain
//!   finished since its first attempt only retries (as memcg skips a drain when one is in
//!   progress), so charges refused at the same moment share one drain.
//!
//! [`Limit::stats`] counts drains, fences, refused charges and skipped drains.
//!
//! # Orphaned stock
//!
//! Stock left in a slot that no thread indexes any more (an *orphan*: threads exited and the
//! concurrency-ID space shrank, see [`crate::orphans`]) is invisible to every charge. So,
//! with the default [`OrphanPolicy`]:
//!
//! * a charge whose slot's stock is short first *adopts* the orphans' stock: it takes it (one
//!   fence for all of them, or exact leases), keeps `n` for itself, and puts the rest in its
//!   own stock (what does not fit goes back to `usage`); only then does it charge `usage`;
//! * a charge refused at the limit *reaps* the orphans (their stock back to `usage`) and
//!   retries before it falls back to a full drain;
//! * [`Limit::reap_orphans`] does the same on demand.
//!
//! Moves keep the accounting exact: a stock taken from a slot was charged to `usage` when it
//! was stocked, and is either handed to the charge (still charged), put in the adopter's own
//! stock (still charged), or subtracted from `usage`. A *max stocked* hint (one more than
//! the highest slot stock was put in since the last full drain) bounds the slots examined,
//! and the stocked hint skips the whole search when no slot holds stock.
//!
//! # High watermark and pressure
//!
//! [`Limit::with_high`] sets a `high` level at or below the limit, the counterpart of memcg's
//! `memory.high`. In memcg, a charge that takes a cgroup above `memory.high` still succeeds,
//! and the charging task is throttled and made to reclaim on its way back to user space,
//! while `memory.max` is the level at which charges fail (after reclaim and OOM). percid
//! cannot make the caller reclaim, so a charge above `high` succeeds and *reports* pressure:
//! [`Limit::try_charge_with_pressure`] returns [`Charged::Pressure`], a `#[must_use]` value,
//! and the caller shrinks its caches, evicts or slows down. The limit itself stays the hard
//! refusal, as `memory.max` is.
//!
//! * A *crossing* is a change of `usage` from `<= high` to `> high`. It happens in exactly one
//!   compare-exchange (the one that raises `usage` past `high`), so every crossing is seen
//!   exactly once and [`LimitStats::pressure_events`] counts them exactly.
//! * The crossing arms a pending report; the next [`Limit::try_charge_with_pressure`] that
//!   finishes (normally the very charge that crossed) takes it and returns
//!   [`Charged::Pressure`]; every other charge returns [`Charged::Normal`]. A report is
//!   given only while `usage > high`: one found after `usage` fell back to `<= high`
//!   (uncharges, drains) is dropped, and the next crossing arms a new one. Each crossing
//!   arms once and each report disarms once, so reports never outnumber crossings, and a
//!   single thread that charges only through this method gets one report per crossing.
//!   [`Limit::try_charge`] never takes the report: it stays for the next pressure-aware
//!   charge.
//! * `usage` counts the slots' stock (see [`Limit::usage`]), so the crossing is exact in
//!   `usage`, and within the stock bound in what callers hold: `charged <= usage` and
//!   `usage - charged = Σ stock <= batch × slots`. Pressure is never late (by the time callers
//!   hold more than `high`, `usage` has crossed) and may come early, when callers hold as
//!   little as `high + 1 - Σ stock`. With `batch = 0` there is no stock and the crossing is
//!   exact in what callers hold.
//!
//! # Reserve and reclaim scopes
//!
//! [`Limit::with_reserve`] gives the limit a reserve, for the code that must charge in order
//! to free (the kernel's `PF_MEMALLOC` reserves: the reclaim path may allocate). A charge that
//! would be refused, made inside a [`reclaim_scope`](super::reclaim::reclaim_scope) on the
//! calling thread, charges exactly `n` to `usage` up to `limit + reserve`; outside a scope the
//! ceiling stays `limit`.
//!
//! * Reserve units are charged exactly `n`, never batched: the reserve path puts nothing in
//!   a stock, so the reserve never feeds the stock fast path of charges outside a scope.
//! * Uncharges pay the reserve back first: while `usage > limit`, an uncharge (and the
//!   surplus of a batch or an adoption) goes to `usage`, not to the slot's stock. The put
//!   reads `usage` before it commits: a put racing with a reserve charge may still land in a
//!   stock while `usage > limit`. Those units were charged below the limit, the accounting
//!   stays exact, and the next uncharge or drain pays the reserve back.
//! * A nested scope grants nothing more (one reserve per limit, shared by every scope);
//!   [`ReclaimScope::is_nested`](super::reclaim::ReclaimScope::is_nested) tells reclaim code
//!   not to recurse. [`LimitStats::reserve_charges`] counts the charges the reserve let through.
//!
//! # Invariants
//!
//! * `usage <= limit + reserve` at every instant, and a charge outside a reclaim scope never
//!   raises `usage` above `limit`: `usage` only grows through the compare-exchange that checks
//!   the ceiling of the charge (`limit`, or `limit + reserve` in a scope).
//! * `usage = charged + Σ stock` whenever no operation is in flight; after every charge has
//!   been uncharged and `drain()` ran, `usage() == 0`.
//! * A slot's stock is at most `batch`, and a stock put never makes a slot's stock exceed
//!   `usage`. Stock words use the top bit as the drain lock: a stock never reaches 2^63.
//! * Arithmetic is checked: no sum wraps.
//!
//! # Over-uncharging
//!
//! Uncharging more than was charged is a caller bug that a distributed counter cannot see
//! in general. This type notices it when the shared `usage` would go below zero: `usage`
//! saturates at 0, every slot's stock is drained (it can no longer be backed by usage, and
//! would otherwise satisfy later charges without counting them), and
//! [`LimitStats::underflows`] counts it.

use super::reclaim;
use crate::index::Index;
use crate::ops::{Access, Outcome};
use crate::orphans::{self, OrphanCounters, OrphanPolicy, Reaped};
use crate::per_cpu::PerCpu;
use crate::pool::{Pool, PoolError};
use crate::remote::{self, DrainCounters};
use crate::util::CachePadded;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const LOCK: u64 = 1 << 63;

/// A charge would cross the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitError {
    /// The units asked for.
    pub requested: u64,
    /// `usage()` when the charge failed.
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

/// A watermark or reserve a [`Limit`] cannot have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LimitConfigError {
    /// `high` above the limit ([`Limit::with_high`]).
    HighAboveLimit {
        /// The level asked for.
        high: u64,
        /// The limit.
        limit: u64,
    },
    /// `limit + reserve` does not fit a stock word (below 2^63) ([`Limit::with_reserve`]).
    ReserveTooLarge {
        /// The reserve asked for.
        reserve: u64,
        /// The limit.
        limit: u64,
    },
}

impl fmt::Display for LimitConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LimitConfigError::HighAboveLimit { high, limit } => {
                write!(f, "high watermark {high} above the limit {limit}")
            }
            LimitConfigError::ReserveTooLarge { reserve, limit } => {
                write!(
                    f,
                    "reserve {reserve} on a limit of {limit} exceeds 2^63 - 1"
                )
            }
        }
    }
}

impl std::error::Error for LimitConfigError {}

/// How a successful [`Limit::try_charge_with_pressure`] left the limit: see the
/// [module docs](self#high-watermark-and-pressure).
#[must_use = "pressure asks the caller to reclaim; match on it"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charged {
    /// Charged; no crossing of the high watermark to report.
    Normal,
    /// Charged, and `usage` crossed the high watermark (reported once per crossing).
    Pressure,
}

impl Charged {
    /// Whether this is [`Charged::Pressure`].
    pub fn is_pressure(self) -> bool {
        self == Charged::Pressure
    }
}

/// What a [`Limit`] did on its slow paths, counted since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LimitStats {
    /// Charges refused.
    pub refused: u64,
    /// Full drains run (explicit ones, and refused charges that drained): every slot.
    pub drains: u64,
    /// Refused charges that did not drain: no slot held stock, or another drain had just
    /// finished.
    pub drains_skipped: u64,
    /// `membarrier` rseq fences issued (each an IPI to every CPU of the process, or to one
    /// CPU: `fences_one_cpu`): by full
    /// drains, adoptions and reaps.
    pub fences: u64,
    /// The part of `fences` that restarted one CPU only: moves of one `cpu_id` slot
    /// ([`crate::rseq::membarrier::fence_rseq_on`]); the others restarted every CPU.
    pub fences_one_cpu: u64,
    /// Fences the kernel refused.
    pub fence_failures: u64,
    /// Slots whose stock a drain took.
    pub slots_drained: u64,
    /// Over-uncharges noticed (usage would have gone below zero).
    pub underflows: u64,
    /// Charges that adopted orphan stock (see the [module docs](self#orphaned-stock)).
    pub adoptions: u64,
    /// Orphan reaps run (explicit, at the limit, periodic).
    pub reaps: u64,
    /// Orphan slots whose stock was taken by adoptions and reaps.
    pub orphan_slots: u64,
    /// Units of stock taken from orphan slots.
    pub orphan_units: u64,
    /// The part of `fences` issued by adoptions and reaps.
    pub orphan_fences: u64,
    /// Crossings of the high watermark (see the
    /// [module docs](self#high-watermark-and-pressure)).
    pub pressure_events: u64,
    /// Charges in a reclaim scope that went past the limit into the reserve.
    pub reserve_charges: u64,
}

/// A counter with a hard limit and per-slot stock: see the [module docs](self).
///
/// ```
/// use percid::Limit;
///
/// // 100 connections at most; each slot keeps up to 8 pre-charged.
/// static CONNECTIONS: Limit = Limit::new(100, 8);
///
/// let mut held = 0;
/// while CONNECTIONS.try_charge(1).is_ok() {
///     held += 1;
/// }
/// assert_eq!(held, 100, "batching never refuses a charge that fits");
/// let err = CONNECTIONS.try_charge(1).unwrap_err();
/// assert_eq!((err.usage, err.limit), (100, 100));
/// for _ in 0..held {
///     CONNECTIONS.uncharge(1);
/// }
/// CONNECTIONS.drain();
/// assert_eq!(CONNECTIONS.usage(), 0);
/// ```
pub struct Limit {
    usage: CachePadded<AtomicU64>,
    stock: PerCpu<AtomicU64>,
    limit: u64,
    batch: u64,
    /// Some slot may hold stock (see the module docs).
    stocked: CachePadded<AtomicBool>,
    /// Drains finished.
    drain_gen: AtomicU64,
    /// Serialises drains (see `remote::take_slots`).
    draining: remote::DrainLock,
    counters: DrainCounters,
    refused: AtomicU64,
    drains_skipped: AtomicU64,
    underflows: AtomicU64,
    orphan_policy: OrphanPolicy,
    orphans: OrphanCounters,
    orphan_units: AtomicU64,
    /// One more than the highest slot stock was put in since the last full drain.
    max_stocked: AtomicUsize,
    /// The high watermark; `u64::MAX` when there is none.
    high: u64,
    /// Units a reclaim scope may charge past the limit.
    reserve: u64,
    /// A crossing of `high` nobody has reported yet.
    pressure_pending: AtomicBool,
    pressure_events: AtomicU64,
    reserve_charges: AtomicU64,
}

impl Limit {
    /// A limit of `limit` units, stocking up to `batch` units per slot, indexed by the
    /// default source; slots created on first use in [`Pool::global`] (without them every
    /// charge goes to the shared usage: exact, slower).
    pub const fn new(limit: u64, batch: u64) -> Limit {
        Limit::from_slots(PerCpu::new_drainable(None, AtomicU64::new(0)), limit, batch)
    }

    /// As [`Limit::new`] with an explicit index.
    pub const fn with_index(index: Index, limit: u64, batch: u64) -> Limit {
        Limit::from_slots(
            PerCpu::new_drainable(Some(index), AtomicU64::new(0)),
            limit,
            batch,
        )
    }

    /// As [`Limit::with_index`], with the stocks in `pool`, created now.
    pub fn in_pool(pool: &Pool, index: Index, limit: u64, batch: u64) -> Result<Limit, PoolError> {
        Ok(Limit::from_slots(
            PerCpu::in_pool_drainable(pool, index, AtomicU64::new(0))?,
            limit,
            batch,
        ))
    }

    const fn from_slots(stock: PerCpu<AtomicU64>, limit: u64, batch: u64) -> Limit {
        Limit {
            usage: CachePadded(AtomicU64::new(0)),
            stock,
            limit,
            batch: if batch < LOCK - 1 { batch } else { LOCK - 1 },
            stocked: CachePadded(AtomicBool::new(false)),
            drain_gen: AtomicU64::new(0),
            draining: remote::DrainLock::new(),
            counters: DrainCounters::new(),
            refused: AtomicU64::new(0),
            drains_skipped: AtomicU64::new(0),
            underflows: AtomicU64::new(0),
            orphan_policy: OrphanPolicy::DEFAULT,
            orphans: OrphanCounters::new(),
            orphan_units: AtomicU64::new(0),
            max_stocked: AtomicUsize::new(0),
            high: u64::MAX,
            reserve: 0,
            pressure_pending: AtomicBool::new(false),
            pressure_events: AtomicU64::new(0),
            reserve_charges: AtomicU64::new(0),
        }
    }

    /// The same limit with a high watermark: a charge that takes [`usage`](Self::usage)
    /// above `high` succeeds and reports pressure (see the
    /// [module docs](self#high-watermark-and-pressure)). `high` may equal the limit (then
    /// only reserve charges cross it). Fails if `high` is above the limit.
    pub fn with_high(mut self, high: u64) -> Result<Limit, LimitConfigError> {
        if high > self.limit {
            return Err(LimitConfigError::HighAboveLimit {
                high,
                limit: self.limit,
            });
        }
        self.high = high;
        Ok(self)
    }

    /// The same limit with a reserve of `reserve` units that charges inside a
    /// [`reclaim_scope`](super::reclaim::reclaim_scope) may use past the limit (see the
    /// [module docs](self#reserve-and-reclaim-scopes)). Fails if `limit + reserve` is not
    /// below 2^63.
    pub fn with_reserve(mut self, reserve: u64) -> Result<Limit, LimitConfigError> {
        if self.limit.checked_add(reserve).is_none_or(|c| c >= LOCK) {
            return Err(LimitConfigError::ReserveTooLarge {
                reserve,
                limit: self.limit,
            });
        }
        self.reserve = reserve;
        Ok(self)
    }

    /// The high watermark, if any.
    pub fn high(&self) -> Option<u64> {
        (self.high != u64::MAX).then_some(self.high)
    }

    /// The reserve (0 when there is none).
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// The same limit with another [`OrphanPolicy`] (default [`OrphanPolicy::DEFAULT`]).
    pub const fn with_orphan_policy(mut self, policy: OrphanPolicy) -> Limit {
        self.orphan_policy = policy;
        self
    }

    /// The orphan policy.
    pub fn orphan_policy(&self) -> OrphanPolicy {
        self.orphan_policy
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The batch.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Everything charged to the limit, including the slots' stock. Never above the limit
    /// plus the [reserve](Self::with_reserve); above the limit only through charges in a
    /// reclaim scope.
    pub fn usage(&self) -> u64 {
        self.usage.load(Ordering::Acquire)
    }

    /// How the limit reaches its slots, once they exist.
    pub fn access(&self) -> Option<Access> {
        self.stock.access()
    }

    /// What the slow paths did so far.
    pub fn stats(&self) -> LimitStats {
        let c = &self.counters;
        LimitStats {
            refused: self.refused.load(Ordering::Relaxed),
            drains: c.drains.load(Ordering::Relaxed),
            drains_skipped: self.drains_skipped.load(Ordering::Relaxed),
            fences: c.fences.load(Ordering::Relaxed)
                + self.orphans.moves.fences.load(Ordering::Relaxed),
            fences_one_cpu: c.fences_one_cpu.load(Ordering::Relaxed)
                + self.orphans.moves.fences_one_cpu.load(Ordering::Relaxed),
            fence_failures: c.fence_failures.load(Ordering::Relaxed)
                + self.orphans.moves.fence_failures.load(Ordering::Relaxed),
            slots_drained: c.slots_taken.load(Ordering::Relaxed),
            underflows: self.underflows.load(Ordering::Relaxed),
            adoptions: self.orphans.adoptions.load(Ordering::Relaxed),
            reaps: self.orphans.reaps.load(Ordering::Relaxed),
            orphan_slots: self.orphans.moves.slots_taken.load(Ordering::Relaxed),
            orphan_units: self.orphan_units.load(Ordering::Relaxed),
            orphan_fences: self.orphans.moves.fences.load(Ordering::Relaxed),
            pressure_events: self.pressure_events.load(Ordering::Relaxed),
            reserve_charges: self.reserve_charges.load(Ordering::Relaxed),
        }
    }

    /// As [`try_charge`](Self::try_charge), and reports a crossing of the high watermark:
    /// [`Charged::Pressure`] once per crossing (see the
    /// [module docs](self#high-watermark-and-pressure)).
    pub fn try_charge_with_pressure(&self, n: u64) -> Result<Charged, LimitError> {
        self.try_charge(n)?;
        // Test first: the swap is a write to a shared line, paid only when a crossing waits.
        if self.pressure_pending.load(Ordering::Acquire)
            && self.pressure_pending.swap(false, Ordering::AcqRel)
            && self.usage() > self.high
        {
            return Ok(Charged::Pressure);
        }
        Ok(Charged::Normal)
    }

    /// Charges `n` units, or fails if that would exceed the limit (see the module docs); in a
    /// [`reclaim_scope`](super::reclaim::reclaim_scope), the limit plus the reserve. Leaves a
    /// crossing of the high watermark to [`try_charge_with_pressure`](Self::try_charge_with_pressure).
    pub fn try_charge(&self, n: u64) -> Result<(), LimitError> {
        if n == 0 {
            return Ok(());
        }
        if self.take_from_stock(n) {
            return Ok(());
        }
        self.charge_slow(n)
    }

    /// A charge the slot's stock could not satisfy: orphans, the shared usage, the limit.
    #[inline(never)]
    fn charge_slow(&self, n: u64) -> Result<(), LimitError> {
        let policy = self.orphan_policy;
        if policy.periodic_reap_due(&self.orphans.calls) {
            self.reap_orphans();
        }
        if policy.adopts() && self.adopt(n) {
            return Ok(());
        }
        let gen_before = self.drain_gen.load(Ordering::Acquire);
        let want = n.max(self.batch);
        if self.charge_usage(want) {
            self.put_in_stock_or_usage(want - n);
            return Ok(());
        }
        if want > n && self.charge_usage(n) {
            return Ok(());
        }
        // At the limit: the orphans' stock first (it can only come back by a move).
        if policy.reaps_at_limit() && self.reap_orphans().moved > 0 && self.charge_usage(n) {
            return Ok(());
        }
        // Headroom may sit in other slots' stock: drain it, once for every charge refused
        // at this moment, and only if some slot may hold stock.
        {
            let serialised = self.draining.lock();
            if self.drain_gen.load(Ordering::Acquire) == gen_before
                && self.stocked.load(Ordering::SeqCst)
            {
                self.drain_locked(&serialised);
            } else {
                self.drains_skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.charge_usage(n) {
            return Ok(());
        }
        // Past the limit, inside a reclaim scope: exactly `n` from the reserve, never stocked.
        if self.reserve > 0
            && reclaim::in_reclaim_scope()
            && self.charge_usage_to(n, self.limit + self.reserve)
        {
            self.reserve_charges.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.refused.fetch_add(1, Ordering::Relaxed);
        Err(LimitError {
            requested: n,
            usage: self.usage(),
            limit: self.limit,
        })
    }

    /// Uncharges `n` units. Uncharging more than was charged is a logic error: see the
    /// [module docs](self#over-uncharging).
    pub fn uncharge(&self, n: u64) {
        if n != 0 {
            self.put_in_stock_or_usage(n);
        }
    }

    /// Returns the stock of every orphan slot (see the [module docs](self#orphaned-stock)) to
    /// the shared usage; returns what it moved.
    pub fn reap_orphans(&self) -> Reaped<u64> {
        let r = self.take_orphan_stock(true).unwrap_or_default();
        self.orphans.reaps.fetch_add(1, Ordering::Relaxed);
        self.sub_usage(r.moved);
        r
    }

    /// The live bound of this limit's slots now (see [`crate::orphans`]); `None` before its
    /// slots exist.
    pub fn live_bound(&self) -> Option<orphans::LiveBound> {
        Some(orphans::live_bound_of(
            self.stock.access()?,
            self.stock.nr_slots(),
        ))
    }

    /// Adoption: takes the orphans' stock; keeps `n` of it for this charge and stocks the
    /// rest when it has at least `n`, otherwise returns it to `usage`. Whether it charged.
    fn adopt(&self, n: u64) -> bool {
        let Some(r) = self.take_orphan_stock(false) else {
            return false;
        };
        if r.moved == 0 {
            return false;
        }
        self.orphans.adoptions.fetch_add(1, Ordering::Relaxed);
        if r.moved >= n {
            // Still charged: `n` is this charge's, the rest goes to this slot's stock.
            self.put_in_stock_or_usage(r.moved - n);
            true
        } else {
            self.sub_usage(r.moved);
            false
        }
    }

    /// Takes the stock of the orphan slots; the caller puts it somewhere (see the module
    /// docs). `None` when skipped: no slot holds stock, no slots yet, or (`wait == false`)
    /// another drain or move is running.
    fn take_orphan_stock(&self, wait: bool) -> Option<Reaped<u64>> {
        if !self.stocked.load(Ordering::SeqCst) {
            return None;
        }
        let access = self.stock.access()?;
        let nr_slots = self.stock.nr_slots();
        let hi = self.max_stocked.load(Ordering::Acquire).min(nr_slots);
        let serialised = if wait {
            self.draining.lock()
        } else {
            self.draining.try_lock()?
        };
        let mut moved = 0u64;
        // A refused fence leaves the locked slots' stock in place (counted as a failure).
        let slots = orphans::take_orphans(
            &serialised,
            access,
            nr_slots,
            hi,
            |s| self.stock.get(s).expect("slot below nr_slots"),
            LOCK,
            &self.orphans,
            |_, v| moved = moved.saturating_add(v),
        )
        .unwrap_or(0);
        self.orphan_units.fetch_add(moved, Ordering::Relaxed);
        Some(Reaped { slots, moved })
    }

    /// Returns every slot's stock to the shared usage.
    pub fn drain(&self) {
        let serialised = self.draining.lock();
        self.drain_locked(&serialised);
    }

    /// [`drain`](Self::drain) with the drain mutex held.
    fn drain_locked(&self, serialised: &remote::DrainGuard<'_>) {
        // Cleared before looking: a stock put after this sets it again.
        self.stocked.store(false, Ordering::SeqCst);
        self.max_stocked.store(0, Ordering::SeqCst);
        if let Some(access) = self.stock.access() {
            let mut drained = 0u64;
            // On a refused fence the locked slots keep their stock: the hint stays set.
            if remote::take_slots(
                serialised,
                access,
                0..self.stock.nr_slots(),
                |s| self.stock.get(s).expect("slot below nr_slots"),
                LOCK,
                &self.counters,
                |_, v| drained = drained.saturating_add(v),
            )
            .is_err()
            {
                self.stocked.store(true, Ordering::SeqCst);
                self.max_stocked
                    .fetch_max(self.stock.nr_slots(), Ordering::SeqCst);
            }
            self.sub_usage(drained);
        }
        self.drain_gen.fetch_add(1, Ordering::Release);
    }

    /// Takes `n` from the calling thread's stock if it holds that much.
    fn take_from_stock(&self, n: u64) -> bool {
        self.stock
            .run(|current, stock| {
                let s = stock.load(Ordering::Relaxed);
                if s & LOCK != 0 || s < n {
                    return Some(false);
                }
                match current.compare_and_store(stock, s, s - n) {
                    Outcome::Committed => Some(true),
                    Outcome::CompareFailed | Outcome::Aborted => None,
                }
            })
            .unwrap_or(false)
    }

    /// Puts `n` pre-charged units in the calling thread's stock while it stays within the
    /// batch (and within `usage`), otherwise returns them to the shared usage; always to the
    /// shared usage while the reserve is in use (`usage > limit`), to pay it back first.
    fn put_in_stock_or_usage(&self, n: u64) {
        if n == 0 {
            return;
        }
        let stocked = self
            .stock
            .run(|current, stock| {
                let s = stock.load(Ordering::Relaxed);
                let room = s & LOCK == 0;
                let usage = self.usage();
                let Some(t) = s
                    .checked_add(n)
                    .filter(|&t| room && t <= self.batch && t <= usage && usage <= self.limit)
                else {
                    return Some(None);
                };
                match current.compare_and_store(stock, s, t) {
                    Outcome::Committed => Some(Some(current.index())),
                    Outcome::CompareFailed | Outcome::Aborted => None,
                }
            })
            .flatten();
        if let Some(index) = stocked {
            // After the commit: a drain that cleared the hints before this either took the
            // stock or left the hints set by these stores.
            if !self.stocked.load(Ordering::Relaxed) {
                self.stocked.store(true, Ordering::SeqCst);
            }
            if self.max_stocked.load(Ordering::Relaxed) <= index {
                self.max_stocked.fetch_max(index + 1, Ordering::SeqCst);
            }
        } else {
            self.uncharge_usage(n);
        }
    }

    /// `usage += n` unless that crosses the limit.
    fn charge_usage(&self, n: u64) -> bool {
        self.charge_usage_to(n, self.limit)
    }

    /// `usage += n` unless that crosses `ceiling`; arms a pressure report when it crosses
    /// `high` (this compare-exchange is the crossing's only witness).
    fn charge_usage_to(&self, n: u64, ceiling: u64) -> bool {
        let Ok(prev) = self
            .usage
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&v| v <= ceiling)
            })
        else {
            return false;
        };
        if prev <= self.high && prev + n > self.high {
            self.pressure_events.fetch_add(1, Ordering::Relaxed);
            self.pressure_pending.store(true, Ordering::Release);
        }
        true
    }

    /// `usage -= n`, saturating; returns whether it saturated (less than `n` was there).
    fn sub_usage(&self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        let prev = self
            .usage
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            })
            .expect("the closure always returns Some");
        prev < n
    }

    /// Units a caller gives back: `usage -= n`; on an over-uncharge, drains the stock that
    /// usage can no longer back.
    fn uncharge_usage(&self, n: u64) {
        if self.sub_usage(n) {
            self.underflows.fetch_add(1, Ordering::Relaxed);
            self.drain();
        }
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("usage", &self.usage())
            .field("limit", &self.limit)
            .field("batch", &self.batch)
            .field("index", &self.stock.index())
            .field("access", &self.access())
            .field("high", &self.high())
            .field("reserve", &self.reserve)
            .field("orphan_policy", &self.orphan_policy)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolConfig;

    /// Stock planted in slot 40 of a 64-slot pool (no thread of a 2-CPU test machine indexes
    /// it, and it is at or above every live bound here) is adopted by a charge through the
    /// rseq path: one fence, exact accounting.
    #[test]
    fn a_short_charge_adopts_orphan_stock_through_rseq() {
        let pool = Pool::new(PoolConfig::new().slots(64)).unwrap();
        for index in [Index::CpuId, Index::MmCid] {
            let limit = Limit::in_pool(&pool, index, 1000, 16).unwrap();
            if !limit.access().is_some_and(|a| a.is_rseq()) {
                continue; // no rseq here (forced fallback): covered by tests/orphans.rs
            }
            if limit.live_bound().unwrap().bound > 40 {
                continue; // a machine with more than 40 live slots
            }
            // Plant 10 units of stock in slot 40, charged to usage as a stock put would.
            limit.stock.get(40).unwrap().store(10, Ordering::Relaxed);
            limit.usage.store(10, Ordering::Relaxed);
            limit.stocked.store(true, Ordering::SeqCst);
            limit.max_stocked.store(41, Ordering::SeqCst);
            limit.try_charge(4).unwrap();
            let st = limit.stats();
            assert_eq!((st.adoptions, st.orphan_units, st.orphan_slots), (1, 10, 1));
            assert_eq!(st.orphan_fences, 1, "one fence for the move");
            assert_eq!(st.drains, 0);
            assert_eq!(limit.stock.get(40).unwrap().load(Ordering::Relaxed), 0);
            assert_eq!(limit.usage(), 10, "4 charged, 6 now in this thread's stock");
            let stocks: u64 = limit.stock.iter().map(|s| s.load(Ordering::Relaxed)).sum();
            assert_eq!(stocks, 6);
            // Reaping finds nothing more; a drain returns the 6 to usage.
            assert_eq!(limit.reap_orphans().moved, 0);
            limit.drain();
            assert_eq!(limit.usage(), 4);
        }
    }

    /// With adoption off, the same orphan stock is reaped at the limit before a full drain.
    #[test]
    fn the_limit_reaps_orphans_before_draining() {
        let pool = Pool::new(PoolConfig::new().slots(64)).unwrap();
        for index in [Index::CpuId, Index::MmCid] {
            let limit = Limit::in_pool(&pool, index, 20, 8)
                .unwrap()
                .with_orphan_policy(OrphanPolicy::NEVER.reap_at_limit(true));
            if !limit.access().is_some_and(|a| a.is_rseq())
                || limit.live_bound().unwrap().bound > 40
            {
                continue;
            }
            limit.stock.get(40).unwrap().store(8, Ordering::Relaxed);
            limit.usage.store(8, Ordering::Relaxed);
            limit.stocked.store(true, Ordering::SeqCst);
            limit.max_stocked.store(41, Ordering::SeqCst);
            // 12 units are free in usage; the 13th needs the orphan's stock.
            for _ in 0..20 {
                limit.try_charge(1).unwrap();
            }
            let st = limit.stats();
            assert_eq!(st.drains, 0, "{st:?}");
            assert_eq!(st.orphan_units, 8, "{st:?}");
            assert_eq!(st.adoptions, 0);
            assert!(limit.try_charge(1).is_err(), "20 of 20 charged");
        }
    }
}
