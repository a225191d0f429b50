//! TEMPORARY scaffold (replaced by the real allocator at merge): a scan-based lease
//! allocator with the same API, so the rseq layer compiles and can be tested meanwhile.
#![allow(missing_docs)]
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    CacheLocal,
    Legacy,
}

#[derive(Debug)]
pub struct CidAllocator {
    held: Vec<AtomicBool>,
}

#[derive(Debug)]
pub struct CidLease<'a> {
    alloc: &'a CidAllocator,
    cid: u32,
}

impl CidLease<'_> {
    pub fn cid(&self) -> u32 {
        self.cid
    }
}

impl Drop for CidLease<'_> {
    fn drop(&mut self) {
        self.alloc.held[self.cid as usize].store(false, Ordering::Release);
    }
}

impl CidAllocator {
    pub fn global(policy: Policy) -> &'static CidAllocator {
        static A: OnceLock<CidAllocator> = OnceLock::new();
        static B: OnceLock<CidAllocator> = OnceLock::new();
        let cell = if policy == Policy::CacheLocal { &A } else { &B };
        cell.get_or_init(|| CidAllocator {
            held: (0..crate::util::possible_cpu_count())
                .map(|_| AtomicBool::new(false))
                .collect(),
        })
    }
    pub fn try_acquire_exact(&self, cid: u32) -> Option<CidLease<'_>> {
        let h = self.held.get(cid as usize)?;
        if h.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(CidLease { alloc: self, cid })
        } else {
            None
        }
    }
    pub fn acquire(&self) -> CidLease<'_> {
        // SAFETY: no preconditions.
        let cpu = unsafe { libc::sched_getcpu() }.max(0) as u32;
        loop {
            if let Some(l) = self.try_acquire_exact(cpu) {
                return l;
            }
            for c in 0..self.held.len() as u32 {
                if let Some(l) = self.try_acquire_exact(c) {
                    return l;
                }
            }
            std::thread::yield_now();
        }
    }
}
