//! Pacing: the presence request budget (a token bucket shared by all presence calls) and
//! Retry-After. Backoff itself is [`crate::backoff`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The longest Retry-After we accept from a header; longer values are clamped, so one odd
/// header cannot park a task for hours.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Reads a `Retry-After` value. Graph sends whole seconds
/// (<https://learn.microsoft.com/en-us/graph/throttling>); fractions are accepted,
/// HTTP dates are not (the caller falls back to backoff).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        secs.min(MAX_RETRY_AFTER.as_secs_f64()),
    ))
}

/// A token bucket: `capacity` requests per `period`, refilled continuously, starting full.
/// Callers wait for a token instead of failing; a 429 pauses the whole bucket.
///
/// It is also a circuit breaker: once a presence request fails for a reason that is not the
/// request's own (5xx, timeout, network), Graph counts as down and only one request at a time
/// goes out, a probe every 1 to 5 s, until one succeeds. An outage then does not spend the
/// budget on a retry per user, so the budget is full when Graph is back and the catch-up (every
/// session started or ended meanwhile) goes out at once.
pub(crate) struct Budget {
    /// Waiters queue here one by one, so tokens go out in arrival order.
    turn: tokio::sync::Mutex<()>,
    /// The bucket itself; a plain mutex, never held across an await.
    bucket: Mutex<Bucket>,
    /// Failed presence requests in a row (0: Graph is up); a plain mutex like `bucket`.
    down: Mutex<Down>,
}

/// The breaker's state.
#[derive(Debug, Default)]
struct Down {
    /// Presence requests failed in a row since the last success.
    failures: u32,
    /// When the probe went out, while Graph is down: the others wait for its answer (or
    /// until [`PROBE_LOST`], should its task have been dropped).
    probing: Option<Instant>,
    /// No probe before this.
    next_probe: Option<Instant>,
}

/// Probes while Graph is down: 1 s doubling up to 5 s, with jitter, so its return is noticed
/// within 5 s.
const PROBE: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_secs(1), Duration::from_secs(5));

/// How often a waiter looks again while a probe is out.
const PROBE_POLL: Duration = Duration::from_millis(100);

/// A probe without an answer for this long was dropped with its task: send another.
const PROBE_LOST: Duration = Duration::from_secs(60);

/// The arithmetic of the bucket, separate from waiting so it can be tested with fixed instants.
#[derive(Debug)]
pub(crate) struct Bucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl Bucket {
    pub(crate) fn new(capacity: u32, period: Duration, now: Instant) -> Bucket {
        let capacity = f64::from(capacity.max(1));
        Bucket {
            capacity,
            per_sec: capacity / period.as_secs_f64().max(0.001),
            tokens: capacity,
            last: now,
            paused_until: None,
        }
    }

    /// Takes one token, or says how long to wait before asking again.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if let Some(until) = self.paused_until {
            if until > now {
                return Err(until - now);
            }
            self.paused_until = None;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
    }

    /// Nobody takes a token before `until` (Graph said Retry-After).
    pub(crate) fn pause_until(&mut self, until: Instant) {
        if self.paused_until.is_none_or(|p| p < until) {
            self.paused_until = Some(until);
        }
    }
}

impl Budget {
    /// `capacity` requests per `period`.
    pub(crate) fn new(capacity: u32, period: Duration) -> Budget {
        Budget {
            turn: tokio::sync::Mutex::new(()),
            bucket: Mutex::new(Bucket::new(capacity, period, crate::clock::monotonic())),
            down: Mutex::new(Down::default()),
        }
    }

    fn with_down<T>(&self, f: impl FnOnce(&mut Down) -> T) -> T {
        let mut guard = self.down.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// While Graph is down: wait for the probe's turn (returns once this request may go).
    async fn wait_while_down(&self) {
        loop {
            let now = crate::clock::monotonic();
            let wait = self.with_down(|d| {
                if d.failures == 0 {
                    return None;
                }
                match (d.probing, d.next_probe) {
                    (Some(out), _) if now.saturating_duration_since(out) < PROBE_LOST => {
                        Some(PROBE_POLL)
                    }
                    (_, Some(at)) if at > now => Some(at - now),
                    _ => {
                        d.probing = Some(now);
                        None
                    }
                }
            });
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// A presence request got an answer from Graph: it is up.
    pub(crate) fn succeeded(&self) {
        let was_down = self.with_down(|d| std::mem::take(d).failures > 0);
        if was_down {
            tracing::info!("Graph answers presence requests again; waiting requests go out now");
        }
    }

    /// A presence request failed for a reason that is not its own (5xx, timeout, network).
    pub(crate) fn failed(&self) {
        let first = self.with_down(|d| {
            d.failures = d.failures.saturating_add(1);
            d.probing = None;
            d.next_probe = Some(crate::clock::monotonic() + PROBE.delay(d.failures));
            d.failures == 1
        });
        if first {
            tracing::warn!(
                "Graph is failing presence requests; one request at a time probes it every few seconds until it answers"
            );
        }
    }

    fn with_bucket<T>(&self, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut guard = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Waits until a request may be sent, then spends one token.
    pub(crate) async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        self.wait_while_down().await;
        loop {
            match self.with_bucket(|b| b.try_take(crate::clock::monotonic())) {
                Ok(()) => return,
                Err(wait) => {
                    tracing::debug!(wait_ms = wait.as_millis(), "presence budget: waiting");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Holds every presence call back for `wait` (after a 429 on any of them).
    pub(crate) fn pause(&self, wait: Duration) {
        let until = crate::clock::monotonic() + wait;
        self.with_bucket(|b| b.pause_until(until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn bucket_spends_capacity_then_refills_at_rate() {
        let t0 = crate::clock::monotonic();
        let mut b = Bucket::new(3, Duration::from_secs(30), t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        // 3 per 30 s = one token every 10 s.
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(10)));
        let t1 = t0 + Duration::from_secs(5);
        let wait = b.try_take(t1).unwrap_err();
        assert!((wait.as_secs_f64() - 5.0).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.try_take(t0 + Duration::from_secs(10)), Ok(()));
        // Never more than capacity after a long idle time.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.try_take(later), Ok(()));
        }
        assert!(b.try_take(later).is_err());
    }

    #[test]
    fn pause_holds_the_bucket_even_with_tokens() {
        let t0 = crate::clock::monotonic();
        let mut b = Bucket::new(1500, Duration::from_secs(30), t0);
        b.pause_until(t0 + Duration::from_secs(10));
        b.pause_until(t0 + Duration::from_secs(2)); // a shorter pause does not shorten it
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(10)));
        assert_eq!(b.try_take(t0 + Duration::from_secs(10)), Ok(()));
    }

    /// Paused time: the waits are exact and cost nothing.
    #[tokio::test(start_paused = true)]
    async fn budget_waits_instead_of_failing() {
        // 2 per 200 ms: two at once, then one every 100 ms.
        let budget = Budget::new(2, 200 * MS);
        let start = crate::clock::monotonic();
        let mut at = Vec::new();
        for _ in 0..4 {
            budget.acquire().await;
            at.push(start.elapsed());
        }
        assert_eq!(at, [Duration::ZERO, Duration::ZERO, 100 * MS, 200 * MS]);
    }
}
