//! Teams -> PBX: matching, polling in batches, and pushes of real changes only.

mod common;

use common::*;
use serde_json::Value;

/// Mail, UPN (any case) and proxy addresses all match; an unknown address and an address
/// shared by two Teams users are reported with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_matched_by_mail_upn_and_proxy_address() {
    let mut w = World::new().await;
    // Exchange keeps SMTP proxy addresses unique in a tenant, but one user's mail can be
    // another user's UPN: that is the ambiguity that happens in real directories.
    w.graph.add_user(user(
        "Dup One",
        "dup1@contoso.com",
        Some("shared@contoso.com"),
        &[],
    ));
    w.graph
        .add_user(user("Dup Two", "shared@contoso.com", None, &[]));
    w.write_users(&["1004,nobody@contoso.com", "1005,shared@contoso.com"]);
    w.start().await;
    eventually(10, "matching done", || {
        w.status()["users"]
            .as_array()
            .is_some_and(|u| u.len() == 5 && u.iter().all(|u| u["match"] != "pending"))
    })
    .await;
    for ext in [ALICE, BOB, CAROL] {
        let u = w.user_status(ext);
        assert_eq!(u["match"], "matched", "{u}");
        assert_eq!(u["teams_id"], Value::String(w.id(ext)));
    }
    assert_eq!(w.user_status(BOB)["email"], "bob@contoso.com");
    assert_eq!(w.user_status("1004")["match"], "not_found");
    assert_eq!(w.user_status("1005")["match"], "duplicate");
    assert_eq!(w.user_status("1005")["teams_id"], Value::Null);
    // Lookups are batched: one $batch carried every filter.
    assert!(!w.graph_requests("$batch").is_empty());
    w.stop().await.unwrap();
}

/// The first poll pushes everyone's state once; later polls push only what changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_real_changes_are_pushed() {
    let mut w = World::new().await;
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    let first = w.pbx.updates_for(ALICE);
    assert_eq!(first[0]["state"], "available");
    assert_eq!(first[0]["email"], "alice@contoso.com");
    // Several poll cycles with no change: nothing more.
    let polls = w.graph_requests("getPresencesByUserId").len();
    eventually(10, "more polls", || {
        w.graph_requests("getPresencesByUserId").len() >= polls + 3
    })
    .await;
    assert_eq!(w.pbx.updates().len(), 3);

    w.graph
        .set_user_presence(&w.id(ALICE), "Busy", "InAMeeting");
    eventually(10, "meeting pushed", || w.pbx.updates_for(ALICE).len() == 2).await;
    let last = w.pbx.updates_for(ALICE).pop().unwrap();
    assert_eq!(
        (
            last["availability"].as_str(),
            last["activity"].as_str(),
            last["state"].as_str()
        ),
        (Some("Busy"), Some("InAMeeting"), Some("in_meeting"))
    );
    eventually(5, "status shows it", || {
        w.user_status(ALICE)["teams"]["activity"] == "InAMeeting"
    })
    .await;
    assert_eq!(w.pbx.updates().len(), 4);
    w.stop().await.unwrap();
}

/// Our own "In a call" comes back from Teams in the next poll; it is not pushed to the PBX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_in_a_call_is_not_echoed_to_the_pbx() {
    let mut w = World::new().await;
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    w.pbx_event(BOB, "speaking").await;
    eventually(5, "In a call", || w.app_session(BOB).is_some()).await;
    eventually(10, "poll saw Busy/InACall", || {
        w.user_status(BOB)["teams"]["activity"] == "InACall"
    })
    .await;
    w.pbx_event(BOB, "idle").await;
    eventually(10, "poll saw Available again", || {
        w.user_status(BOB)["teams"]["activity"] == "Available"
    })
    .await;
    assert_eq!(
        w.pbx.updates_for(BOB).len(),
        1,
        "{:?}",
        w.pbx.updates_for(BOB)
    );
    w.stop().await.unwrap();
}

/// A PBX that is down gets the updates once it is back: the latest state per user, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_retried_until_the_pbx_takes_them() {
    let mut w = World::new().await;
    *w.pbx.fail_with.lock().unwrap() = Some(503);
    w.start().await;
    eventually(10, "first poll seen", || {
        w.user_status(CAROL)["teams"]["activity"] == "Available"
    })
    .await;
    w.graph.set_user_presence(&w.id(CAROL), "Away", "Away");
    eventually(10, "the change seen while the PBX is down", || {
        w.user_status(CAROL)["teams"]["activity"] == "Away"
    })
    .await;
    assert!(w.pbx.updates().is_empty());
    *w.pbx.fail_with.lock().unwrap() = None;
    eventually(15, "delivered after the outage", || {
        w.pbx.updates().len() == 3
    })
    .await;
    // Latest wins: Carol's undelivered "available" was replaced by "away".
    let carol = w.pbx.updates_for(CAROL);
    assert_eq!(carol.len(), 1, "{carol:?}");
    assert_eq!(carol[0]["state"], "away");
    eventually(5, "store records the delivery", || {
        w.user_status(CAROL)["pushed_state"] == "away"
    })
    .await;
    w.stop().await.unwrap();
}

/// 1,400 users are polled in requests of at most 650 ids
/// (<https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>),
/// and matched through $batch requests of at most 20 lookups
/// (<https://learn.microsoft.com/en-us/graph/json-batching>).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_uses_batches_of_at_most_650_ids() {
    let mut w = World::new().await;
    let mut lines = Vec::new();
    for i in 0..1400 {
        let email = format!("user{i:04}@contoso.com");
        let id = w.graph.add_user(user("U", &email, Some(&email), &[]));
        w.graph.set_user_presence(&id, "Available", "Available");
        lines.push(format!("{},{email}", 5000 + i));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    w.write_users(&refs);
    w.start().await;
    eventually(20, "all pushed", || w.pbx.updates().len() == 1403).await;
    let polls = w.graph_requests("getPresencesByUserId");
    assert!(polls.len() >= 3);
    let sizes: Vec<usize> = polls
        .iter()
        .map(|r| r.body.as_ref().unwrap()["ids"].as_array().unwrap().len())
        .collect();
    assert!(sizes.iter().all(|n| *n <= 650), "{sizes:?}");
    assert_eq!(sizes.iter().take(3).sum::<usize>(), 1403, "{sizes:?}");
    for b in w
        .graph_requests("$batch")
        .iter()
        .filter(|r| r.body.is_some())
    {
        let n = b.body.as_ref().unwrap()["requests"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(n <= 20, "a $batch with {n} requests");
    }
    w.stop().await.unwrap();
}

/// What the PBX side received with each push: its `Authorization` header.
#[derive(Clone, Default)]
struct Headers(std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>);

impl Headers {
    /// A push receiver on loopback that answers 200 and keeps each push's header.
    async fn receiver() -> (Headers, String) {
        use axum::http::HeaderMap;
        let headers = Headers::default();
        let kept = headers.clone();
        let app = axum::Router::new().route(
            "/presence",
            axum::routing::post(move |h: HeaderMap| async move {
                let auth = h
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                kept.0.lock().unwrap().push(auth);
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/presence", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (headers, url)
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.0.lock().unwrap().clone()
    }
}

/// Pushes carry `pbx.push_token`, never `pbx.token` (whoever holds that can post call
/// states); without a push token they carry no `Authorization` header at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_carry_the_push_token_and_never_the_pbx_token() {
    for push_token in [Some("push-s3cret"), None] {
        let mut w = World::new().await;
        let (headers, url) = Headers::receiver().await;
        let mut pbx = format!(
            "[pbx]\nkind = \"http\"\nlisten = \"{UNBOUND}\"\ntoken = \"{}\"\npush_url = \"{url}\"\n",
            w.token
        );
        if let Some(t) = push_token {
            std::fs::write(w.dir.path().join("push-token"), format!("{t}\n")).unwrap();
            pbx.push_str("push_token_file = \"push-token\"\n");
        }
        w.pbx_section = Some(pbx);
        w.write_config("");
        w.start().await;
        eventually(10, "the first push", || !headers.seen().is_empty()).await;
        w.graph.set_user_presence(&w.id(BOB), "Busy", "InAMeeting");
        eventually(10, "a second push", || headers.seen().len() >= 2).await;
        let want = push_token.map(|t| format!("Bearer {t}"));
        for seen in headers.seen() {
            assert_eq!(seen, want);
            assert!(!seen.unwrap_or_default().contains(&w.token));
        }
        w.stop().await.unwrap();
    }
}

/// A restart with a warm store looks up only the addresses it has no match for (a new user,
/// a changed e-mail); the cached matches serve until `sync.resolve_interval` has passed since
/// the last full round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_restart_looks_up_only_new_and_changed_addresses() {
    let mut w = World::new().await;
    let ids: Vec<String> = ["dave", "eve", "erin"]
        .iter()
        .map(|name| {
            let mail = format!("{name}@contoso.com");
            w.graph.add_user(user(name, &mail, Some(&mail), &[]))
        })
        .collect();
    w.write_users(&["1005,eve@contoso.com"]);
    w.start().await;
    let looked_up = |w: &World| {
        pbx_teams_presence::store::read_snapshot(&w.db_path())
            .is_ok_and(|s| s.meta.contains_key("looked_up_at"))
    };
    eventually(10, "a full round recorded", || looked_up(&w)).await;
    w.stop().await.unwrap();

    w.write_users(&["1004,dave@contoso.com", "1005,erin@contoso.com"]);
    w.graph.clear_requests();
    w.start().await;
    eventually(10, "the new and the changed address matched", || {
        w.user_status("1004")["match"] == "matched"
            && w.user_status("1005")["teams_id"] == ids[2].as_str()
    })
    .await;
    assert_eq!(
        w.user_status(CAROL)["match"],
        "matched",
        "kept from the store"
    );
    assert_eq!(w.graph_requests("$batch").len(), 1, "one lookup, by mail");
    let looked: Vec<String> = w
        .graph_requests("/users")
        .iter()
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(looked.len(), 1, "{looked:?}");
    assert!(
        looked[0].contains("dave") && looked[0].contains("erin"),
        "{looked:?}"
    );
    assert!(!looked[0].contains("alice"), "{looked:?}");
    w.stop().await.unwrap();
}

/// `Offline = "keep"` with the HTTP connector: signing out of Teams pushes nothing, and
/// coming back to the state the PBX still shows pushes nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_state_mapped_to_keep_is_not_pushed() {
    let mut w = World::new().await;
    w.write_config(
        "[mapping.availability]\nOffline = \"keep\"\n[mapping.activity]\nOffline = \"keep\"\n",
    );
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    w.graph.set_user_presence(&w.id(BOB), "Offline", "Offline");
    eventually(10, "Bob's Offline read", || {
        w.user_status(BOB)["teams"]["availability"] == "Offline"
    })
    .await;
    w.graph
        .set_user_presence(&w.id(BOB), "Available", "Available");
    let bob = pushed_states_after_a_barrier(&w, BOB).await;
    assert_eq!(
        bob,
        ["available"],
        "Bob's Offline and return were not pushed"
    );
    assert_eq!(w.user_status(BOB)["pushed_state"], "available");
    w.stop().await.unwrap();
}
