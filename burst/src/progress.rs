//! Progress on stderr: runs done out of the total, elapsed time and time left.
//!
//! * stderr is a terminal: an `indicatif` bar; real runs also print one line per completed
//!   run above it.
//! * stderr is not a terminal (a log file): no bar; a plain line per completed real run, and
//!   for simulations one line at most every 5 seconds.
//! * `--quiet`: nothing.
//!
//! The time left is the estimate of the runs not yet done (see [`crate::estimate_run`]),
//! scaled by how long the completed runs took against their own estimate.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::output::say;

#[derive(Debug)]
struct Clock {
    started: Instant,
    /// When the latest run completed.
    last: Instant,
    /// Estimated milliseconds of the runs done, and their actual duration.
    done_estimate_ms: u64,
    done_actual: Duration,
    total_estimate_ms: u64,
}

impl Clock {
    fn left(&self, now: Instant) -> Duration {
        let remaining = self.total_estimate_ms.saturating_sub(self.done_estimate_ms) as f64;
        let rate = if self.done_estimate_ms > 0 {
            self.done_actual.as_secs_f64() * 1e3 / self.done_estimate_ms as f64
        } else {
            1.0
        };
        let into_current = now.saturating_duration_since(self.last).as_secs_f64() * 1e3;
        Duration::from_millis((remaining * rate - into_current).max(0.0) as u64)
    }
}

enum Display {
    Quiet,
    Lines { last_line: Instant },
    Bar(ProgressBar),
}

/// Progress of one benchmark invocation.
pub struct Progress {
    display: Display,
    clock: Arc<Mutex<Clock>>,
    simulated: bool,
    runs_done: usize,
    runs_total: usize,
}

/// `1h 02m`, `3m 05s`, `12s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    /// Progress for `runs_total` runs whose estimates add up to `estimate`.
    pub fn new(quiet: bool, simulated: bool, runs_total: usize, estimate: Duration) -> Progress {
        let now = Instant::now();
        let clock = Arc::new(Mutex::new(Clock {
            started: now,
            last: now,
            done_estimate_ms: 0,
            done_actual: Duration::ZERO,
            total_estimate_ms: estimate.as_millis().max(1) as u64,
        }));
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let c = Arc::clone(&clock);
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{bar:32.cyan/blue}] {msg} | {left} left",
            )
            .expect("a valid template")
            .with_key(
                "left",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let left = c.lock().map(|c| c.left(Instant::now())).unwrap_or_default();
                    let _ = write!(w, "~{}", fmt_duration(left));
                },
            )
            .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(
                Some(runs_total as u64),
                ProgressDrawTarget::stderr(),
            )
            .with_style(style);
            bar.set_message(format!("0/{runs_total} runs"));
            bar.enable_steady_tick(Duration::from_millis(250));
            Display::Bar(bar)
        } else {
            Display::Lines { last_line: now }
        };
        Progress {
            display,
            clock,
            simulated,
            runs_done: 0,
            runs_total,
        }
    }

    /// Prints a message without breaking the bar (nothing under `--quiet`).
    pub fn note(&self, line: &str) {
        match &self.display {
            Display::Quiet => {}
            Display::Lines { .. } => say(line),
            Display::Bar(bar) => bar.suspend(|| say(line)),
        }
    }

    /// A run is starting: `label` names it.
    pub fn start(&mut self, label: &str) {
        if let Display::Bar(bar) = &self.display {
            bar.set_message(format!(
                "{}/{} runs | {label}",
                self.runs_done, self.runs_total
            ));
        }
    }

    /// A run is done: it was estimated at `estimate`; `line` describes its result.
    pub fn done(&mut self, estimate: Duration, line: &str) {
        self.runs_done += 1;
        let now = Instant::now();
        let (elapsed, left) = {
            let mut c = self.clock.lock().unwrap_or_else(|e| e.into_inner());
            c.done_estimate_ms += estimate.as_millis().max(1) as u64;
            c.done_actual = now - c.started;
            c.last = now;
            (now - c.started, c.left(now))
        };
        let text = format!(
            "burst: [{:>8}] {}/{} {line}, ~{} left",
            fmt_duration(elapsed),
            self.runs_done,
            self.runs_total,
            fmt_duration(left)
        );
        match &mut self.display {
            Display::Quiet => {}
            Display::Lines { last_line } => {
                if !self.simulated
                    || self.runs_done == self.runs_total
                    || now.duration_since(*last_line) >= Duration::from_secs(5)
                {
                    say(&text);
                    *last_line = now;
                }
            }
            Display::Bar(bar) => {
                if !self.simulated {
                    bar.println(crate::output::terminal_safe(&text));
                }
                bar.set_position(self.runs_done as u64);
                bar.set_message(format!("{}/{} runs", self.runs_done, self.runs_total));
            }
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
