//! What one step of the main loop writes to the state database, collected and sent as one
//! message when the step is over. The store's queue is bounded: if SQLite falls behind, the
//! main loop waits for it (nothing is dropped, nothing grows without bound).

use crate::store::{MetaKey, Store, Write};
use crate::sync::types::Millis;

/// Writes per message to the store: a step that writes for 50,000 users (the first matching
/// round) sends 50 messages of this size, not one vector of 50,000 grown by doubling.
const CHUNK: usize = 1000;

pub struct Outbox {
    store: Store,
    /// Full chunks, ready to send.
    ready: Vec<Vec<Write>>,
    /// The chunk being filled.
    pending: Vec<Write>,
}

impl Outbox {
    pub fn new(store: Store) -> Outbox {
        Outbox {
            store,
            ready: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub fn write(&mut self, w: Write) {
        // Grown as needed (a step usually writes two or three rows; reserving a whole chunk
        // would cost a large allocation, an mmap, per step).
        self.pending.push(w);
        if self.pending.len() == CHUNK {
            self.ready.push(std::mem::take(&mut self.pending));
        }
    }

    /// An error for `status` (the newest few are kept).
    pub fn error(&mut self, component: &str, user: Option<&str>, message: String, at: Millis) {
        self.write(Write::RecordError {
            component: component.into(),
            user: user.map(Into::into),
            message,
            at,
        });
    }

    pub fn count(&mut self, name: &str, delta: usize) {
        self.write(Write::AddCounter {
            name: name.into(),
            delta: i64::try_from(delta).unwrap_or(i64::MAX),
        });
    }

    pub fn meta(&mut self, key: MetaKey, value: String) {
        self.write(Write::SetMeta { key, value });
    }

    /// Send what was collected (waits only while the store's queue is full).
    pub async fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.ready.push(std::mem::take(&mut self.pending));
        }
        for chunk in std::mem::take(&mut self.ready) {
            self.store.write_all(chunk).await;
        }
    }

    /// Wait until everything flushed so far is committed (WAL: one write, no fsync; it survives
    /// a crash of the process). A failure is logged: the presence write still goes out, as
    /// Teams must show the call, and the session then expires by itself if the daemon dies.
    pub async fn commit(&mut self) {
        if let Err(e) = self.store.flush().await {
            tracing::error!(error = %e,
                "In a call session not recorded in the state database ({e}); written to Teams anyway (a crash now leaves it until it expires)");
        }
    }

    /// The store, for reads (flush first to read what was written).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Send what was collected, then close the database.
    pub async fn close(mut self) -> Result<(), crate::store::StoreError> {
        self.flush().await;
        self.store.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_write_reaches_the_store_in_order_whatever_the_chunks() {
        let store = Store::open_in_memory().unwrap();
        let mut out = Outbox::new(store.clone());
        for i in 0..2 * CHUNK + 3 {
            out.write(Write::UpsertUser {
                extension: i.to_string().into(),
                email: format!("{i}@example.com").into(),
                direction: "both".into(),
            });
        }
        out.meta(MetaKey::PbxLink, "first".into());
        out.meta(MetaKey::PbxLink, "second".into());
        out.flush().await;
        let snapshot = store.snapshot().await.unwrap();
        assert_eq!(snapshot.users.len(), 2 * CHUNK + 3);
        assert_eq!(snapshot.meta(MetaKey::PbxLink), Some("second"));
        out.close().await.unwrap();
    }
}
