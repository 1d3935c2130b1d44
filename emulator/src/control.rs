//! `/_control`: a JSON API (no auth) for tests and tools outside the process, e.g. the SDK
//! probe (/work/shared/graph/sdk-probe). Everything here mirrors a method of
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
        .route("/users", post(add_user))
        .route("/presence/{id}", post(set_user_presence).get(get_presence))
        .route("/clock/advance", post(advance_clock))
        .route("/tokens/expire", post(expire_tokens))
        .route("/requests", get(requests))
        .route("/requests", delete(clear_requests))
        .route("/devicecodes/approve", post(not_yet))
        .route("/subscriptions/{id}/lifecycle", post(not_yet))
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

async fn not_yet() -> Response {
    let body =
        json!({"error": "the emulator does not implement delegated flows or subscriptions yet"});
    respond(
        501,
        &[("x-emulator-unsupported".into(), "1".into())],
        Some(&body),
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
    }))
}

#[derive(Deserialize)]
struct ConfigBody {
    token_lifetime: Option<u64>,
    presence_limit_per_30s: Option<u32>,
    strict_user_readbasic: Option<bool>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserBody {
    id: Option<String>,
    display_name: String,
    user_principal_name: String,
    mail: Option<String>,
    #[serde(default)]
    proxy_addresses: Vec<String>,
}

async fn add_user(State(s): State<AppState>, Json(b): Json<UserBody>) -> Response {
    let id = s.add_user(User {
        id: b.id,
        display_name: b.display_name,
        user_principal_name: b.user_principal_name,
        mail: b.mail,
        proxy_addresses: b.proxy_addresses,
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
        .map(|r| json!({"method": r.method, "path": r.path, "query": r.query, "status": r.status, "client_id": r.client_id, "in_batch": r.in_batch, "body": r.body}))
        .collect();
    ok(json!({"value": list}))
}

async fn clear_requests(State(s): State<AppState>) -> Response {
    s.clear_requests();
    ok(json!({}))
}
