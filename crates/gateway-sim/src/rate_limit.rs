//! The gateway's contract: at most `per_sec` mutating calls a second, with a burst of
//! `per_sec` after a quiet second. GCRA (a token bucket kept as one "theoretical arrival
//! time", in integer time so ten 0.1-token refills make exactly one token). Pure: the caller
//! passes the time.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// 0 = unlimited.
    per_sec: u32,
    /// Time one call uses up: `1s / per_sec`.
    interval: Duration,
    /// How far ahead of now the schedule may run: the burst, `1s - interval`.
    tolerance: Duration,
    /// When the bucket would be full again.
    theoretical_arrival: Instant,
}

impl TokenBucket {
    /// Starts full.
    pub fn new(per_sec: u32, now: Instant) -> Self {
        let interval = Duration::from_secs(1)
            .checked_div(per_sec)
            .unwrap_or(Duration::ZERO);
        Self {
            per_sec,
            interval,
            tolerance: Duration::from_secs(1).saturating_sub(interval),
            theoretical_arrival: now,
        }
    }

    pub fn per_sec(&self) -> u32 {
        self.per_sec
    }

    /// Takes a token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.per_sec == 0 {
            return Ok(());
        }
        let arrival = self.theoretical_arrival.max(now);
        let ahead = arrival.saturating_duration_since(now);
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        self.theoretical_arrival = arrival + self.interval;
        Ok(())
    }
}

/// `Retry-After` is whole seconds: round up, and never 0 (which would invite a hot loop).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(bucket: &mut TokenBucket, now: Instant, calls: usize) -> usize {
        (0..calls).filter(|_| bucket.try_take(now).is_ok()).count()
    }

    #[test]
    fn zero_is_unlimited() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0, now);
        assert_eq!(taken(&mut bucket, now, 100_000), 100_000);
    }

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert_eq!(taken(&mut bucket, start, 50), 10);
        let wait = bucket.try_take(start).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::ZERO,
            "{wait:?}"
        );

        let later = start + Duration::from_millis(100);
        assert_eq!(taken(&mut bucket, later, 50), 1);
        // Over ten seconds of steady load, about ten a second get through.
        let mut passed = 0;
        for ms in (0..10_000).step_by(10) {
            passed += taken(&mut bucket, later + Duration::from_millis(ms), 5);
        }
        assert!((99..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn quiet_time_refills_no_more_than_one_second() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5, start);
        assert_eq!(taken(&mut bucket, start, 5), 5);
        let much_later = start + Duration::from_secs(3_600);
        assert_eq!(taken(&mut bucket, much_later, 100), 5);
    }

    #[test]
    fn time_going_backwards_does_not_mint_tokens() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(2, start);
        assert_eq!(taken(&mut bucket, start, 2), 2);
        assert_eq!(taken(&mut bucket, start - Duration::from_secs(5), 3), 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1_001)), 2);
    }
}
