//! Change notifications end to end against the Graph emulator: `login` (device code), the
//! subscriptions the daemon holds for its accounts, the webhook, and what happens when
//! something breaks. The emulator follows Graph's documented behaviour for presence
//! notifications (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>);
//! `emulator/README.md` lists the details and their sources.

mod common;

use std::time::Duration;

use common::notify::{SYNC1, SYNC2, covered, login, options, subscriptions_of, webhook, world};
use common::{ALICE, BOB, CAROL, UNBOUND, World, eventually, refused_before_read, user};
use graph_emulator::DeliveryKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_saves_the_token_and_refuses_another_account() {
    let w = world(&[SYNC1, SYNC2], "").await;
    let (ok, out) = login(&w, SYNC1, SYNC1).await;
    assert!(ok, "{out}");
    assert!(out.contains("sync1@contoso.com signed in"), "{out}");
    let snapshot = pbx_teams_presence::store::read_snapshot(&w.db_path()).unwrap();
    assert_eq!(snapshot.accounts.len(), 1);
    assert_eq!(snapshot.accounts[0].account, SYNC1);

    let (ok, out) = login(&w, SYNC2, SYNC1).await;
    assert!(!ok);
    assert!(
        out.contains("signed in as sync1@contoso.com, not sync2@contoso.com"),
        "{out}"
    );
    let snapshot = pbx_teams_presence::store::read_snapshot(&w.db_path()).unwrap();
    assert_eq!(
        snapshot.accounts.len(),
        1,
        "nothing saved for the wrong account"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_covers_the_users_and_changes_arrive_by_notification() {
    let mut w = world(&[SYNC1], "reconciliation_interval = \"1h\"").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    let subs = subscriptions_of(&w, SYNC1);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].ids.len(), 3);
    assert!(!subs[0].include_resource_data);
    eventually(5, "the validation handshake was answered", || {
        w.graph
            .deliveries()
            .iter()
            .any(|d| d.kind == DeliveryKind::Validation && d.ok())
    })
    .await;
    // Covered users are not polled any more (the reconciliation interval is an hour).
    let polls = w.graph_requests("getPresencesByUserId").len();
    w.graph.set_user_presence(&w.id(BOB), "Busy", "InAMeeting");
    eventually(10, "Bob's meeting pushed", || {
        w.pbx
            .updates_for(BOB)
            .iter()
            .any(|u| u["activity"] == "InAMeeting")
    })
    .await;
    // The emulator records a delivery once its answer is back: wait for the record.
    eventually(5, "it came by a notification", || {
        w.graph
            .deliveries()
            .iter()
            .any(|d| d.kind == DeliveryKind::Basic && d.ok() && d.ids.contains(&w.id(BOB)))
    })
    .await;
    // One read for the basic notification, none for polling.
    let reads = w.graph_requests("getPresencesByUserId").len() - polls;
    assert!(reads <= 2, "{reads} reads");
    assert!(w.status()["counters"]["notified_presences"].as_i64() >= Some(1));
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_sharded_over_two_accounts_and_the_rest_is_polled() {
    let mut w = world(&[SYNC1, SYNC2], "").await;
    let mut extra = Vec::new();
    for i in 0..1397 {
        let email = format!("bulk{i:04}@contoso.com");
        let id = w.graph.add_user(user(&email, &email, Some(&email), &[]));
        w.graph.set_user_presence(&id, "Available", "Available");
        extra.push(format!("{},{email}", 20_000 + i));
    }
    let refs: Vec<&str> = extra.iter().map(String::as_str).collect();
    w.write_users(&refs);
    assert!(login(&w, SYNC1, SYNC1).await.0);
    assert!(login(&w, SYNC2, SYNC2).await.0);
    w.start().await;
    eventually(30, "two full subscriptions", || {
        let s = w.graph.subscriptions();
        s.len() == 2 && s.iter().all(|s| s.ids.len() == 650)
    })
    .await;
    eventually(10, "coverage recorded", || {
        let st = w.status();
        let users = st["users"].as_array().unwrap().clone();
        let by = |a: &str| users.iter().filter(|u| u["covered_by"] == a).count();
        by(SYNC1) == 650 && by(SYNC2) == 650
    })
    .await;
    let status = w.status();
    let polled = status["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["covered_by"].is_null())
        .count();
    assert_eq!(
        polled, 100,
        "1,400 users: 2 x 650 by notification, 100 polled"
    );
    assert_eq!(status["subscriptions"].as_array().unwrap().len(), 2);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rich_notifications_are_decrypted_without_reading_the_presence() {
    let mut w = world(
        &[SYNC1],
        "include_resource_data = true\nreconciliation_interval = \"1h\"",
    )
    .await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, CAROL, SYNC1).await;
    assert!(subscriptions_of(&w, SYNC1)[0].include_resource_data);
    let reads = w.graph_requests("getPresencesByUserId").len();
    w.graph
        .set_user_presence(&w.id(CAROL), "DoNotDisturb", "Presenting");
    eventually(10, "Carol's presenting pushed", || {
        w.pbx
            .updates_for(CAROL)
            .iter()
            .any(|u| u["activity"] == "Presenting")
    })
    .await;
    eventually(5, "a rich notification delivered", || {
        w.graph
            .deliveries()
            .iter()
            .any(|d| d.kind == DeliveryKind::Rich && d.ok())
    })
    .await;
    assert_eq!(
        w.graph_requests("getPresencesByUserId").len(),
        reads,
        "the presence came inside the notification"
    );
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_malformed_notifications_change_nothing() {
    let mut w = world(&[SYNC1], "reconciliation_interval = \"1h\"").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    covered(&w, ALICE, SYNC1).await;
    let sub = subscriptions_of(&w, SYNC1).remove(0);
    let url = webhook(&w);
    let client = reqwest::Client::new();
    let post = |body: String| client.post(&url).body(body).send();
    let item = |sub: &str, state: &str, extension: &str| {
        let id = w.id(extension);
        serde_json::json!({"value": [{"subscriptionId": sub, "clientState": state,
            "changeType": "updated", "resource": format!("communications/presences/{id}"),
            "resourceData": {"id": id}}]})
        .to_string()
    };
    let reads = w.graph_requests("getPresencesByUserId").len();
    assert_eq!(
        post(item(&sub.id, "wrong", BOB)).await.unwrap().status(),
        403
    );
    assert_eq!(
        post(item("not-ours", "x", BOB)).await.unwrap().status(),
        403
    );
    assert_eq!(post("{not json".into()).await.unwrap().status(), 400);
    // The handshake echoes the token, as text.
    let r = client
        .post(format!("{url}?validationToken=abc%20123"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "abc 123");
    // The real secret is taken: a notification about Alice, sent after the refused ones about
    // Bob, makes the daemon read her presence. Had a refused one been taken anyway, Bob's
    // presence would have been read before hers, or with hers in the same request.
    let good = item(&sub.id, sub.client_state.as_deref().unwrap(), ALICE);
    assert_eq!(post(good).await.unwrap().status(), 202);
    let read_since = |id: &str| {
        w.graph_requests("getPresencesByUserId")
            .iter()
            .skip(reads)
            .any(|r| {
                r.body.as_ref().is_some_and(|b| {
                    b["ids"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == id))
                })
            })
    };
    eventually(5, "Alice's presence read for her notification", || {
        read_since(&w.id(ALICE))
    })
    .await;
    assert!(
        !read_since(&w.id(BOB)),
        "no read was triggered by the refused notifications"
    );
    // Over 1 MiB: refused before the body is read (the server then closes the connection,
    // so this goes last and on a connection of its own). The client sees the 413, or, when
    // the close beats its last writes, a broken pipe; either way the listener goes on.
    let big = reqwest::Client::new()
        .post(&url)
        .body("x".repeat((1 << 20) + 1024))
        .send()
        .await;
    refused_before_read(big.map(|r| r.status().as_u16()), 413);
    let alive = reqwest::Client::new()
        .post(format!("{url}?validationToken=still-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(alive.text().await.unwrap(), "still-here");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_renewed_before_expiry_and_made_again_after_a_404() {
    let mut w = world(&[SYNC1], "").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    let first = subscriptions_of(&w, SYNC1).remove(0);
    // 45 minutes later (both clocks): renewed by PATCH, same subscription.
    w.clock.advance(Duration::from_secs(45 * 60));
    w.graph.advance_clock(Duration::from_secs(45 * 60));
    // The emulator logs the PATCH once it has answered it, after the renewal took effect.
    eventually(10, "renewed by PATCH", || {
        w.graph_requests(&format!("/subscriptions/{}", first.id))
            .iter()
            .any(|r| r.method == "PATCH" && r.status == 200)
    })
    .await;
    assert!(
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.id == first.id && s.expiration > first.expiration)
    );
    // Graph loses it (it expires there first): the renewal gets 404, a new one is made.
    w.graph.advance_clock(Duration::from_secs(61 * 60));
    w.clock.advance(Duration::from_secs(45 * 60));
    eventually(10, "made again", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.id != first.id)
    })
    .await;
    covered(&w, BOB, SYNC1).await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthorization_required_is_answered_by_a_renewal() {
    let mut w = world(&[SYNC1], "reconciliation_interval = \"1h\"").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, ALICE, SYNC1).await;
    let sub = subscriptions_of(&w, SYNC1).remove(0);
    assert_eq!(
        w.graph.send_lifecycle(&sub.id, "reauthorizationRequired"),
        Ok(true)
    );
    eventually(10, "reauthorized", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| !s.reauthorization_required)
    })
    .await;
    w.graph.set_user_presence(&w.id(ALICE), "Away", "Away");
    eventually(10, "notifications flow again", || {
        w.pbx
            .updates_for(ALICE)
            .iter()
            .any(|u| u["activity"] == "Away")
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_account_falls_back_to_polling_and_says_how_to_fix_it() {
    let mut w = world(&[SYNC1], "").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    w.graph.revoke_refresh_tokens(SYNC1);
    w.graph.expire_tokens();
    // The daemon's access token is near expiry an hour later: it must refresh, and cannot.
    w.clock.advance(Duration::from_secs(3600));
    eventually(10, "Bob polled again", || {
        w.user_status(BOB)["covered_by"].is_null()
    })
    .await;
    let errors = w.status()["errors"].clone();
    assert!(
        errors
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["component"] == "notifications"
                && e["message"]
                    .as_str()
                    .unwrap()
                    .contains("pbx-teams-presence login --account sync1@contoso.com")),
        "{errors}"
    );
    w.graph.set_user_presence(&w.id(BOB), "Away", "Away");
    eventually(10, "the change is polled", || {
        w.pbx
            .updates_for(BOB)
            .iter()
            .any(|u| u["activity"] == "Away")
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_subscription() {
    let mut w = world(&[SYNC1], "").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    let before = subscriptions_of(&w, SYNC1).remove(0);
    w.stop().await.unwrap();
    w.graph.clear_requests();
    w.start().await;
    eventually(10, "the restarted daemon covers Bob again", || {
        w.db_path().exists() && w.user_status(BOB)["covered_by"] == SYNC1
    })
    .await;
    let after = subscriptions_of(&w, SYNC1);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before.id, "kept, not made again");
    assert!(
        !w.graph_requests("/subscriptions")
            .iter()
            .any(|r| r.method == "POST"),
        "no new subscription"
    );
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_deleted_at_shutdown_only_when_configured() {
    let mut w = world(&[SYNC1], "delete_on_shutdown = true").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    assert_eq!(subscriptions_of(&w, SYNC1).len(), 1);
    w.stop().await.unwrap();
    assert!(
        subscriptions_of(&w, SYNC1).is_empty(),
        "deleted on the way out"
    );
    let snapshot = pbx_teams_presence::store::read_snapshot(&w.db_path()).unwrap();
    assert!(snapshot.subscriptions.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_serves_https_with_its_own_certificate() {
    let mut w = World::new_with(options()).await;
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key_file) = (w.dir.path().join("cert.pem"), w.dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&key_file, key.signing_key.serialize_pem()).unwrap();
    let public = w.webhook_relay().await;
    w.write_config(&format!(
        "\n[notifications]\nenabled = true\npublic_url = \"https://{public}/graph/notify\"\n\
         listen = \"{UNBOUND}\"\naccounts = [\"{SYNC1}\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key_file.display()
    ));
    w.start().await;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(key.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    // Bound before the daemon reports where: a connection waits for the server, no retries.
    let webhook = w.webhook();
    let answer = client
        .post(format!(
            "https://{webhook}/graph/notify?validationToken=over-tls"
        ))
        .send()
        .await
        .expect("the HTTPS endpoint answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "over-tls");
    let plain = reqwest::Client::new()
        .post(format!("http://{webhook}/graph/notify?validationToken=x"))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "no plain HTTP on a TLS endpoint"
    );
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_never_notified_brings_polling_back_and_a_new_subscription() {
    let mut w = world(&[SYNC1], "").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    let first = subscriptions_of(&w, SYNC1).remove(0);
    // Graph stops delivering (every attempt fails, retries included).
    w.graph.fail_deliveries(1000);
    w.graph.set_user_presence(&w.id(BOB), "Away", "Away");
    // The next reconciliation poll (every 5 min for covered users) finds the change.
    w.clock.advance(Duration::from_secs(6 * 60));
    w.graph.advance_clock(Duration::from_secs(6 * 60));
    eventually(10, "the reconciliation poll pushed it", || {
        w.pbx
            .updates_for(BOB)
            .iter()
            .any(|u| u["activity"] == "Away")
    })
    .await;
    assert!(
        !w.graph
            .deliveries()
            .iter()
            .any(|d| d.ok() && d.ids.contains(&w.id(BOB))),
        "no notification made it"
    );
    // No notification announced it within 90 s: the subscription is made again.
    w.clock.advance(Duration::from_secs(2 * 60));
    w.graph.advance_clock(Duration::from_secs(2 * 60));
    eventually(10, "a new subscription", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.id != first.id)
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_in_the_users_file_gets_into_the_subscription() {
    let mut w = world(&[SYNC1], "").await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    let first = subscriptions_of(&w, SYNC1).remove(0);
    assert_eq!(first.ids.len(), 3);
    let dave = w.graph.add_user(user(
        "Dave",
        "dave@contoso.com",
        Some("dave@contoso.com"),
        &[],
    ));
    w.write_users(&["1004,dave@contoso.com"]);
    // A filter cannot be patched: the shard's subscription is replaced by one naming Dave.
    eventually(15, "Dave in the subscription", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.ids.contains(&dave) && s.ids.len() == 4)
    })
    .await;
    covered(&w, "1004", SYNC1).await;
    assert_eq!(subscriptions_of(&w, SYNC1).len(), 1, "the old one is gone");
    assert!(
        w.graph.subscriptions().iter().all(|s| s.id != first.id),
        "replaced"
    );
    w.stop().await.unwrap();
}
