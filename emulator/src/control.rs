//! `/_control`: a JSON API (no auth) for tests and tools outside the process, e.g. the SDK
//! probe (`tests/sdk-probe`). Everything here mirrors a method of
//! [`crate::Emulator`].

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{Fault, FaultKind, User};
use crate::server::{AppState, respond};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { ok(json!({"status": "ok"})) }))
        .route("/faults", post(add_fault).delete(clear_faults))
        .route("/config", get(get_config).post(set_config))
        .route("/apps", post(add_app))
        .route("/apps/{client_id}/certificates", post(add_app_certificate))
        .route("/users", post(add_user))
        .route("/presence/{id}", post(set_user_presence).get(get_presence))
        .route("/clock/advance", post(advance_clock))
        .route("/tokens/expire", post(expire_tokens))
        .route("/requests", get(requests))
        .route("/requests", delete(clear_requests))
        .route("/devicecodes/approve", post(approve_device_code))
        .route("/devicecodes/decline", post(decline_device_code))
        .route("/refreshtokens/revoke", post(revoke_refresh_tokens))
        .route("/subscriptions", get(subscriptions))
        .route("/subscriptions/{id}", delete(remove_subscription))
        .route("/subscriptions/{id}/lifecycle", post(send_lifecycle))
        .route("/deliveries", get(deliveries).delete(clear_deliveries))
        .route("/deliveries/fail", post(fail_deliveries))
}

fn ok(body: Value) -> Response {
    respond(
        200,
        &[("Content-Type".into(), "application/json".into())],
        Some(&body),
    )
}

fn bad(message: &str) -> Response {
    respond(
        400,
        &[("Content-Type".into(), "application/json".into())],
        Some(&json!({"error": message})),
    )
}

/// `{"match"|"path_contains": str, "method"?: str, "status"?: u16, "retry_after"?: secs,
/// "delay_ms"?: ms, "count"|"times"?: n}`; status 429 becomes a Throttle fault.
#[derive(Deserialize)]
struct FaultBody {
    #[serde(alias = "path_contains")]
    r#match: String,
    method: Option<String>,
    status: Option<u16>,
    retry_after: Option<u64>,
    delay_ms: Option<u64>,
    #[serde(alias = "times")]
    count: Option<u32>,
}

async fn add_fault(State(s): State<AppState>, Json(b): Json<FaultBody>) -> Response {
    let kind = match (b.status, b.delay_ms) {
        (Some(429), _) => FaultKind::Throttle {
            retry_after_secs: b.retry_after.unwrap_or(1),
        },
        (Some(st), _) => FaultKind::Status(st),
        (None, Some(ms)) => FaultKind::Delay(Duration::from_millis(ms)),
        (None, None) => return bad("give status or delay_ms"),
    };
    s.inject(Fault {
        method: b.method,
        path_contains: b.r#match,
        kind,
        times: b.count.unwrap_or(1),
    });
    ok(json!({}))
}

async fn clear_faults(State(s): State<AppState>) -> Response {
    s.lock().clear_faults();
    ok(json!({}))
}

async fn get_config(State(s): State<AppState>) -> Response {
    let st = s.lock();
    ok(json!({
        "token_lifetime": st.opts.token_lifetime.as_secs(),
        "presence_limit_per_30s": st.opts.presence_limit_per_30s,
        "strict_user_readbasic": st.opts.strict_user_readbasic,
        "device_code_interval": st.opts.device_code_interval,
        "allow_http_notification_urls": st.opts.allow_http_notification_urls,
        "validation_timeout_ms": st.opts.validation_timeout.as_millis() as u64,
        "notification_timeout_ms": st.opts.notification_timeout.as_millis() as u64,
        "notification_retries": st.opts.notification_retries,
        "notification_retry_delay_ms": st.opts.notification_retry_delay.as_millis() as u64,
        "reject_reused_assertions": st.opts.reject_reused_assertions,
        "subscription_grant_secs": st.opts.subscription_grant.map(|d| d.as_secs_f64()),
    }))
}

#[derive(Deserialize)]
struct ConfigBody {
    token_lifetime: Option<u64>,
    presence_limit_per_30s: Option<u32>,
    strict_user_readbasic: Option<bool>,
    device_code_interval: Option<u64>,
    allow_http_notification_urls: Option<bool>,
    validation_timeout_ms: Option<u64>,
    notification_timeout_ms: Option<u64>,
    notification_retries: Option<u32>,
    notification_retry_delay_ms: Option<u64>,
    reject_reused_assertions: Option<bool>,
    /// The longest lifetime subscriptions are granted; 0 (or below): what is asked.
    subscription_grant_secs: Option<f64>,
}

async fn set_config(State(s): State<AppState>, Json(b): Json<ConfigBody>) -> Response {
    let mut st = s.lock();
    if let Some(t) = b.token_lifetime {
        st.opts.token_lifetime = Duration::from_secs(t);
    }
    if let Some(l) = b.presence_limit_per_30s {
        st.opts.presence_limit_per_30s = l;
    }
    if let Some(x) = b.strict_user_readbasic {
        st.opts.strict_user_readbasic = x;
    }
    if let Some(x) = b.device_code_interval {
        st.opts.device_code_interval = x;
    }
    if let Some(x) = b.allow_http_notification_urls {
        st.opts.allow_http_notification_urls = x;
    }
    if let Some(x) = b.validation_timeout_ms {
        st.opts.validation_timeout = Duration::from_millis(x);
    }
    if let Some(x) = b.notification_timeout_ms {
        st.opts.notification_timeout = Duration::from_millis(x);
    }
    if let Some(x) = b.notification_retries {
        st.opts.notification_retries = x;
    }
    if let Some(x) = b.notification_retry_delay_ms {
        st.opts.notification_retry_delay = Duration::from_millis(x);
    }
    if let Some(x) = b.reject_reused_assertions {
        st.opts.reject_reused_assertions = x;
    }
    if let Some(x) = b.subscription_grant_secs {
        st.opts.subscription_grant =
            (x.is_finite() && x > 0.0).then(|| Duration::from_secs_f64(x.min(3600.0)));
    }
    ok(json!({}))
}

#[derive(Deserialize)]
struct AppBody {
    client_id: String,
    secret: String,
    #[serde(default)]
    roles: Vec<String>,
}

async fn add_app(State(s): State<AppState>, Json(b): Json<AppBody>) -> Response {
    let roles: Vec<&str> = b.roles.iter().map(String::as_str).collect();
    s.add_app(&b.client_id, &b.secret, &roles);
    ok(json!({"client_id": b.client_id}))
}

/// `{"certificate": "-----BEGIN CERTIFICATE-----..."}` -> `{"x5t#S256": ...}`.
#[derive(Deserialize)]
struct CertificateBody {
    certificate: String,
}

async fn add_app_certificate(
    State(s): State<AppState>,
    Path(client_id): Path<String>,
    Json(b): Json<CertificateBody>,
) -> Response {
    match s.add_app_certificate(&client_id, b.certificate.as_bytes()) {
        Ok(thumbprint) => ok(json!({"client_id": client_id, "x5t#S256": thumbprint})),
        Err(why) => bad(&why),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    id: Option<String>,
    display_name: String,
    user_principal_name: String,
    mail: Option<String>,
    #[serde(default)]
    proxy_addresses: Vec<String>,
    #[serde(default)]
    business_phones: Vec<String>,
    mobile_phone: Option<String>,
    employee_id: Option<String>,
}

async fn add_user(State(s): State<AppState>, Json(b): Json<UserBody>) -> Response {
    let id = s.add_user(User {
        id: b.id,
        display_name: b.display_name,
        user_principal_name: b.user_principal_name,
        mail: b.mail,
        proxy_addresses: b.proxy_addresses,
        business_phones: b.business_phones,
        mobile_phone: b.mobile_phone,
        employee_id: b.employee_id,
        ..User::default()
    });
    ok(json!({"id": id}))
}

#[derive(Deserialize)]
struct PresenceBody {
    availability: String,
    activity: String,
}

async fn set_user_presence(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<PresenceBody>,
) -> Response {
    if !s.set_user_presence(&id, &b.availability, &b.activity) {
        return bad("unknown user");
    }
    ok(json!({}))
}

async fn get_presence(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    match s.presence(&id) {
        Some((a, b)) => ok(json!({"availability": a, "activity": b})),
        None => bad("unknown user"),
    }
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: f64,
}

async fn advance_clock(State(s): State<AppState>, Json(b): Json<AdvanceBody>) -> Response {
    if !(b.seconds.is_finite() && b.seconds >= 0.0) {
        return bad("seconds must be >= 0");
    }
    s.advance_clock(Duration::from_secs_f64(b.seconds));
    ok(json!({}))
}

async fn expire_tokens(State(s): State<AppState>) -> Response {
    s.expire_tokens();
    ok(json!({}))
}

async fn requests(State(s): State<AppState>) -> Response {
    let list: Vec<Value> = s
        .requests()
        .into_iter()
        .map(|r| json!({"method": r.method, "path": r.path, "query": r.query, "status": r.status, "client_id": r.client_id, "in_batch": r.in_batch, "user_agent": r.user_agent, "body": r.body}))
        .collect();
    ok(json!({"value": list}))
}

async fn clear_requests(State(s): State<AppState>) -> Response {
    s.clear_requests();
    ok(json!({}))
}

/// `{"user_code", "upn"}` (`"account"` is accepted for `upn`, as the SDK probe sends it).
#[derive(Deserialize)]
struct ApproveBody {
    user_code: String,
    #[serde(alias = "account")]
    upn: Option<String>,
}

async fn approve_device_code(State(s): State<AppState>, Json(b): Json<ApproveBody>) -> Response {
    let Some(upn) = b.upn else {
        return bad("give upn");
    };
    if !s.approve_device_code(&b.user_code, Some(&upn)) {
        return bad("no pending device code with that user_code, or unknown user");
    }
    ok(json!({}))
}

async fn decline_device_code(State(s): State<AppState>, Json(b): Json<ApproveBody>) -> Response {
    if !s.approve_device_code(&b.user_code, None) {
        return bad("no pending device code with that user_code");
    }
    ok(json!({}))
}

#[derive(Deserialize)]
struct RevokeBody {
    #[serde(alias = "account")]
    upn: String,
}

async fn revoke_refresh_tokens(State(s): State<AppState>, Json(b): Json<RevokeBody>) -> Response {
    match s.revoke_refresh_tokens(&b.upn) {
        Some(n) => ok(json!({"revoked": n})),
        None => bad("unknown user"),
    }
}

fn unix_secs(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn subscriptions(State(s): State<AppState>) -> Response {
    let list: Vec<Value> = s
        .subscriptions()
        .into_iter()
        .map(|x| {
            json!({
                "id": x.id, "client_id": x.client_id, "creator_upn": x.creator_upn,
                "creator_id": x.creator_id, "ids": x.ids, "resource": x.resource,
                "expiration": unix_secs(x.expiration), "client_state": x.client_state,
                "include_resource_data": x.include_resource_data,
                "notification_url": x.notification_url,
                "lifecycle_notification_url": x.lifecycle_notification_url,
                "reauthorization_required": x.reauthorization_required,
            })
        })
        .collect();
    ok(json!({"value": list}))
}

/// Removes a subscription without a lifecycle event (as an admin might).
async fn remove_subscription(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    if !s.remove_subscription(&id) {
        return bad("no live subscription with that id");
    }
    ok(json!({}))
}

/// `{"event": "reauthorizationRequired"}` (the default), `"subscriptionRemoved"` or
/// `"missed"`.
#[derive(Deserialize)]
struct LifecycleBody {
    event: Option<String>,
}

async fn send_lifecycle(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Option<Json<LifecycleBody>>,
) -> Response {
    let event = body
        .and_then(|Json(b)| b.event)
        .unwrap_or_else(|| "reauthorizationRequired".into());
    match crate::notify::send_lifecycle(&mut s.lock(), &id, &event) {
        Ok(sent) => ok(json!({"sent": sent})),
        Err(e) => bad(&e),
    }
}

async fn deliveries(State(s): State<AppState>) -> Response {
    let list: Vec<Value> = s
        .deliveries()
        .into_iter()
        .map(|d| {
            json!({
                "subscription_id": d.subscription_id, "url": d.url,
                "kind": format!("{:?}", d.kind).to_lowercase(), "ids": d.ids,
                "status": d.status, "error": d.error, "attempt": d.attempt,
            })
        })
        .collect();
    ok(json!({"value": list}))
}

async fn clear_deliveries(State(s): State<AppState>) -> Response {
    s.lock().deliveries.clear();
    ok(json!({}))
}

#[derive(Deserialize)]
struct FailBody {
    count: u32,
}

async fn fail_deliveries(State(s): State<AppState>, Json(b): Json<FailBody>) -> Response {
    s.lock().fail_deliveries = b.count;
    ok(json!({}))
}
