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
    // The next post (202 below) shows the listener goes on.
    refused_before_read(w.try_post_raw(&big, token).await.map(|(s, _)| s), 413);

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

/// A token file with a space and a newline after the token (`echo "token " > file`) takes
/// requests that send the token: the file is trimmed as the request's token is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_with_trailing_whitespace_takes_the_token() {
    let mut w = World::new().await;
    std::fs::write(w.dir.path().join("pbx-token"), format!("{} \n", w.token)).unwrap();
    w.pbx_section = Some(format!(
        "[pbx]\nkind = \"http\"\nlisten = \"{UNBOUND}\"\ntoken_file = \"pbx-token\"\npush_url = \"{}\"\n",
        w.pbx.url
    ));
    w.write_config("");
    w.start().await;
    let body = r#"{"extension":"1001","state":"speaking"}"#;
    let (status, json) = w.post_raw(body, Some(&w.token)).await;
    assert_eq!(status, 202, "{json}");
    let (status, _) = w.post_raw(body, Some(&format!("{} x", w.token))).await;
    assert_eq!(status, 401, "only whitespace at the ends is ignored");
    w.stop().await.unwrap();
}
