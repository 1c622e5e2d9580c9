//! The fleet's one wall clock. Processors that decide by time (a saga's step timeout, a
//! ledger's hold expiry, a payment's backoff) read it through a [`Clock`] they are given, so a
//! test can hand them a [`ManualClock`] and move time itself instead of sleeping. The drivers
//! and every tool use [`Clock::system`] (or [`now_ms`], the same thing without a value).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch: the system clock, or a manual one a test moves.
/// Cheap to clone; clones of a manual clock share its time.
#[derive(Debug, Clone, Default)]
pub struct Clock(Source);

#[derive(Debug, Clone, Default)]
enum Source {
    #[default]
    System,
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// The wall clock (what the real drivers pass).
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => now_ms(),
            Source::Manual(at) => at.load(Ordering::SeqCst),
        }
    }
}

/// A clock that stands still until it is moved: the handle a test keeps while the processor
/// under test holds [`ManualClock::clock`].
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn starting_at(start_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start_ms)))
    }

    /// A [`Clock`] that reads this one's time.
    pub fn clock(&self) -> Clock {
        Clock(Source::Manual(self.0.clone()))
    }

    pub fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves time forward by `ms` (a negative `ms` moves nothing: time does not go back).
    pub fn advance(&self, ms: i64) -> i64 {
        self.0.fetch_add(ms.max(0), Ordering::SeqCst) + ms.max(0)
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_its_clones_follow() {
        let manual = ManualClock::starting_at(1_000);
        let clock = manual.clock();
        let copy = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        assert_eq!(manual.advance(250), 1_250);
        assert_eq!(copy.now_ms(), 1_250);
        assert_eq!(manual.advance(-5), 1_250, "time does not go back");
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = now_ms();
        let read = Clock::system().now_ms();
        let by_default = Clock::default().now_ms();
        assert!(before <= read && read <= by_default && by_default <= now_ms());
        assert!(read > 1_700_000_000_000, "after 2023: {read}");
    }
}
