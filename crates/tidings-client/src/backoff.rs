//! The reconnect and retry schedule, kept pure (no clock, no randomness of its own) so it can
//! be tested exactly and driven by paused tokio time.
//!
//! The n-th consecutive failure waits a random time in `(base/2, base]`, where
//! `base = initial · 2ⁿ` capped at `max` ("equal jitter": spreads a reconnect storm over half
//! the interval while never waiting longer than the documented cap). A success resets `n`.

use std::time::Duration;

/// An exponential backoff schedule with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Consecutive failures since the last success.
    failures: u32,
}

impl Backoff {
    /// A schedule starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial: initial.min(max),
            max,
            failures: 0,
        }
    }

    /// The schedule every subscription starts with: 1 s doubling to 32 s.
    pub fn reconnect() -> Backoff {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(32))
    }

    /// Replaces the initial delay, as a server's SSE `retry:` hint asks (capped at `max`).
    pub fn set_initial(&mut self, initial: Duration) {
        self.initial = initial.min(self.max);
    }

    /// The delay before the next attempt, given a uniform random `jitter` in `[0, 1)`; counts
    /// one more failure.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = self.base();
        self.failures = self.failures.saturating_add(1);
        let jitter = jitter.clamp(0.0, 1.0);
        // (base/2, base]: jitter 0 gives the full base, jitter → 1 approaches half of it.
        base.mul_f64(1.0 - jitter / 2.0)
    }

    /// The un-jittered delay the next failure would wait.
    pub fn base(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Consecutive failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A success: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A uniform random number in `[0, 1)` from the operating system, for jitter. Falls back to
/// no jitter (0) in the unlikely case the OS has no randomness to give.
pub(crate) fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
