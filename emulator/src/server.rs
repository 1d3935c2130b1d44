//! HTTP glue: the axum router for the token endpoint, Graph (`/v1.0/...`) and `/_control`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::Value;

use crate::graph::{self, GraphRequest};
use crate::model::{FaultKind, LoggedRequest};
use crate::odata::GraphResponse;
use crate::state::Shared;
use crate::token::{self, TokenAnswer};
use crate::{control, util};

/// Shared state as axum sees it.
pub(crate) type AppState = Arc<Shared>;

pub(crate) fn router(shared: AppState) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
        .route("/{tenant}/oauth2/v2.0/devicecode", post(device_code))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(signing_keys))
        .route("/v1.0/{*rest}", any(graph_endpoint))
        .nest("/_control", control::router())
        .with_state(shared)
}

/// Turns a JSON body and headers into an HTTP response.
pub(crate) fn respond(status: u16, headers: &[(String, String)], body: Option<&Value>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap_or_default())
        .unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().remove(axum::http::header::CONTENT_TYPE);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

async fn graph_endpoint(
    State(shared): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (body, body_invalid) = if body.is_empty() {
        (None, false)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => (Some(v), false),
            Err(_) => (None, true),
        }
    };
    let req = GraphRequest {
        method: method.as_str().to_owned(),
        raw_path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_lowercase(),
                    v.to_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
        body,
        body_invalid,
        in_batch: false,
    };
    let resp: GraphResponse = graph::handle(&shared, req).await;
    respond(resp.status, &resp.headers, resp.body.as_ref())
}

fn aad_headers(a: &TokenAnswer) -> Vec<(String, String)> {
    // Real Entra errors carry these (https://github.com/databricks/databricks-sdk-go/issues/240).
    let trace = a
        .body
        .get("trace_id")
        .and_then(Value::as_str)
        .map_or_else(util::guid, str::to_owned);
    vec![
        (
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        ),
        ("Cache-Control".into(), "no-store, no-cache".into()),
        ("x-ms-request-id".into(), trace),
    ]
}

async fn token_endpoint(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    aad_endpoint(shared, tenant, uri, headers, body, "token").await
}

/// POST /{tenant}/oauth2/v2.0/devicecode: the device authorization request
/// (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>).
async fn device_code(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    aad_endpoint(shared, tenant, uri, headers, body, "devicecode").await
}

/// The Entra endpoints (`op` = `token` or `devicecode`): faults, answer, log.
async fn aad_endpoint(
    shared: AppState,
    tenant: String,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    op: &str,
) -> Response {
    let at = Instant::now();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let path = uri.path().to_owned();
    let fault = shared.lock().take_fault("POST", &path, op);
    if let Some(FaultKind::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let mut answer = {
        let mut st = shared.lock();
        match fault {
            Some(FaultKind::Status(s)) => {
                token::aad_error(&st, s, "temporarily_unavailable", 50_196, "Injected fault.")
            }
            Some(FaultKind::Throttle { .. }) => token::aad_error(
                &st,
                429,
                "temporarily_unavailable",
                50_196,
                "Injected fault: too many requests.",
            ),
            _ if op == "devicecode" => crate::delegated::device_code(&mut st, &tenant, &form),
            _ => token::token(&mut st, &tenant, auth, &form),
        }
    };
    let mut hdrs = aad_headers(&answer);
    if let Some(FaultKind::Throttle { retry_after_secs }) = fault {
        hdrs.push(("Retry-After".into(), retry_after_secs.to_string()));
    }
    if answer.client_id.is_none() {
        answer.client_id = form.get("client_id").cloned();
    }
    let entry = LoggedRequest {
        method: "POST".into(),
        path,
        query: uri.query().unwrap_or("").to_owned(),
        body: None, // never keep secrets in the log
        status: answer.status,
        client_id: answer.client_id.clone(),
        at,
        in_batch: false,
        user_agent: None,
    };
    shared.lock().push_log(entry);
    respond(answer.status, &hdrs, Some(&answer.body))
}

async fn openid(State(shared): State<AppState>, Path(tenant): Path<String>) -> Response {
    let st = shared.lock();
    if !token::tenant_known(&st, &tenant) {
        let a = token::unknown_tenant(&st, &tenant);
        return respond(a.status, &aad_headers(&a), Some(&a.body));
    }
    let body = token::openid_configuration(&shared.base_url, &st.tenant_id);
    respond(
        200,
        &[(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        )],
        Some(&body),
    )
}

/// GET /{tenant}/discovery/v2.0/keys (`common` or this tenant): the keys that sign rich
/// notifications' validation tokens (`trust.rs`). Logged like the token endpoint.
async fn signing_keys(
    State(shared): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> Response {
    let at = Instant::now();
    let known = tenant == "common" || token::tenant_known(&shared.lock(), &tenant);
    let (status, body) = if known {
        (200, crate::trust::jwks(&shared))
    } else {
        let st = shared.lock();
        let a = token::unknown_tenant(&st, &tenant);
        (a.status, a.body)
    };
    shared.lock().push_log(LoggedRequest {
        method: "GET".into(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        body: None,
        status,
        client_id: None,
        at,
        in_batch: false,
        user_agent: None,
    });
    let json = (
        "Content-Type".to_owned(),
        "application/json; charset=utf-8".to_owned(),
    );
    respond(status, &[json], Some(&body))
}
