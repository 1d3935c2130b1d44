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
//! rejection changes nothing and is counted per cause, and each cause is logged at most once
//! a minute ([`crate::listener::Refusals`]), with strings from the request cut short. A full
//! queue answers 503 (Graph retries). The body is read after the handshake's query.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::validation_tokens::{Distrust, Trust};
use crate::listener::{Cause, Refusals, truncate_for_log};

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
    refusals: Refusals,
}

/// Why a post or one of its items was refused, for the counters and the log.
mod cause {
    use crate::listener::Cause;

    const fn refused(key: &'static str, one: &'static str, many: &'static str) -> Cause {
        Cause {
            key,
            verb: "refused",
            one,
            many,
        }
    }

    pub static TOKEN_TOO_LONG: Cause = refused(
        "validation_token_too_long",
        "a validation token over 4 KiB (not Graph)",
        "validation tokens over 4 KiB (not Graph)",
    );
    pub static BODY: Cause = refused(
        "notification_body_unread",
        "a notification post whose body was too large, too slow or cut short",
        "notification posts whose body was too large, too slow or cut short",
    );
    pub static NOT_A_BATCH: Cause = refused(
        "not_a_batch",
        "a notification post that is not a notification batch",
        "notification posts that are not notification batches",
    );
    pub static UNREADABLE: Cause = refused(
        "unreadable_item",
        "an unreadable notification item",
        "unreadable notification items",
    );
    pub static UNKNOWN_SUBSCRIPTION: Cause = refused(
        "unknown_subscription",
        "a notification for an unknown subscription",
        "notifications for unknown subscriptions",
    );
    pub static WRONG_CLIENT_STATE: Cause = refused(
        "wrong_client_state",
        "a notification with a wrong clientState",
        "notifications with a wrong clientState",
    );
    pub static NO_LIFECYCLE_EVENT: Cause = refused(
        "no_lifecycle_event",
        "a lifecycle notification without lifecycleEvent",
        "lifecycle notifications without lifecycleEvent",
    );
    pub static NO_USER: Cause = refused(
        "no_user_id",
        "a notification without a user id",
        "notifications without a user id",
    );
    pub static TOKEN_REFUSED: Cause = refused(
        "validation_token_refused",
        "a rich notification batch whose validationTokens failed",
        "rich notification batches whose validationTokens failed",
    );
    pub static TOKENS_UNCHECKED: Cause = refused(
        "validation_tokens_unchecked",
        "a rich notification batch: its validationTokens cannot be checked now (Graph delivers again)",
        "rich notification batches: their validationTokens could not be checked (Graph delivers again)",
    );
    pub static QUEUE_FULL: Cause = refused(
        "queue_full",
        "a notification batch: the queue is full (Graph delivers again)",
        "notification batches: the queue was full (Graph delivers again)",
    );
}

/// An item refused: why, and what names it (cut short).
#[derive(Debug, PartialEq)]
struct Refused {
    cause: &'static Cause,
    detail: String,
}

impl Refused {
    fn new(cause: &'static Cause, detail: &str) -> Refused {
        Refused {
            cause,
            detail: truncate_for_log(detail),
        }
    }
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

fn router(
    known: Known,
    out: mpsc::Sender<Vec<Notification>>,
    trust: Option<Arc<Trust>>,
    refusals: Refusals,
) -> Router {
    Router::new().fallback(post(receive)).with_state(Shared {
        known,
        out,
        trust,
        refusals,
    })
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
    let refusals = Refusals::new("webhook");
    let app = router(known, out, trust, refusals.clone());
    let mut options = crate::listener::Options::new("webhook", refusals);
    options.tls = tls;
    crate::listener::serve(listener, app, options, cancel).await;
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
    body: Body,
) -> Response {
    let refusals = &shared.refusals;
    if let Some(token) = params.validation_token {
        return handshake(token, refusals);
    }
    let lifecycle = params.lifecycle.is_some();
    let batch = match read_batch(body, refusals).await {
        Ok(batch) => batch,
        Err(status) => return status.into_response(),
    };
    if let Err(refused) = trusted(shared.trust.as_deref(), &batch, refusals).await {
        return refused;
    }
    let known = shared.known.borrow().clone();
    let total = batch.value.len();
    let accepted: Vec<Notification> = batch
        .value
        .into_iter()
        .filter_map(|v| match accept(&known, v, lifecycle) {
            Ok(notification) => Some(notification),
            Err(r) => {
                refusals.refused(r.cause, || r.detail);
                None
            }
        })
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
        Err(mpsc::error::TrySendError::Full(items)) => {
            refusals.refused(&cause::QUEUE_FULL, || format!("{} items", items.len()));
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// The subscription handshake: the token echoed as text, without reading any body.
fn handshake(token: String, refusals: &Refusals) -> Response {
    if token.len() > MAX_VALIDATION_TOKEN {
        refusals.refused(&cause::TOKEN_TOO_LONG, || format!("{} bytes", token.len()));
        return StatusCode::BAD_REQUEST.into_response();
    }
    tracing::debug!("subscription validation answered");
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        token,
    )
        .into_response()
}

/// The body, read (bounded) and parsed as a notification batch; the answer when it is not.
async fn read_batch(body: Body, refusals: &Refusals) -> Result<Batch, StatusCode> {
    let body = crate::listener::read_body(body, MAX_BODY)
        .await
        .map_err(|e| {
            refusals.refused(&cause::BODY, || e.to_string());
            e.status()
        })?;
    serde_json::from_slice(&body).map_err(|e| {
        refusals.refused(&cause::NOT_A_BATCH, || truncate_for_log(&e.to_string()));
        StatusCode::BAD_REQUEST
    })
}

/// With `trust` (rich notifications): the batch's `validationTokens` (one bad token refuses
/// it: 403); 503 when they cannot be checked now, so that Graph delivers it again.
async fn trusted(
    trust: Option<&Trust>,
    batch: &Batch,
    refusals: &Refusals,
) -> Result<(), Response> {
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
        // The errors quote nothing longer than a few characters of the token.
        Err(e @ Distrust::Refused(_)) => {
            refusals.refused(&cause::TOKEN_REFUSED, || e.to_string());
            Err(StatusCode::FORBIDDEN.into_response())
        }
        Err(e @ Distrust::Later(_)) => {
            refusals.refused(&cause::TOKENS_UNCHECKED, || e.to_string());
            Err(StatusCode::SERVICE_UNAVAILABLE.into_response())
        }
    }
}

/// One item, checked; refused (with the cause) when it is not ours or not readable.
fn accept(
    known: &HashMap<String, String>,
    value: serde_json::Value,
    lifecycle: bool,
) -> Result<Notification, Refused> {
    let item: Item = serde_json::from_value(value)
        .map_err(|e| Refused::new(&cause::UNREADABLE, &e.to_string()))?;
    let subscription = &item.subscription_id;
    let Some(secret) = known.get(subscription) else {
        return Err(Refused::new(&cause::UNKNOWN_SUBSCRIPTION, subscription));
    };
    let given = item.client_state.as_deref().unwrap_or("");
    if !crate::secret::same_secret(given.as_bytes(), secret.as_bytes()) {
        return Err(Refused::new(&cause::WRONG_CLIENT_STATE, subscription));
    }
    if let Some(event) = item.lifecycle_event {
        return Ok(Notification::Lifecycle {
            subscription: item.subscription_id,
            event,
        });
    }
    if lifecycle {
        return Err(Refused::new(&cause::NO_LIFECYCLE_EVENT, subscription));
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
        return Err(Refused::new(&cause::NO_USER, &item.subscription_id));
    };
    Ok(Notification::Changed {
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
            Ok(Notification::Changed {
                subscription: "sub-1".into(),
                user: "u-1".into(),
                encrypted: None
            })
        );
        let cause = |v, lifecycle| accept(&k, v, lifecycle).unwrap_err().cause.key;
        assert_eq!(
            cause(item("sub-1", "secret-2"), false),
            "wrong_client_state"
        );
        assert_eq!(
            cause(item("sub-9", "secret-1"), false),
            "unknown_subscription"
        );
        assert_eq!(cause(json!({"nonsense": true}), false), "unreadable_item");
        let no_user = json!({"subscriptionId": "sub-1", "clientState": "secret-1"});
        assert_eq!(cause(no_user, false), "no_user_id");
        assert_eq!(cause(item("sub-1", "secret-1"), true), "no_lifecycle_event");
    }

    #[test]
    fn a_refused_item_names_its_subscription_cut_short() {
        let long = "s".repeat(1 << 16);
        let refused = accept(&known(), json!({"subscriptionId": long}), false).unwrap_err();
        assert_eq!(refused.cause.key, "unknown_subscription");
        assert!(refused.detail.len() < 64, "{}", refused.detail);
        let unreadable = json!({"subscriptionId": 1, "clientState": long});
        let refused = accept(&known(), unreadable, false).unwrap_err();
        assert!(refused.detail.len() < 64, "{}", refused.detail);
    }

    #[test]
    fn lifecycle_events_are_recognised() {
        let v = json!({"subscriptionId": "sub-1", "clientState": "secret-1",
                       "lifecycleEvent": "reauthorizationRequired"});
        assert_eq!(
            accept(&known(), v, true),
            Ok(Notification::Lifecycle {
                subscription: "sub-1".into(),
                event: "reauthorizationRequired".into()
            })
        );
    }
}
