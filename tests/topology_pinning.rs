//! Pinning and affinity masks. Every test that pins does so on a thread of its own, so the
//! test harness's threads keep their masks.

use std::thread;

use percid::topology::{
    CpuSet, Topology, TopologyError, allowed_cpus, current_cpu, current_thread_affinity,
    pin_current_thread, pin_current_thread_to_cpu,
};

#[test]
fn pin_to_each_allowed_cpu() {
    let allowed = allowed_cpus().unwrap();
    assert!(!allowed.is_empty());
    for cpu in &allowed {
        let (mask, ran_on) = thread::spawn(move || {
            pin_current_thread_to_cpu(cpu).unwrap();
            (current_thread_affinity().unwrap(), current_cpu().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(mask, std::iter::once(cpu).collect::<CpuSet>());
        // Pinned to one CPU, the thread can only run there.
        assert_eq!(ran_on, cpu);
    }
    // The harness thread's mask is unchanged.
    assert_eq!(current_thread_affinity().unwrap(), allowed);
}

#[test]
fn pin_to_a_set_and_read_it_back() {
    let allowed = allowed_cpus().unwrap();
    // Every L3 domain of this machine, and the whole allowed set, are sets we may pin to.
    let machine = Topology::from_sysfs().unwrap();
    let mut sets: Vec<CpuSet> = machine
        .l3()
        .iter()
        .map(|d| d.cpus.intersection(&allowed))
        .filter(|s| !s.is_empty())
        .collect();
    sets.push(allowed.clone());
    for config in sets {
        let cpus = config.clone();
        let (mask, ran_on) = thread::spawn(move || {
            pin_current_thread(&cpus).unwrap();
            (current_thread_affinity().unwrap(), current_cpu().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(mask, config, "{config}");
        assert!(config.contains(ran_on));
    }
    // A set naming CPUs far beyond this machine as well as allowed ones: the kernel keeps the
    // allowed ones (the buffer is sized for CPU 5000).
    let mut wide = allowed.clone();
    wide.insert(5000);
    let mask = thread::spawn(move || {
        pin_current_thread(&wide).unwrap();
        current_thread_affinity().unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(mask, allowed);
}

#[test]
fn bad_pins_are_rejected() {
    let result = thread::spawn(|| {
        let empty = pin_current_thread(&CpuSet::new());
        let absent = pin_current_thread_to_cpu(100_000);
        let beyond = pin_current_thread_to_cpu(usize::MAX);
        let mask = current_thread_affinity().unwrap();
        (empty, absent, beyond, mask)
    })
    .join()
    .unwrap();
    assert!(matches!(result.0, Err(TopologyError::EmptyCpuSet)));
    match result.1 {
        Err(TopologyError::Syscall { call, source }) => {
            assert_eq!(call, "sched_setaffinity");
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        result.2,
        Err(TopologyError::CpuOutOfRange { cpu: usize::MAX })
    ));
    // Failed pins leave the mask as it was.
    assert_eq!(result.3, allowed_cpus().unwrap());
}

#[test]
fn bad_lists_are_rejected() {
    for bad in ["3-1", "0,,1", "x", "1-", "0-99999999999", "1,", "0 1"] {
        assert!(bad.parse::<CpuSet>().is_err(), "{bad:?} parsed");
    }
}
