//! Counters sharded per slot.
//!
//! * [`Counter`]: exact; `add` is one critical section (or one leased store) on the
//!   calling thread's slot; `sum` adds every slot.
//! * [`BatchedCounter`]: per-slot deltas folded into a shared total at a batch; `read` is
//!   one load with a stated error bound ([`Approx`]); `sum` is exact once writers stop.
//! * [`Limit`]: a hard limit with per-slot stock: `try_charge`, `uncharge`, `drain`; an
//!   optional `high` watermark that reports pressure, and a reserve for [`reclaim_scope`]s.
//!
//! `BatchedCounter` and `Limit` move the contents of orphaned slots (slots no thread indexes
//! since the concurrency-ID space shrank) out of them: see [`crate::orphans`].

pub mod batched;
pub mod exact;
pub mod limit;
pub mod reclaim;

pub use batched::{
    Approx, BatchedCounter, BatchedStats, DEFAULT_BATCH, MAX_BATCH, REAP_EVERY_FOLDS,
};
pub use exact::{Counter, CounterHandle};
pub use limit::{Charged, Limit, LimitConfigError, LimitError, LimitStats};
pub use reclaim::{ReclaimScope, in_reclaim_scope, reclaim_scope};
