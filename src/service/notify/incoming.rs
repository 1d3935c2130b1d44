//! What arrives from the webhook: basic notifications (the presences are read, batched),
//! rich ones (decrypted off the runtime), lifecycle events (to the planner). An item whose
//! user its subscription does not name, or a rich item taken before (`replay.rs`), is
//! dropped and counted (`notifications_refused_user`, `notifications_refused_replay`).

use std::sync::Arc;

use super::super::poller::Polled;
use super::manager::Manager;
use super::replay;
use crate::graph::Presence;
use crate::graph::notify_crypto::{self, CryptoError, EncryptedContent};
use crate::graph::webhook::Notification;
use crate::subscriptions::Input;
use crate::sync::types::Millis;

impl Manager {
    /// A batch from the webhook: every change its subscription may announce clears its user's
    /// suspicion; rich items are decrypted, basic ones wait to be read; lifecycle events go
    /// to the planner last.
    pub(super) async fn on_notes(&mut self, notes: Vec<Notification>) {
        let now = self.clock.now();
        self.forget_gone_subscriptions();
        let mut rich = Vec::new();
        let mut lifecycle = Vec::new();
        for note in notes {
            match note {
                Notification::Changed {
                    subscription,
                    user,
                    encrypted,
                } => {
                    if !self.admitted(&subscription, &user, encrypted.as_ref(), now) {
                        continue;
                    }
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
        self.out.flush().await;
    }

    /// The replay lists of subscriptions that are gone.
    fn forget_gone_subscriptions(&mut self) {
        let known = self.links.known.borrow().clone();
        self.replays.retain(|s| known.contains_key(s));
    }

    /// Whether an item may change anything: its subscription names its user, and a rich item
    /// was not taken before. A dropped one is logged and counted.
    fn admitted(
        &mut self,
        subscription: &str,
        user: &str,
        encrypted: Option<&serde_json::Value>,
        now: Millis,
    ) -> bool {
        let named = self
            .users_of(subscription)
            .is_some_and(|ids| ids.iter().any(|id| id.eq_ignore_ascii_case(user)));
        if !named {
            tracing::warn!(%subscription, teams_user = %user, "notification for Teams user {user} dropped: its subscription {subscription} does not name that user");
            self.out.count("notifications_refused_user", 1);
            return false;
        }
        if let Some(content) = encrypted
            && !self
                .replays
                .first(subscription, replay::identity(content), now)
        {
            tracing::warn!(%subscription, teams_user = %user, "notification for Teams user {user} dropped: a replay of an item already taken");
            self.out.count("notifications_refused_replay", 1);
            return false;
        }
        true
    }

    /// The users subscription `id` names; `None` when no account holds it.
    fn users_of(&self, id: &str) -> Option<&[Arc<str>]> {
        self.config
            .accounts
            .iter()
            .filter_map(|a| self.planner.state(a)?.sub())
            .find(|s| s.id == id)
            .map(|s| s.ids.as_slice())
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
                    tracing::warn!(teams_user = %user, "rich notification for Teams user {user} carries another user; presence read instead");
                    self.pending.insert(user);
                }
                Err(e) => {
                    tracing::warn!(teams_user = %user, error = %e, "rich notification for Teams user {user} not decrypted ({e}); presence read instead");
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
                tracing::warn!(error = %e, users = ids.len(), "presence read of {} users after a notification failed ({e}); the next poll catches up", ids.len());
            }
        }
    }
}
