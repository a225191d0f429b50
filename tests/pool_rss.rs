//! Resident memory of pools, measured on the pool's own mappings in `/proc/self/smaps`.
//!
//! One `#[test]` only, running its cases in sequence: pools of other tests running in
//! parallel could otherwise be mapped next to ours and (for anonymous mappings with the same
//! flags) merged into the same VMA, which would blur the per-mapping figures.
//!
//! The pools have 1024 slots (this machine has 2 CPUs), so populating every slot would cost
//! 1024 pages per item: unmistakable next to the handful of pages expected.

use percid::Index;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use percid::per_cpu::PerCpu;
use percid::pool::{Pool, PoolConfig, Populate};

const SLOTS: usize = 1024;

fn page() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// `(Rss, Anonymous)` in bytes of the VMAs inside the pool's reservations. Panics if a VMA
/// straddles a reservation boundary (merged with a foreign mapping), since its figures would
/// not be ours alone.
fn usage(pool: &Pool) -> (usize, usize) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let ranges = pool.reservations();
    let (mut rss, mut anon) = (0, 0);
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            inside = false;
            for &(base, len) in &ranges {
                let overlaps = start < base + len && end > base;
                if overlaps {
                    assert!(
                        start >= base && end <= base + len,
                        "VMA {start:#x}-{end:#x} straddles the reservation {base:#x}+{len:#x}"
                    );
                    inside = true;
                }
            }
            continue;
        }
        if !inside {
            continue;
        }
        let kb = |l: &str| -> usize {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<usize>()
                .unwrap()
                * 1024
        };
        if line.starts_with("Rss:") {
            rss += kb(line);
        } else if line.starts_with("Anonymous:") {
            anon += kb(line);
        }
    }
    (rss, anon)
}

fn pool(populate: Populate, robust: bool) -> Pool {
    Pool::new(
        PoolConfig::new()
            .slots(SLOTS)
            .populate(populate)
            .robust(robust),
    )
    .unwrap()
}

/// Two threads each hammer their own slot; then the whole item is summed over all 1024
/// slots. Returns the pool's (Rss, Anonymous) after that.
fn two_threads(populate: Populate, init: u64) -> (usize, usize) {
    let p = pool(populate, false);
    let v = Arc::new(PerCpu::in_pool(&p, Index::default(), AtomicU64::new(init)).unwrap());
    let workers: Vec<_> = [3usize, 700]
        .into_iter()
        .map(|slot| {
            let v = Arc::clone(&v);
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    v.get(slot).unwrap().fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let sum: u64 = v.iter().map(|a| a.load(Ordering::Relaxed)).sum();
    assert_eq!(sum, SLOTS as u64 * init + 20_000);
    usage(&p)
}

#[test]
fn resident_memory_stays_within_touched_slots() {
    let pg = page();

    // CowZero, zero init: two populated pages; reading the other slots maps the zero page,
    // which smaps does not count.
    let (rss, anon) = two_threads(Populate::CowZero, 0);
    eprintln!("CowZero, zero init: rss {rss} anon {anon}");
    assert!(anon <= 4 * pg, "CowZero anon {anon} bytes");
    assert!(rss <= 4 * pg, "CowZero rss {rss} bytes");

    // CowInit with a non-zero init value: still two private pages. Reading untouched slots
    // maps the (shared) image page, so only Anonymous is tight; Rss counts that one physical
    // page once per slot mapping.
    let (rss, anon) = two_threads(Populate::CowInit, 5);
    eprintln!("CowInit, init 5: rss {rss} anon {anon}");
    assert!(anon <= 4 * pg, "CowInit anon {anon} bytes");

    // CowZero with a non-zero init value populates every slot (documented): this shows the
    // measurement can fail.
    let (rss, anon) = two_threads(Populate::CowZero, 5);
    eprintln!("CowZero, init 5: rss {rss} anon {anon}");
    assert!(
        anon >= SLOTS * pg,
        "CowZero non-zero init anon {anon} bytes"
    );

    // Init values of a CowInit pool populate nothing until written: with one item per quiet
    // page (the pool places non-zero init values there), a 64 KiB stride holds 16 of them.
    let p = pool(Populate::CowInit, false);
    let quiet_pages = (percid::pool::DEFAULT_STRIDE / pg).max(1) as u64;
    let items: Vec<_> = (0..quiet_pages)
        .map(|i| PerCpu::in_pool(&p, Index::default(), i + 1).unwrap())
        .collect();
    assert!(
        items
            .iter()
            .all(|v| v.get(SLOTS - 1) == Some(&(v.get(0).copied().unwrap())))
    );
    assert_eq!(usage(&p).1, 0, "no private page before a write");
    let mut first = items.into_iter().next().unwrap();
    *first.get_mut(10).unwrap() = 99;
    assert_eq!(usage(&p).1, pg, "one written slot, one private page");
    // Zero-init items fill the rest of the stride (the gaps) at no cost either.
    let zeros: Vec<_> = (0..64)
        .map(|_| PerCpu::in_pool(&p, Index::default(), 0u64).unwrap())
        .collect();
    assert!(zeros.iter().all(|v| v.iter().all(|&x| x == 0)));
    assert_eq!(usage(&p).1, pg, "zero init populates nothing");
    assert_eq!(p.reservations().len(), 1, "all in one range");

    // Robust mode: poisoning on free does not populate untouched slots, in either mode.
    for mode in [Populate::CowInit, Populate::CowZero] {
        let p = pool(mode, true);
        let mut v = PerCpu::in_pool(&p, Index::default(), 0u64).unwrap();
        *v.get_mut(1).unwrap() = 1;
        *v.get_mut(2).unwrap() = 2;
        assert!(v.iter().skip(3).all(|&x| x == 0));
        drop(v); // frees and poisons
        let again = PerCpu::in_pool(&p, Index::default(), 0u64).unwrap(); // checks the poison in every slot
        assert_eq!(again.iter().sum::<u64>(), 0);
        let (rss, anon) = usage(&p);
        eprintln!("{mode:?} robust after free + reuse: rss {rss} anon {anon}");
        assert!(anon <= 4 * pg, "{mode:?} robust anon {anon} bytes");
    }
}
