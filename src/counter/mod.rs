//! Counters sharded per slot.
//!
//! * [`Counter`]: exact; `add` is one critical section (or one leased store) on the
//!   calling thread's slot; `sum` adds every slot.

mod exact;

pub use exact::Counter;
