//! The HTTP behaviour of [`GraphClient`] against a tiny scripted server (not a Graph emulator):
//! token caching and the one refresh on 401, Retry-After, 5xx retries, no retry on 400, and a
//! `$batch` user lookup with an inner 429.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use url::Url;

use super::*;

/// A canned answer for the next Graph request.
struct Canned {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Value,
}

/// What the fake saw of one Graph request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: String,
    client_request_id: String,
    body: Value,
}

#[derive(Default)]
struct Fake {
    /// Tokens issued so far; token n is "tok-n".
    issued: AtomicU32,
    /// Tokens with a lower number than this are refused with 401.
    min_valid: AtomicU32,
    /// Answer the token endpoint with AADSTS7000215.
    bad_secret: std::sync::atomic::AtomicBool,
    script: Mutex<VecDeque<Canned>>,
    seen: Mutex<Vec<Seen>>,
    /// Directory for `$batch` lookups: (id, mail, upn, proxyAddresses).
    users: Vec<(&'static str, &'static str, &'static str, Vec<&'static str>)>,
    /// Inner requests answered 429 (Retry-After 0) before the first success.
    inner_throttles: AtomicU32,
    /// Addresses whose proxyAddresses lookup is answered 400 (a filter Graph refuses).
    refuse_proxy: Vec<&'static str>,
}

impl Fake {
    fn push(&self, status: u16, headers: Vec<(&'static str, &'static str)>, body: Value) {
        let canned = Canned {
            status,
            headers,
            body,
        };
        self.script.lock().unwrap().push_back(canned);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn token(State(fake): State<Arc<Fake>>, body: String) -> Response {
    assert!(body.contains("grant_type=client_credentials"), "{body}");
    assert!(body.contains("client_secret=s3cr3t-value"), "{body}");
    assert!(body.contains("scope=http"), "{body}");
    assert!(body.contains("%2F.default"), "{body}");
    if fake.bad_secret.load(Ordering::SeqCst) {
        let error = json!({"error": "invalid_client",
            "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: t",
            "error_codes": [7000215]});
        return (StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
    }
    let n = fake.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let answer =
        json!({"token_type": "Bearer", "expires_in": 3599, "access_token": format!("tok-{n}")});
    axum::Json(answer).into_response()
}

async fn graph(State(fake): State<Arc<Fake>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let header = |h: &HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let bytes = to_bytes(body, 1 << 20).await.unwrap();
    let seen = Seen {
        path: parts.uri.path().to_string(),
        authorization: header(&parts.headers, "authorization"),
        client_request_id: header(&parts.headers, "client-request-id"),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    fake.seen.lock().unwrap().push(seen.clone());
    let token_no: u32 = seen
        .authorization
        .trim_start_matches("Bearer tok-")
        .parse()
        .unwrap_or(0);
    if token_no < fake.min_valid.load(Ordering::SeqCst) {
        let error = json!({"error": {"code": "InvalidAuthenticationToken",
            "message": "Access token has expired or is not yet valid."}});
        return reply(401, &[], error);
    }
    if let Some(c) = fake.script.lock().unwrap().pop_front() {
        return reply(c.status, &c.headers, c.body);
    }
    match seen.path.as_str() {
        "/v1.0/communications/getPresencesByUserId" => {
            let ids = seen.body["ids"].as_array().cloned().unwrap_or_default();
            let value: Vec<Value> = ids
                .iter()
                .map(|id| json!({"id": id, "availability": "Busy", "activity": "InACall"}))
                .collect();
            reply(200, &[], json!({ "value": value }))
        }
        "/v1.0/$batch" => batch(&fake, &seen.body),
        _ => reply(200, &[], Value::Null),
    }
}

fn reply(status: u16, headers: &[(&str, &str)], body: Value) -> Response {
    let mut builder = Response::builder().status(status);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = if body.is_null() {
        Body::empty()
    } else {
        builder = builder.header("content-type", "application/json");
        Body::from(body.to_string())
    };
    builder.body(body).unwrap()
}

/// Answers each inner GET by looking for quoted addresses in the decoded filter.
fn batch(fake: &Fake, body: &Value) -> Response {
    let requests = body["requests"].as_array().unwrap();
    assert!(requests.len() <= 20, "at most 20 requests per $batch");
    let responses: Vec<Value> = requests
        .iter()
        .map(|r| {
            let id = r["id"].clone();
            let url = r["url"].as_str().unwrap();
            assert!(url.starts_with("/users?$filter="), "{url}");
            if fake.inner_throttles.load(Ordering::SeqCst) > 0 {
                fake.inner_throttles.fetch_sub(1, Ordering::SeqCst);
                return json!({"id": id, "status": 429, "headers": {"Retry-After": "0"},
                    "body": {"error": {"code": "TooManyRequests", "message": "later"}}});
            }
            let raw = url["/users?$filter=".len()..].split('&').next().unwrap();
            let filter = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .unwrap()
                .to_lowercase();
            let quoted = |s: &str| filter.contains(&format!("'{}'", s.to_lowercase()));
            if filter.starts_with("proxyaddresses") && fake.refuse_proxy.iter().any(|a| filter.contains(a)) {
                return json!({"id": id, "status": 400,
                    "body": {"error": {"code": "Request_UnsupportedQuery", "message": "Unsupported query."}}});
            }
            let found: Vec<Value> = fake
                .users
                .iter()
                .filter(|(_, mail, upn, proxies)| {
                    if filter.starts_with("mail in") {
                        quoted(mail)
                    } else if filter.starts_with("userprincipalname in") {
                        quoted(upn)
                    } else {
                        proxies.iter().any(|p| quoted(p))
                    }
                })
                .map(|(id, mail, upn, proxies)| {
                    json!({"id": id, "mail": mail, "userPrincipalName": upn, "proxyAddresses": proxies})
                })
                .collect();
            json!({"id": id, "status": 200, "body": {"value": found}})
        })
        .collect();
    reply(200, &[], json!({ "responses": responses }))
}

async fn start(fake: Fake) -> (GraphClient, Arc<Fake>) {
    let fake = Arc::new(fake);
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .fallback(graph)
        .with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = GraphClient::new(test_settings(&base)).unwrap();
    (client, fake)
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn token_is_cached_and_refreshed_once_on_401() {
    let (client, fake) = start(Fake::default()).await;
    let first = client.get_presences(&ids(&["a", "b"])).await.unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].activity, "InACall");
    client.get_presences(&ids(&["a"])).await.unwrap();
    assert_eq!(
        client.stats().token_fetches,
        1,
        "second call uses the cached token"
    );

    // The server stops accepting tok-1: one 401, one new token, the same request again.
    fake.min_valid.store(2, Ordering::SeqCst);
    client.get_presences(&ids(&["a"])).await.unwrap();
    let seen = fake.seen();
    let auths: Vec<&str> = seen.iter().map(|s| s.authorization.as_str()).collect();
    assert_eq!(
        auths,
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2"
        ]
    );
    assert_eq!(seen[2].client_request_id, seen[3].client_request_id);
    assert!(uuid::Uuid::parse_str(&seen[3].client_request_id).is_ok());
    let stats = client.stats();
    assert_eq!(
        (stats.token_fetches, stats.retries, stats.requests),
        (2, 1, 4)
    );

    // A token that is refused even when fresh: exactly one refresh, then Unauthorized.
    fake.min_valid.store(100, Ordering::SeqCst);
    let err = client.get_presences(&ids(&["a"])).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Unauthorized { ref code, .. } if code == "InvalidAuthenticationToken"),
        "{err:?}"
    );
    assert_eq!(client.stats().token_fetches, 3);
}

#[tokio::test]
async fn concurrent_callers_share_one_token_fetch() {
    let (client, _fake) = start(Fake::default()).await;
    let calls = (0..8).map(|_| {
        let c = client.clone();
        tokio::spawn(async move { c.ensure_token().await })
    });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(client.stats().token_fetches, 1);
}

#[tokio::test]
async fn retry_after_is_honoured_on_429() {
    let (client, fake) = start(Fake::default()).await;
    let throttled =
        json!({"error": {"code": "TooManyRequests", "message": "Please retry again later."}});
    fake.push(429, vec![("Retry-After", "1")], throttled);
    let started = crate::clock::monotonic();
    client
        .set_presence("u1", "Busy", "InACall", Duration::from_secs(300))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].path, "/v1.0/users/u1/presence/setPresence");
    assert_eq!(
        seen[1].body,
        json!({"sessionId": "11111111-2222-3333-4444-555555555555", "availability": "Busy",
               "activity": "InACall", "expirationDuration": "PT5M"})
    );
    let stats = client.stats();
    assert_eq!((stats.throttled, stats.retries, stats.errors), (1, 1, 0));
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (client, fake) = start(Fake::default()).await;
    fake.push(
        503,
        vec![],
        json!({"error": {"code": "serviceNotAvailable", "message": "x"}}),
    );
    fake.push(500, vec![], Value::Null);
    assert_eq!(
        client.clear_presence("u1").await.unwrap(),
        ClearOutcome::Cleared
    );
    assert_eq!(fake.seen().len(), 3);
    assert_eq!(client.stats().retries, 2);
}

#[tokio::test]
async fn server_errors_give_up_after_max_attempts() {
    let (client, fake) = start(Fake::default()).await;
    for _ in 0..4 {
        fake.push(502, vec![], Value::Null);
    }
    let err = client.clear_presence("u1").await.unwrap_err();
    assert_eq!(err, GraphError::Unavailable { status: 502 });
    assert_eq!(
        fake.seen().len(),
        4,
        "max_attempts is 4 in the test settings"
    );
    assert_eq!(client.stats().errors, 1);
}

#[tokio::test]
async fn bad_request_is_not_retried() {
    let (client, fake) = start(Fake::default()).await;
    let body = json!({"error": {"code": "InvalidArgument",
        "message": "The provided [ExpirationDuration] is out of range.",
        "innerError": {"request-id": "r-1", "date": "2024-01-01T00:00:00"}}});
    fake.push(400, vec![], body);
    let err = client
        .set_presence("u1", "Busy", "InACall", Duration::from_secs(300))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GraphError::Rejected { status: 400, ref code, .. } if code == "InvalidArgument"),
        "{err:?}"
    );
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(client.stats().retries, 0);
}

#[tokio::test]
async fn clear_presence_404_means_no_session() {
    let (client, fake) = start(Fake::default()).await;
    fake.push(
        404,
        vec![],
        json!({"error": {"code": "NotFound", "message": "no session"}}),
    );
    assert_eq!(
        client.clear_presence("u1").await.unwrap(),
        ClearOutcome::NoSession
    );
    assert_eq!(client.stats().errors, 0);
}

#[tokio::test]
async fn wrong_secret_is_a_credentials_error_with_a_hint() {
    let fake = Fake::default();
    fake.bad_secret.store(true, Ordering::SeqCst);
    let (client, fake) = start(fake).await;
    let err = client.ensure_token().await.unwrap_err();
    match err {
        GraphError::Credentials {
            aadsts,
            ref error,
            hint,
        } => {
            assert_eq!(aadsts, Some(7000215));
            assert_eq!(error, "invalid_client");
            assert!(hint.contains("VALUE"));
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.seen().is_empty(), "no Graph request without a token");
    let report = client.probe().await;
    assert!(!report.all_ok());
    assert!(report.token.advice.contains("VALUE"));
}

#[path = "lookup_tests.rs"]
mod lookup;
