//! [`CpuSet`]: a growable set of CPU numbers, and the Linux CPU-list syntax (`0-3,8,10-11`).

use std::fmt;
use std::str::FromStr;

/// Bits per bitmap word.
const WORD: usize = 64;

/// A set of CPU numbers, stored as a bitmap of `u64` words that grows on demand.
///
/// There is no fixed size (no 1024-CPU limit as in libc's `cpu_set_t`): inserting CPU `n`
/// makes room for it. Two sets are equal when they hold the same CPUs, whatever their
/// allocated lengths. Iteration is in increasing CPU order.
///
/// The text form, used by [`Display`](fmt::Display), [`FromStr`] and (feature `serde`) serde,
/// is the Linux CPU-list syntax of `/sys/devices/system/cpu/online` and friends: comma-separated
/// CPU numbers or inclusive ranges, `0-3,8,10-11`; the empty set is the empty string.
#[derive(Clone, Default)]
pub struct CpuSet {
    /// Bit `n % 64` of word `n / 64` is set when CPU `n` is in the set. Trailing words may be
    /// zero; comparisons ignore them.
    words: Vec<u64>,
}

/// Why a CPU list did not parse (see [`CpuSet::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSetError {
    /// A comma-separated part was empty (`0,,2`, a leading or trailing comma, or `-`).
    EmptyPart {
        /// Index (0-based) of the empty part among the comma-separated parts.
        index: usize,
    },
    /// A part is not a CPU number or a range of two.
    Garbage {
        /// The offending part, trimmed.
        part: String,
    },
    /// A range whose end is below its start (`5-3`).
    ReversedRange {
        /// First number of the range.
        start: usize,
        /// Second number of the range.
        end: usize,
    },
    /// A CPU number above [`CpuSet::MAX_CPU`] (or too large to represent at all).
    Overflow {
        /// The offending number as written.
        number: String,
    },
}

impl fmt::Display for CpuSetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuSetError::EmptyPart { index } => {
                write!(f, "empty part #{index} in CPU list (stray comma or dash?)")
            }
            CpuSetError::Garbage { part } => write!(
                f,
                "'{part}' is not a CPU number or range (expected e.g. '0-3,8,10-11')"
            ),
            CpuSetError::ReversedRange { start, end } => {
                write!(f, "reversed range '{start}-{end}' in CPU list")
            }
            CpuSetError::Overflow { number } => write!(
                f,
                "CPU number '{number}' is too large (the limit is {})",
                CpuSet::MAX_CPU
            ),
        }
    }
}

impl std::error::Error for CpuSetError {}

impl CpuSet {
    /// Highest CPU number a set accepts from text: 2^22 - 1 (Linux's `NR_CPUS` is at most 8192
    /// today). It bounds the memory a hostile list such as `0-4000000000` could ask for;
    /// [`insert`](Self::insert) itself has no limit.
    pub const MAX_CPU: usize = (1 << 22) - 1;

    /// The empty set.
    pub const fn new() -> Self {
        CpuSet { words: Vec::new() }
    }

    /// The empty set with room for CPUs `0..cpus` without reallocating (size it with the
    /// number of possible CPUs, [`Topology::possible`](super::Topology::possible)).
    pub fn with_capacity(cpus: usize) -> Self {
        CpuSet {
            words: Vec::with_capacity(cpus.div_ceil(WORD)),
        }
    }

    /// The set `{0, 1, ..., n - 1}`.
    pub fn first_n(n: usize) -> Self {
        (0..n).collect()
    }

    /// Parses a Linux CPU list (`0-3,8,10-11`). Surrounding whitespace (such as the newline
    /// of a sysfs file) is ignored, and so is whitespace around each part; an empty or
    /// all-blank string is the empty set (as in `/sys/devices/system/cpu/offline`). Overlapping
    /// parts are accepted, as the kernel accepts them.
    pub fn parse(text: &str) -> Result<Self, CpuSetError> {
        let text = text.trim();
        let mut set = CpuSet::new();
        if text.is_empty() {
            return Ok(set);
        }
        for (index, part) in text.split(',').enumerate() {
            let part = part.trim();
            if part.is_empty() {
                return Err(CpuSetError::EmptyPart { index });
            }
            let (start, end) = match part.split_once('-') {
                None => {
                    let n = parse_number(part, part)?;
                    (n, n)
                }
                Some((a, b)) => {
                    let (a, b) = (a.trim(), b.trim());
                    if a.is_empty() && b.is_empty() {
                        return Err(CpuSetError::EmptyPart { index });
                    }
                    (parse_number(a, part)?, parse_number(b, part)?)
                }
            };
            if end < start {
                return Err(CpuSetError::ReversedRange { start, end });
            }
            set.insert_range(start, end);
        }
        Ok(set)
    }

    /// Inserts every CPU of `start..=end`.
    fn insert_range(&mut self, start: usize, end: usize) {
        self.grow_for(end);
        for cpu in start..=end {
            self.words[cpu / WORD] |= 1 << (cpu % WORD);
        }
    }

    /// Makes sure the bitmap has a word for `cpu`.
    fn grow_for(&mut self, cpu: usize) {
        let need = cpu / WORD + 1;
        if self.words.len() < need {
            self.words.resize(need, 0);
        }
    }

    /// Adds `cpu`; returns whether it was absent.
    pub fn insert(&mut self, cpu: usize) -> bool {
        self.grow_for(cpu);
        let (w, b) = (cpu / WORD, 1u64 << (cpu % WORD));
        let absent = self.words[w] & b == 0;
        self.words[w] |= b;
        absent
    }

    /// Removes `cpu`; returns whether it was present.
    pub fn remove(&mut self, cpu: usize) -> bool {
        let present = self.contains(cpu);
        if present {
            self.words[cpu / WORD] &= !(1u64 << (cpu % WORD));
        }
        present
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        self.words
            .get(cpu / WORD)
            .is_some_and(|w| w & (1 << (cpu % WORD)) != 0)
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The lowest CPU of the set.
    pub fn first(&self) -> Option<usize> {
        self.words
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * WORD + w.trailing_zeros() as usize)
    }

    /// The highest CPU of the set.
    pub fn last(&self) -> Option<usize> {
        self.words
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * WORD + (WORD - 1 - w.leading_zeros() as usize))
    }

    /// The CPUs in increasing order.
    pub fn iter(&self) -> CpuSetIter<'_> {
        CpuSetIter {
            words: &self.words,
            index: 0,
            current: self.words.first().copied().unwrap_or(0),
        }
    }

    /// CPUs in either set.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        let (long, short) = if self.words.len() >= other.words.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut words = long.words.clone();
        for (w, s) in words.iter_mut().zip(&short.words) {
            *w |= s;
        }
        CpuSet { words }
    }

    /// CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet {
            words: self
                .words
                .iter()
                .zip(&other.words)
                .map(|(a, b)| a & b)
                .collect(),
        }
    }

    /// CPUs in `self` but not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        let mut words = self.words.clone();
        for (w, o) in words.iter_mut().zip(&other.words) {
            *w &= !o;
        }
        CpuSet { words }
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(i, w)| w & !other.words.get(i).copied().unwrap_or(0) == 0)
    }

    /// Whether the two sets share a CPU.
    pub fn intersects(&self, other: &CpuSet) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }

    /// The set as a kernel CPU mask: `unsigned long` words, bit `n % BITS` of word `n / BITS`
    /// for CPU `n`, at least `min_words` long. This is the layout `sched_setaffinity(2)`
    /// expects, whatever the width of `unsigned long`.
    pub(crate) fn to_kernel_mask(&self, min_words: usize) -> Vec<libc::c_ulong> {
        let bits = libc::c_ulong::BITS as usize;
        let need = self.last().map_or(0, |l| l / bits + 1).max(min_words);
        let mut mask: Vec<libc::c_ulong> = vec![0; need];
        for cpu in self {
            mask[cpu / bits] |= 1 << (cpu % bits);
        }
        mask
    }

    /// The inverse of [`to_kernel_mask`](Self::to_kernel_mask).
    pub(crate) fn from_kernel_mask(mask: &[libc::c_ulong]) -> CpuSet {
        let bits = libc::c_ulong::BITS as usize;
        let mut set = CpuSet::with_capacity(mask.len() * bits);
        for (i, &w) in mask.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let b = w.trailing_zeros() as usize;
                set.insert(i * bits + b);
                w &= w - 1;
            }
        }
        set
    }
}

/// Parses one CPU number of a list; `part` is the whole comma-separated part, for messages.
fn parse_number(text: &str, part: &str) -> Result<usize, CpuSetError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CpuSetError::Garbage {
            part: part.to_string(),
        });
    }
    match text.parse::<usize>() {
        Ok(n) if n <= CpuSet::MAX_CPU => Ok(n),
        _ => Err(CpuSetError::Overflow {
            number: text.to_string(),
        }),
    }
}

impl PartialEq for CpuSet {
    fn eq(&self, other: &CpuSet) -> bool {
        let n = self.words.len().max(other.words.len());
        (0..n).all(|i| {
            self.words.get(i).copied().unwrap_or(0) == other.words.get(i).copied().unwrap_or(0)
        })
    }
}

impl Eq for CpuSet {}

impl std::hash::Hash for CpuSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let used = self
            .words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |p| p + 1);
        self.words[..used].hash(state);
    }
}

impl FromStr for CpuSet {
    type Err = CpuSetError;
    fn from_str(s: &str) -> Result<Self, CpuSetError> {
        CpuSet::parse(s)
    }
}

impl fmt::Display for CpuSet {
    /// Linux list syntax, ranges merged: `0-3,8,10-11`. The empty set prints as nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut it = self.iter().peekable();
        let mut first = true;
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

impl FromIterator<usize> for CpuSet {
    fn from_iter<I: IntoIterator<Item = usize>>(iter: I) -> Self {
        let mut set = CpuSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<usize> for CpuSet {
    fn extend<I: IntoIterator<Item = usize>>(&mut self, iter: I) {
        for cpu in iter {
            self.insert(cpu);
        }
    }
}

impl<'a> IntoIterator for &'a CpuSet {
    type Item = usize;
    type IntoIter = CpuSetIter<'a>;
    fn into_iter(self) -> CpuSetIter<'a> {
        self.iter()
    }
}

/// Iterator over the CPUs of a [`CpuSet`], in increasing order.
#[derive(Clone, Debug)]
pub struct CpuSetIter<'a> {
    words: &'a [u64],
    /// Index of the word `current` came from.
    index: usize,
    /// Bits of `words[index]` not yet returned.
    current: u64,
}

impl Iterator for CpuSetIter<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.current != 0 {
                let b = self.current.trailing_zeros() as usize;
                self.current &= self.current - 1;
                return Some(self.index * WORD + b);
            }
            self.index += 1;
            self.current = *self.words.get(self.index)?;
        }
    }
}

/// The list syntax as a string (feature `serde`).
#[cfg(feature = "serde")]
impl serde::Serialize for CpuSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// From the list syntax (feature `serde`).
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for CpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        CpuSet::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cpus: &[usize]) -> CpuSet {
        cpus.iter().copied().collect()
    }

    #[test]
    fn parses_and_prints_lists() {
        let s = CpuSet::parse("0-3,8,10-11\n").unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(s.to_string(), "0-3,8,10-11");
        assert_eq!(CpuSet::parse(" 5 , 1-2 ").unwrap().to_string(), "1-2,5");
        assert_eq!(CpuSet::parse("0-3,2-5").unwrap().to_string(), "0-5");
        assert_eq!(CpuSet::parse("7-7").unwrap().to_string(), "7");
        assert!(CpuSet::parse("").unwrap().is_empty());
        assert!(CpuSet::parse("\n").unwrap().is_empty());
        assert_eq!(CpuSet::new().to_string(), "");
    }

    #[test]
    fn rejects_bad_lists() {
        use CpuSetError::*;
        assert_eq!(
            CpuSet::parse("5-3"),
            Err(ReversedRange { start: 5, end: 3 })
        );
        assert_eq!(CpuSet::parse("0,,2"), Err(EmptyPart { index: 1 }));
        assert_eq!(CpuSet::parse(",1"), Err(EmptyPart { index: 0 }));
        assert_eq!(CpuSet::parse("1,"), Err(EmptyPart { index: 1 }));
        assert_eq!(CpuSet::parse("-"), Err(EmptyPart { index: 0 }));
        assert!(matches!(CpuSet::parse("abc"), Err(Garbage { .. })));
        assert!(matches!(CpuSet::parse("1-"), Err(Garbage { .. })));
        assert!(matches!(CpuSet::parse("-1"), Err(Garbage { .. })));
        assert!(matches!(CpuSet::parse("1-2-3"), Err(Garbage { .. })));
        assert!(matches!(CpuSet::parse("+1"), Err(Garbage { .. })));
        assert!(matches!(CpuSet::parse("0x10"), Err(Garbage { .. })));
        assert!(matches!(CpuSet::parse("0-7:2"), Err(Garbage { .. })));
        assert!(matches!(
            CpuSet::parse("0-99999999999999999999999"),
            Err(Overflow { .. })
        ));
        assert!(matches!(CpuSet::parse("0-4194304"), Err(Overflow { .. })));
        assert!(CpuSet::parse("4194303").is_ok());
        // Every error has a message.
        assert!(!CpuSet::parse("5-3").unwrap_err().to_string().is_empty());
    }

    #[test]
    fn set_operations() {
        let mut s = CpuSet::new();
        assert!(s.is_empty() && s.first().is_none() && s.last().is_none());
        assert!(s.insert(2000));
        assert!(!s.insert(2000));
        assert!(s.insert(3));
        assert_eq!(s.len(), 2);
        assert_eq!(s.first(), Some(3));
        assert_eq!(s.last(), Some(2000));
        assert!(s.contains(2000) && !s.contains(1999) && !s.contains(1 << 40));
        assert!(s.remove(2000));
        assert!(!s.remove(2000));
        // Trailing zero words do not matter for equality or hashing.
        assert_eq!(s, set(&[3]));
        let a = set(&[0, 1, 2, 64, 130]);
        let b = set(&[1, 64, 200]);
        assert_eq!(a.union(&b), set(&[0, 1, 2, 64, 130, 200]));
        assert_eq!(b.union(&a), set(&[0, 1, 2, 64, 130, 200]));
        assert_eq!(a.intersection(&b), set(&[1, 64]));
        assert_eq!(a.difference(&b), set(&[0, 2, 130]));
        assert!(set(&[1, 64]).is_subset(&a) && !b.is_subset(&a));
        assert!(a.intersects(&b) && !a.intersects(&set(&[3])));
        assert_eq!(CpuSet::first_n(3), set(&[0, 1, 2]));
    }

    #[test]
    fn kernel_mask_round_trip() {
        let s = CpuSet::parse("0,5,63-65,1500").unwrap();
        let mask = s.to_kernel_mask(4);
        assert!(mask.len() >= 4);
        assert_eq!(CpuSet::from_kernel_mask(&mask), s);
        assert_eq!(CpuSet::new().to_kernel_mask(2), vec![0, 0]);
    }
}
