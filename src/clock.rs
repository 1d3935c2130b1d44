//! The one place the daemon reads the clock (clippy.toml forbids `Instant::now` and
//! `SystemTime::now` everywhere else). Tests move the service clock forward without sleeping,
//! and tokio's paused time reaches [`monotonic`].
//!
//! Wall time is read once, at start; after that time advances with the monotonic clock (tokio's,
//! so paused test time moves it), and an NTP step during a call cannot make a session refresh
//! late (or early).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::sync::types::{Millis, millis};

/// Milliseconds since the Unix epoch, advancing monotonically, plus an offset tests advance.
#[derive(Debug, Clone)]
pub struct Clock {
    start_wall: Millis,
    start: Instant,
    offset_ms: Arc<AtomicI64>,
}

impl Default for Clock {
    #[allow(clippy::disallowed_methods)] // the clock module reads the clocks
    fn default() -> Self {
        let start_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis);
        Clock {
            start_wall,
            start: Instant::now(),
            offset_ms: Arc::default(),
        }
    }
}

impl Clock {
    /// Milliseconds since the Unix epoch (as of the start, then monotonic).
    pub fn now(&self) -> Millis {
        let elapsed = millis(self.start.elapsed());
        self.start_wall
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// The same instant as [`Clock::now`], as wall time (for expiry dates sent to Graph).
    pub fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.now()).unwrap_or(0))
    }

    /// Move this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(millis(by), Ordering::Relaxed);
    }
}

/// The monotonic clock for timeouts and rate limits inside adapters (token caches, budgets,
/// keep-alives). It is tokio's clock, so tests that pause time reach it too.
#[allow(clippy::disallowed_methods)] // the clock module reads the clocks
pub fn monotonic() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Wall time now, for the few things that are not the service's business (a certificate's
/// validity when `check` or `login` runs, outside the daemon).
#[allow(clippy::disallowed_methods)] // the clock module reads the clocks
pub fn wall_now() -> SystemTime {
    SystemTime::now()
}
