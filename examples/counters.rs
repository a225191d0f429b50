//! The three counters side by side, with what each promises: `cargo run --example counters`.
//!
//! * `Counter`: exact; `sum()` reads every slot.
//! * `BatchedCounter`: `read()` is one load with a stated error bound; `sum()` is exact once
//!   the writers stop.
//! * `Limit`: a hard cap with per-slot stock; a charge that does not fit is refused.

use percid::{BatchedCounter, Counter, Limit};

static REQUESTS: Counter = Counter::new();
static BYTES: BatchedCounter = BatchedCounter::new(1024);
static CONNECTIONS: Limit = Limit::new(64, 4);

fn main() {
    let threads = 4;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for i in 0..100_000u64 {
                    REQUESTS.inc();
                    BYTES.add(((i + t) % 1500) as i64);
                }
                // Each thread holds up to 32 connections for a moment.
                let mut held = 0;
                while held < 32 && CONNECTIONS.try_charge(1).is_ok() {
                    held += 1;
                }
                println!("thread {t}: holds {held} connections");
                for _ in 0..held {
                    CONNECTIONS.uncharge(1);
                }
            });
        }
    });

    println!("requests: {} (exact)", REQUESTS.sum());
    let approx = BYTES.read();
    println!(
        "bytes: read {} ± {}, exact {}",
        approx.value,
        approx.error_bound,
        BYTES.sum()
    );
    assert!(approx.contains(BYTES.sum()));
    println!(
        "connections: usage {} of {} (stock included); {:?}",
        CONNECTIONS.usage(),
        CONNECTIONS.limit(),
        CONNECTIONS.stats()
    );
    CONNECTIONS.drain();
    println!("after drain: usage {}", CONNECTIONS.usage());
    println!("{}", percid::status());
}
