//! Which kernel concurrency-ID era the running kernel belongs to, from its release string
//! (`uname -r`): what `mm_cid` means on it, and which user-space [`Policy`] imitates it.
//!
//! | release | era | `mm_cid` | imitated by |
//! |---|---|---|---|
//! | < 6.3 | [`CidEra::NoCid`] | absent | — |
//! | 6.3 - 6.12 | [`CidEra::Legacy`] | per-CPU cached ID, ~100 ms expiry, first free | [`Policy::Legacy`] |
//! | 6.13 - 6.18 | [`CidEra::CacheLocal`] | legacy + `recent_cid` + expansion (Linux 6.13, "Improve cache locality of RSEQ concurrency IDs for intermittent workloads") | [`Policy::CacheLocal`] |
//! | >= 6.19 | [`CidEra::PerTask`] | per-task ownership, per-CPU past the limit ("sched: Rewrite MM CID management") | [`Policy::PerTask`] |
//!
//! The release number is all this looks at: a distribution kernel that backports the 6.19
//! rewrite to an older release (or reverts it) is misnamed. 6.3 itself handed the ID back at
//! every context switch; the per-CPU cache of the legacy era came with 6.4.

use std::fmt;

use super::Policy;

/// A kernel era of `mm_cid` (see the [module documentation](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CidEra {
    /// Before Linux 6.3: no `mm_cid`.
    NoCid,
    /// Linux 6.3 - 6.12: the legacy allocator.
    Legacy,
    /// Linux 6.13 - 6.18: the cache-local allocator.
    CacheLocal,
    /// Linux 6.19 and later: per-task ownership.
    PerTask,
}

impl CidEra {
    /// The era of a kernel release string such as `6.18.44-fc-v1252` or `6.19.0-rc1`: its
    /// leading `major.minor`. `None` if it does not start with two dot-separated numbers.
    pub fn from_release(release: &str) -> Option<CidEra> {
        let mut parts = release.trim().splitn(3, '.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor_part = parts.next()?;
        let digits = minor_part
            .find(|c: char| !c.is_ascii_digit())
            .map_or(minor_part, |end| &minor_part[..end]);
        let minor: u32 = digits.parse().ok()?;
        Some(match (major, minor) {
            v if v < (6, 3) => CidEra::NoCid,
            v if v < (6, 13) => CidEra::Legacy,
            v if v < (6, 19) => CidEra::CacheLocal,
            _ => CidEra::PerTask,
        })
    }

    /// The era of the running kernel (`uname`), `None` if the release cannot be read or parsed.
    pub fn running() -> Option<CidEra> {
        kernel_release().as_deref().and_then(CidEra::from_release)
    }

    /// The user-space policy that imitates this era's `mm_cid` (`None` before 6.3).
    pub fn policy(self) -> Option<Policy> {
        match self {
            CidEra::NoCid => None,
            CidEra::Legacy => Some(Policy::Legacy),
            CidEra::CacheLocal => Some(Policy::CacheLocal),
            CidEra::PerTask => Some(Policy::PerTask),
        }
    }

    /// What the `mmcid` index source measures on a kernel of this era, in a few words.
    pub fn mmcid_measures(self) -> &'static str {
        match self {
            CidEra::NoCid => "nothing (no mm_cid before Linux 6.3)",
            CidEra::Legacy => "the legacy mm_cid policy (as user-legacy imitates it)",
            CidEra::CacheLocal => "the cache-local mm_cid policy (as user-local imitates it)",
            CidEra::PerTask => "per-task CID ownership (as user-task imitates it)",
        }
    }
}

impl fmt::Display for CidEra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CidEra::NoCid => "no mm_cid (< 6.3)",
            CidEra::Legacy => "legacy (6.3-6.12)",
            CidEra::CacheLocal => "cache-local (6.13-6.18)",
            CidEra::PerTask => "per-task (6.19+)",
        })
    }
}

/// The running kernel's release (`uname -r`), `None` if `uname` fails.
pub fn kernel_release() -> Option<String> {
    // SAFETY: `utsname` is plain data; all-zero is a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable `utsname`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_from_release_strings() {
        let cases = [
            ("6.18.44-fc-v1252", Some(CidEra::CacheLocal)),
            ("6.19.0-rc1", Some(CidEra::PerTask)),
            ("6.19", Some(CidEra::PerTask)),
            ("6.12.9", Some(CidEra::Legacy)),
            ("6.13.0", Some(CidEra::CacheLocal)),
            ("6.3.0", Some(CidEra::Legacy)),
            ("6.2.16", Some(CidEra::NoCid)),
            ("7.1.0", Some(CidEra::PerTask)),
            ("5.15.0-generic", Some(CidEra::NoCid)),
            ("6.1-rc3", Some(CidEra::NoCid)),
            ("10.0.0", Some(CidEra::PerTask)),
            ("", None),
            ("linux", None),
            ("6", None),
            ("6.x", None),
        ];
        for (release, era) in cases {
            assert_eq!(CidEra::from_release(release), era, "{release:?}");
        }
    }

    #[test]
    fn each_era_names_its_policy() {
        assert_eq!(CidEra::NoCid.policy(), None);
        assert_eq!(CidEra::Legacy.policy(), Some(Policy::Legacy));
        assert_eq!(CidEra::CacheLocal.policy(), Some(Policy::CacheLocal));
        assert_eq!(CidEra::PerTask.policy(), Some(Policy::PerTask));
    }

    #[test]
    fn the_running_kernel_has_an_era() {
        let release = kernel_release().expect("uname works");
        assert_eq!(CidEra::running(), CidEra::from_release(&release));
        assert!(CidEra::running().is_some(), "{release}");
    }
}
