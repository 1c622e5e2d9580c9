//! A circuit breaker around the gateway. Pure: the caller passes the time.
//!
//! Closed: calls go through; the last `window` outcomes are kept. When at least `min_calls`
//! are recorded and the failure ratio reaches `failure_ratio`, it opens. Open: calls are
//! refused (the command is deferred to the retry topic instead of piling up timeouts) until
//! `open_ms` passed; then half-open: one probe at a time goes through. A successful probe
//! closes it (with a fresh window); a failed one opens it again.
//!
//! Single writer: the processor holds it in one mutex; the lock is never held across a call.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed,
    Open { until_ms: i64 },
    HalfOpen { probing: bool },
}

impl State {
    /// 0 closed, 1 open, 2 half-open (the metric's encoding).
    pub fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Breaker {
    window: usize,
    min_calls: usize,
    failure_ratio: f64,
    open_ms: i64,
    state: State,
    /// Recent outcomes, true = failure.
    outcomes: VecDeque<bool>,
    failures: usize,
}

impl Breaker {
    pub fn new(window: usize, min_calls: usize, failure_ratio: f64, open_ms: i64) -> Self {
        Self {
            window: window.max(1),
            min_calls: min_calls.clamp(1, window.max(1)),
            failure_ratio,
            open_ms,
            state: State::Closed,
            outcomes: VecDeque::new(),
            failures: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// May a call go out now? In half-open, a `true` makes this caller the probe.
    pub fn allow(&mut self, now_ms: i64) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until_ms } if now_ms >= until_ms => {
                self.state = State::HalfOpen { probing: true };
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: true } => false,
        }
    }

    /// The outcome of a call that `allow` let through. Failures are the gateway's (timeouts,
    /// 5xx, refused connections), never declines or conflicts: those are answers.
    pub fn record(&mut self, failed: bool, now_ms: i64) {
        match self.state {
            State::HalfOpen { .. } if failed => self.trip(now_ms),
            State::HalfOpen { .. } => {
                self.state = State::Closed;
                self.outcomes.clear();
                self.failures = 0;
            }
            // A call let through before it opened: its outcome changes nothing.
            State::Open { .. } => {}
            State::Closed => {
                self.outcomes.push_back(failed);
                self.failures += usize::from(failed);
                if self.outcomes.len() > self.window {
                    let old = self.outcomes.pop_front().unwrap_or(false);
                    self.failures -= usize::from(old);
                }
                let calls = self.outcomes.len();
                if calls >= self.min_calls
                    && self.failures as f64 >= self.failure_ratio * calls as f64
                {
                    self.trip(now_ms);
                }
            }
        }
    }

    fn trip(&mut self, now_ms: i64) {
        self.state = State::Open {
            until_ms: now_ms + self.open_ms,
        };
        self.outcomes.clear();
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(10, 5, 0.5, 1_000)
    }

    #[test]
    fn stays_closed_under_the_failure_ratio() {
        let mut b = breaker();
        for i in 0..100 {
            assert!(b.allow(i));
            // 20% failures, spread out: under 50% in every window.
            b.record(i % 5 == 0, i);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn opens_at_the_ratio_refuses_then_probes_once() {
        let mut b = breaker();
        for i in 0..5 {
            assert!(b.allow(i));
            b.record(true, i);
        }
        assert_eq!(b.state(), State::Open { until_ms: 1_004 });
        assert!(!b.allow(500));
        assert!(b.allow(1_004), "the first call after open_ms is the probe");
        assert!(!b.allow(1_005), "one probe at a time");
        b.record(false, 1_010);
        assert_eq!(b.state(), State::Closed);
        assert!(b.allow(1_011));
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let mut b = breaker();
        for i in 0..5 {
            b.allow(i);
            b.record(true, i);
        }
        assert!(b.allow(2_000));
        b.record(true, 2_000);
        assert_eq!(b.state(), State::Open { until_ms: 3_000 });
    }

    #[test]
    fn needs_min_calls_before_judging() {
        let mut b = breaker();
        for i in 0..4 {
            b.allow(i);
            b.record(true, i);
        }
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn old_failures_leave_the_window() {
        // Judged only over a full window of ten.
        let mut b = Breaker::new(10, 10, 0.5, 1_000);
        for i in 0..4 {
            b.record(true, i);
        }
        for i in 4..14 {
            b.record(false, i);
        }
        // The first four failures have left the window: four new ones make 40%, not 80%.
        for i in 14..18 {
            b.record(true, i);
        }
        assert_eq!(b.state(), State::Closed);
        b.record(true, 18);
        assert_eq!(b.state(), State::Open { until_ms: 1_018 });
    }
}
