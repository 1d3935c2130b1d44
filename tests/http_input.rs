//! The HTTP connector refuses bad input clearly and applies nothing of a bad batch.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_changes_nothing() {
    let mut w = World::new().await;
    w.start().await;
    let token = Some(w.token.as_str());

    let (status, body) = w
        .post_raw(r#"{"extension":"1001","state":"speaking"}"#, None)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = w
        .post_raw(r#"{"extension":"1001","state":"speaking"}"#, Some("wrong"))
        .await;
    assert_eq!(status, 401);

    let (status, body) = w.post_raw("{not json", token).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("JSON"), "{body}");

    // One bad item: nothing of the batch is applied, Alice's valid event included.
    let batch =
        r#"[{"extension":"1001","state":"speaking"},{"extension":"1002","state":"talking"}]"#;
    let (status, body) = w.post_raw(batch, token).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("item 1"), "{body}");

    let big = format!(
        r#"[{}]"#,
        vec![r#"{"extension":"1001","state":"idle"}"#; 40_000].join(",")
    );
    assert!(big.len() > 1024 * 1024);
    let (status, _) = w.post_raw(&big, token).await;
    assert_eq!(status, 413);

    // Unknown extensions are counted as ignored, known ones accepted.
    let (status, body) = w
        .post_raw(
            r#"[{"extension":"9999","state":"speaking"},{"extension":"1003","state":"ringing"}]"#,
            token,
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        (body["accepted"].as_u64(), body["ignored"].as_u64()),
        (Some(1), Some(1))
    );

    eventually(5, "Carol ringing recorded", || {
        w.user_status(CAROL)["pbx_state"] == "ringing"
    })
    .await;
    assert_eq!(w.user_status(ALICE)["pbx_state"], serde_json::Value::Null);
    assert_eq!(w.set_presence_calls(ALICE), 0);
    w.stop().await.unwrap();
}
