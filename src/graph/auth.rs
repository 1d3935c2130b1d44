//! App-only token (client credentials, v2.0 endpoint) via the `oauth2` crate, cached and
//! renewed before it expires. Concurrent callers share one fetch. The app signs in with a
//! client secret, or with a certificate: then every request carries a fresh client assertion
//! (`client_cert.rs`).
//!
//! Sources: the client-credentials page
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>,
//! the AADSTS page
//! <https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes> and the
//! token lifetimes page
//! <https://learn.microsoft.com/en-us/entra/identity-platform/configurable-token-lifetimes>.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AsyncHttpClient, AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet,
    HttpClientError, HttpRequest, HttpResponse, RequestTokenError, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::aadsts::{explain_aadsts, explain_oauth_error, extract_aadsts};
use super::client_cert::{ASSERTION_TYPE, Signer};
use super::error::error_chain;
use super::{ClientCredential, Counters, GraphError, GraphSettings, join};
use crate::backoff::Backoff;
use crate::metrics::{GraphStatus, Metrics};

/// Lifetime assumed when the token answer has no `expires_in` (the client-credentials page
/// documents it, so this is only a guard; short, so a wrong guess costs little).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);

/// An access token. Opaque (token lifetimes page); `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(Arc<str>);

impl Bearer {
    /// Wraps a token that did not come from [`Auth`] (a delegated one).
    pub(crate) fn new(token: &str) -> Bearer {
        Bearer(Arc::from(token))
    }

    /// The raw token, for the Authorization header only.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

/// Entra's token error body: the standard fields plus `error_codes` (client-credentials and
/// AADSTS pages).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AadError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
}

impl fmt::Display for AadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}

impl oauth2::ErrorResponse for AadError {}

impl AadError {
    /// The token endpoint's answer as the caller's next action.
    pub(crate) fn into_error(self) -> GraphError {
        if self.error == "temporarily_unavailable" {
            return GraphError::Unavailable { status: 503 };
        }
        let aadsts = self
            .error_codes
            .first()
            .copied()
            .or_else(|| self.error_description.as_deref().and_then(extract_aadsts));
        let hint = aadsts
            .and_then(explain_aadsts)
            .unwrap_or_else(|| explain_oauth_error(&self.error));
        GraphError::Credentials {
            aadsts,
            error: self.error,
            hint,
        }
    }
}

/// Why the HTTP exchange with the token endpoint failed before any OAuth parsing.
#[derive(Debug, thiserror::Error)]
enum TokenHttpError {
    #[error("{0}")]
    Transport(HttpClientError<reqwest::Error>),
    #[error("HTTP {0}")]
    Status(u16),
}

type AadClient = oauth2::Client<
    AadError,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A token and when it stops being usable.
struct Cached {
    token: Bearer,
    fetched: Instant,
    expires: Instant,
}

/// Fetches, caches and renews the app token.
pub(crate) struct Auth {
    oauth: AadClient,
    /// `Some` with a certificate credential.
    signer: Option<Signer>,
    /// `{graph_url}/.default` (client-credentials page).
    scope: Scope,
    http: reqwest::Client,
    backoff: Backoff,
    max_attempts: u32,
    counters: Arc<Counters>,
    /// Token requests by status (`op="token"`), for Prometheus.
    metrics: Metrics,
    /// Held during a fetch, so concurrent callers wait for that fetch instead of starting theirs.
    cache: Mutex<Option<Cached>>,
}

/// Renew when less than max(5 min, 10 % of the lifetime) is left, but never in the first
/// half of the lifetime (short test tokens). Lifetimes vary from 60 to 90 min (token
/// lifetimes page).
pub(crate) fn needs_renewal(now: Instant, fetched: Instant, expires: Instant) -> bool {
    let lifetime = expires.saturating_duration_since(fetched);
    let margin = (lifetime / 10)
        .max(Duration::from_secs(300))
        .min(lifetime / 2);
    now + margin >= expires
}

impl Auth {
    pub(crate) fn new(
        s: &GraphSettings,
        http: reqwest::Client,
        backoff: Backoff,
        counters: Arc<Counters>,
    ) -> Result<Auth, GraphError> {
        // POST {login}/{tenant}/oauth2/v2.0/token (client-credentials page).
        let token_url = join(&s.login_url, &[&s.tenant_id, "oauth2", "v2.0", "token"])?;
        let scope = format!("{}/.default", s.graph_url.as_str().trim_end_matches('/'));
        let signer = match &s.credential {
            ClientCredential::Secret(_) => None,
            ClientCredential::Certificate(certificate) => Some(Signer::new(
                Arc::clone(certificate),
                &s.client_id,
                token_url.as_str(),
            )),
        };
        let oauth = oauth2::Client::<
            AadError,
            BasicTokenResponse,
            BasicTokenIntrospectionResponse,
            StandardRevocableToken,
            BasicRevocationErrorResponse,
        >::new(ClientId::new(s.client_id.clone()))
        .set_token_uri(TokenUrl::from_url(token_url))
        // client_id and client_secret (if any) as form fields, the documented default.
        .set_auth_type(AuthType::RequestBody);
        let oauth: AadClient = match &s.credential {
            ClientCredential::Secret(secret) => {
                oauth.set_client_secret(ClientSecret::new(secret.clone()))
            }
            ClientCredential::Certificate(_) => oauth,
        };
        Ok(Auth {
            oauth,
            signer,
            scope: Scope::new(scope),
            http,
            backoff,
            max_attempts: s.max_attempts,
            counters,
            metrics: s.metrics.clone(),
            cache: Mutex::new(None),
        })
    }

    /// A usable token: the cached one, or a fresh one when it is near expiry. If renewing
    /// fails while the old token is still valid, the old one is used.
    pub(crate) async fn token(&self) -> Result<Bearer, GraphError> {
        let mut cache = self.cache.lock().await;
        let now = crate::clock::monotonic();
        if let Some(c) = cache
            .as_ref()
            .filter(|c| !needs_renewal(now, c.fetched, c.expires))
        {
            return Ok(c.token.clone());
        }
        match self.fetch_with_retries().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cache = Some(fresh);
                Ok(token)
            }
            Err(error) => match cache
                .as_ref()
                .filter(|c| c.expires > crate::clock::monotonic())
            {
                Some(old) => {
                    tracing::warn!(error = %error, "token renewal failed ({error}); using the current token");
                    Ok(old.token.clone())
                }
                None => Err(error),
            },
        }
    }

    /// Forgets `used` after Graph refused it (401 `InvalidAuthenticationToken`, as reported in
    /// <https://github.com/besscroft/diyfile/issues/1>), so the next call fetches a new one.
    /// A token fetched meanwhile by another caller is kept.
    pub(crate) async fn invalidate(&self, used: &Bearer) {
        let mut cache = self.cache.lock().await;
        if cache.as_ref().is_some_and(|c| &c.token == used) {
            *cache = None;
        }
    }

    async fn fetch_with_retries(&self) -> Result<Cached, GraphError> {
        let mut attempt = 1;
        loop {
            match self.fetch().await {
                Ok(c) => return Ok(c),
                Err(e) if e.is_transient() && attempt < self.max_attempts => {
                    let wait = self.backoff.delay(attempt);
                    tracing::warn!(error = %e, attempt, wait_ms = wait.as_millis(),
                        "token request failed ({e}); retry {attempt} in {} ms", wait.as_millis());
                    Counters::bump(&self.counters.retries, 1);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => {
                    tracing::error!(error = %e, "token request failed: {e}");
                    Counters::bump(&self.counters.errors, 1);
                    return Err(e);
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Cached, GraphError> {
        Counters::bump(&self.counters.token_fetches, 1);
        let send = |request: HttpRequest| {
            // An owned handle (a cheap clone), so the future is Send for any caller.
            let http = self.http.clone();
            let metrics = self.metrics.clone();
            async move {
                let response = http.call(request).await;
                metrics.graph_request("token", token_status(&response));
                let response: HttpResponse = response.map_err(TokenHttpError::Transport)?;
                let status = response.status();
                if status.as_u16() == 429 {
                    metrics.graph_throttled(1);
                }
                if status.is_server_error() || status.as_u16() == 429 {
                    return Err(TokenHttpError::Status(status.as_u16()));
                }
                Ok(response)
            }
        };
        let fetched = crate::clock::monotonic();
        let mut request = self
            .oauth
            .exchange_client_credentials()
            .add_scope(self.scope.clone());
        if let Some(signer) = &self.signer {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", signer.assertion()?);
        }
        let answer = request.request_async(&send).await.map_err(token_error)?;
        // Tokens live 60-90 min (token lifetimes page); a nonsense `expires_in` from the wire
        // is capped, never allowed to overflow the clock arithmetic.
        let lifetime = answer
            .expires_in()
            .unwrap_or(DEFAULT_LIFETIME)
            .min(Duration::from_secs(24 * 3600));
        tracing::info!(
            lifetime_s = lifetime.as_secs(),
            "fetched a Graph token, valid {} s",
            lifetime.as_secs()
        );
        Ok(Cached {
            token: Bearer(Arc::from(answer.access_token().secret().as_str())),
            fetched,
            expires: fetched + lifetime,
        })
    }
}

/// The `status` label of one token request.
fn token_status(answer: &Result<HttpResponse, HttpClientError<reqwest::Error>>) -> GraphStatus {
    match answer {
        Ok(response) => GraphStatus::Code(response.status().as_u16()),
        Err(HttpClientError::Reqwest(e)) if e.is_timeout() => GraphStatus::Timeout,
        Err(_) => GraphStatus::Network,
    }
}

fn token_error(e: RequestTokenError<TokenHttpError, AadError>) -> GraphError {
    match e {
        RequestTokenError::ServerResponse(aad) => aad.into_error(),
        RequestTokenError::Request(TokenHttpError::Status(429)) => GraphError::Throttled {
            retry_after: Duration::ZERO,
        },
        RequestTokenError::Request(TokenHttpError::Status(status)) => {
            GraphError::Unavailable { status }
        }
        RequestTokenError::Request(TokenHttpError::Transport(HttpClientError::Reqwest(e)))
            if e.is_timeout() =>
        {
            GraphError::Timeout
        }
        RequestTokenError::Request(TokenHttpError::Transport(e)) => {
            GraphError::Transport(error_chain(&e))
        }
        RequestTokenError::Parse(_, body) => {
            let text = String::from_utf8_lossy(&body);
            match extract_aadsts(&text) {
                Some(code) => GraphError::Credentials {
                    aadsts: Some(code),
                    error: "unreadable token error".into(),
                    hint: explain_aadsts(code)
                        .unwrap_or("check tenant_id, client_id and the client credential"),
                },
                None => GraphError::InvalidResponse(
                    "the token endpoint answered something else than a token (check login_url)"
                        .into(),
                ),
            }
        }
        RequestTokenError::Other(what) => {
            GraphError::InvalidResponse(format!("token endpoint: {what} (check login_url)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_margin() {
        let t0 = crate::clock::monotonic();
        let hour = t0 + Duration::from_secs(3600);
        // 10 % of an hour is 6 min, more than 5 min.
        assert!(!needs_renewal(
            t0 + Duration::from_secs(3600 - 361),
            t0,
            hour
        ));
        assert!(needs_renewal(
            t0 + Duration::from_secs(3600 - 360),
            t0,
            hour
        ));
        // A 20-min token: 5 min floor.
        let short = t0 + Duration::from_secs(1200);
        assert!(!needs_renewal(t0 + Duration::from_secs(899), t0, short));
        assert!(needs_renewal(t0 + Duration::from_secs(900), t0, short));
        // A 2-s test token is kept for its first half.
        let tiny = t0 + Duration::from_secs(2);
        assert!(!needs_renewal(t0 + Duration::from_millis(900), t0, tiny));
        assert!(needs_renewal(t0 + Duration::from_secs(1), t0, tiny));
    }

    #[test]
    fn aad_errors_become_credential_errors_with_hints() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Trace ID: x","error_codes":[7000215],"timestamp":"2024-01-01 00:00:00Z"}"#;
        let e: AadError = serde_json::from_str(body).unwrap();
        match e.into_error() {
            GraphError::Credentials {
                aadsts,
                error,
                hint,
            } => {
                assert_eq!(aadsts, Some(7000215));
                assert_eq!(error, "invalid_client");
                assert!(hint.contains("VALUE"));
            }
            other => panic!("{other:?}"),
        }
        // No error_codes: the number comes from the description.
        let e: AadError = serde_json::from_str(
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application with identifier 'x' was not found"}"#,
        )
        .unwrap();
        assert!(matches!(
            e.into_error(),
            GraphError::Credentials {
                aadsts: Some(700016),
                ..
            }
        ));
        let e: AadError = serde_json::from_str(r#"{"error":"temporarily_unavailable"}"#).unwrap();
        assert!(e.into_error().is_transient());
    }

    #[test]
    fn bearer_debug_is_redacted() {
        let b = Bearer(Arc::from("eyJ0eXAi.secret"));
        assert_eq!(format!("{b:?}"), "Bearer(<redacted>)");
    }
}
