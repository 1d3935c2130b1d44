//! PBX -> Teams: speaking writes "In a call", idle clears it, ringing writes nothing, long calls
//! are refreshed. Real service wiring against the Graph emulator.

mod common;

use common::*;

/// A call answered on the PBX shows as Busy/InACall in Teams, with the app's own session; the
/// hang-up clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaking_sets_in_a_call_and_idle_clears_it() {
    let mut w = World::new().await;
    w.start().await;
    let accepted = w.pbx_event(BOB, "speaking").await;
    assert_eq!(accepted["accepted"], 1);
    // The emulator logs a request once it has answered it: wait for the log, not the session.
    eventually(5, "In a call written", || w.set_presence_calls(BOB) == 1).await;
    let session = w.app_session(BOB).unwrap();
    assert_eq!(
        (session.availability.as_str(), session.activity.as_str()),
        ("Busy", "InACall")
    );
    let set = w.graph_requests("/presence/setPresence");
    let body = set[0].body.as_ref().unwrap();
    assert_eq!(body["sessionId"], w.graph.client_id());
    assert_eq!(body["expirationDuration"], "PT5M");
    assert_eq!(
        w.graph.presence(&w.id(BOB)).unwrap(),
        ("Busy".to_owned(), "InACall".to_owned())
    );

    w.pbx_event(BOB, "idle").await;
    // Recorded in the store once the answer is back, so after the emulator logged it.
    eventually(5, "session cleared, and recorded", || {
        w.app_session(BOB).is_none() && w.user_status(BOB)["in_call_session"] == false
    })
    .await;
    assert_eq!(w.clear_presence_calls(BOB), 1);
    w.stop().await.unwrap();
}

/// Ringing alone never touches Teams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringing_writes_nothing() {
    let mut w = World::new().await;
    w.start().await;
    w.pbx_event(ALICE, "ringing").await;
    w.pbx_event(ALICE, "idle").await;
    // A later write for someone else proves the events above were processed.
    w.pbx_event(BOB, "speaking").await;
    eventually(5, "Bob's write", || w.set_presence_calls(BOB) == 1).await;
    assert_eq!(w.set_presence_calls(ALICE), 0);
    assert_eq!(w.clear_presence_calls(ALICE), 0);
    eventually(5, "Alice idle in the store", || {
        w.user_status(ALICE)["pbx_state"] == "idle"
    })
    .await;
    w.stop().await.unwrap();
}

/// A long call is written again before the session's expiry, and only the latest state is
/// written when events come faster than Graph answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_call_is_refreshed_before_it_expires() {
    let mut w = World::new().await;
    w.start().await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(5, "first write", || w.set_presence_calls(ALICE) == 1).await;
    // 4 minutes later (the refresh point for a 5 minute session) the daemon writes again.
    w.clock.advance(std::time::Duration::from_secs(241));
    w.graph.advance_clock(std::time::Duration::from_secs(241));
    eventually(5, "refresh write", || w.set_presence_calls(ALICE) == 2).await;
    assert!(w.app_session(ALICE).is_some(), "the session never lapsed");
    w.pbx_event(ALICE, "idle").await;
    eventually(5, "cleared", || w.app_session(ALICE).is_none()).await;
    w.stop().await.unwrap();
}

/// Speaking, idle, speaking in quick succession while Graph is slow: at most one write in
/// flight for the user, and the final state is "In a call".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_state_wins_with_one_write_in_flight() {
    let mut w = World::new().await;
    w.start().await;
    w.graph.inject(graph_emulator::Fault {
        method: Some("POST".into()),
        path_contains: "/presence/setPresence".into(),
        kind: graph_emulator::FaultKind::Delay(std::time::Duration::from_millis(400)),
        times: 1,
    });
    for state in ["speaking", "idle", "speaking", "idle", "speaking"] {
        w.pbx_event(CAROL, state).await;
    }
    // The first write (delayed) already sets what the last event wants; whether the writer
    // sends it once or twice depends on timing, but never every superseded state.
    eventually(5, "final In a call", || {
        w.app_session(CAROL).is_some() && w.set_presence_calls(CAROL) >= 1
    })
    .await;
    // One more state for the same writer, as the fence: its clear goes out after whatever the
    // writer still had to send for the burst (or replaces it), so once it is done and
    // recorded, every write of the burst is in the request log, in order.
    w.pbx_event(CAROL, "idle").await;
    eventually(5, "the final idle cleared and recorded", || {
        w.app_session(CAROL).is_none() && w.user_status(CAROL)["in_call_session"] == false
    })
    .await;
    let carol = w.id(CAROL);
    let writes: Vec<String> = w
        .graph_requests(&format!("/users/{carol}/presence/"))
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.path.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    let (last, burst) = writes.split_last().expect("writes for Carol");
    assert_eq!(last, "clearPresence", "{writes:?}");
    assert!(
        burst.len() <= 3,
        "superseded states were not collapsed: {writes:?}"
    );
    assert_eq!(
        burst.last().map(String::as_str),
        Some("setPresence"),
        "the burst ended In a call: {writes:?}"
    );
    w.stop().await.unwrap();
}

/// With certificate credentials (no secret the emulator would accept) the daemon gets its
/// token with a client assertion and syncs; a token Graph refuses is replaced through a new
/// assertion with a new `jti` (the emulator is told to refuse a repeated one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials_get_a_token_and_sync() {
    let mut w = World::new_with(graph_emulator::EmulatorOptions {
        reject_reused_assertions: true,
        ..graph_emulator::EmulatorOptions::default()
    })
    .await;
    w.use_certificate(365);
    w.start().await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "In a call written", || w.set_presence_calls(ALICE) == 1).await;
    w.graph.expire_tokens();
    w.pbx_event(ALICE, "idle").await;
    eventually(10, "session cleared", || w.app_session(ALICE).is_none()).await;
    let tokens = w.graph_requests("/oauth2/v2.0/token");
    assert!(tokens.len() >= 2, "{tokens:?}");
    assert!(tokens.iter().all(|t| t.status == 200), "{tokens:?}");
    w.stop().await.unwrap();
}
