//! The endpoint Graph posts change notifications to. Sources: webhook delivery
//! <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks> (its
//! "notificationUrl validation" section for the handshake) and lifecycle events
//! <https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>.
//!
//! - `?validationToken=…`: the subscription handshake; echoed as `text/plain` at once.
//! - A notification batch `{"value":[…]}`: every item's `subscriptionId` must be one the
//!   daemon holds and its `clientState` that subscription's secret (compared in constant
//!   time); the accepted items are queued and the answer is 202 within milliseconds (Graph
//!   wants 2xx within 3 s); decrypting and applying happen after the answer.
//! - `?lifecycle=1`: the same, for lifecycle events (`reauthorizationRequired`).
//! - Rich notifications: the batch's `validationTokens` must all pass
//!   ([`super::validation_tokens`]) before any item is looked at: 403 when one fails, 503
//!   when the signing keys cannot be had now (Graph delivers it again).
//!
//! Bodies over 1 MiB get 413, bad JSON 400, batches with no acceptable item 403; each
//! rejection is logged and changes nothing. A full queue answers 503 (Graph retries).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::validation_tokens::{Distrust, Trust};

/// Largest body taken.
pub const MAX_BODY: usize = 1 << 20;
/// Longest validation token echoed (Graph's are a few hundred characters).
const MAX_VALIDATION_TOKEN: usize = 4096;

/// Subscription id -> its `clientState`.
pub type Known = watch::Receiver<Arc<HashMap<String, String>>>;

/// One accepted notification item.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// A presence changed; `encrypted` holds the rich payload when there is one.
    Changed {
        subscription: String,
        /// The Entra object id whose presence changed.
        user: String,
        encrypted: Option<serde_json::Value>,
    },
    /// A lifecycle event, e.g. `reauthorizationRequired`.
    Lifecycle { subscription: String, event: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot listen on {addr} (notifications.listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// `notifications.tls_cert_file` / `tls_key_file` cannot be used.
    #[error("{}: {why} (notifications.tls_cert_file / tls_key_file)", path.display())]
    Tls { path: PathBuf, why: String },
}

#[derive(Clone)]
struct Shared {
    known: Known,
    out: mpsc::Sender<Vec<Notification>>,
    /// Rich notifications: the `validationTokens` check (`validation_tokens.rs`).
    trust: Option<Arc<Trust>>,
}

#[derive(Deserialize)]
struct Params {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
    lifecycle: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    value: Vec<serde_json::Value>,
    #[serde(default, rename = "validationTokens")]
    validation_tokens: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    subscription_id: String,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    lifecycle_event: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    resource_data: Option<ResourceData>,
    #[serde(default)]
    encrypted_content: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ResourceData {
    id: Option<String>,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, WebhookError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| WebhookError::Bind { addr, source })
}

fn router(known: Known, out: mpsc::Sender<Vec<Notification>>, trust: Option<Arc<Trust>>) -> Router {
    Router::new()
        .fallback(post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Shared { known, out, trust })
}

/// Serve until `cancel` fires. Any path is taken (the public URL's path is the proxy's).
/// With `tls`, HTTPS is served (`notifications.tls_cert_file`/`tls_key_file`); plain HTTP
/// otherwise (behind a reverse proxy that terminates TLS). With `trust`, batches are taken
/// only when their `validationTokens` pass.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    known: Known,
    out: mpsc::Sender<Vec<Notification>>,
    trust: Option<Arc<Trust>>,
    cancel: CancellationToken,
) {
    let app = router(known, out, trust);
    crate::listener::serve("webhook", listener, tls, app, cancel).await;
}

/// The TLS settings from PEM files: the certificate chain and its private key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &Path, why: String| WebhookError::Tls {
        path: path.to_owned(),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, e.to_string()))?;
    Ok(Arc::new(config))
}

async fn receive(
    State(shared): State<Shared>,
    Query(params): Query<Params>,
    body: Bytes,
) -> Response {
    if let Some(token) = params.validation_token {
        if token.len() > MAX_VALIDATION_TOKEN {
            tracing::warn!(len = token.len(), "validation token too long; refused");
            return StatusCode::BAD_REQUEST.into_response();
        }
        tracing::debug!("subscription validation answered");
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            token,
        )
            .into_response();
    }
    let lifecycle = params.lifecycle.is_some();
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "notification refused: not a notification batch");
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    if let Err(refused) = trusted(shared.trust.as_deref(), &batch).await {
        return refused;
    }
    let known = shared.known.borrow().clone();
    let total = batch.value.len();
    let accepted: Vec<Notification> = batch
        .value
        .into_iter()
        .filter_map(|v| accept(&known, v, lifecycle))
        .collect();
    if accepted.is_empty() {
        return if total == 0 {
            StatusCode::ACCEPTED.into_response()
        } else {
            StatusCode::FORBIDDEN.into_response()
        };
    }
    match shared.out.try_send(accepted) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!("notification queue full; Graph will deliver again");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// With `trust` (rich notifications): the batch's `validationTokens` (one bad token refuses
/// it: 403); 503 when they cannot be checked now, so that Graph delivers it again.
async fn trusted(trust: Option<&Trust>, batch: &Batch) -> Result<(), Response> {
    let Some(trust) = trust else {
        return Ok(());
    };
    let rich = batch
        .value
        .iter()
        .any(|v| v.get("encryptedContent").is_some());
    let now = crate::clock::monotonic();
    match trust.check(&batch.validation_tokens, rich, now).await {
        Ok(()) => Ok(()),
        Err(e @ Distrust::Refused(_)) => {
            tracing::warn!(error = %e, items = batch.value.len(), "notification batch refused");
            Err(StatusCode::FORBIDDEN.into_response())
        }
        Err(e @ Distrust::Later(_)) => {
            tracing::warn!(error = %e, "notification batch not checked; Graph will deliver again");
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

/// One item, checked; `None` (and a log line) when it is not ours or not readable.
fn accept(
    known: &HashMap<String, String>,
    value: serde_json::Value,
    lifecycle: bool,
) -> Option<Notification> {
    let item: Item = match serde_json::from_value(value) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "notification item refused: unreadable");
            return None;
        }
    };
    let Some(secret) = known.get(&item.subscription_id) else {
        tracing::warn!(subscription = %item.subscription_id, "notification refused: unknown subscription");
        return None;
    };
    let given = item.client_state.as_deref().unwrap_or("");
    if !crate::secret::same_secret(given.as_bytes(), secret.as_bytes()) {
        tracing::warn!(subscription = %item.subscription_id, "notification refused: wrong clientState");
        return None;
    }
    if let Some(event) = item.lifecycle_event {
        return Some(Notification::Lifecycle {
            subscription: item.subscription_id,
            event,
        });
    }
    if lifecycle {
        tracing::warn!(subscription = %item.subscription_id, "lifecycle notification without lifecycleEvent refused");
        return None;
    }
    let user = item
        .resource_data
        .and_then(|d| d.id)
        .or_else(|| {
            item.resource
                .as_deref()
                .and_then(|r| r.rsplit_once('/'))
                .map(|(_, id)| id.to_owned())
        })
        .filter(|id| !id.is_empty() && id.len() <= 64);
    let Some(user) = user else {
        tracing::warn!(subscription = %item.subscription_id, "notification refused: no user id");
        return None;
    };
    Some(Notification::Changed {
        subscription: item.subscription_id,
        user,
        encrypted: item.encrypted_content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known() -> HashMap<String, String> {
        HashMap::from([("sub-1".to_owned(), "secret-1".to_owned())])
    }

    #[test]
    fn only_known_subscriptions_with_their_client_state_are_taken() {
        let k = known();
        let item = |sub: &str, cs: &str| {
            json!({"subscriptionId": sub, "clientState": cs, "changeType": "updated",
                   "resource": "communications/presences/u-1",
                   "resourceData": {"id": "u-1"}})
        };
        assert_eq!(
            accept(&k, item("sub-1", "secret-1"), false),
            Some(Notification::Changed {
                subscription: "sub-1".into(),
                user: "u-1".into(),
                encrypted: None
            })
        );
        assert_eq!(accept(&k, item("sub-1", "secret-2"), false), None);
        assert_eq!(accept(&k, item("sub-9", "secret-1"), false), None);
        assert_eq!(accept(&k, json!({"nonsense": true}), false), None);
        assert_eq!(
            accept(
                &k,
                json!({"subscriptionId": "sub-1", "clientState": "secret-1"}),
                false
            ),
            None
        );
    }

    #[test]
    fn lifecycle_events_are_recognised() {
        let v = json!({"subscriptionId": "sub-1", "clientState": "secret-1",
                       "lifecycleEvent": "reauthorizationRequired"});
        assert_eq!(
            accept(&known(), v, true),
            Some(Notification::Lifecycle {
                subscription: "sub-1".into(),
                event: "reauthorizationRequired".into()
            })
        );
    }
}
