//! Change notifications: the validation handshake, the watcher that turns presence changes
//! into notifications, rich payload encryption (and signed validation tokens: `trust.rs`),
//! delivery with retries, and lifecycle notifications.
//!
//! Sources, cited below by name:
//! - webhook delivery (and its "notificationUrl validation" section):
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks>
//! - presence notifications:
//!   <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>
//! - rich notifications:
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>
//! - lifecycle events:
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>
//! - the validation-failure reports:
//!   <https://github.com/microsoftgraph/nodejs-webhooks-sample/issues/350>
//!
//! - A watcher task looks at every live subscription every 20 ms (only while there are
//!   subscriptions) and compares each watched id's (availability, activity), as
//!   getPresencesByUserId would report it now, with what it last saw. Changes to other
//!   presence fields (statusMessage, …) do not notify (UNVERIFIED). Time-driven changes
//!   (session expiry, Available fading, `advance_clock`) are seen the same way.
//! - Each subscription has one delivery worker, so its notifications arrive in order; all
//!   changes seen in one look go in one POST (Graph may batch, even across subscriptions:
//!   presence notifications).
//! - A POST that is not answered 2xx within `notification_timeout` (3 s, webhook delivery) is
//!   retried `notification_retries` times `notification_retry_delay` apart (Graph: up to
//!   4 hours); every attempt is recorded as a [`Delivery`]. The slow-endpoint throttling of
//!   the webhook delivery page is not modelled.
//! - While a subscription awaits reauthorization, changes are not delivered and are lost
//!   ("Any notifications about resource changes that happen when the change notification
//!   delivery pauses … are lost", lifecycle events); Graph keeps delivering "for a while"
//!   first — the emulator pauses at once (simplification).

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use aes::Aes256;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::model::{Delivery, DeliveryKind};
use crate::presence::PresenceState;
use crate::state::{Shared, State};
use crate::subscriptions::{EncCert, Subscription, prune};
use crate::trust::{self, TokenForgery};
use crate::util::{graph_datetime, guid};

/// How often the watcher looks for presence changes.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// One POST a delivery worker has to make.
#[derive(Debug)]
pub(crate) struct Job {
    pub subscription_id: String,
    pub url: String,
    pub kind: DeliveryKind,
    pub ids: Vec<String>,
    /// The `value` items.
    pub items: Vec<Value>,
    /// Rich notifications: the certificate and, per item, the resource to encrypt.
    pub encrypt: Option<(EncCert, Vec<Value>)>,
    /// Rich notifications: the app the `validationTokens` are for.
    pub app_id: String,
    pub tenant_id: String,
    /// Rich notifications: a wrong validation token instead of a good one (`trust.rs`).
    pub forgery: Option<TokenForgery>,
    /// The body, already made (a replay): sent as it is.
    pub body: Option<Vec<u8>>,
}

/// The presence (availability, activity) Graph reports for `id` now.
pub(crate) fn presence_in(
    presence: &HashMap<String, PresenceState>,
    id: &str,
    now: Instant,
) -> (String, String) {
    presence.get(id).map_or_else(
        || ("Offline".into(), "Offline".into()),
        |p| p.aggregate(now),
    )
}

pub(crate) fn presence_of(st: &State, id: &str, now: Instant) -> (String, String) {
    presence_in(&st.presence, id, now)
}

/// What a validation handshake ended with: the status seen, and on failure the error code and
/// message POST /subscriptions answers (the validation-failure reports).
pub(crate) struct Validation {
    pub status: Option<u16>,
    pub problem: Option<(&'static str, String)>,
}

/// The validation token Graph sends (the form seen in real requests; UNVERIFIED), which
/// needs URL-decoding (webhook delivery).
fn validation_token() -> String {
    format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        guid()
    )
}

/// POSTs `{url}?validationToken=…` (`text/plain; charset=utf-8`) and checks for 200 with the
/// exact token as body within `timeout` (webhook delivery, the validation-failure reports).
pub(crate) async fn validate(http: &reqwest::Client, url: &str, timeout: Duration) -> Validation {
    let failed = "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.";
    let token = validation_token();
    let Ok(mut u) = url::Url::parse(url) else {
        return Validation {
            status: None,
            problem: Some(("ValidationError", failed.into())),
        };
    };
    u.query_pairs_mut().append_pair("validationToken", &token);
    let send = http
        .post(u)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body("")
        .send();
    let answer = tokio::time::timeout(timeout, async {
        let r = send.await?;
        let status = r.status().as_u16();
        let body = r.text().await?;
        Ok::<_, reqwest::Error>((status, body))
    })
    .await;
    match answer {
        Err(_) => Validation {
            status: None,
            problem: Some((
                "InvalidRequest",
                "Subscription validation request timed out.".into(),
            )),
        },
        Ok(Err(e)) if e.is_timeout() => Validation {
            status: None,
            problem: Some((
                "InvalidRequest",
                "Subscription validation request timed out.".into(),
            )),
        },
        Ok(Err(_)) => Validation {
            status: None,
            problem: Some(("ValidationError", failed.into())),
        },
        Ok(Ok((status, _))) if status != 200 => Validation {
            status: Some(status),
            problem: Some(("ValidationError", failed.into())),
        },
        Ok(Ok((status, body))) if body != token => Validation {
            status: Some(status),
            problem: Some((
                "ValidationError",
                "Subscription validation request failed. Response must exactly match validationToken query parameter.".into(),
            )),
        },
        Ok(Ok((status, _))) => Validation {
            status: Some(status),
            problem: None,
        },
    }
}

/// Starts the delivery worker of a new subscription; it ends when the queue's sender (the
/// subscription) is gone and the queue is drained, or when the emulator is.
pub(crate) fn spawn_worker(shared: &Shared) -> UnboundedSender<Job> {
    let (tx, rx) = unbounded_channel();
    tokio::spawn(worker(shared.me.clone(), shared.http.clone(), rx));
    tx
}

async fn worker(weak: Weak<Shared>, http: reqwest::Client, mut rx: UnboundedReceiver<Job>) {
    while let Some(mut job) = rx.recv().await {
        let bytes = match job.body.take() {
            Some(body) => body,
            None => {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                render(&shared, &job)
            }
        };
        let mut attempt = 1;
        loop {
            let (timeout, retries, delay, inject) = {
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let mut st = shared.lock();
                let inject = st.fail_deliveries > 0;
                if inject {
                    st.fail_deliveries -= 1;
                }
                (
                    st.opts.notification_timeout,
                    st.opts.notification_retries,
                    st.opts.notification_retry_delay,
                    inject,
                )
            };
            let started = Instant::now();
            let (status, error) = if inject {
                (None, Some("injected failure (fail_deliveries)".to_owned()))
            } else {
                post(&http, &job.url, bytes.clone(), timeout).await
            };
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            let Some(shared) = weak.upgrade() else {
                return;
            };
            shared.lock().push_delivery(Delivery {
                subscription_id: job.subscription_id.clone(),
                url: job.url.clone(),
                kind: job.kind,
                ids: job.ids.clone(),
                status,
                error,
                attempt,
                at: Instant::now(),
                started,
            });
            drop(shared);
            if ok || attempt > retries {
                break;
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
    }
}

/// One POST with the 3-s client timeout (webhook delivery): (status, error).
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> (Option<u16>, Option<String>) {
    let send = http
        .post(url)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(body)
        .send();
    match tokio::time::timeout(timeout, send).await {
        Err(_) => (None, Some(format!("timed out after {timeout:?}"))),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Ok(Ok(r)) => {
            let s = r.status().as_u16();
            let err = (!(200..300).contains(&s)).then(|| format!("answered {s}"));
            (Some(s), err)
        }
    }
}

/// The body of a job, encrypting rich items and adding their validation tokens (rich
/// notifications); a rich body is kept for [`crate::trust::last_rich`].
fn render(shared: &Shared, job: &Job) -> Vec<u8> {
    let mut items = job.items.clone();
    let mut out = json!({});
    if let Some((cert, plains)) = &job.encrypt {
        for (item, plain) in items.iter_mut().zip(plains) {
            item["encryptedContent"] = encrypt(cert, plain);
        }
        if let Some(tokens) =
            trust::validation_tokens(shared, &job.app_id, &job.tenant_id, job.forgery)
        {
            out["validationTokens"] = json!(tokens);
        }
    }
    out["value"] = Value::Array(items);
    let bytes = serde_json::to_vec(&out).unwrap_or_default();
    if job.encrypt.is_some() {
        trust::keep_for_replay(shared, &job.subscription_id, &bytes);
    }
    bytes
}

/// `encryptedContent` (rich notifications): a fresh 32-byte key; AES-256-CBC, PKCS7, IV = the
/// key's first 16 bytes; `dataSignature` = HMAC-SHA256(key, data); `dataKey` =
/// RSA-OAEP-SHA1(key).
fn encrypt(cert: &EncCert, plain: &Value) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = rand::rng().random();
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&key[..16]);
    let data = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into())
        .encrypt_padded_vec::<Pkcs7>(plain.to_string().as_bytes());
    let signature = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
        .map(|mut m| {
            m.update(&data);
            m.finalize().into_bytes().to_vec()
        })
        .unwrap_or_default();
    let data_key = cert
        .key
        .oaep_encrypt::<sha1::Sha1>(&key)
        .unwrap_or_default();
    json!({
        "data": b64.encode(&data),
        "dataSignature": b64.encode(&signature),
        "dataKey": b64.encode(&data_key),
        "encryptionCertificateId": cert.id,
        "encryptionCertificateThumbprint": cert.thumbprint,
    })
}

/// The watcher: runs while the emulator lives.
pub(crate) async fn watch(weak: Weak<Shared>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(shared) = weak.upgrade() else {
            return;
        };
        scan(&shared);
    }
}

/// One look at every subscription: queues a notification for each that saw changes.
pub(crate) fn scan(shared: &Shared) {
    let mut guard = shared.lock();
    let st: &mut State = &mut guard;
    if st.subscriptions.is_empty() {
        return;
    }
    prune(st);
    let now = st.now();
    let tenant = st.tenant_id.clone();
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    for sub in st.subscriptions.values_mut() {
        let mut changed = Vec::new();
        for id in &sub.ids {
            let p = seen
                .entry(id.clone())
                .or_insert_with(|| presence_in(&st.presence, id, now))
                .clone();
            if sub.last.get(id) != Some(&p) {
                sub.last.insert(id.clone(), p.clone());
                changed.push((id.clone(), p));
            }
        }
        if changed.is_empty() || sub.reauth_required {
            continue;
        }
        let _ = sub.queue.send(change_job(sub, &tenant, &changed, None));
    }
}

/// A notification of `changed` users' presences (availability, activity) for `sub`: basic,
/// or rich when it has a certificate (presence notifications, rich notifications).
pub(crate) fn change_job(
    sub: &Subscription,
    tenant: &str,
    changed: &[(String, (String, String))],
    forgery: Option<TokenForgery>,
) -> Job {
    let exp = graph_datetime(sub.expires);
    let mut items = Vec::new();
    let mut plains = Vec::new();
    for (id, (availability, activity)) in changed {
        let resource_data = json!({
            "@odata.id": format!("users/{id}/presence"),
            "@odata.type": "#microsoft.graph.presence",
            "id": id,
        });
        items.push(json!({
            "subscriptionId": sub.id,
            "clientState": sub.client_state,
            "changeType": "updated",
            "tenantId": tenant,
            "resource": format!("communications/presences/{id}"),
            "subscriptionExpirationDateTime": exp,
            "resourceData": resource_data,
            "organizationId": tenant,
        }));
        plains.push(json!({
            "@odata.id": format!("users/{id}/presence"),
            "@odata.type": "#microsoft.graph.presence",
            "id": id,
            "availability": availability,
            "activity": activity,
        }));
    }
    let rich = sub.cert.is_some();
    Job {
        subscription_id: sub.id.clone(),
        url: sub.notification_url.clone(),
        kind: if rich {
            DeliveryKind::Rich
        } else {
            DeliveryKind::Basic
        },
        ids: changed.iter().map(|(i, _)| i.clone()).collect(),
        items,
        encrypt: sub.cert.clone().map(|c| (c, plains)),
        app_id: sub.client_id.clone(),
        tenant_id: tenant.to_owned(),
        forgery,
        body: None,
    }
}

/// The lifecycle events (lifecycle events). For presence only `reauthorizationRequired` is
/// documented; `subscriptionRemoved` and `missed` (documented for Outlook resources and Teams
/// chat messages) are sent on request all the same, so clients can be tested against them.
const LIFECYCLE_EVENTS: &[&str] = &["reauthorizationRequired", "subscriptionRemoved", "missed"];

/// Sends a lifecycle event: Err for unknown events and subscriptions.
/// `reauthorizationRequired` pauses notifications until reauthorize or renew;
/// `subscriptionRemoved` removes the subscription once the event is queued (its worker still
/// delivers it); `missed` changes nothing. Ok(false) when the subscription has no
/// lifecycleNotificationUrl: such subscriptions "don't receive the lifecycle notifications"
/// (lifecycle events; the effect still applies).
pub(crate) fn send_lifecycle(st: &mut State, id: &str, event: &str) -> Result<bool, String> {
    if !LIFECYCLE_EVENTS.contains(&event) {
        return Err(format!(
            "lifecycle event '{event}' is not one of {LIFECYCLE_EVENTS:?}"
        ));
    }
    prune(st);
    let sent = queue_lifecycle(st, id, event);
    if event == "subscriptionRemoved" {
        st.subscriptions.remove(id);
    }
    sent
}

fn queue_lifecycle(st: &mut State, id: &str, event: &str) -> Result<bool, String> {
    let tenant = st.tenant_id.clone();
    let sub = st
        .subscriptions
        .get_mut(id)
        .ok_or_else(|| format!("no subscription '{id}'"))?;
    if event == "reauthorizationRequired" {
        sub.reauth_required = true;
    }
    let Some(url) = sub.lifecycle_url.clone() else {
        return Ok(false);
    };
    let item = json!({
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": graph_datetime(sub.expires),
        "tenantId": tenant,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    });
    let job = Job {
        subscription_id: sub.id.clone(),
        url,
        kind: DeliveryKind::Lifecycle,
        ids: Vec::new(),
        items: vec![item],
        encrypt: None,
        app_id: sub.client_id.clone(),
        tenant_id: tenant,
        forgery: None,
        body: None,
    };
    Ok(sub.queue.send(job).is_ok())
}
