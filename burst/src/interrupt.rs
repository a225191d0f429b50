//! Stopping a run on SIGINT or SIGTERM: an [`Interrupt`] that the run checks between runs
//! and that wakes the long sleeps of a real run at once.
//!
//! The signal handlers themselves (installed by [`Interrupt::install`], through `signal-hook`)
//! only write to a pipe; a watcher thread reads it and calls [`Interrupt::trigger`], which
//! records the signal and wakes every sleeper through a condition variable. Sleepers wait on
//! that condition variable with a timeout, so an uninterrupted sleep is one timed wait, as
//! `std::thread::sleep` is (no periodic wake-ups that would disturb the benchmark's idle
//! CPUs). A second signal while the first is being handled exits at once.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// SIGINT.
pub const SIGINT: i32 = signal_hook::consts::SIGINT;
/// SIGTERM.
pub const SIGTERM: i32 = signal_hook::consts::SIGTERM;

/// A stop request shared by the run loop and the benchmark threads.
#[derive(Debug, Default)]
pub struct Interrupt {
    signal: AtomicI32,
    lock: Mutex<()>,
    wake: Condvar,
}

/// The name of a signal, for messages.
pub fn signal_name(signal: i32) -> String {
    match signal {
        SIGINT => "SIGINT".to_string(),
        SIGTERM => "SIGTERM".to_string(),
        other => format!("signal {other}"),
    }
}

/// The exit status of a command stopped by `signal`: 128 + the signal number (130 for
/// SIGINT, 143 for SIGTERM), as a shell reports a process killed by it.
pub fn exit_status(signal: i32) -> i32 {
    128 + signal
}

impl Interrupt {
    /// No stop requested.
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Requests a stop because of `signal` (the first request wins) and wakes every sleeper.
    pub fn trigger(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
        // Taking the lock orders this with a sleeper between its check and its wait.
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.wake.notify_all();
    }

    /// The signal that requested a stop, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }

    /// Sleeps until `deadline` (returns at once if it passed), or until a stop is requested:
    /// then `Err(signal)`.
    pub fn sleep_until(&self, deadline: Instant) -> Result<(), i32> {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = self.signal() {
                return Err(s);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            guard = self
                .wake
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sleeps for `duration`, or until a stop is requested: then `Err(signal)`.
    pub fn sleep(&self, duration: Duration) -> Result<(), i32> {
        self.sleep_until(Instant::now() + duration)
    }

    /// Installs handlers for SIGINT and SIGTERM that trigger this interrupt. A second signal
    /// exits the process at once with 128 + its number.
    pub fn install(self: &Arc<Self>) -> std::io::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("burst-signals".to_string())
            .spawn(move || {
                for signal in signals.forever() {
                    if me.signal().is_some() {
                        crate::say(&format!(
                            "burst: second signal ({}), exiting now",
                            signal_name(signal)
                        ));
                        std::process::exit(exit_status(signal));
                    }
                    me.trigger(signal);
                }
            })?;
        Ok(())
    }
}
