//! The one place the service reads the wall clock. Tests move it forward without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::sync::types::Millis;

/// System time plus an offset that tests can advance.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now(&self) -> Millis {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
            Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
        });
        system.saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Move this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let ms = Millis::try_from(by.as_millis()).unwrap_or(Millis::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}
