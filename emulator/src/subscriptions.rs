//! `/v1.0/subscriptions`: presence change-notification subscriptions.
//!
//! Sources, cited below by name:
//! - presence notifications:
//!   <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>
//! - subscription resource: <https://learn.microsoft.com/en-us/graph/api/resources/subscription>
//! - changeNotification resource:
//!   <https://learn.microsoft.com/en-us/graph/api/resources/changenotification>
//! - create subscription:
//!   <https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions>
//! - webhook delivery (and its "notificationUrl validation" section):
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks>
//! - rich notifications:
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>
//! - lifecycle events:
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>
//! - the 409 report: <https://github.com/microsoftgraph/msgraph-beta-sdk-dotnet/issues/174>
//! - the http report: <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/7821>
//! - the validation-failure reports:
//!   <https://github.com/microsoftgraph/nodejs-webhooks-sample/issues/350>
//! - expired subscriptions: <https://github.com/microsoftgraph/microsoft-graph-docs/issues/20356>,
//!   <https://learn.microsoft.com/en-us/answers/questions/5948601>
//!
//! Modelled:
//! - resources `communications/presences/{id}` and `/communications/presences?$filter=id in
//!   ('a','b',…)` (≤ 650 ids), changeType `updated` only (presence notifications);
//! - delegated tokens only: an app-only token gets 403 (presence notifications, create
//!   subscription; body UNVERIFIED, see [`forbidden`]); the delegated token needs
//!   Presence.Read.All (or Presence.ReadWrite.All);
//! - one presence subscription per (user, app): 409 `ExtensionError` with the reported (sic)
//!   message (presence notifications, the 409 report);
//! - `expirationDateTime` at most 60 minutes ahead, on create and renew (subscription
//!   resource, presence notifications); with `subscription_grant` set, less than asked is
//!   granted and the answer says so (a renewal was reported to extend a presence subscription
//!   by 5 minutes only: <https://learn.microsoft.com/en-us/answers/questions/1037466>);
//! - HTTPS notification URLs unless `allow_http_notification_urls` (presence notifications,
//!   the http report);
//! - `includeResourceData` needs `encryptionCertificate` (base64 DER X.509, RSA 2048–4096) and
//!   `encryptionCertificateId` (≤ 128 characters) (rich notifications);
//! - `clientState` at most 128 characters (the sources disagree: 128 on the subscription
//!   resource, 255 on the changeNotification resource; the stricter one is used);
//! - the validationToken handshake on create, separately for `lifecycleNotificationUrl`
//!   (webhook delivery); failures answer the messages of the validation-failure reports;
//! - PATCH renews (and reauthorizes: lifecycle events); `lifecycleNotificationUrl` cannot be
//!   changed (lifecycle events); POST .../reauthorize answers 204 (as Microsoft's generated SDKs
//!   expect; the learn page subscription-reauthorize) and does not extend the expiry (lifecycle
//!   events); DELETE 204 (webhook delivery);
//! - expired subscriptions are gone: GET/PATCH/DELETE answer 404 (expired subscriptions; code
//!   UNVERIFIED);
//! - GET /subscriptions lists the caller's: with a delegated token those of (user, app), with
//!   an app-only token all of the app's (UNVERIFIED).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use rsa::PublicKey;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::graph::GraphRequest;
use crate::model::{Delivery, DeliveryKind, SubscriptionInfo};
use crate::notify::{self, Job};
use crate::odata::GraphResponse;
use crate::state::{Caller, Shared, State};
use crate::subscription_checks::{check_create, check_expiry, forbidden, invalid, not_found};
use crate::util::{graph_datetime, guid};

/// Most ids in one presence subscription (presence notifications).
pub(crate) const MAX_IDS: usize = 650;
/// Longest presence subscription (subscription resource, presence notifications).
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// `clientState` limit (the sources disagree, 128 vs 255; see the module doc).
pub(crate) const MAX_CLIENT_STATE: usize = 128;
/// `encryptionCertificateId` limit (rich notifications).
pub(crate) const MAX_CERT_ID: usize = 128;
/// Delegated scopes that may subscribe to presence (presence notifications).
pub(crate) const SUBSCRIBE_SCOPES: &[&str] = &["Presence.Read.All", "Presence.ReadWrite.All"];

/// The encryption certificate of a rich subscription (rich notifications).
#[derive(Debug, Clone)]
pub(crate) struct EncCert {
    pub id: String,
    /// As sent (base64 DER).
    pub b64: String,
    /// Upper-case hex SHA-1 of the DER.
    pub thumbprint: String,
    pub key: PublicKey,
}

/// A live subscription.
#[derive(Debug)]
pub(crate) struct Subscription {
    pub id: String,
    pub client_id: String,
    pub creator_id: String,
    pub creator_upn: String,
    pub resource: String,
    /// Canonical ids where known, else as given.
    pub ids: Vec<String>,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: Option<String>,
    pub expires: SystemTime,
    pub cert: Option<EncCert>,
    pub tls: String,
    pub reauth_required: bool,
    /// Creation order (GET lists oldest first).
    pub created: u64,
    /// Last (availability, activity) seen per id: notifications fire on a difference.
    pub last: HashMap<String, (String, String)>,
    /// The delivery worker's queue (notifications of one subscription go out in order).
    pub queue: UnboundedSender<Job>,
}

impl Subscription {
    pub fn info(&self) -> SubscriptionInfo {
        SubscriptionInfo {
            id: self.id.clone(),
            client_id: self.client_id.clone(),
            creator_upn: self.creator_upn.clone(),
            creator_id: self.creator_id.clone(),
            ids: self.ids.clone(),
            resource: self.resource.clone(),
            expiration: self.expires,
            client_state: self.client_state.clone(),
            include_resource_data: self.cert.is_some(),
            notification_url: self.notification_url.clone(),
            lifecycle_notification_url: self.lifecycle_url.clone(),
            reauthorization_required: self.reauth_required,
        }
    }

    /// The subscription resource as Graph returns it (subscription resource).
    fn to_json(&self, base: &str) -> Value {
        json!({
            "@odata.context": format!("{base}/v1.0/$metadata#subscriptions/$entity"),
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.client_id,
            "changeType": "updated",
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": null,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": graph_datetime(self.expires),
            "creatorId": self.creator_id,
            "includeResourceData": self.cert.is_some(),
            "latestSupportedTlsVersion": self.tls,
            "encryptionCertificate": self.cert.as_ref().map(|c| c.b64.clone()),
            "encryptionCertificateId": self.cert.as_ref().map(|c| c.id.clone()),
            "notificationUrlAppId": null,
        })
    }
}

/// What a request under /subscriptions asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubOp {
    Create,
    List,
    Get(String),
    Update(String),
    Delete(String),
    Reauthorize(String),
}

impl SubOp {
    pub fn name(&self) -> &'static str {
        match self {
            SubOp::Create => "createSubscription",
            SubOp::List => "listSubscriptions",
            SubOp::Get(_) => "getSubscription",
            SubOp::Update(_) => "updateSubscription",
            SubOp::Delete(_) => "deleteSubscription",
            SubOp::Reauthorize(_) => "reauthorizeSubscription",
        }
    }
}

/// Routes `/subscriptions[...]`; None = not a subscriptions shape this emulator serves.
pub(crate) fn route(method: &str, s: &[&str]) -> Option<Result<SubOp, ()>> {
    let op = match (s, method) {
        (["subscriptions"], "POST") => SubOp::Create,
        (["subscriptions"], "GET") => SubOp::List,
        (["subscriptions", id], "GET") => SubOp::Get((*id).to_owned()),
        (["subscriptions", id], "PATCH") => SubOp::Update((*id).to_owned()),
        (["subscriptions", id], "DELETE") => SubOp::Delete((*id).to_owned()),
        (["subscriptions", id, "reauthorize"], "POST") => SubOp::Reauthorize((*id).to_owned()),
        (["subscriptions"] | ["subscriptions", _] | ["subscriptions", _, "reauthorize"], _) => {
            return Some(Err(()));
        }
        _ => return None,
    };
    Some(Ok(op))
}

/// Drops expired subscriptions (their delivery workers end with their queues).
pub(crate) fn prune(st: &mut State) {
    let wall = st.wall();
    st.subscriptions.retain(|_, s| s.expires > wall);
}

/// 409 when (user, app) already holds a live presence subscription (presence notifications,
/// the 409 report).
fn conflict(st: &State, caller: &Caller, user: &str) -> Result<(), GraphResponse> {
    let taken = st
        .subscriptions
        .values()
        .any(|s| s.creator_id == user && s.client_id.eq_ignore_ascii_case(&caller.client_id));
    if taken {
        return Err(GraphResponse::error(
            409,
            "ExtensionError",
            "A subscripton already exists. It must be deleted before a another can be made.",
        ));
    }
    Ok(())
}

/// Whether `caller` may see subscription `s`.
fn owns(caller: &Caller, s: &Subscription) -> bool {
    s.client_id.eq_ignore_ascii_case(&caller.client_id)
        && caller.user.as_ref().is_none_or(|u| *u == s.creator_id)
}

/// Answers one subscriptions request.
pub(crate) async fn handle(
    shared: &Shared,
    req: &GraphRequest,
    op: SubOp,
    caller: &Caller,
) -> GraphResponse {
    if req.body_invalid {
        return GraphResponse::bad_request(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        );
    }
    let base = &shared.base_url;
    match op {
        SubOp::Create => create(shared, req, caller).await,
        SubOp::List => {
            let mut st = shared.lock();
            prune(&mut st);
            let mut subs: Vec<&Subscription> = st
                .subscriptions
                .values()
                .filter(|s| owns(caller, s))
                .collect();
            subs.sort_by_key(|s| s.created);
            let value: Vec<Value> = subs
                .iter()
                .map(|s| {
                    let mut v = s.to_json(base);
                    if let Some(o) = v.as_object_mut() {
                        o.remove("@odata.context");
                    }
                    v
                })
                .collect();
            GraphResponse::json(
                200,
                json!({"@odata.context": format!("{base}/v1.0/$metadata#subscriptions"), "value": value}),
            )
        }
        SubOp::Get(id) => {
            let mut st = shared.lock();
            prune(&mut st);
            match st.subscriptions.get(&id).filter(|s| owns(caller, s)) {
                Some(s) => GraphResponse::json(200, s.to_json(base)),
                None => not_found(&id),
            }
        }
        SubOp::Update(id) => {
            let mut st = shared.lock();
            prune(&mut st);
            if !st.subscriptions.get(&id).is_some_and(|s| owns(caller, s)) {
                return not_found(&id);
            }
            let body = req.body.as_ref();
            if body
                .and_then(|b| b.get("lifecycleNotificationUrl"))
                .is_some()
            {
                // Only at creation (lifecycle events); wording UNVERIFIED.
                return invalid(
                    "lifecycleNotificationUrl can only be set when the subscription is created.",
                );
            }
            let expires = match check_expiry(&st, body.and_then(|b| b.get("expirationDateTime"))) {
                Ok(t) => t,
                Err(e) => return e,
            };
            match st.subscriptions.get_mut(&id) {
                Some(s) => {
                    s.expires = expires;
                    s.reauth_required = false; // renewing also reauthorizes (lifecycle events)
                    GraphResponse::json(200, s.to_json(base))
                }
                None => not_found(&id),
            }
        }
        SubOp::Delete(id) => {
            let mut st = shared.lock();
            prune(&mut st);
            if !st.subscriptions.get(&id).is_some_and(|s| owns(caller, s)) {
                return not_found(&id);
            }
            st.subscriptions.remove(&id);
            GraphResponse::empty(204)
        }
        SubOp::Reauthorize(id) => {
            let mut st = shared.lock();
            prune(&mut st);
            match st.subscriptions.get_mut(&id).filter(|s| owns(caller, s)) {
                Some(s) => {
                    s.reauth_required = false;
                    GraphResponse::empty(204)
                }
                None => not_found(&id),
            }
        }
    }
}

/// POST /subscriptions: checks, handshake(s), then stores (webhook delivery, create
/// subscription).
async fn create(shared: &Shared, req: &GraphRequest, caller: &Caller) -> GraphResponse {
    let (new, user, upn, id, timeout) = {
        let mut st = shared.lock();
        // Presence subscriptions are delegated-only (presence notifications, create
        // subscription).
        let Some(user) = caller.user.clone() else {
            return forbidden();
        };
        if !caller
            .scopes
            .iter()
            .any(|s| SUBSCRIBE_SCOPES.iter().any(|x| x.eq_ignore_ascii_case(s)))
        {
            return forbidden();
        }
        let new = match check_create(&st, caller, req.body.as_ref()) {
            Ok(n) => n,
            Err(e) => return e,
        };
        prune(&mut st);
        if let Err(e) = conflict(&st, caller, &user) {
            return e;
        }
        let upn = st
            .directory
            .get(&user)
            .map(|u| u.user_principal_name.clone())
            .unwrap_or_default();
        (new, user, upn, guid(), st.opts.validation_timeout)
    };
    let mut urls = vec![new.notification_url.clone()];
    urls.extend(new.lifecycle_url.clone());
    for url in urls {
        let started = std::time::Instant::now();
        let outcome = notify::validate(&shared.http, &url, timeout).await;
        let mut st = shared.lock();
        st.push_delivery(Delivery {
            subscription_id: id.clone(),
            url: url.clone(),
            kind: DeliveryKind::Validation,
            ids: Vec::new(),
            status: outcome.status,
            error: outcome.problem.as_ref().map(|(_, m)| m.clone()),
            attempt: 1,
            at: std::time::Instant::now(),
            started,
        });
        if let Some((code, message)) = outcome.problem {
            return GraphResponse::error(400, code, &message);
        }
    }
    let mut st = shared.lock();
    prune(&mut st);
    if let Err(e) = conflict(&st, caller, &user) {
        return e;
    }
    let now = st.now();
    let last = new
        .ids
        .iter()
        .map(|i| (i.clone(), notify::presence_of(&st, i, now)))
        .collect();
    let created = st
        .subscriptions
        .values()
        .map(|s| s.created)
        .max()
        .unwrap_or(0)
        + 1;
    let queue = notify::spawn_worker(shared);
    let sub = Subscription {
        id: id.clone(),
        client_id: caller.client_id.clone(),
        creator_id: user,
        creator_upn: upn,
        resource: new.resource,
        ids: new.ids,
        notification_url: new.notification_url,
        lifecycle_url: new.lifecycle_url,
        client_state: new.client_state,
        expires: new.expires,
        cert: new.cert,
        tls: new.tls,
        reauth_required: false,
        created,
        last,
        queue,
    };
    let body = sub.to_json(&shared.base_url);
    st.subscriptions.insert(id, sub);
    GraphResponse::json(201, body)
}
