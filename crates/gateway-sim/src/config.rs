//! How the simulated gateway behaves: its latency distribution, the faults it injects, its
//! issuer's decline rate and its rate limit. Checked by [`GatewayConfig::validate`] before the
//! server starts and on every `PUT /v1/faults`.

use serde::{Deserialize, Serialize};

/// Longest latency, slow penalty or hang accepted (ten minutes): anything longer is a unit
/// mistake rather than a test.
pub const MAX_DELAY_MS: u64 = 600_000;

/// Slack for the sum of the fault rates: `0.1 + 0.2 + 0.7` is a little over 1 in floating point.
const RATE_SUM_SLACK: f64 = 1e-9;

/// The gateway's behaviour. The default is a perfect gateway: no latency, no faults, no
/// declines, no rate limit. In JSON (`PUT /v1/faults`) every field is optional and an absent
/// one takes its default; unknown fields are rejected.
///
/// Faults and latency apply only to the mutating calls (authorize, capture, void, refund).
/// Per call, one uniform draw picks at most one of error, timeout or lost (hence their rates
/// may sum to at most 1); a call with none of them is answered after
/// `latency_ms + uniform(0..=jitter_ms)`, plus `slow_ms` for a `slow_rate` share of calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Base latency of a mutating call, in ms. Default 0.
    pub latency_ms: u64,
    /// Uniform extra latency, `0..=jitter_ms` ms. Default 0.
    pub jitter_ms: u64,
    /// Share of calls that take `slow_ms` more, in [0, 1]. Default 0.
    pub slow_rate: f64,
    /// Extra latency of a slow call, in ms. Default 1000.
    pub slow_ms: u64,
    /// Share of calls answered 500 or 503 at once, nothing applied. Default 0.
    pub error_rate: f64,
    /// Share of calls that hang `hang_ms` then answer 504, nothing applied. Default 0.
    pub timeout_rate: f64,
    /// Share of calls applied whose answer is lost: they hang `hang_ms` then answer 504.
    /// Default 0.
    pub lost_rate: f64,
    /// How long a timed-out or lost call hangs, in ms (the client should give up first).
    /// Default 30_000.
    pub hang_ms: u64,
    /// Share of idempotency keys the issuer declines, in [0, 1]: decided by a hash of the
    /// key, so a retry gets the same answer. Default 0.
    pub decline_rate: f64,
    /// Mutating calls per second accepted (a token bucket holding one second's worth);
    /// beyond it 429 with `Retry-After`. 0 = unlimited. Default 0.
    pub rate_limit_per_sec: u32,
    /// Seed of the fault RNG, for reproducible runs; `None` seeds from the OS. Default `None`.
    pub seed: Option<u64>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            jitter_ms: 0,
            slow_rate: 0.0,
            slow_ms: 1_000,
            error_rate: 0.0,
            timeout_rate: 0.0,
            lost_rate: 0.0,
            hang_ms: 30_000,
            decline_rate: 0.0,
            rate_limit_per_sec: 0,
            seed: None,
        }
    }
}

impl GatewayConfig {
    /// Every problem at once, joined by `; `.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        let rates = [
            ("slow_rate", self.slow_rate),
            ("error_rate", self.error_rate),
            ("timeout_rate", self.timeout_rate),
            ("lost_rate", self.lost_rate),
            ("decline_rate", self.decline_rate),
        ];
        for (name, rate) in rates {
            // `contains` is false for NaN too.
            if !(0.0..=1.0).contains(&rate) {
                problems.push(format!("{name} must be in [0, 1], got {rate}"));
            }
        }
        let fault_sum = self.error_rate + self.timeout_rate + self.lost_rate;
        if fault_sum > 1.0 + RATE_SUM_SLACK {
            problems.push(format!(
                "error_rate + timeout_rate + lost_rate must be at most 1, got {fault_sum}"
            ));
        }
        let delays = [
            ("latency_ms", self.latency_ms),
            ("jitter_ms", self.jitter_ms),
            ("slow_ms", self.slow_ms),
            ("hang_ms", self.hang_ms),
        ];
        for (name, ms) in delays {
            if ms > MAX_DELAY_MS {
                problems.push(format!("{name} must be at most {MAX_DELAY_MS}, got {ms}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_faultless() {
        let config = GatewayConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.error_rate + config.timeout_rate + config.lost_rate,
            0.0
        );
        assert_eq!(config.latency_ms, 0);
        assert_eq!(config.rate_limit_per_sec, 0);
    }

    #[test]
    fn rates_outside_unit_interval_are_rejected() {
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            let config = GatewayConfig {
                decline_rate: bad,
                ..GatewayConfig::default()
            };
            let problems = config.validate().unwrap_err();
            assert!(problems.contains("decline_rate"), "{problems}");
        }
    }

    #[test]
    fn fault_rates_may_sum_to_one_but_not_more() {
        let exactly_one = GatewayConfig {
            error_rate: 0.1,
            timeout_rate: 0.2,
            lost_rate: 0.7,
            ..GatewayConfig::default()
        };
        assert_eq!(exactly_one.validate(), Ok(()));
        let too_much = GatewayConfig {
            error_rate: 0.5,
            timeout_rate: 0.5,
            lost_rate: 0.1,
            ..GatewayConfig::default()
        };
        assert!(too_much.validate().unwrap_err().contains("at most 1"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let config = GatewayConfig {
            slow_rate: 2.0,
            hang_ms: MAX_DELAY_MS + 1,
            latency_ms: u64::MAX,
            ..GatewayConfig::default()
        };
        let problems = config.validate().unwrap_err();
        assert_eq!(problems.split("; ").count(), 3, "{problems}");
    }

    #[test]
    fn json_fields_are_optional_and_typos_rejected() {
        let partial: GatewayConfig = serde_json::from_str(r#"{"error_rate": 0.25}"#).unwrap();
        assert_eq!(partial.error_rate, 0.25);
        assert_eq!(partial.hang_ms, GatewayConfig::default().hang_ms);
        assert!(serde_json::from_str::<GatewayConfig>(r#"{"eror_rate": 0.25}"#).is_err());
    }
}
