//! How long a redriven record waits before processors may handle it (its `sf.not-before`).
//!
//! Exponential backoff with full jitter and a floor. For the n-th redrive of a dead letter
//! (n = 0 the first time), with `base` = `--defer` and `cap` = `--max-defer`, in milliseconds:
//!
//! ```text
//! ceiling(n) = min(cap, base * 2^n)
//! delay(n)   = max(base / 2, uniform_inclusive(0, ceiling(n)))
//! ```
//!
//! Full jitter spreads a batch of redriven records over the window instead of releasing them
//! at one instant onto a dependency that just recovered; the floor keeps a record from coming
//! straight back before whatever failed had any time at all. Defaults: base 30 s, cap 300 s,
//! so the first redrive waits 15–30 s, the fourth 15–240 s, the fifth and later 15–300 s.

use rand::Rng;

/// `--defer` and `--max-defer`, checked: `cap >= base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferral {
    base_ms: u64,
    cap_ms: u64,
}

impl Deferral {
    /// `None` when the cap is below the base (the formula would never reach the base).
    pub fn from_secs(base_secs: u64, cap_secs: u64) -> Option<Self> {
        let base_ms = base_secs.saturating_mul(1000);
        let cap_ms = cap_secs.saturating_mul(1000);
        (cap_ms >= base_ms).then_some(Self { base_ms, cap_ms })
    }

    /// The upper bound of the n-th redrive's delay: `min(cap, base * 2^n)`.
    pub fn ceiling_ms(&self, n: u32) -> u64 {
        let factor = 1_u64.checked_shl(n).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.cap_ms)
    }

    /// The lower bound of every delay: `base / 2`.
    pub fn floor_ms(&self) -> u64 {
        self.base_ms / 2
    }

    /// The delay of the n-th redrive, drawn from `rng`.
    pub fn delay_ms(&self, n: u32, rng: &mut impl Rng) -> u64 {
        let drawn = rng.random_range(0..=self.ceiling_ms(n));
        drawn.max(self.floor_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn defaults() -> Deferral {
        Deferral::from_secs(30, 300).unwrap()
    }

    #[test]
    fn the_ceiling_doubles_per_redrive_until_the_cap() {
        let d = defaults();
        let ceilings: Vec<u64> = (0..6).map(|n| d.ceiling_ms(n)).collect();
        assert_eq!(
            ceilings,
            [30_000, 60_000, 120_000, 240_000, 300_000, 300_000]
        );
        assert_eq!(d.floor_ms(), 15_000);
    }

    #[test]
    fn huge_redrive_counts_saturate_at_the_cap_instead_of_overflowing() {
        let d = defaults();
        for n in [40, 63, 64, 65, 1000, u32::MAX] {
            assert_eq!(d.ceiling_ms(n), 300_000, "n = {n}");
        }
        let extreme = Deferral::from_secs(u64::MAX, u64::MAX).unwrap();
        assert_eq!(extreme.ceiling_ms(10), u64::MAX);
    }

    #[test]
    fn every_delay_lies_between_the_floor_and_the_ceiling() {
        let d = defaults();
        let mut rng = StdRng::seed_from_u64(7);
        for n in 0..8 {
            for _ in 0..2_000 {
                let delay = d.delay_ms(n, &mut rng);
                assert!(
                    (d.floor_ms()..=d.ceiling_ms(n)).contains(&delay),
                    "n = {n}: {delay}"
                );
            }
        }
    }

    #[test]
    fn delays_are_jittered_across_the_whole_window() {
        let d = defaults();
        let mut rng = StdRng::seed_from_u64(42);
        let delays: Vec<u64> = (0..2_000).map(|_| d.delay_ms(3, &mut rng)).collect();
        let at_floor = delays.iter().filter(|&&x| x == d.floor_ms()).count();
        // uniform(0, 240 s) falls below the 15 s floor 1/16 of the time.
        assert!((60..=200).contains(&at_floor), "{at_floor} at the floor");
        assert!(delays.iter().any(|&x| x > 200_000), "reaches the top");
        assert!(
            delays.iter().any(|&x| (20_000..60_000).contains(&x)),
            "covers the bottom"
        );
    }

    #[test]
    fn a_zero_deferral_means_no_wait_and_a_cap_below_the_base_is_refused() {
        let none = Deferral::from_secs(0, 0).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(none.delay_ms(5, &mut rng), 0);
        assert_eq!(Deferral::from_secs(30, 29), None);
        let flat = Deferral::from_secs(30, 30).unwrap();
        assert_eq!(flat.ceiling_ms(9), 30_000);
    }
}
