//! Teams -> Asterisk: each user's mapped Teams state written as a custom device state and a
//! presence state. Latest wins per extension; a failed write is kept and retried with backoff
//! (logged once per outage); what Asterisk took is reported as delivered.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ari::{Ari, AriError};
use super::writes::writes_for;
use crate::config::AsteriskPbxConfig;
use crate::pbx::PbxUpdate;

/// Updates written at once.
const WRITE_CONCURRENCY: usize = 8;
/// Updates taken from the queue per round.
const BATCH: usize = 256;

pub struct Writer {
    pub ari: Ari,
    pub config: Arc<AsteriskPbxConfig>,
    pub rx: mpsc::UnboundedReceiver<PbxUpdate>,
    pub delivered: mpsc::UnboundedSender<Vec<PbxUpdate>>,
    pub cancel: CancellationToken,
}

impl Writer {
    pub async fn run(mut self) {
        let mut pending: BTreeMap<String, PbxUpdate> = BTreeMap::new();
        let backoff = super::RETRY;
        let mut failures: u32 = 0;
        loop {
            if pending.is_empty() {
                tokio::select! {
                    () = self.cancel.cancelled() => return,
                    next = self.rx.recv() => match next {
                        Some(u) => { pending.insert(u.extension.clone(), u); }
                        None => return,
                    },
                }
            }
            while let Ok(u) = self.rx.try_recv() {
                pending.insert(u.extension.clone(), u);
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
            if !done.is_empty() {
                let _ = self.delivered.send(done);
            }
            match error {
                None if failures > 0 => {
                    tracing::info!(failures, "Asterisk state writes work again");
                    failures = 0;
                }
                None => {}
                Some(e) => {
                    if failures == 0 {
                        tracing::warn!(error = %e, pending = pending.len(),
                            "writing Teams states to Asterisk failed; retrying with backoff");
                    }
                    failures = failures.saturating_add(1);
                    // A new update (e.g. every user's state, sent again when the listener
                    // reconnects) ends the wait: Asterisk is likely back.
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff.delay(failures)) => {}
                        next = self.rx.recv() => match next {
                            Some(u) => { pending.insert(u.extension.clone(), u); }
                            None => return,
                        },
                    }
                }
            }
        }
    }

    async fn write(&self, update: &PbxUpdate) -> Result<(), AriError> {
        let Some(writes) = writes_for(&self.config, update) else {
            tracing::error!(extension = %update.extension, state = %update.state,
                "no [pbx.states] entry for this state; nothing written");
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
