//! The generic HTTP connector, outbound side: Teams presence changes POSTed to `pbx.push_url`.
//!
//! Updates are coalesced per extension (the latest wins) and retried with backoff until the PBX
//! answers 2xx. Delivered batches are reported back so the store can record them; anything not
//! delivered before a shutdown is pushed again after the restart, because the store still
//! shows it as pending.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PbxUpdate;
use crate::backoff::Backoff;

/// At most this many updates per POST.
pub const MAX_BATCH: usize = 1000;

/// Where and how to push.
#[derive(Clone)]
pub struct PushSettings {
    pub url: Url,
    /// Sent as `Authorization: Bearer` so the PBX side can check who is calling.
    pub token: String,
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSettings")
            .field("url", &redacted(&self.url))
            .field("token", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The URL without user info and query, which may carry credentials: safe to log.
pub fn redacted(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// The sending half: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Pusher {
    tx: mpsc::UnboundedSender<PbxUpdate>,
}

impl Pusher {
    /// A pusher and the queue it feeds, for a connector with its own delivery loop.
    pub fn channel() -> (Pusher, mpsc::UnboundedReceiver<PbxUpdate>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Pusher { tx }, rx)
    }

    /// Queue an update; a newer one for the same extension replaces it if still queued.
    pub fn push(&self, update: PbxUpdate) {
        if self.tx.send(update).is_err() {
            tracing::debug!("PBX pusher stopped; update dropped (it stays pending in the store)");
        }
    }
}

/// Start the push loop. `delivered` receives every batch the PBX acknowledged.
pub fn spawn(
    settings: PushSettings,
    delivered: mpsc::UnboundedSender<Vec<PbxUpdate>>,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Pusher, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()?;
    let (tx, rx) = mpsc::unbounded_channel();
    tracker.spawn(run(settings, client, rx, delivered, cancel));
    Ok(Pusher { tx })
}

async fn run(
    settings: PushSettings,
    client: reqwest::Client,
    mut rx: mpsc::UnboundedReceiver<PbxUpdate>,
    delivered: mpsc::UnboundedSender<Vec<PbxUpdate>>,
    cancel: CancellationToken,
) {
    let mut pending: BTreeMap<String, PbxUpdate> = BTreeMap::new();
    let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
    let mut failures: u32 = 0;
    loop {
        if pending.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                next = rx.recv() => match next {
                    Some(u) => { pending.insert(u.extension.clone(), u); }
                    None => return,
                },
            }
        }
        while let Ok(u) = rx.try_recv() {
            pending.insert(u.extension.clone(), u);
        }
        let batch: Vec<PbxUpdate> = pending.values().take(MAX_BATCH).cloned().collect();
        match send(&client, &settings, &batch).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(url = %redacted(&settings.url), failures, "PBX push delivered again");
                    failures = 0;
                }
                for u in &batch {
                    if pending.get(&u.extension) == Some(u) {
                        pending.remove(&u.extension);
                    }
                }
                let _ = delivered.send(batch);
            }
            Err(why) => {
                if failures == 0 {
                    tracing::warn!(url = %redacted(&settings.url), error = %why, pending = pending.len(),
                        "PBX push failed; retrying with backoff (check pbx.push_url and the PBX side)");
                }
                failures = failures.saturating_add(1);
                let delay = backoff.delay(failures);
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn send(
    client: &reqwest::Client,
    s: &PushSettings,
    batch: &[PbxUpdate],
) -> Result<(), String> {
    let response = client
        .post(s.url.clone())
        .bearer_auth(&s.token)
        .json(&json!({ "updates": batch }))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the PBX answered HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_urls_carry_no_credentials() {
        let url = Url::parse("https://admin:pw@pbx.example:8443/presence?key=s3cret").unwrap();
        assert_eq!(redacted(&url), "https://pbx.example:8443/presence");
        let settings = PushSettings {
            url,
            token: "t0ken".into(),
            timeout: Duration::from_secs(1),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(1),
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("t0ken") && !debug.contains("s3cret") && !debug.contains("pw@"));
    }
}
