//! Issue 10.5: initialising an item must not depend on reading a slot through a page-table
//! entry that a concurrent copy-on-write fault is about to replace.
//!
//! In a `CowInit` pool an untouched slot page maps the range's init image. When another
//! thread writes a *neighbouring* live item in that slot for the first time, the kernel copies
//! the image page into a private page. If the allocator wrote a new init value into the image
//! while that copy was in progress, read the slot through the old (image) mapping, saw the new
//! value and skipped the slot, the copy installed afterwards keeps the old bytes: the new item
//! starts with stale contents in that slot.
//!
//! The test opens that window on purpose, round after round: `MADV_DONTNEED` turns every slot
//! page back into an untouched image mapping (on a private file mapping it drops the private
//! copies), a read maps it read-only, then a second thread writes a neighbouring live item on
//! the same page in every slot while the main thread allocates after a varying delay (spinning
//! barriers keep the two within a few hundred nanoseconds). Each round uses a distinct init
//! value, so a stale slot shows the previous value. Without the fix about 6% of rounds lose
//! slot 0 on the 2-CPU development machine.

use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A two-party spinning barrier: both threads leave within a few hundred nanoseconds of each
/// other (a futex wake-up would take microseconds and close the window).
struct SpinBarrier {
    arrived: AtomicU64,
}

impl SpinBarrier {
    fn wait(&self, phase: u64) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < 2 * phase {
            spins += 1;
            if spins.is_multiple_of(4096) {
                // Under load (CI running other work) let the other party run.
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

use percid::pool::{Pool, PoolConfig, Populate};

const SLOTS: usize = 4;
const ROUNDS: u64 = 20_000;

fn page() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

#[derive(Clone, Copy)]
struct Addr(usize);

/// Not repeated in robust mode: there the test's own `MADV_DONTNEED` would drop the poison
/// of the freed item (a write after free, as far as the pool can tell), and the code under
/// test (`Range::fill`, which also poisons) is the same.
#[test]
fn init_is_not_lost_to_a_concurrent_copy_on_write() {
    let pg = page();
    // A stride of one page: the item under test has to share the neighbour's page (the pool
    // would otherwise place a non-zero init value on a quiet page of its own).
    let pool = Pool::new(
        PoolConfig::new()
            .slots(SLOTS)
            .stride(pg)
            .populate(Populate::CowInit),
    )
    .unwrap();
    // The neighbour: a live item on the same page as the items under test.
    let neighbour = pool.alloc_with(8, 8, &[0; 8]).unwrap();
    let neighbour = Addr(neighbour.as_ptr() as usize);
    let (base, len) = pool.reservations()[0];

    let barrier = Arc::new(SpinBarrier {
        arrived: AtomicU64::new(0),
    });
    let writer = {
        let barrier = Arc::clone(&barrier);
        std::thread::spawn(move || {
            for round in 0..ROUNDS {
                barrier.wait(3 * round + 1); // A: main has freed last round's item
                // Every slot page back to the image (drops private copies; test-only).
                // SAFETY: [base, base+len) is the pool's own reservation, alive until main
                // drops the pool after joining us; no item of it is being read now.
                let rc =
                    unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_DONTNEED) };
                assert_eq!(rc, 0);
                // Map every slot page read-only to the image: the first write then copies it
                // without the page lock (`do_wp_page`), which is the racy path. (From an
                // unmapped entry, the copy holds the page lock, and the allocator's read of
                // the slot waits for it.)
                for s in 0..SLOTS {
                    let p = (neighbour.0 + s * pg) as *const u64;
                    // SAFETY: as for the writes below; reading does not change the item.
                    unsafe { p.read_volatile() };
                }
                barrier.wait(3 * round + 2); // B: go
                for s in 0..SLOTS {
                    let p = (neighbour.0 + s * pg) as *mut u64;
                    // SAFETY: the neighbour item is live for the whole test, 8 bytes, slot
                    // s < SLOTS of a pool with stride `pg`; only this thread writes it.
                    unsafe { p.write_volatile(round) };
                }
                barrier.wait(3 * round + 3); // C: round done
            }
        })
    };

    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        barrier.wait(3 * round + 1); // A
        barrier.wait(3 * round + 2); // B
        // Let the writer get into its sweep first, by a varying amount, so that the image is
        // written while some slot's copy is in flight.
        let start = std::time::Instant::now();
        let delay =
            std::time::Duration::from_nanos(round.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52);
        while start.elapsed() < delay {
            std::hint::spin_loop();
        }
        let init = (round + 1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes();
        let item = pool.alloc_with(8, 8, &init).unwrap();
        barrier.wait(3 * round + 3); // C: the writer's copies are installed
        for s in 0..SLOTS {
            let p = pool.slot_ptr(item, s).unwrap();
            // SAFETY: the item is live, 8 bytes; nobody else touches it.
            let got = unsafe { p.cast::<[u8; 8]>().as_ptr().read_volatile() };
            if got != init {
                stale.push((round, s));
            }
        }
        // SAFETY: the item came from this pool and is not used after this.
        unsafe { pool.free(item).unwrap() };
    }
    writer.join().unwrap();
    // SAFETY: the neighbour came from this pool and is not used after this.
    unsafe {
        pool.free(NonNull::new(neighbour.0 as *mut u8).unwrap())
            .unwrap()
    };
    assert!(
        stale.is_empty(),
        "{} slots kept stale contents after init (first: round {}, slot {})",
        stale.len(),
        stale[0].0,
        stale[0].1
    );
}
