//! Small shared helpers: cache-line padding and the number of possible CPUs.

use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

/// Pads and aligns a value to 128 bytes, so two of them never share a cache line (nor an
/// adjacent-line prefetch pair on x86_64).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// Number of CPU numbers the kernel may ever use: one more than the highest CPU listed in
/// `/sys/devices/system/cpu/possible` (holes count, offline CPUs count), parsed as a
/// [`CpuSet`](crate::topology::CpuSet). Falls back to `sysconf(_SC_NPROCESSORS_CONF)`, then 1.
/// Read once.
pub fn possible_cpu_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| crate::topology::CpuSet::parse(s.trim()).ok())
            .and_then(|set| set.last())
            .map(|max| max + 1)
            .unwrap_or_else(|| {
                // SAFETY: sysconf has no memory-safety preconditions.
                let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
                if n > 0 { n as usize } else { 1 }
            })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn possible_cpus_cover_the_online_ones() {
        let n = super::possible_cpu_count();
        let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
        let online = crate::topology::CpuSet::parse(online.trim()).unwrap();
        assert!(online.last().unwrap() < n);
    }
}
