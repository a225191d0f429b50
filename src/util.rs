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
/// `/sys/devices/system/cpu/possible` (holes count, offline CPUs count). Falls back to
/// `sysconf(_SC_NPROCESSORS_CONF)`, then 1. Read once.
pub fn possible_cpu_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| highest_in_cpu_list(&s))
            .map(|max| max as usize + 1)
            .unwrap_or_else(|| {
                // SAFETY: sysconf has no memory-safety preconditions.
                let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
                if n > 0 { n as usize } else { 1 }
            })
    })
}

/// Highest CPU number in a Linux CPU list (`0-3,8,10-11`), or `None` if it does not parse.
fn highest_in_cpu_list(list: &str) -> Option<u32> {
    let mut max = None;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let last = part.rsplit('-').next()?;
        let v: u32 = last.trim().parse().ok()?;
        max = Some(max.map_or(v, |m: u32| m.max(v)));
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_cpu_in_lists() {
        assert_eq!(highest_in_cpu_list("0-1\n"), Some(1));
        assert_eq!(highest_in_cpu_list("0-3,8,10-11"), Some(11));
        assert_eq!(highest_in_cpu_list("0"), Some(0));
        assert_eq!(highest_in_cpu_list("x"), None);
        assert_eq!(highest_in_cpu_list(""), None);
        assert!(possible_cpu_count() >= 1);
    }
}
