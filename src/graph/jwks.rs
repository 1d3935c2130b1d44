//! The Microsoft identity platform's published signing keys (a JSON Web Key Set, RFC 7517),
//! for checking the `validationTokens` of rich notifications
//! (<https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>, section
//! "Validating the authenticity of notifications"). The keys are at
//! `{login_url}/common/discovery/v2.0/keys` (the `jwks_uri` of
//! <https://login.microsoftonline.com/common/.well-known/openid-configuration>), so the
//! emulator, or a national cloud, serves them under the same `azure.login_url` as the tokens.
//!
//! The set is fetched at start and refreshed in the background (the service's task). A token
//! naming a key id not in the set makes one fetch at once, and then at most one a minute: a
//! stream of forged tokens with made-up key ids cannot make the daemon hammer the endpoint.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use tokio::time::Instant;
use url::Url;

use super::GraphError;
use super::error::error_chain;

/// Largest key set read (Microsoft's is a few kilobytes).
const MAX_BODY: usize = 256 * 1024;
/// Most keys kept from one set.
const MAX_KEYS: usize = 64;

/// Where the keys are and how eagerly they are fetched again.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// The key set's URL, see [`jwks_url`].
    pub url: Url,
    /// Deadline of one fetch (the webhook must answer Graph within 3 s).
    pub timeout: Duration,
    /// Fetches for unknown key ids are at least this far apart.
    pub min_refetch: Duration,
}

/// `{login_url}/common/discovery/v2.0/keys`.
pub fn jwks_url(login_url: &Url) -> Result<Url, GraphError> {
    super::join(login_url, &["common", "discovery", "v2.0", "keys"])
}

/// Why the key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("key set not fetched: {0}")]
    Fetch(String),
    #[error("key set endpoint answered {0}")]
    Status(u16),
    #[error("key set larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("key set unreadable: {0}")]
    Json(String),
    #[error("key set holds no usable RSA signing key")]
    NoKeys,
}

/// What a look-up found.
#[derive(Clone)]
pub enum Lookup {
    Found(DecodingKey),
    /// The set was just fetched again and does not hold this key.
    Unknown,
    /// Not known, and no fresh set could be had now (fetched a moment ago, or the fetch
    /// failed): ask again later.
    Later,
}

/// The cached key set; cheap to share.
pub struct Jwks {
    settings: JwksSettings,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, DecodingKey>>>,
    /// One fetch at a time; holds when the last fetch for an unknown key id started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    pub fn new(settings: JwksSettings) -> Result<Jwks, GraphError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pbx-teams-presence/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| GraphError::InvalidSettings(format!("HTTP client: {e}")))?;
        Ok(Jwks {
            settings,
            http,
            keys: RwLock::default(),
            fetching: tokio::sync::Mutex::new(None),
        })
    }

    /// The HTTP client (no redirects, the fetch deadline), for the tenant's OpenID document.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn cached(&self) -> Arc<HashMap<String, DecodingKey>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The key `kid`: from the cache, or after one fetch when it is not there (at most one
    /// such fetch per `min_refetch`; `now` is the monotonic clock).
    pub async fn key(&self, kid: &str, now: Instant) -> Lookup {
        if let Some(key) = self.cached().get(kid) {
            return Lookup::Found(key.clone());
        }
        let mut last = self.fetching.lock().await;
        // A fetch that finished while this one waited may have brought it.
        if let Some(key) = self.cached().get(kid) {
            return Lookup::Found(key.clone());
        }
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.settings.min_refetch) {
            return Lookup::Later;
        }
        *last = Some(now);
        match self.fetch().await {
            Ok(_) => match self.cached().get(kid) {
                Some(key) => Lookup::Found(key.clone()),
                None => Lookup::Unknown,
            },
            Err(e) => {
                tracing::warn!(error = %e, url = %self.settings.url,
                    "notification signing keys not fetched from {} ({e}); the batch is left for Graph to deliver again",
                    self.settings.url);
                Lookup::Later
            }
        }
    }

    /// Fetch the set now (at start and on the background schedule); the number of keys.
    pub async fn refresh(&self) -> Result<usize, JwksError> {
        let _one = self.fetching.lock().await;
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, JwksError> {
        let body = self.download().await?;
        let keys = parse(&body)?;
        let count = keys.len();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        tracing::debug!(keys = count, "notification signing keys fetched");
        Ok(count)
    }

    async fn download(&self) -> Result<Vec<u8>, JwksError> {
        let fetch = |e: reqwest::Error| JwksError::Fetch(error_chain(&e));
        let mut response = self
            .http
            .get(self.settings.url.clone())
            .send()
            .await
            .map_err(fetch)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The RSA signing keys of a key set, by key id. Entries that are not RSA signing keys with
/// an id, or that do not parse, are skipped.
pub(crate) fn parse(body: &[u8]) -> Result<HashMap<String, DecodingKey>, JwksError> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| JwksError::Json(e.to_string()))?;
    let keys: HashMap<String, DecodingKey> = set
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| usable(&jwk))
        .take(MAX_KEYS)
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoKeys);
    }
    Ok(keys)
}

fn usable(jwk: &Jwk) -> Option<(String, DecodingKey)> {
    let kid = jwk.common.key_id.clone()?;
    let signing = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    if !signing || !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) || kid.len() > 128 {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
}
