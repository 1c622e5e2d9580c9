//! The status rules, pure: a window of one partition's samples in, a status and the reason
//! out. In the spirit of Burrow's consumer evaluation, judged on the last `window` samples
//! (the sampler's interval apart), first matching rule wins:
//!
//! 1. **OK, caught up**: the latest lag is 0. An idle partition (no new records, group at
//!    the end) is OK forever, whoever consumes it: nothing is waiting.
//! 2. **STOPPED**: lag now, and nobody consumes: the group has no member (as the broker
//!    describes it), or, when membership cannot be read, no instance of the processor
//!    answers `/health`.
//! 3. **OK, recovering**: the lag was 0 at some sample of the window (it just appeared).
//! 4. **OK, not enough samples**: fewer than `window` samples; a single sample (`fleet
//!    status` without a monitor) can only say "lag, consumers present".
//! 5. **STALLED**: lag at every sample and the committed offset identical at every sample
//!    (including "never committed"): somebody is in the group but nothing is committed.
//! 6. **WARN**: the committed offset advanced, but the lag never fell from one sample to the
//!    next and ended higher than it started: consuming slower than records arrive. Unless
//!    the oldest unconsumed record is younger than one sampling interval
//!    ([`Rules::keeping_up_ms`]): a consumer that close to real time is keeping up, and a
//!    few records more at each sample is its commit cadence, not a trend.
//! 7. **OK, consuming**: otherwise (committing, lag steady or falling).
//!
//! A group's status is its worst partition's ([`worst`]), severity OK < UNKNOWN < WARN <
//! STALLED < STOPPED; UNKNOWN (topic missing, broker unreachable) is decided by the sampler,
//! which has no samples to give these rules then.

use crate::model::Status;

/// One partition at one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub at_ms: i64,
    /// The group's committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// Records between the committed offset (or the low watermark) and the high watermark.
    pub lag: i64,
    /// Age of the oldest unconsumed record (ms); `None` when it could not be read.
    pub time_lag_ms: Option<i64>,
}

/// The rules' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Samples judged (at least 2).
    pub window: usize,
    /// A partition whose oldest unconsumed record is younger than this is keeping up: never
    /// WARN. The sampling interval.
    pub keeping_up_ms: i64,
}

/// Whether anybody consumes the group right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumers {
    /// The broker lists this many members (or, membership unknown, this many instances
    /// answer `/health`); at least one.
    Present(u32),
    /// Nobody: no member, or no instance up.
    Absent,
    /// Neither membership nor instance health could be read.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub status: Status,
    pub reason: String,
}

impl Verdict {
    fn new(status: Status, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// Judges one partition on `samples` (oldest first; only the last `rules.window` count).
pub fn evaluate(samples: &[Observation], consumers: Consumers, rules: Rules) -> Verdict {
    let window = rules.window.max(2);
    let samples = &samples[samples.len().saturating_sub(window)..];
    let Some(last) = samples.last() else {
        return Verdict::new(Status::Unknown, "no sample yet");
    };
    if last.lag == 0 {
        return Verdict::new(Status::Ok, "caught up");
    }
    if consumers == Consumers::Absent {
        return Verdict::new(
            Status::Stopped,
            format!("lag {} and nobody consumes the group", last.lag),
        );
    }
    if samples.iter().any(|s| s.lag == 0) {
        return Verdict::new(
            Status::Ok,
            format!("lag {} appeared within the window", last.lag),
        );
    }
    if samples.len() < window {
        return Verdict::new(
            Status::Ok,
            format!(
                "lag {}; {}/{window} samples, too few to judge a trend",
                last.lag,
                samples.len()
            ),
        );
    }
    let first = samples[0];
    let span_s = (last.at_ms - first.at_ms) as f64 / 1000.0;
    if samples.iter().all(|s| s.committed == first.committed) {
        let at = match first.committed {
            Some(offset) => format!("committed offset {offset}"),
            None => "no committed offset".to_string(),
        };
        return Verdict::new(
            Status::Stalled,
            format!(
                "{at} unchanged for {span_s:.1}s with lag {} (consumers present, not committing)",
                last.lag
            ),
        );
    }
    let never_fell = samples.windows(2).all(|pair| pair[1].lag >= pair[0].lag);
    let keeping_up = last.time_lag_ms.is_some_and(|t| t < rules.keeping_up_ms);
    if never_fell && last.lag > first.lag && !keeping_up {
        return Verdict::new(
            Status::Warn,
            format!(
                "lag grew from {} to {} over {span_s:.1}s while committing",
                first.lag, last.lag
            ),
        );
    }
    Verdict::new(
        Status::Ok,
        format!("consuming; lag {} (was {})", last.lag, first.lag),
    )
}

/// The group's verdict: its worst partition's, the reason prefixed with where it is. A group
/// with no partition at all is UNKNOWN.
pub fn worst<'a>(partitions: impl IntoIterator<Item = (String, &'a Verdict)>) -> Verdict {
    let mut worst: Option<(String, &Verdict)> = None;
    let mut count = 0usize;
    let mut at_worst = 0usize;
    for (name, verdict) in partitions {
        count += 1;
        match &worst {
            Some((_, w)) if w.status > verdict.status => {}
            Some((_, w)) if w.status == verdict.status => at_worst += 1,
            _ => {
                worst = Some((name, verdict));
                at_worst = 1;
            }
        }
    }
    match worst {
        None => Verdict::new(Status::Unknown, "no partition to watch"),
        Some((_, w)) if w.status == Status::Ok => {
            Verdict::new(Status::Ok, format!("{count} partition(s) OK"))
        }
        Some((name, w)) => {
            let others = if at_worst > 1 {
                format!(" (and {} more)", at_worst - 1)
            } else {
                String::new()
            };
            Verdict::new(w.status, format!("{name}: {}{others}", w.reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: usize = 5;
    const RULES: Rules = Rules {
        window: WINDOW,
        keeping_up_ms: 1_000,
    };

    /// Samples 1 s apart from (committed, lag) pairs; the oldest unconsumed record is a
    /// minute old whenever there is lag.
    fn series(points: &[(Option<i64>, i64)]) -> Vec<Observation> {
        points
            .iter()
            .enumerate()
            .map(|(i, &(committed, lag))| Observation {
                at_ms: 1_000 * i as i64,
                committed,
                lag,
                time_lag_ms: Some(if lag == 0 { 0 } else { 60_000 }),
            })
            .collect()
    }

    fn status(points: &[(Option<i64>, i64)], consumers: Consumers) -> Status {
        evaluate(&series(points), consumers, RULES).status
    }

    const PRESENT: Consumers = Consumers::Present(1);

    #[test]
    fn no_sample_is_unknown() {
        assert_eq!(evaluate(&[], PRESENT, RULES).status, Status::Unknown);
    }

    #[test]
    fn idle_partition_with_zero_lag_is_ok_never_stalled() {
        let idle = [(Some(10), 0); 8];
        assert_eq!(status(&idle, PRESENT), Status::Ok);
        // Committed offset still, no consumer at all: still nothing waiting.
        assert_eq!(status(&idle, Consumers::Absent), Status::Ok);
        assert_eq!(status(&idle, Consumers::Unknown), Status::Ok);
        // An empty partition nobody ever committed on.
        assert_eq!(status(&[(None, 0); 8], Consumers::Absent), Status::Ok);
        assert_eq!(evaluate(&series(&idle), PRESENT, RULES).reason, "caught up");
    }

    #[test]
    fn committed_offset_still_with_lag_over_the_window_is_stalled() {
        let stuck = [
            (Some(10), 5),
            (Some(10), 6),
            (Some(10), 7),
            (Some(10), 7),
            (Some(10), 9),
        ];
        let verdict = evaluate(&series(&stuck), PRESENT, RULES);
        assert_eq!(verdict.status, Status::Stalled);
        assert!(
            verdict.reason.contains("committed offset 10"),
            "{}",
            verdict.reason
        );
        // Constant lag too: nothing is committed, nothing arrives.
        assert_eq!(status(&[(Some(3), 4); 5], PRESENT), Status::Stalled);
        // Never committed, records waiting, consumers present.
        assert_eq!(status(&[(None, 4); 5], PRESENT), Status::Stalled);
    }

    #[test]
    fn stall_needs_a_full_window() {
        let short = [(Some(10), 5); 4];
        let verdict = evaluate(&series(&short), PRESENT, RULES);
        assert_eq!(verdict.status, Status::Ok);
        assert!(verdict.reason.contains("4/5 samples"), "{}", verdict.reason);
        // One sample (`fleet status` without a monitor): what one sample can say.
        assert_eq!(status(&[(Some(10), 5)], PRESENT), Status::Ok);
    }

    #[test]
    fn stall_or_growth_only_counts_inside_the_window() {
        // Lag zero long ago, then a full window of stall: STALLED.
        let mut points = vec![(Some(0), 0); 3];
        points.extend([(Some(0), 2); 5]);
        assert_eq!(status(&points, PRESENT), Status::Stalled);
        // Lag zero at the window's first sample: it just appeared, OK.
        let recent = [
            (Some(0), 0),
            (Some(0), 2),
            (Some(0), 3),
            (Some(0), 3),
            (Some(0), 4),
        ];
        let verdict = evaluate(&series(&recent), PRESENT, RULES);
        assert_eq!(verdict.status, Status::Ok);
        assert!(verdict.reason.contains("appeared"), "{}", verdict.reason);
    }

    #[test]
    fn lag_without_consumers_is_stopped_at_once() {
        let verdict = evaluate(&series(&[(Some(10), 5)]), Consumers::Absent, RULES);
        assert_eq!(verdict.status, Status::Stopped);
        assert!(
            verdict.reason.contains("nobody consumes"),
            "{}",
            verdict.reason
        );
        // Even if it was caught up a moment ago.
        assert_eq!(
            status(&[(Some(10), 0), (Some(10), 3)], Consumers::Absent),
            Status::Stopped
        );
    }

    #[test]
    fn unknown_consumers_fall_through_to_the_offset_rules() {
        assert_eq!(
            status(&[(Some(10), 5); 5], Consumers::Unknown),
            Status::Stalled
        );
        assert_eq!(status(&[(Some(10), 5)], Consumers::Unknown), Status::Ok);
    }

    #[test]
    fn committing_while_lag_grows_at_every_sample_is_warn() {
        let falling_behind = [
            (Some(0), 10),
            (Some(5), 12),
            (Some(9), 15),
            (Some(12), 20),
            (Some(16), 21),
        ];
        let verdict = evaluate(&series(&falling_behind), PRESENT, RULES);
        assert_eq!(verdict.status, Status::Warn);
        assert!(
            verdict.reason.contains("from 10 to 21"),
            "{}",
            verdict.reason
        );
        // Lag flat for a step but never falling, and higher at the end: still WARN.
        let plateau = [
            (Some(0), 10),
            (Some(5), 10),
            (Some(9), 15),
            (Some(12), 15),
            (Some(16), 21),
        ];
        assert_eq!(status(&plateau, PRESENT), Status::Warn);
    }

    #[test]
    fn lag_growing_within_one_interval_of_real_time_is_not_warn() {
        // A consumer keeping up: a few more records at each sample, the oldest unconsumed
        // one 200 ms old (younger than the 1 s interval). Its commit cadence, not a trend.
        let mut close = series(&[
            (Some(0), 5),
            (Some(30), 6),
            (Some(60), 8),
            (Some(90), 9),
            (Some(120), 10),
        ]);
        for o in &mut close {
            o.time_lag_ms = Some(200);
        }
        let verdict = evaluate(&close, PRESENT, RULES);
        assert_eq!(verdict.status, Status::Ok, "{}", verdict.reason);
        // The same offsets with the oldest record 1.5 s old: falling behind.
        close.last_mut().unwrap().time_lag_ms = Some(1_500);
        assert_eq!(evaluate(&close, PRESENT, RULES).status, Status::Warn);
        // Unknown time lag: the offsets alone decide.
        close.last_mut().unwrap().time_lag_ms = None;
        assert_eq!(evaluate(&close, PRESENT, RULES).status, Status::Warn);
    }

    #[test]
    fn committing_with_lag_falling_or_steady_is_ok() {
        let draining = [
            (Some(0), 50),
            (Some(10), 40),
            (Some(20), 30),
            (Some(30), 20),
            (Some(40), 10),
        ];
        assert_eq!(status(&draining, PRESENT), Status::Ok);
        // Keeping pace: lag constant while committing.
        let pace = [
            (Some(0), 7),
            (Some(5), 7),
            (Some(10), 7),
            (Some(15), 7),
            (Some(20), 7),
        ];
        assert_eq!(status(&pace, PRESENT), Status::Ok);
        // Growing overall but it fell once inside the window: no WARN.
        let noisy = [
            (Some(0), 10),
            (Some(5), 14),
            (Some(9), 12),
            (Some(12), 20),
            (Some(16), 22),
        ];
        assert_eq!(status(&noisy, PRESENT), Status::Ok);
    }

    #[test]
    fn committed_offset_moving_back_is_not_a_stall() {
        // An operator reset the group: the offset moved, it is consuming again.
        let reset = [
            (Some(90), 10),
            (Some(90), 10),
            (Some(0), 100),
            (Some(10), 90),
            (Some(20), 80),
        ];
        assert_eq!(status(&reset, PRESENT), Status::Ok);
    }

    #[test]
    fn only_the_last_window_counts() {
        // A long stall, then commits resume and drain: OK once the stall left the window.
        let mut points = vec![(Some(0), 50); 10];
        points.extend([
            (Some(10), 40),
            (Some(20), 30),
            (Some(30), 20),
            (Some(40), 10),
            (Some(45), 5),
        ]);
        assert_eq!(status(&points, PRESENT), Status::Ok);
    }

    #[test]
    fn group_is_its_worst_partition() {
        let ok = Verdict::new(Status::Ok, "caught up");
        let warn = Verdict::new(Status::Warn, "lag grew");
        let stalled = Verdict::new(Status::Stalled, "offset 3 unchanged");
        let group = worst([
            ("t/0".to_string(), &ok),
            ("t/1".to_string(), &stalled),
            ("t/2".to_string(), &warn),
            ("t/3".to_string(), &stalled),
        ]);
        assert_eq!(group.status, Status::Stalled);
        assert_eq!(group.reason, "t/1: offset 3 unchanged (and 1 more)");
        let all_ok = worst([("t/0".to_string(), &ok), ("t/1".to_string(), &ok)]);
        assert_eq!(all_ok, Verdict::new(Status::Ok, "2 partition(s) OK"));
        assert_eq!(worst(Vec::new()).status, Status::Unknown);
        let unknown = Verdict::new(Status::Unknown, "topic missing");
        assert_eq!(
            worst([("a/0".to_string(), &unknown), ("b/0".to_string(), &ok)]).status,
            Status::Unknown
        );
        assert_eq!(
            worst([("a/0".to_string(), &unknown), ("b/0".to_string(), &warn)]).status,
            Status::Warn
        );
    }

    #[test]
    fn status_codes_and_severity() {
        assert!(Status::Ok < Status::Unknown);
        assert!(Status::Unknown < Status::Warn);
        assert!(Status::Warn < Status::Stalled);
        assert!(Status::Stalled < Status::Stopped);
        let codes: Vec<i64> = Status::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, vec![0, -1, 1, 2, 3]);
    }
}
