//! The queue between the main loop and a connector's writer to the PBX. It keeps the latest
//! update per extension, so it holds at most one entry per user however fast Teams changes,
//! and the main loop never waits to hand an update over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use super::PbxUpdate;

/// Pending updates by extension (a hash map: the main loop inserts 50,000 of them after the
/// first poll, and the order of delivery does not matter).
pub type Pending = HashMap<String, PbxUpdate>;

struct Inner {
    pending: Mutex<Pending>,
    wake: Notify,
}

/// The sending half: cheap to clone, never waits.
#[derive(Clone)]
pub struct Pusher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

/// The receiving half, held by the connector's writer task.
pub struct PushQueue {
    inner: Arc<Inner>,
}

/// A new, empty mailbox.
pub fn mailbox() -> (Pusher, PushQueue) {
    let inner = Arc::new(Inner {
        pending: Mutex::new(Pending::new()),
        wake: Notify::new(),
    });
    (
        Pusher {
            inner: Arc::clone(&inner),
        },
        PushQueue { inner },
    )
}

impl Pusher {
    /// Queue an update; a newer one for the same extension replaces it if still queued.
    pub fn push(&self, update: PbxUpdate) {
        let mut pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.insert(update.extension.clone(), update);
        drop(pending);
        self.inner.wake.notify_one();
    }
}

impl PushQueue {
    /// Waits until an update is queued, then moves every queued update into `into` (a newer
    /// update replaces what `into` holds for its extension).
    pub async fn take_into(&self, into: &mut Pending) {
        loop {
            self.drain_into(into);
            if !into.is_empty() {
                return;
            }
            self.inner.wake.notified().await;
        }
    }

    /// Waits until a new update is queued (even if `into` already holds some), then moves
    /// every queued update into `into`. May return early once after a drain (a wake-up left
    /// from updates already taken).
    pub async fn take_new_into(&self, into: &mut Pending) {
        self.inner.wake.notified().await;
        self.drain_into(into);
    }

    /// Moves what is queued into `into` without waiting.
    pub fn drain_into(&self, into: &mut Pending) {
        let mut pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if into.is_empty() {
            std::mem::swap(&mut *pending, into);
        } else {
            into.extend(pending.drain());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn update(extension: &str, state: &str) -> PbxUpdate {
        PbxUpdate {
            extension: extension.into(),
            email: format!("{extension}@example.com"),
            availability: Cow::Borrowed("Busy"),
            activity: Cow::Borrowed("Busy"),
            state: state.into(),
            read_at: None,
        }
    }

    #[tokio::test]
    async fn the_latest_update_per_extension_wins_and_nothing_waits() {
        let (pusher, queue) = mailbox();
        for i in 0..10_000 {
            pusher.push(update("1001", &format!("s{i}")));
        }
        pusher.push(update("1002", "busy"));
        let mut got = Pending::new();
        queue.take_into(&mut got).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got["1001"].state, "s9999");
        // An update queued before the writer waits is not lost.
        pusher.push(update("1003", "away"));
        let mut next = Pending::new();
        queue.take_into(&mut next).await;
        assert_eq!(next["1003"].state, "away");
    }
}
