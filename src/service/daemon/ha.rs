//! The daemon's side of `[ha]`: the inbox of PBX events, the calls a take-over inherits, and
//! a stop that hands over instead of clearing.

use tokio::sync::mpsc;
use tracing::Instrument;

use super::Daemon;
use super::start::Start;
use crate::service::ha::{InboxBatch, Reader};
use crate::store::{MetaKey, Snapshot};
use crate::sync::types::{CallState, PbxEvent};

impl Start<'_> {
    /// Under `[ha]`: the reader of the inbox, from the row after the last one applied.
    pub(super) fn inbox(&self, snapshot: &Snapshot, out: mpsc::Sender<InboxBatch>) {
        let Some(ha) = &self.options.ha else {
            return;
        };
        let after = snapshot
            .meta(MetaKey::InboxApplied)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let reader = Reader {
            target: ha.target.clone(),
            after,
            out,
        };
        let span = tracing::info_span!("inbox");
        let cancel = self.stop.root.child_token();
        self.stop.tracker.spawn(reader.run(cancel).instrument(span));
    }
}

impl Daemon {
    /// PBX events from the inbox; how far they go is recorded after them, so a crash
    /// never skips one (it may apply the last few twice, which changes nothing).
    pub(super) fn on_inbox(&mut self, batch: InboxBatch) {
        self.on_pbx_events(batch.events);
        self.out
            .meta(MetaKey::InboxApplied, batch.last_id.to_string());
    }

    /// A take-over: the calls the last leader had recorded are running until the PBX says
    /// otherwise (the inbox, read next, holds what came since), so their sessions are kept.
    pub(super) fn inherit_calls(&mut self, snapshot: &Snapshot) {
        if self.options_ha.is_none() {
            return;
        }
        let calls: Vec<PbxEvent> = snapshot
            .users
            .iter()
            .filter_map(|u| {
                let state = CallState::parse(u.pbx_state.as_deref()?)?;
                (state != CallState::Idle || u.dnd == Some(true)).then(|| PbxEvent {
                    extension: u.extension.clone(),
                    state,
                    dnd: u.dnd,
                })
            })
            .collect();
        if !calls.is_empty() {
            let n = calls.len();
            tracing::info!(
                calls = n,
                "take-over: {n} users were in a call or in DND when the last leader recorded them; their sessions are kept"
            );
            self.on_pbx_events(calls);
        }
    }

    /// A stop that leaves the sessions to the next leader: this node lost its lease, or
    /// stops while a standby is ready to take over.
    pub(super) fn hands_over(&self) -> bool {
        self.options_ha
            .as_ref()
            .is_some_and(|ha| ha.keep_sessions.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Stop every task and close the store without clearing a session.
    pub(super) async fn stop_quietly(
        mut self,
        until: tokio::time::Instant,
    ) -> Result<(), crate::service::ServiceError> {
        let sessions = self.engine.session_count();
        tracing::info!(
            sessions,
            "stopping without clearing the {sessions} In a call sessions: the next leader keeps or clears them"
        );
        // Writes in flight end at once: the fence refuses them.
        let _ = tokio::time::timeout_at(until, self.parts.writers.close()).await;
        self.stop.tracker.close();
        let _ = tokio::time::timeout_at(until, self.stop.tracker.wait()).await;
        self.out.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}
