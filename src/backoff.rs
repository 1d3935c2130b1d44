//! Exponential backoff with full jitter, for reconnects and redelivery.

use std::time::Duration;

use rand::Rng;

/// Doubling delays from `base` up to `cap`, each drawn uniformly from [base/2, delay].
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff { base, cap, attempt: 0 }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = exp.min(self.cap);
        let floor = (self.base / 2).min(ceiling);
        let nanos = rand::rng().random_range(floor.as_nanos()..=ceiling.as_nanos());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// After a success: start from `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_under_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        for i in 0..20 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50), "attempt {i}: {d:?}");
            assert!(d <= Duration::from_secs(2), "attempt {i}: {d:?}");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
