//! The generic HTTP connector, outbound side: Teams presence changes POSTed to `pbx.push_url`.
//!
//! Updates are coalesced per extension (the latest wins) and retried with backoff until the PBX
//! answers 2xx. Delivered batches are reported back so the store can record them; anything not
//! delivered before a shutdown is pushed again after the restart, because the store still
//! shows it as pending.

use std::time::Duration;

use reqwest::Url;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::PbxUpdate;
pub use super::mailbox::Pusher;
use super::mailbox::{self, Pending, PushQueue};
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

/// Start the push loop. `delivered` receives every batch the PBX acknowledged.
pub fn spawn(
    settings: PushSettings,
    delivered: mpsc::Sender<Vec<PbxUpdate>>,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Pusher, reqwest::Error> {
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()?;
    let (pusher, queue) = mailbox::mailbox();
    let span = tracing::info_span!("pbx_push", url = %redacted(&settings.url));
    tracker.spawn(run(settings, client, queue, delivered, cancel).instrument(span));
    Ok(pusher)
}

async fn run(
    settings: PushSettings,
    client: reqwest::Client,
    queue: PushQueue,
    delivered: mpsc::Sender<Vec<PbxUpdate>>,
    cancel: CancellationToken,
) {
    let mut pending = Pending::new();
    let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = queue.take_into(&mut pending) => {}
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
                if delivered.send(batch).await.is_err() {
                    return;
                }
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
