//! Teams -> Asterisk: each user's mapped Teams state written as a custom device state and a
//! presence state. Latest wins per extension; a failed write is kept and retried with backoff
//! (logged once per outage); what Asterisk took is reported as delivered.

use std::sync::Arc;

use futures_util::{StreamExt, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ari::{Ari, AriError};
use super::writes::writes_for;
use crate::config::AsteriskPbxConfig;
use crate::metrics::Metrics;
use crate::pbx::PbxUpdate;
use crate::pbx::mailbox::{Pending, PushQueue};
use crate::pbx::push::acknowledged;

/// Updates written at once.
const WRITE_CONCURRENCY: usize = 8;
/// Updates taken from the queue per round.
const BATCH: usize = 256;

pub struct Writer {
    pub ari: Ari,
    pub config: Arc<AsteriskPbxConfig>,
    pub queue: PushQueue,
    pub delivered: mpsc::Sender<Vec<PbxUpdate>>,
    pub metrics: Metrics,
    pub fence: crate::fence::Fence,
    pub cancel: CancellationToken,
}

impl Writer {
    pub async fn run(self) {
        let mut pending = Pending::new();
        let backoff = super::RETRY;
        let mut failures: u32 = 0;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = self.queue.take_into(&mut pending) => {}
            }
            if let Err(fenced) = self.fence.check() {
                tracing::info!(node = %fenced.node, "Teams states no longer written to Asterisk: {fenced}");
                return;
            }
            let batch: Vec<PbxUpdate> = pending.values().take(BATCH).cloned().collect();
            let results: Vec<(PbxUpdate, Result<(), AriError>)> = stream::iter(batch)
                .map(|u| async {
                    let r = self.write(&u).await;
                    (u, r)
                })
                .buffer_unordered(WRITE_CONCURRENCY)
                .collect()
                .await;
            let mut done = Vec::with_capacity(results.len());
            let mut error = None;
            for (u, r) in results {
                self.metrics.pbx_pushes(r.is_ok(), 1);
                match r {
                    Ok(()) => {
                        if pending.get(&u.extension) == Some(&u) {
                            pending.remove(&u.extension);
                        }
                        done.push(u);
                    }
                    Err(e) => error = Some(e),
                }
            }
            acknowledged(&self.metrics, &done);
            if !done.is_empty() && self.delivered.send(done).await.is_err() {
                return;
            }
            match error {
                None if failures > 0 => {
                    tracing::info!(
                        failures,
                        "Asterisk state writes work again (after {failures} failures)"
                    );
                    failures = 0;
                }
                None => {}
                Some(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, pending = pending.len(),
                            "writing Teams states to Asterisk failed ({e}); {} pending, retrying with backoff", pending.len());
                    }
                    failures = failures.saturating_add(1);
                    // A new update (e.g. every user's state, sent again when the listener
                    // reconnects) ends the wait: Asterisk is likely back.
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff.delay(failures)) => {}
                        () = self.queue.take_new_into(&mut pending) => {}
                    }
                }
            }
        }
    }

    async fn write(&self, update: &PbxUpdate) -> Result<(), AriError> {
        let Some(writes) = writes_for(&self.config, update) else {
            tracing::error!(extension = %update.extension, state = %update.state,
                "{}: no [pbx.states] entry for state {}; nothing written", update.extension, update.state);
            return Ok(());
        };
        for w in writes {
            self.ari.set_variable(&w.variable, &w.value).await?;
            tracing::debug!(extension = %update.extension, variable = %w.variable, value = %w.value,
                "Asterisk state written");
        }
        Ok(())
    }
}
