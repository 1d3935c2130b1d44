//! What arrives from the webhook: basic notifications (the presences are read, batched),
//! rich ones (decrypted off the runtime), lifecycle events (to the planner).

use super::super::poller::Polled;
use super::manager::Manager;
use crate::graph::Presence;
use crate::graph::notify_crypto::{self, CryptoError, EncryptedContent};
use crate::graph::webhook::Notification;
use crate::subscriptions::Input;

impl Manager {
    /// A batch from the webhook: every change clears its user's suspicion; rich items are
    /// decrypted, basic ones wait to be read; lifecycle events go to the planner last.
    pub(super) async fn on_notes(&mut self, notes: Vec<Notification>) {
        let mut rich = Vec::new();
        let mut lifecycle = Vec::new();
        for note in notes {
            match note {
                Notification::Changed {
                    user, encrypted, ..
                } => {
                    self.feed(Input::Notified(user.clone())).await;
                    match encrypted {
                        Some(content) => rich.push((user, content)),
                        None => {
                            self.pending.insert(user);
                        }
                    }
                }
                Notification::Lifecycle {
                    subscription,
                    event,
                } => lifecycle.push(Input::Lifecycle {
                    subscription,
                    event,
                }),
            }
        }
        if !rich.is_empty() {
            self.decrypt(rich).await;
        }
        for event in lifecycle {
            self.feed(event).await;
        }
    }

    /// Rich notifications carry the presence: decrypt (off the runtime: RSA takes ~1.6 ms)
    /// and hand it on; an item that does not decrypt is read like a basic one.
    async fn decrypt(&mut self, items: Vec<(String, serde_json::Value)>) {
        let Some(keys) = self.keys.clone() else {
            self.pending.extend(items.into_iter().map(|(u, _)| u));
            return;
        };
        let done = tokio::task::spawn_blocking(move || {
            items
                .into_iter()
                .map(|(user, content)| {
                    let result = serde_json::from_value::<EncryptedContent>(content)
                        .map_err(|_| CryptoError::BadJson)
                        .and_then(|c| notify_crypto::decrypt(&keys, &c));
                    (user, result)
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(done) = done else { return };
        let mut presences = Vec::new();
        for (user, result) in done {
            match result {
                Ok(p) if p.id.eq_ignore_ascii_case(&user) => presences.push(Presence {
                    id: p.id,
                    availability: p.availability,
                    activity: p.activity,
                }),
                Ok(_) => {
                    tracing::warn!(%user, "rich notification for another user than it names; read instead");
                    self.pending.insert(user);
                }
                Err(e) => {
                    tracing::warn!(%user, error = %e, "rich notification not decrypted; presence read instead");
                    self.pending.insert(user);
                }
            }
        }
        if !presences.is_empty() {
            let _ = self.links.out.send(Polled::Notified(presences)).await;
        }
    }

    /// Read the presences basic notifications named (one request per 650 ids, see
    /// <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>).
    pub(super) async fn fetch_pending(&mut self) {
        let ids: Vec<String> = self.pending.drain().collect();
        let graph = self.links.graph.borrow().clone();
        match graph.get_presences(&ids).await {
            Ok(presences) => {
                let _ = self.links.out.send(Polled::Notified(presences)).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, users = ids.len(), "presence read after a notification failed; the next poll catches up");
            }
        }
    }
}
