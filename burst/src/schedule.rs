//! The schedule of one run: the random start order and the staggering arithmetic shared by
//! the real harness and the simulator.

use std::time::Duration;

/// SplitMix64: a small, fast, well-mixed generator (Steele, Lea and Flood, 2014), enough for
/// shuffling. Deterministic for a seed on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n` (`n > 0`), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// A uniformly random permutation of `0..n` (Fisher-Yates), deterministic for `seed`.
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// The seed of run `run` (0-based) for a base seed. Every index source of a (configuration,
/// delay) cell uses the same seed per run, so they are compared on the same start orders.
pub fn run_seed(seed: u64, run: usize) -> u64 {
    SplitMix64::new(seed ^ (run as u64).wrapping_mul(0xd1b5_4a32_d192_ed03)).next_u64()
}

/// The plan of one run with `threads` threads: thread `t` (the `t`-th CPU of the
/// configuration) starts at place `place[t]` of a random permutation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `order[k]` is the thread that goes `k`-th.
    pub order: Vec<usize>,
    /// `place[t]` is the place of thread `t` (the inverse of `order`).
    pub place: Vec<usize>,
    /// The delay of the run.
    pub delay: Duration,
}

impl Plan {
    /// The plan for `threads` threads, `delay`, and `seed` (the run's seed, see [`run_seed`]).
    pub fn new(threads: usize, delay: Duration, seed: u64) -> Plan {
        let order = permutation(threads, seed);
        let mut place = vec![0; threads];
        for (k, &t) in order.iter().enumerate() {
            place[t] = k;
        }
        Plan {
            order,
            place,
            delay,
        }
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.order.len()
    }

    /// How long thread `t` waits after the common start before its warm-up: `delay * k`.
    pub fn start_offset(&self, thread: usize) -> Duration {
        self.delay * self.place[thread] as u32
    }

    /// How long every thread sleeps after each timed pass: `delay * threads`.
    pub fn sleep_between(&self) -> Duration {
        self.delay * self.threads() as u32
    }

    /// When timed pass `pass` of thread `t` would start, measured from the common start, if the
    /// warm-up took `warmup` and each timed pass `pass_time` (and sleeps were exact):
    /// `delay * k + warmup + pass * (pass_time + delay * threads)`. Consecutive places are
    /// `delay` apart, and a thread's next pass comes after all the others had theirs.
    pub fn nominal_timed_start(
        &self,
        thread: usize,
        pass: usize,
        warmup: Duration,
        pass_time: Duration,
    ) -> Duration {
        self.start_offset(thread) + warmup + (pass_time + self.sleep_between()) * pass as u32
    }

    /// Expected wall time of a real run: the last thread starts at `delay * (threads - 1)`,
    /// then warms up and does `passes` timed passes, each followed by `delay * threads`.
    pub fn expected_duration(&self, passes: usize, warmup: Duration) -> Duration {
        self.delay * (self.threads().saturating_sub(1)) as u32
            + warmup
            + self.sleep_between() * passes as u32
    }
}
