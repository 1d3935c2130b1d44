//! POST /v1.0/$batch (<https://learn.microsoft.com/en-us/graph/json-batching>).

mod common;

use common::start;
use graph_emulator::EmulatorOptions;
use serde_json::{Value, json};

fn by_id<'a>(a: &'a common::Answer, id: &str) -> &'a Value {
    a.body["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn inner_requests_are_dispatched_and_logged() {
    let fx = start(2).await;
    let (u0, u1) = (&fx.ids[0], &fx.ids[1]);
    let body = json!({"requests": [
        {"id": "1", "method": "GET", "url": format!("/users/{u0}")},
        {"id": "2", "method": "GET", "url": "/users/user0002@contoso.com?$select=id"},
        {"id": "3", "method": "GET", "url": format!("users/{u0}/presence")},
        {"id": "4", "method": "GET", "url": "/users/00000000-0000-0000-0000-000000000000"},
        {"id": "5", "method": "POST", "url": format!("/users/{u1}/presence/setPresence"),
         "headers": {"Content-Type": "application/json"},
         "body": {"sessionId": fx.emu.client_id(), "availability": "Busy", "activity": "InACall"}},
        {"id": "6", "method": "GET", "url": "https://graph.microsoft.com/v1.0/users"},
        {"id": "7", "method": "GET", "url": "/users/nobody@contoso.com", "dependsOn": ["4"]},
    ]});
    fx.emu.clear_requests();
    let a = fx.post("/$batch", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(by_id(&a, "1")["body"]["id"], u0.as_str());
    assert_eq!(by_id(&a, "2")["body"]["id"], u1.as_str());
    assert_eq!(by_id(&a, "3")["body"]["availability"], "Offline");
    assert_eq!(by_id(&a, "4")["status"], 404);
    assert_eq!(
        by_id(&a, "4")["body"]["error"]["code"],
        "Request_ResourceNotFound"
    );
    assert_eq!(by_id(&a, "5")["status"], 200);
    assert_eq!(by_id(&a, "6")["status"], 400, "absolute urls are refused");
    assert_eq!(
        by_id(&a, "7")["status"],
        424,
        "dependent of a failed request"
    );
    assert_eq!(fx.emu.presence(u1), Some(("Busy".into(), "InACall".into())));
    let log = fx.emu.requests();
    let inner: Vec<_> = log.iter().filter(|r| r.in_batch).collect();
    assert_eq!(inner.len(), 5);
    assert_eq!(inner[0].path, format!("/v1.0/users/{u0}"));
    assert_eq!(inner[1].query, "$select=id");
    assert!(
        inner
            .iter()
            .all(|r| r.client_id.as_deref() == Some(fx.emu.client_id().as_str()))
    );
    assert!(log.iter().any(|r| !r.in_batch && r.path == "/v1.0/$batch"));
}

#[tokio::test]
async fn malformed_batches_are_400() {
    let fx = start(1).await;
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    assert_eq!(
        fx.post("/$batch", json!({"requests": many})).await.status,
        400
    );
    let dup = json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/users"}]});
    assert_eq!(fx.post("/$batch", dup).await.status, 400);
    let no_ct = json!({"requests": [{"id": "1", "method": "POST", "url": "/communications/getPresencesByUserId", "body": {"ids": []}}]});
    assert_eq!(fx.post("/$batch", no_ct).await.status, 400);
    assert_eq!(fx.post("/$batch", json!({})).await.status, 400);
    let twenty: Vec<Value> = (0..20)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    assert_eq!(
        fx.post("/$batch", json!({"requests": twenty})).await.status,
        200
    );
}

#[tokio::test]
async fn each_inner_request_counts_against_the_presence_limit() {
    let opts = EmulatorOptions {
        presence_limit_per_30s: 3,
        ..Default::default()
    };
    let fx = common::start_with(opts, 1).await;
    let reqs: Vec<Value> = (0..5).map(|i| json!({"id": i.to_string(), "method": "GET", "url": format!("/users/{}/presence", fx.ids[0])})).collect();
    let a = fx.post("/$batch", json!({"requests": reqs})).await;
    assert_eq!(a.status, 200);
    let statuses: Vec<u64> = (0..5)
        .map(|i| by_id(&a, &i.to_string())["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    let r = by_id(&a, "3");
    assert!(r["headers"]["Retry-After"].is_string());
    assert_eq!(r["body"]["error"]["code"], "TooManyRequests");
}
