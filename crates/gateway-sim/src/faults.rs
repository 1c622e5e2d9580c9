//! What happens to one mutating call: applied and answered after some latency, refused with
//! a 5xx, hung without being applied, or applied with its answer lost. Pure given the RNG, so
//! the distribution is unit-tested with a seeded one.

use std::time::Duration;

use rand::Rng;

use crate::config::GatewayConfig;

/// The fate of one call, decided before it touches the ledger. The type says which calls
/// reach the books: only `Apply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Not applied.
    Refuse(Refusal),
    /// Applied under the ledger lock, then delivered (or not).
    Apply(Delivery),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Answer the error at once.
    Error(InjectedError),
    /// Hang, then answer 504.
    Timeout { hang: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Answer after `delay`; `slow` when the delay includes `slow_ms`.
    Answer { delay: Duration, slow: bool },
    /// Hang, then answer 504: charged, but the response was lost.
    Lost { hang: Duration },
}

/// A 5xx that never reached the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectedError {
    /// 500.
    Internal,
    /// 503.
    Unavailable,
}

/// One uniform draw chooses among error, timeout and lost (their rates are disjoint shares of
/// [0, 1)); only an ordinary call draws its latency.
pub fn plan<R: Rng + ?Sized>(config: &GatewayConfig, rng: &mut R) -> Plan {
    let hang = Duration::from_millis(config.hang_ms);
    let draw: f64 = rng.random();
    let mut threshold = config.error_rate;
    if draw < threshold {
        let error = if rng.random::<bool>() {
            InjectedError::Unavailable
        } else {
            InjectedError::Internal
        };
        return Plan::Refuse(Refusal::Error(error));
    }
    threshold += config.timeout_rate;
    if draw < threshold {
        return Plan::Refuse(Refusal::Timeout { hang });
    }
    threshold += config.lost_rate;
    if draw < threshold {
        return Plan::Apply(Delivery::Lost { hang });
    }
    let jitter = if config.jitter_ms > 0 {
        rng.random_range(0..=config.jitter_ms)
    } else {
        0
    };
    let slow = config.slow_rate > 0.0 && rng.random::<f64>() < config.slow_rate;
    let extra = if slow { config.slow_ms } else { 0 };
    let delay_ms = config
        .latency_ms
        .saturating_add(jitter)
        .saturating_add(extra);
    Plan::Apply(Delivery::Answer {
        delay: Duration::from_millis(delay_ms),
        slow,
    })
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    const DRAWS: usize = 10_000;

    #[derive(Default, Debug)]
    struct Tally {
        answered: usize,
        slow: usize,
        internal: usize,
        unavailable: usize,
        timeout: usize,
        lost: usize,
    }

    fn tally(config: &GatewayConfig, seed: u64) -> Tally {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tally = Tally::default();
        for _ in 0..DRAWS {
            match plan(config, &mut rng) {
                Plan::Apply(Delivery::Answer { slow, .. }) => {
                    tally.answered += 1;
                    tally.slow += usize::from(slow);
                }
                Plan::Apply(Delivery::Lost { .. }) => tally.lost += 1,
                Plan::Refuse(Refusal::Error(InjectedError::Internal)) => tally.internal += 1,
                Plan::Refuse(Refusal::Error(InjectedError::Unavailable)) => tally.unavailable += 1,
                Plan::Refuse(Refusal::Timeout { .. }) => tally.timeout += 1,
            }
        }
        tally
    }

    /// Within 4 standard deviations of the binomial mean: deterministic for a seed anyway,
    /// but not tuned to one.
    fn assert_near(observed: usize, rate: f64, trials: usize, what: &str) {
        let mean = rate * trials as f64;
        let sd = (trials as f64 * rate * (1.0 - rate)).sqrt();
        let off = (observed as f64 - mean).abs();
        assert!(
            off <= 4.0 * sd + 1.0,
            "{what}: {observed} of {trials}, expected ~{mean}"
        );
    }

    #[test]
    fn fault_rates_are_roughly_respected() {
        let config = GatewayConfig {
            error_rate: 0.1,
            timeout_rate: 0.05,
            lost_rate: 0.02,
            slow_rate: 0.1,
            ..GatewayConfig::default()
        };
        for seed in [1, 2, 3] {
            let tally = tally(&config, seed);
            assert_near(tally.internal + tally.unavailable, 0.1, DRAWS, "errors");
            assert_near(
                tally.unavailable,
                0.5,
                tally.internal + tally.unavailable,
                "503s",
            );
            assert_near(tally.timeout, 0.05, DRAWS, "timeouts");
            assert_near(tally.lost, 0.02, DRAWS, "lost");
            assert_near(tally.answered, 0.83, DRAWS, "answered");
            assert_near(tally.slow, 0.1, tally.answered, "slow");
        }
    }

    #[test]
    fn rates_of_zero_and_one_are_exact() {
        assert_eq!(tally(&GatewayConfig::default(), 7).answered, DRAWS);
        let all_lost = GatewayConfig {
            lost_rate: 1.0,
            ..GatewayConfig::default()
        };
        assert_eq!(tally(&all_lost, 7).lost, DRAWS);
        let all_errors = GatewayConfig {
            error_rate: 1.0,
            ..GatewayConfig::default()
        };
        let tally = tally(&all_errors, 7);
        assert_eq!(tally.internal + tally.unavailable, DRAWS);
    }

    #[test]
    fn latency_is_base_plus_jitter_plus_slow() {
        let config = GatewayConfig {
            latency_ms: 5,
            jitter_ms: 10,
            slow_rate: 0.5,
            slow_ms: 1_000,
            ..GatewayConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(42);
        let (mut lowest, mut highest) = (u64::MAX, 0);
        for _ in 0..DRAWS {
            let Plan::Apply(Delivery::Answer { delay, slow }) = plan(&config, &mut rng) else {
                panic!("no faults configured");
            };
            let ms = u64::try_from(delay.as_millis()).unwrap();
            let fast_ms = if slow { ms - 1_000 } else { ms };
            assert!((5..=15).contains(&fast_ms), "{ms} ms (slow: {slow})");
            lowest = lowest.min(fast_ms);
            highest = highest.max(fast_ms);
        }
        assert_eq!((lowest, highest), (5, 15), "jitter covers 0..=jitter_ms");
    }

    #[test]
    fn the_same_seed_gives_the_same_plans() {
        let config = GatewayConfig {
            error_rate: 0.3,
            timeout_rate: 0.3,
            jitter_ms: 50,
            ..GatewayConfig::default()
        };
        let (mut a, mut b) = (StdRng::seed_from_u64(9), StdRng::seed_from_u64(9));
        for _ in 0..1_000 {
            assert_eq!(plan(&config, &mut a), plan(&config, &mut b));
        }
    }

    #[test]
    fn lost_calls_apply_and_timeouts_and_errors_do_not() {
        let config = GatewayConfig {
            error_rate: 0.3,
            timeout_rate: 0.3,
            lost_rate: 0.4,
            ..GatewayConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let hang = Duration::from_millis(config.hang_ms);
        let mut applied = 0;
        for _ in 0..DRAWS {
            match plan(&config, &mut rng) {
                Plan::Apply(delivery) => {
                    assert_eq!(delivery, Delivery::Lost { hang }, "only lost calls apply");
                    applied += 1;
                }
                Plan::Refuse(Refusal::Timeout { hang: refused }) => assert_eq!(refused, hang),
                Plan::Refuse(Refusal::Error(_)) => {}
            }
        }
        assert_near(applied, 0.4, DRAWS, "applied");
    }
}
