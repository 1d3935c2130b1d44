//! Exponential backoff with full jitter, shared by every adapter that retries (Graph requests,
//! PBX pushes, reconnects).

use std::time::Duration;

use rand::RngExt;

/// Exponential backoff with full jitter: attempt n waits a random time in
/// `0..=min(cap, base * 2^(n-1))`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// No wait at all, for tests of the retry policy.
    #[cfg(test)]
    pub const ZERO: Backoff = Backoff {
        base: Duration::ZERO,
        cap: Duration::ZERO,
    };

    /// `base` is the first ceiling, `cap` the largest.
    pub const fn new(base: Duration, cap: Duration) -> Backoff {
        let cap = if cap.as_nanos() < base.as_nanos() {
            base
        } else {
            cap
        };
        Backoff { base, cap }
    }

    /// The upper bound of the wait after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// A random wait in `0..=ceiling(attempt)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_ceiling_doubles_up_to_the_cap() {
        let b = Backoff::new(250 * MS, 2000 * MS);
        assert_eq!(b.ceiling(1), 250 * MS);
        assert_eq!(b.ceiling(2), 500 * MS);
        assert_eq!(b.ceiling(3), 1000 * MS);
        assert_eq!(b.ceiling(4), 2000 * MS);
        assert_eq!(b.ceiling(5), 2000 * MS);
        assert_eq!(b.ceiling(u32::MAX), 2000 * MS);
        assert_eq!(b.ceiling(0), 250 * MS);
    }

    #[test]
    fn backoff_delay_stays_within_bounds_and_varies() {
        let b = Backoff::new(100 * MS, 400 * MS);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3)).collect();
        assert!(delays.iter().all(|d| *d <= 400 * MS));
        assert!(delays.iter().any(|d| *d != delays[0]), "full jitter varies");
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 4), Duration::MAX);
        assert!(huge.delay(40) <= Duration::MAX);
    }
}
