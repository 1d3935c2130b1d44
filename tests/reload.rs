//! Hot reload: a valid change applies without a restart; an invalid one is refused and the
//! last good config stays in force.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_in_the_users_file_is_matched_and_synced() {
    let mut w = World::new().await;
    let dave = w.graph.add_user(user(
        "Dave",
        "dave@contoso.com",
        Some("dave@contoso.com"),
        &[],
    ));
    w.graph.set_user_presence(&dave, "Away", "Away");
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    w.write_users(&["1004,dave@contoso.com"]);
    eventually(10, "Dave pushed", || w.pbx.updates_for("1004").len() == 1).await;
    assert_eq!(w.pbx.updates_for("1004")[0]["state"], "away");
    // Dave's PBX events are accepted now.
    let accepted = w.pbx_event("1004", "speaking").await;
    assert_eq!(accepted["accepted"], 1);
    eventually(5, "Dave in a call", || {
        w.graph.app_session(&dave, &w.graph.client_id()).is_some()
    })
    .await;
    // Removing him clears his session and forgets him.
    w.write_users(&[]);
    eventually(5, "Dave's session cleared", || {
        w.graph.app_session(&dave, &w.graph.client_id()).is_none()
    })
    .await;
    eventually(5, "Dave gone from status", || {
        w.user_status("1004").is_null()
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_change_repushes_affected_users() {
    let mut w = World::new().await;
    w.graph
        .set_user_presence(&w.id(ALICE), "Busy", "InAMeeting");
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    assert_eq!(w.pbx.updates_for(ALICE)[0]["state"], "in_meeting");
    w.write_config("\n[mapping.activity]\nInAMeeting = \"busy\"\n");
    eventually(10, "re-pushed with the new name", || {
        w.pbx.updates_for(ALICE).len() == 2
    })
    .await;
    assert_eq!(w.pbx.updates_for(ALICE)[1]["state"], "busy");
    assert_eq!(w.pbx.updates().len(), 4, "only Alice's state name changed");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_change_is_refused_and_the_last_good_config_stays() {
    let mut w = World::new().await;
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    w.write_config("\n[mapping.activity]\nInAMeting = \"busy\"\n");
    eventually(10, "the refusal is recorded", || {
        w.status()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["component"] == "config")
    })
    .await;
    let err = w.status()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(err.contains("InAMeting"), "{err}");
    assert!(err.contains("config.toml"), "{err}");
    // Still running on the old config: calls still work.
    w.pbx_event(BOB, "speaking").await;
    eventually(5, "In a call", || w.app_session(BOB).is_some()).await;
    // A bad users file under the good config: refused on its own account (under the bad
    // config nothing would get as far as the users file). The refusal, recorded, is the sign
    // that the daemon has read it.
    w.write_config("");
    w.write_users(&["1009,not-an-email"]);
    eventually(10, "the users file's refusal is recorded", || {
        w.status()["errors"].as_array().unwrap().iter().any(|e| {
            e["component"] == "config"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("users.csv") && m.contains("not-an-email"))
        })
    })
    .await;
    let (status, body) = w
        .post_raw(r#"{"extension":"1009","state":"idle"}"#, Some(&w.token))
        .await;
    assert_eq!(
        (status, body["ignored"].as_u64()),
        (202, Some(1)),
        "bad users file not applied"
    );
    w.stop().await.unwrap();
}

/// A new `[pbx]` section (here: a rotated token) applies without a restart and without
/// closing the listener: the old token is refused, the new one works, and every user's state
/// is pushed again because the new pusher cannot know what the old one delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pbx_token_applies_without_a_restart() {
    let mut w = World::new().await;
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    write_atomically(
        &w.config_path(),
        &config.replace("pbx-test-token", "rotated-token"),
    );
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // The listen address did not change: the listener stays up throughout.
        if w.post_raw("[]", Some("pbx-test-token")).await.0 == 401 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old token still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    w.token = "rotated-token".into();
    w.pbx_event(ALICE, "speaking").await;
    eventually(5, "In a call with the new token", || {
        w.app_session(ALICE).is_some()
    })
    .await;
    // Bob and Carol are pushed again; Alice's Teams state is now our own In a call (not pushed).
    eventually(10, "states pushed again", || {
        w.pbx.updates_for(BOB).len() == 2 && w.pbx.updates_for(CAROL).len() == 2
    })
    .await;
    w.stop().await.unwrap();
}
