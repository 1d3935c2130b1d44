//! Every Graph request is counted once per attempt, by operation and status (`http.rs`), the
//! token requests too (`auth.rs`), and 429s as throttled: against a tiny scripted server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::json;
use url::Url;

use super::*;

/// Answers setPresence 429 (Retry-After 0) `throttles` times, then 200.
async fn start(throttles: u32) -> (GraphClient, Metrics) {
    start_fenced(throttles, crate::fence::Fence::open()).await
}

/// The same, the client's writes checked against `fence`.
async fn start_fenced(throttles: u32, fence: crate::fence::Fence) -> (GraphClient, Metrics) {
    let left = Arc::new(AtomicU32::new(throttles));
    let token = || async {
        axum::Json(json!({"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}))
    };
    let set = |State(left): State<Arc<AtomicU32>>| async move {
        let throttled = left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            let body = json!({"error": {"code": "TooManyRequests", "message": "later"}});
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", "0")],
                axum::Json(body),
            )
                .into_response();
        }
        StatusCode::OK.into_response()
    };
    let app = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0/users/{id}/presence/setPresence", post(set))
        .with_state(left);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let metrics = Metrics::default();
    let mut settings = test_settings(&base);
    settings.metrics = metrics.clone();
    settings.fence = fence;
    (GraphClient::new(settings).unwrap(), metrics)
}

fn value(text: &str, series: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn each_attempt_is_counted_by_op_and_status_and_429s_as_throttled() {
    let (client, metrics) = start(2).await;
    let five = Duration::from_secs(300);
    client
        .set_presence("u1", "Busy", "InACall", five)
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    let series = |op: &str, status: &str| {
        format!("pbx_teams_presence_graph_requests_total{{op=\"{op}\",status=\"{status}\"}}")
    };
    assert_eq!(
        value(&text, &series("setPresence", "429")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(value(&text, &series("setPresence", "200")), Some(1.0));
    assert_eq!(value(&text, &series("token", "200")), Some(1.0));
    assert_eq!(
        value(&text, "pbx_teams_presence_graph_throttled_total"),
        Some(2.0)
    );
}

#[tokio::test]
async fn no_answer_is_counted_as_network() {
    // A port nobody listens on: connections are refused.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = Url::parse(&format!("http://{}", closed.local_addr().unwrap())).unwrap();
    drop(closed);
    let metrics = Metrics::default();
    let mut settings = test_settings(&base);
    settings.metrics = metrics.clone();
    settings.max_attempts = 1;
    let client = GraphClient::new(settings).unwrap();
    assert!(client.ensure_token().await.is_err());
    let text = metrics.encode().unwrap();
    let series = "pbx_teams_presence_graph_requests_total{op=\"token\",status=\"network\"}";
    assert_eq!(value(&text, series), Some(1.0), "{text}");
}

/// `[ha]`: a node whose fence is shut sends no write at all (nothing reaches Graph, nothing
/// is counted); the same client writes once the fence opens, naming its node and epoch.
#[tokio::test]
async fn a_shut_fence_stops_writes_before_they_leave() {
    let fence = crate::fence::Fence::for_node("pbx1");
    let (client, metrics) = start_fenced(0, fence.clone()).await;
    let refused = client
        .set_presence("u1", "Busy", "InACall", Duration::from_secs(300))
        .await;
    assert!(
        matches!(refused, Err(GraphError::NotLeader(_))),
        "{refused:?}"
    );
    let text = metrics.encode().unwrap();
    assert!(
        value(
            &text,
            r#"pbx_teams_presence_graph_requests_total{op="setPresence",status="200"}"#
        )
        .is_none(),
        "{text}"
    );
    fence.extend(3, crate::clock::monotonic() + Duration::from_secs(10));
    client
        .set_presence("u1", "Busy", "InACall", Duration::from_secs(300))
        .await
        .unwrap();
    let text = metrics.encode().unwrap();
    assert_eq!(
        value(
            &text,
            r#"pbx_teams_presence_graph_requests_total{op="setPresence",status="200"}"#
        ),
        Some(1.0),
        "{text}"
    );
}
