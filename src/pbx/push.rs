//! The generic HTTP connector, outbound side: Teams presence changes POSTed to `pbx.push_url`.
//!
//! Updates are coalesced per extension (the latest wins) and retried with backoff until the PBX
//! answers 2xx. Delivered batches are reported back so the store can record them; anything not
//! delivered before a shutdown is pushed again after the restart, because the store still
//! shows it as pending. Each push carries `pbx.push_token` (never `pbx.token`, which lets
//! its holder post call states), or no token at all.

use std::time::Duration;

use reqwest::Url;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::PbxUpdate;
pub use super::mailbox::Pusher;
use super::mailbox::{self, Pending, PushQueue};
use super::tls::{self, CertProblem, Outage, TlsSetupError};
use crate::backoff::Backoff;
use crate::config::CaFile;
use crate::metrics::Metrics;

/// At most this many updates per POST.
pub const MAX_BATCH: usize = 1000;

/// Where and how to push.
#[derive(Clone)]
pub struct PushSettings {
    pub url: Url,
    /// Sent as `Authorization: Bearer` so the PBX side can check who is calling; `None`: no
    /// `Authorization` header.
    pub token: Option<String>,
    /// Certificate authorities trusted besides the system's (`pbx.ca_file`).
    pub ca_file: Option<CaFile>,
    pub timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Checked before each push (`[ha]`: only the leader pushes).
    pub fence: crate::fence::Fence,
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

/// Why the push client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PushClientError {
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Start the push loop. `delivered` receives every batch the PBX acknowledged; `metrics`
/// counts the pushes and measures each change's way to the PBX.
pub fn spawn(
    settings: PushSettings,
    delivered: mpsc::Sender<Vec<PbxUpdate>>,
    metrics: Metrics,
    cancel: CancellationToken,
    tracker: &tokio_util::task::TaskTracker,
) -> Result<Pusher, PushClientError> {
    let tls = tls::client_config(settings.ca_file.as_ref())?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(settings.timeout)
        .build()?;
    if settings.token.is_some() && tls::in_clear_text(&settings.url) {
        let url = redacted(&settings.url);
        tracing::warn!(url = %url,
            "pbx.push_token goes to {url} in clear text (plain http to another host): whoever reads the traffic can take it; use https:// in pbx.push_url");
    }
    let (pusher, queue) = mailbox::mailbox();
    let span = tracing::info_span!("pbx_push", url = %redacted(&settings.url));
    let links = Links { delivered, metrics };
    tracker.spawn(run(settings, client, queue, links, cancel).instrument(span));
    Ok(pusher)
}

/// Where the push loop reports.
struct Links {
    delivered: mpsc::Sender<Vec<PbxUpdate>>,
    metrics: Metrics,
}

async fn run(
    settings: PushSettings,
    client: reqwest::Client,
    queue: PushQueue,
    links: Links,
    cancel: CancellationToken,
) {
    let Links { delivered, metrics } = links;
    let mut pending = Pending::new();
    let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
    let mut outage = Outage::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = queue.take_into(&mut pending) => {}
        }
        if let Err(fenced) = settings.fence.check() {
            tracing::info!(node = %fenced.node, "no more pushes to the PBX: {fenced}");
            return;
        }
        let batch: Vec<PbxUpdate> = pending.values().take(MAX_BATCH).cloned().collect();
        let sent = send(&client, &settings, &batch).await;
        metrics.pbx_pushes(sent.is_ok(), 1);
        metrics.set_pbx_connected(sent.is_ok());
        match sent {
            Ok(()) => {
                acknowledged(&metrics, &batch);
                let failures = outage.end();
                if failures > 0 {
                    let url = redacted(&settings.url);
                    tracing::info!(url = %url, failures, "PBX push to {url} delivered again (after {failures} failures)");
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
                if outage.failed(matches!(why, Failed::Certificate(_))) {
                    tell(&settings.url, &why, pending.len());
                }
                let delay = backoff.delay(outage.failures());
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Each Teams change the PBX just acknowledged, measured from when it was read.
pub(crate) fn acknowledged<'a>(
    metrics: &Metrics,
    updates: impl IntoIterator<Item = &'a PbxUpdate>,
) {
    let now = crate::clock::monotonic();
    for at in updates.into_iter().filter_map(|u| u.read_at) {
        metrics.teams_to_pbx(now.saturating_duration_since(at));
    }
}

/// Why a push failed.
enum Failed {
    /// The PBX's TLS certificate was refused: it will not go away by itself.
    Certificate(CertProblem),
    Other(String),
}

/// A refused certificate is an ERROR naming the URL and why; anything else a WARN.
fn tell(url: &Url, why: &Failed, pending: usize) {
    let url = redacted(url);
    match why {
        Failed::Certificate(reason) => tracing::error!(url = %url, pending,
            "the PBX's TLS certificate at {url} refused, {reason}; pushes are retried with backoff"),
        Failed::Other(error) => tracing::warn!(url = %url, %error, pending,
            "PBX push to {url} failed ({error}); {pending} pending, retrying with backoff (check pbx.push_url and the PBX side)"),
    }
}

async fn send(
    client: &reqwest::Client,
    s: &PushSettings,
    batch: &[PbxUpdate],
) -> Result<(), Failed> {
    let mut request = client.post(s.url.clone());
    if let Some(token) = &s.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .json(&json!({ "updates": batch }))
        .send()
        .await
        .map_err(|e| {
            let e = e.without_url();
            match tls::certificate_problem(&e) {
                Some(problem) => Failed::Certificate(problem),
                None => Failed::Other(tls::explain(&e)),
            }
        })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failed::Other(format!("the PBX answered HTTP {status}")))
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::pbx::tls::tests::{Logs, TestCa, TlsServer};

    fn settings(url: &str, token: Option<&str>) -> PushSettings {
        PushSettings {
            url: Url::parse(url).unwrap(),
            token: token.map(str::to_owned),
            ca_file: None,
            timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(50),
            fence: crate::fence::Fence::open(),
        }
    }

    fn start(settings: PushSettings, cancel: &CancellationToken) -> Pusher {
        let (delivered, _) = mpsc::channel(1);
        let metrics = Metrics::default();
        spawn(
            settings,
            delivered,
            metrics,
            cancel.clone(),
            &TaskTracker::new(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_push_token_in_clear_text_to_another_host_is_warned_at_start() {
        let (logs, _guard) = Logs::capture();
        let cancel = CancellationToken::new();
        for (url, token) in [
            ("https://192.0.2.10/presence", Some("t0ken")),
            ("http://127.0.0.1:8080/presence", Some("t0ken")),
            ("http://192.0.2.10/presence", None),
        ] {
            start(settings(url, token), &cancel);
        }
        assert!(logs.lines("WARN").is_empty(), "{:#?}", logs.lines("WARN"));
        start(
            settings("http://192.0.2.10:8080/presence", Some("t0ken")),
            &cancel,
        );
        let warned = logs.lines("WARN");
        assert_eq!(warned.len(), 1, "{warned:#?}");
        assert!(
            warned[0].contains("pbx.push_token")
                && warned[0].contains("http://192.0.2.10:8080/presence")
        );
        assert!(!warned[0].contains("t0ken"), "{}", warned[0]);
        cancel.cancel();
    }

    #[tokio::test]
    async fn a_refused_certificate_is_one_error_per_outage_and_pushes_keep_retrying() {
        let (logs, _guard) = Logs::capture();
        let mut server = TlsServer::start(TestCa::new().leaf(&["127.0.0.1"], false)).await;
        let url = format!("https://127.0.0.1:{}/presence", server.addr.port());
        let cancel = CancellationToken::new();
        let pusher = start(settings(&url, None), &cancel);
        pusher.push(PbxUpdate {
            extension: "1001".into(),
            email: "a@example.com".into(),
            availability: "Busy".into(),
            activity: "InAMeeting".into(),
            state: "busy".into(),
            read_at: None,
        });
        server.wait_for(4).await;
        cancel.cancel();
        let errors = logs.lines("ERROR");
        assert_eq!(errors.len(), 1, "one ERROR for four refusals: {errors:#?}");
        assert!(
            errors[0].contains(&url) && errors[0].contains("unknown issuer"),
            "{}",
            errors[0]
        );
        assert!(logs.lines("WARN").is_empty(), "{:#?}", logs.lines("WARN"));
    }

    #[test]
    fn logged_urls_carry_no_credentials() {
        let url = Url::parse("https://admin:pw@pbx.example:8443/presence?key=s3cret").unwrap();
        assert_eq!(redacted(&url), "https://pbx.example:8443/presence");
        let settings = PushSettings {
            url,
            token: Some("t0ken".into()),
            ca_file: None,
            timeout: Duration::from_secs(1),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(1),
            fence: crate::fence::Fence::open(),
        };
        let debug = format!("{settings:?}");
        assert!(!debug.contains("t0ken") && !debug.contains("s3cret") && !debug.contains("pw@"));
    }
}
