//! 401s, the presence rate limit, injected faults and the request log.

mod common;

use std::time::Duration;

use common::start;
use graph_emulator::{EmulatorOptions, Fault, FaultKind};
use serde_json::json;

#[tokio::test]
async fn expired_missing_and_unknown_tokens_are_401() {
    let fx = start(1).await;
    let path = format!("/users/{}", fx.ids[0]);
    assert_eq!(fx.get(&path).await.status, 200);
    fx.emu.advance_clock(Duration::from_secs(3600));
    let a = fx.get(&path).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(), "InvalidAuthenticationToken");
    assert_eq!(
        a.body["error"]["message"],
        "Access token has expired or is not yet valid."
    );
    assert!(
        a.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"\"")
    );
    let a = fx.get_as("garbage", &path).await;
    assert_eq!((a.status, a.code()), (401, "InvalidAuthenticationToken"));
    let r = fx.http.get(fx.url(&path)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn expire_tokens_and_short_lifetimes() {
    let fx = start(1).await;
    fx.emu.expire_tokens();
    assert_eq!(fx.get("/users").await.status, 401);
    fx.emu.set_token_lifetime(Duration::from_secs(60));
    let tok = common::token_for(
        &fx.http,
        &fx.emu,
        &fx.emu.client_id(),
        &fx.emu.client_secret(),
    )
    .await;
    assert_eq!(fx.get_as(&tok, "/users").await.status, 200);
    fx.emu.advance_clock(Duration::from_secs(61));
    assert_eq!(fx.get_as(&tok, "/users").await.status, 401);
}

#[tokio::test]
async fn presence_rate_limit_gives_429_with_retry_after_until_the_window_ends() {
    let opts = EmulatorOptions {
        presence_limit_per_30s: 2,
        ..Default::default()
    };
    let fx = common::start_with(opts, 1).await;
    let path = format!("/users/{}/presence", fx.ids[0]);
    assert_eq!(fx.get(&path).await.status, 200);
    assert_eq!(
        fx.post(
            "/communications/getPresencesByUserId",
            json!({"ids": fx.ids})
        )
        .await
        .status,
        200
    );
    let a = fx.get(&path).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.code(), "TooManyRequests");
    assert_eq!(a.body["error"]["innerError"]["status"], "429");
    let ra: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=30).contains(&ra));
    assert_eq!(
        fx.get("/users").await.status,
        200,
        "users are not presence requests"
    );
    fx.emu.advance_clock(Duration::from_secs(30));
    assert_eq!(fx.get(&path).await.status, 200);
}

#[tokio::test]
async fn injected_status_and_throttle_hit_the_next_matching_requests_only() {
    let fx = start(1).await;
    let path = format!("/users/{}/presence", fx.ids[0]);
    fx.emu.inject(Fault {
        method: Some("GET".into()),
        path_contains: "/presence".into(),
        kind: FaultKind::Status(503),
        times: 2,
    });
    assert_eq!(fx.get("/users").await.status, 200, "not matching");
    let a = fx.get(&path).await;
    assert_eq!(a.status, 503);
    assert!(a.body["error"]["innerError"]["request-id"].is_string());
    assert_eq!(fx.get(&path).await.status, 503);
    assert_eq!(fx.get(&path).await.status, 200);
    fx.emu.inject(Fault {
        method: None,
        path_contains: "getPresence".into(),
        kind: FaultKind::Throttle {
            retry_after_secs: 7,
        },
        times: 1,
    });
    let a = fx.get(&path).await;
    assert_eq!((a.status, a.header("retry-after")), (429, Some("7")));
    fx.emu.inject(Fault {
        method: None,
        path_contains: "/token".into(),
        kind: FaultKind::Status(500),
        times: 1,
    });
    let form = [("client_id", "x"), ("grant_type", "client_credentials")];
    let a = common::token_request(&fx.http, &fx.emu, &fx.emu.tenant_id(), &form).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body["error"], "temporarily_unavailable");
}

#[tokio::test]
async fn injected_delay_lets_clients_time_out() {
    let fx = start(1).await;
    fx.emu.inject(Fault {
        method: None,
        path_contains: "/users".into(),
        kind: FaultKind::Delay(Duration::from_millis(500)),
        times: 1,
    });
    let r = fx
        .http
        .get(fx.url("/users"))
        .bearer_auth(&fx.token)
        .timeout(Duration::from_millis(100))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(fx.get("/users").await.status, 200);
}

#[tokio::test]
async fn request_log_and_request_ids() {
    let fx = start(1).await;
    fx.emu.clear_requests();
    let r = fx
        .http
        .get(fx.url("/users?$top=1"))
        .bearer_auth(&fx.token)
        .header("client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["client-request-id"], "abc-123");
    assert!(r.headers().contains_key("request-id"));
    let r = fx
        .http
        .get(fx.url("/users"))
        .bearer_auth(&fx.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["client-request-id"],
        r.headers()["request-id"],
        "echoes request-id when the client sent none"
    );
    fx.set_presence(&fx.ids[0], "Busy", "InACall", "PT5M").await;
    let log = fx.emu.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(
        (
            log[0].method.as_str(),
            log[0].path.as_str(),
            log[0].query.as_str(),
            log[0].status
        ),
        ("GET", "/v1.0/users", "$top=1", 200)
    );
    assert_eq!(log[2].body.as_ref().unwrap()["activity"], "InACall");
    assert_eq!(
        log[2].client_id.as_deref(),
        Some(fx.emu.client_id().as_str())
    );
    assert!(!log[2].in_batch);
}

#[tokio::test]
async fn unknown_paths_and_unsupported_endpoints() {
    let fx = start(1).await;
    assert_eq!(fx.get("/nosuch").await.status, 400);
    let a = fx.get("/users/delta").await;
    assert_eq!(a.status, 501);
    assert_eq!(a.header("x-emulator-unsupported"), Some("1"));
    let r = fx
        .http
        .delete(fx.url("/users"))
        .bearer_auth(&fx.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let fx = start(0).await;
    let url = fx.url("/users");
    fx.emu.clone().shutdown().await;
    assert!(fx.http.get(url).send().await.is_err());
}
