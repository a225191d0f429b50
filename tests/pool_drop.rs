//! Dropping a pool unmaps its ranges and init images.
//!
//! One `#[test]` only: no other test of this binary maps memory meanwhile, so an address
//! that reappears in `/proc/self/maps` after the drop could only be ours.

use percid::Index;
use percid::per_cpu::PerCpu;
use percid::pool::{Pool, PoolConfig, Populate};

/// The `/proc/self/maps` lines overlapping `[base, base + len)`.
fn maps_overlapping(base: usize, len: usize) -> Vec<String> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            let start = usize::from_str_radix(a, 16).unwrap();
            let end = usize::from_str_radix(b, 16).unwrap();
            start < base + len && end > base
        })
        .map(str::to_owned)
        .collect()
}

fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:percid-pool"))
        .count()
}

#[test]
fn dropping_the_last_handle_unmaps_everything() {
    let memfd_before = memfd_mappings();
    for mode in [Populate::CowInit, Populate::CowZero] {
        let pool = Pool::new(PoolConfig::new().slots(16).stride(1 << 16).populate(mode)).unwrap();
        // Two ranges: one 64 KiB item fills the first.
        let a = PerCpu::in_pool(&pool, Index::default(), [1u64; 8192]).unwrap();
        let b = PerCpu::in_pool(&pool, Index::default(), 2u64).unwrap();
        let ranges = pool.reservations();
        assert_eq!(ranges.len(), 2);
        for &(base, len) in &ranges {
            let lines = maps_overlapping(base, len);
            assert!(!lines.is_empty(), "{mode:?}: range mapped");
            if mode == Populate::CowInit {
                // One private file mapping per slot.
                assert_eq!(lines.len(), 16, "{mode:?}: {lines:#?}");
            }
        }
        if mode == Populate::CowInit {
            // 16 slot mappings + 1 image per range.
            assert_eq!(memfd_mappings(), memfd_before + 2 * 17);
        }
        // The handles keep the pool alive after the user's handle is gone.
        drop(pool);
        assert_eq!(b.get(15), Some(&2));
        for &(base, len) in &ranges {
            assert!(!maps_overlapping(base, len).is_empty());
        }
        drop(a);
        drop(b);
        for &(base, len) in &ranges {
            let lines = maps_overlapping(base, len);
            assert!(
                lines.is_empty(),
                "{mode:?}: still mapped after drop: {lines:#?}"
            );
        }
        assert_eq!(memfd_mappings(), memfd_before, "{mode:?}: images unmapped");
    }
}
