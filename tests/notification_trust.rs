//! Whether the daemon trusts a rich notification, end to end against the emulator, which
//! signs its `validationTokens` and publishes its keys the way the Microsoft identity platform
//! does (<https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>,
//! "Validating the authenticity of notifications"): a forged token, a replayed item and an
//! item for a user its subscription does not name change nothing; a key rollover is followed.
//!
//! Each "nothing happened" is proven by a good notification sent after the bad ones on the
//! same subscription (one delivery worker per subscription: they arrive in order): once its
//! presence reached the PBX, the bad ones had their turn before it.

mod common;

use common::notify::{SYNC1, covered, login, options, subscriptions_of, world_with};
use common::{ALICE, BOB, CAROL, World, eventually, user};
use graph_emulator::{DeliveryKind, EmulatorOptions, TokenForgery};

/// Rich notifications; covered users are not polled during a test (an hour).
const RICH: &str = "include_resource_data = true\nreconciliation_interval = \"1h\"";

/// A running daemon whose one subscription (rich) covers every user; its id.
async fn subscribed(options: EmulatorOptions) -> (World, String) {
    let mut w = world_with(options, &[SYNC1], RICH).await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, ALICE, SYNC1).await;
    covered(&w, BOB, SYNC1).await;
    covered(&w, CAROL, SYNC1).await;
    let sub = subscriptions_of(&w, SYNC1).remove(0);
    assert!(sub.include_resource_data);
    (w, sub.id)
}

/// Whether the PBX was told that `extension` has `activity`.
fn pushed(w: &World, extension: &str, activity: &str) -> bool {
    w.pbx
        .updates_for(extension)
        .iter()
        .any(|u| u["activity"] == activity)
}

/// A good rich notification about Alice, and the wait until the PBX has it.
async fn alice_in_a_meeting(w: &World, sub: &str) {
    let alice = w.id(ALICE);
    w.graph
        .send_rich_notification(sub, &alice, "Busy", "InAMeeting", None)
        .unwrap();
    eventually(10, "Alice's meeting pushed", || {
        pushed(w, ALICE, "InAMeeting")
    })
    .await;
}

fn counter(w: &World, name: &str) -> i64 {
    w.status()["counters"][name].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rich_batch_with_a_forged_token_changes_nothing() {
    // Refused batches are not delivered again, so the good one follows at once.
    let once = EmulatorOptions {
        notification_retries: 0,
        ..options()
    };
    let (mut w, sub) = subscribed(once).await;
    let bob = w.id(BOB);
    let forgeries = [
        TokenForgery::UnknownKey,
        TokenForgery::BadSignature,
        TokenForgery::WrongAudience,
        TokenForgery::WrongTenant,
        TokenForgery::Expired,
        TokenForgery::WrongPublisher,
        TokenForgery::Missing,
    ];
    for forgery in forgeries {
        w.graph
            .send_rich_notification(&sub, &bob, "Busy", "InAMeeting", Some(forgery))
            .unwrap();
    }
    alice_in_a_meeting(&w, &sub).await;
    assert!(!pushed(&w, BOB, "InAMeeting"), "no forged batch was taken");
    let answers: Vec<Option<u16>> = w
        .graph
        .deliveries()
        .iter()
        .filter(|d| d.kind == DeliveryKind::Rich && d.ids.contains(&bob))
        .map(|d| d.status)
        .collect();
    assert_eq!(answers, vec![Some(403); forgeries.len()], "each refused");
    // The key set was read at start, and once more for the key id it did not hold.
    assert_eq!(w.graph_requests("/discovery/v2.0/keys").len(), 2);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_rich_item_changes_nothing() {
    let (mut w, sub) = subscribed(options()).await;
    let carol = w.id(CAROL);
    w.graph
        .set_user_presence(&carol, "DoNotDisturb", "Presenting");
    eventually(10, "Carol's presenting pushed", || {
        pushed(&w, CAROL, "Presenting")
    })
    .await;
    let presenting = w.graph.last_rich_notification(&sub).unwrap();
    // Carol is back; then someone posts the old batch again (its token is still valid).
    w.graph.set_user_presence(&carol, "Available", "Available");
    eventually(10, "Carol available pushed", || {
        w.pbx
            .updates_for(CAROL)
            .last()
            .is_some_and(|u| u["activity"] == "Available")
    })
    .await;
    let before = w.pbx.updates_for(CAROL).len();
    w.graph.resend_notification(&sub, presenting).unwrap();
    alice_in_a_meeting(&w, &sub).await;
    assert_eq!(
        w.pbx.updates_for(CAROL).len(),
        before,
        "the replay did not bring Carol's presenting back"
    );
    eventually(5, "the replay counted", || {
        counter(&w, "notifications_refused_replay") == 1
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_for_a_user_its_subscription_does_not_name_is_dropped() {
    // 651 matched users: one subscription holds 650, the last one is polled.
    let mut w = world_with(options(), &[SYNC1], RICH).await;
    let mut lines = Vec::new();
    for i in 0..648 {
        let email = format!("bulk{i:03}@contoso.com");
        w.graph.add_user(user(&email, &email, Some(&email), &[]));
        lines.push(format!("{},{email}", 20_000 + i));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    w.write_users(&refs);
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    eventually(30, "a full subscription", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.ids.len() == 650)
    })
    .await;
    covered(&w, ALICE, SYNC1).await;
    let sub = subscriptions_of(&w, SYNC1).remove(0);
    let outsider = w.status()["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["covered_by"].is_null() && u["teams_id"].is_string())
        .cloned()
        .expect("one matched user is polled");
    let (extension, id) = (
        outsider["extension"].as_str().unwrap().to_owned(),
        outsider["teams_id"].as_str().unwrap().to_owned(),
    );
    assert!(!sub.ids.contains(&id));
    w.graph
        .send_rich_notification(&sub.id, &id, "Busy", "InAMeeting", None)
        .unwrap();
    alice_in_a_meeting(&w, &sub.id).await;
    assert!(
        !pushed(&w, &extension, "InAMeeting"),
        "the outsider's item was dropped"
    );
    eventually(5, "the drop counted", || {
        counter(&w, "notifications_refused_user") == 1
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_key_rollover_is_followed() {
    let (mut w, sub) = subscribed(options()).await;
    let fetched = w.graph_requests("/discovery/v2.0/keys").len();
    assert_eq!(fetched, 1, "the keys are fetched at start");
    w.graph.rotate_signing_key();
    w.graph
        .set_user_presence(&w.id(CAROL), "DoNotDisturb", "Presenting");
    eventually(10, "Carol's presenting pushed", || {
        pushed(&w, CAROL, "Presenting")
    })
    .await;
    assert_eq!(
        w.graph_requests("/discovery/v2.0/keys").len(),
        2,
        "fetched again for the new key id"
    );
    // The new key is cached from now on.
    alice_in_a_meeting(&w, &sub).await;
    assert_eq!(w.graph_requests("/discovery/v2.0/keys").len(), 2);
    w.stop().await.unwrap();
}
