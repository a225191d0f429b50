//! Counters sharded per slot.
//!
//! * [`Counter`]: exact; `add` is one critical section (or one leased store) on the
//!   calling thread's slot; `sum` adds every slot.
//! * [`BatchedCounter`]: per-slot deltas folded into a shared total at a batch; `read` is
//!   one load with a stated error bound ([`Approx`]); `sum` is exact once writers stop.
//! * [`Limit`]: a hard limit with per-slot stock: `try_charge`, `uncharge`, `drain`.

mod batched;
mod exact;
mod limit;

pub use batched::{Approx, BatchedCounter};
pub use exact::Counter;
pub use limit::{Limit, LimitError};
