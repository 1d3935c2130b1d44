//! Microsoft Graph and the Entra token endpoint, app-only (client credentials).
//!
//! [`GraphClient`] is the only way the daemon talks to Microsoft: it fetches and caches the
//! token, spends a shared presence request budget, retries what may be retried, and turns
//! Graph's answers into [`GraphError`] variants named for what the caller must do next.
//! It takes plain [`GraphSettings`]; it knows nothing about the config file, the store or PBXs.
//!
//! Sources cited in this module: the client-credentials flow
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>,
//! setPresence <https://learn.microsoft.com/en-us/graph/api/presence-setpresence> (and
//! <https://github.com/microsoftgraph/microsoft-graph-docs/issues/18837> on `sessionId`),
//! getPresencesByUserId
//! <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid> and
//! the throttling limits <https://learn.microsoft.com/en-us/graph/throttling-limits>. The other
//! submodules cite their own sources.

mod aadsts;
mod auth;
mod batch;
mod budget;
mod client_cert;
pub mod delegated;
mod error;
mod groups;
mod http;
pub mod jwks;
pub mod limits;
pub mod notify_crypto;
mod presence;
mod probe;
pub mod subscriptions;
mod users;
pub mod validation_tokens;
pub mod webhook;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod metrics_tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use url::Url;

pub use aadsts::{consent_url, explain_aadsts};
pub use auth::Bearer;
pub use client_cert::{CertificateError, ClientCertificate, EXPIRY_WARNING};
pub use error::GraphError;
pub use groups::{
    EXTENSION_ATTRIBUTE_NAMES, ExtensionAttribute, GroupMember, UnknownAttribute, extension_of,
};
pub use presence::{ClearOutcome, Presence};
pub use probe::{ProbeReport, ProbeStep};
pub use users::{MatchedBy, Stages, UserMatch};

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use auth::Auth;
use budget::Budget;

/// Everything the Graph client needs, as plain values (the service builds it from the config).
#[derive(Clone)]
pub struct GraphSettings {
    /// Entra login host, e.g. `https://login.microsoftonline.com`; a national cloud or the
    /// emulator may differ.
    pub login_url: Url,
    /// Graph host without version, e.g. `https://graph.microsoft.com`; also the token scope
    /// (client-credentials flow above).
    pub graph_url: Url,
    /// Directory (tenant) id or domain the app is registered in (client-credentials flow above).
    pub tenant_id: String,
    /// Application (client) id; also the presence `sessionId` (setPresence above).
    pub client_id: String,
    /// How the app signs in: a client secret or a certificate.
    pub credential: ClientCredential,
    /// Deadline for one HTTP request (connect + answer).
    pub request_timeout: Duration,
    /// Attempts per request, the first included (e.g. 5); at least 1.
    pub max_attempts: u32,
    /// First backoff step (e.g. 250 ms); doubles per attempt, with full jitter.
    pub backoff_base: Duration,
    /// Longest backoff step (e.g. 30 s).
    pub backoff_cap: Duration,
    /// Presence requests allowed per 30 s for this app: 1500, the lower of two published
    /// figures (1,500 on the getPresencesByUserId page, 10,000 on the throttling limits page).
    pub presence_budget_per_30s: u32,
    /// Where every request is counted, by operation and status.
    pub metrics: Metrics,
    /// Checked right before each request that changes something in Graph; its node and
    /// epoch go into every request's `User-Agent`.
    pub fence: crate::fence::Fence,
}

impl fmt::Debug for GraphSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphSettings")
            .field("login_url", &self.login_url.as_str())
            .field("graph_url", &self.graph_url.as_str())
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("presence_budget_per_30s", &self.presence_budget_per_30s)
            .finish()
    }
}

/// How the app proves who it is at the token endpoint (client-credentials flow above).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientCredential {
    /// The client secret VALUE. Never logged and never shown by `Debug`.
    Secret(String),
    /// A certificate whose private key signs a fresh client assertion for every token
    /// request (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>).
    Certificate(Arc<ClientCertificate>),
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientCredential::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

/// Counters since start, for the `status` command and the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    /// HTTP requests sent to Graph (retries and `$batch` envelopes each count once).
    pub requests: u64,
    /// Answers with status 429, inner `$batch` answers included.
    pub throttled: u64,
    /// Requests sent again after a failure (backoff, Retry-After or a fresh token).
    pub retries: u64,
    /// Token requests sent to the login endpoint.
    pub token_fetches: u64,
    /// Requests that finally failed (returned an error to the caller).
    pub errors: u64,
}

/// Shared counters behind [`GraphStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
    token_fetches: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn snapshot(&self) -> GraphStats {
        GraphStats {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            token_fetches: self.token_fetches.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// A cheap-to-clone handle on one Graph app registration; clones share token, budget and stats.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

/// The state all clones share.
struct Inner {
    /// Graph root with the version, e.g. `https://graph.microsoft.com/v1.0/`.
    api_root: Url,
    /// Origin of `graph_url`: `@odata.nextLink` must stay on it, or the token would leak.
    graph_origin: url::Origin,
    /// Application id, sent as the presence `sessionId` (setPresence above).
    client_id: String,
    /// Connection pool for Graph requests.
    http: reqwest::Client,
    /// Token cache and fetcher.
    auth: Auth,
    /// Presence requests per 30 s, shared by every presence call (getPresencesByUserId above).
    budget: Budget,
    /// Retry pacing.
    backoff: Backoff,
    /// Attempts per request, the first included.
    max_attempts: u32,
    /// Counters for [`GraphClient::stats`].
    counters: Arc<Counters>,
    /// Every request by operation and status, for Prometheus.
    metrics: Metrics,
    /// The leader's right to write (`[ha]`); always open on a single node.
    fence: crate::fence::Fence,
    /// Kept for `consent_url` hints in the probe.
    login_url: Url,
    /// Kept for `consent_url` hints in the probe.
    tenant_id: String,
}

impl fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphClient")
            .field("api_root", &self.inner.api_root.as_str())
            .field("client_id", &self.inner.client_id)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GraphClient {
    /// Checks the settings and builds the client; no request is sent yet.
    pub fn new(settings: GraphSettings) -> Result<GraphClient, GraphError> {
        validate(&settings)?;
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pbx-teams-presence/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::InvalidSettings(format!("HTTP client: {e}")))?;
        let counters = Arc::new(Counters::default());
        let backoff = Backoff::new(settings.backoff_base, settings.backoff_cap);
        let auth = Auth::new(&settings, http.clone(), backoff, Arc::clone(&counters))?;
        let inner = Inner {
            api_root: join(&settings.graph_url, &["v1.0", ""])?,
            graph_origin: settings.graph_url.origin(),
            client_id: settings.client_id.clone(),
            http,
            auth,
            budget: Budget::new(settings.presence_budget_per_30s, Duration::from_secs(30)),
            backoff,
            max_attempts: settings.max_attempts,
            counters,
            metrics: settings.metrics,
            fence: settings.fence,
            login_url: settings.login_url,
            tenant_id: settings.tenant_id,
        };
        Ok(GraphClient {
            inner: Arc::new(inner),
        })
    }

    /// Makes sure a valid token is cached (fetching one if needed); used at start-up so that
    /// credential errors show before anything else happens.
    pub async fn ensure_token(&self) -> Result<(), GraphError> {
        self.inner.auth.token().await.map(drop)
    }

    /// Counters since start.
    pub fn stats(&self) -> GraphStats {
        self.inner.counters.snapshot()
    }
}

fn validate(s: &GraphSettings) -> Result<(), GraphError> {
    let bad = |what: &str| Err(GraphError::InvalidSettings(what.to_string()));
    for (name, url) in [("login_url", &s.login_url), ("graph_url", &s.graph_url)] {
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return bad(&format!("{name} must be an http(s) URL, got {url}"));
        }
    }
    if s.tenant_id.trim().is_empty() {
        return bad("tenant_id is empty");
    }
    if s.client_id.trim().is_empty() {
        return bad("client_id is empty");
    }
    if matches!(&s.credential, ClientCredential::Secret(secret) if secret.is_empty()) {
        return bad("client_secret is empty");
    }
    if s.max_attempts == 0 {
        return bad("max_attempts must be at least 1");
    }
    if s.presence_budget_per_30s == 0 {
        return bad("presence_budget_per_30s must be at least 1");
    }
    Ok(())
}

/// `base` with `segments` appended as path segments (each percent-encoded); a trailing slash
/// on `base` is ignored. An empty last segment gives a trailing slash.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Result<Url, GraphError> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| GraphError::InvalidSettings(format!("{base} cannot be a base URL")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

#[cfg(test)]
pub(crate) fn test_settings(base: &Url) -> GraphSettings {
    GraphSettings {
        login_url: base.clone(),
        graph_url: base.clone(),
        tenant_id: "contoso.onmicrosoft.com".into(),
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        credential: ClientCredential::Secret("s3cr3t-value".into()),
        request_timeout: Duration::from_secs(5),
        max_attempts: 4,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        presence_budget_per_30s: limits::PRESENCE_REQUESTS_PER_30S,
        metrics: Metrics::default(),
        fence: crate::fence::Fence::open(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn join_ignores_trailing_slash_and_keeps_prefix() {
        let a = join(&url("https://h/"), &["t", "oauth2"]).unwrap();
        assert_eq!(a.as_str(), "https://h/t/oauth2");
        let b = join(&url("http://127.0.0.1:9/fake/"), &["v1.0", ""]).unwrap();
        assert_eq!(b.as_str(), "http://127.0.0.1:9/fake/v1.0/");
        let c = join(&url("https://h"), &["users", "a b/c"]).unwrap();
        assert_eq!(c.as_str(), "https://h/users/a%20b%2Fc");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = test_settings(&url("https://h"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn settings_are_validated() {
        let base = url("https://h");
        let mut s = test_settings(&base);
        s.max_attempts = 0;
        assert!(matches!(
            GraphClient::new(s),
            Err(GraphError::InvalidSettings(_))
        ));
        let mut s = test_settings(&base);
        s.login_url = url("ftp://h");
        assert!(matches!(
            GraphClient::new(s),
            Err(GraphError::InvalidSettings(_))
        ));
        let mut s = test_settings(&base);
        s.tenant_id = " ".into();
        assert!(matches!(
            GraphClient::new(s),
            Err(GraphError::InvalidSettings(_))
        ));
        assert!(GraphClient::new(test_settings(&base)).is_ok());
    }
}
