//! The phone's Do Not Disturb in Teams (`sync.pbx_dnd_to_teams`), through the HTTP connector's
//! `dnd` field, against the Graph emulator with the real service wiring.

mod common;

use common::*;

/// The world's config with `[sync] pbx_dnd_to_teams = MODE`.
fn dnd_mode(w: &World, mode: &str) {
    w.add_to_section("sync", &format!("pbx_dnd_to_teams = \"{mode}\""));
}

async fn event(w: &World, extension: &str, state: &str, dnd: bool) {
    let body = format!(r#"{{"extension":"{extension}","state":"{state}","dnd":{dnd}}}"#);
    let (status, json) = w.post_raw(&body, Some(&w.token)).await;
    assert_eq!(status, 202, "{json}");
}

fn session(w: &World, extension: &str) -> Option<(String, String)> {
    w.app_session(extension)
        .map(|s| (s.availability, s.activity))
}

fn pair(a: &str, b: &str) -> Option<(String, String)> {
    Some((a.to_owned(), b.to_owned()))
}

/// `session`: DND on the phone is DoNotDisturb/Presenting in the app's session, DND wins over
/// a call, DND off during the call is "In a call", neither clears it. Teams reading back our
/// DND is not pushed to the PBX as the user's own DND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_writes_the_phones_dnd_and_a_call_under_it() {
    let mut w = World::new().await;
    dnd_mode(&w, "session");
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    event(&w, BOB, "idle", true).await;
    eventually(5, "DND written", || {
        session(&w, BOB) == pair("DoNotDisturb", "Presenting")
    })
    .await;
    eventually(5, "Teams shows it", || {
        w.user_status(BOB)["teams"]["availability"] == "DoNotDisturb"
    })
    .await;
    event(&w, BOB, "speaking", true).await;
    event(&w, BOB, "speaking", false).await;
    eventually(5, "In a call once DND is off", || {
        session(&w, BOB) == pair("Busy", "InACall")
    })
    .await;
    event(&w, BOB, "idle", false).await;
    eventually(5, "cleared", || session(&w, BOB).is_none()).await;
    // A push of Bob's DoNotDisturb read back from Teams would be there by now.
    let bob = pushed_states_after_a_barrier(&w, BOB).await;
    assert_eq!(
        bob,
        ["available"],
        "our own DND and call were not pushed back"
    );
    // Two writes of DND would be one change: the set was written once per change.
    let sets: Vec<String> = w
        .graph_requests("/presence/setPresence")
        .iter()
        .map(|r| r.body.as_ref().unwrap()["availability"].to_string())
        .collect();
    assert_eq!(sets, ["\"DoNotDisturb\"", "\"Busy\""]);
    w.stop().await.unwrap();
}

/// `off` (the default): the phone's DND is recorded but nothing is written to Teams; a reload
/// to `session` writes it for the phones in DND, and a stop clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_writes_nothing_and_a_reload_to_session_writes_the_dnd_there_is() {
    let mut w = World::new().await;
    w.start().await;
    event(&w, BOB, "idle", true).await;
    eventually(5, "DND recorded", || w.user_status(BOB)["dnd"] == true).await;
    assert_eq!(w.set_presence_calls(BOB), 0);
    dnd_mode(&w, "session");
    eventually(10, "DND written after the reload", || {
        session(&w, BOB) == pair("DoNotDisturb", "Presenting")
    })
    .await;
    w.stop().await.unwrap();
    assert!(session(&w, BOB).is_none(), "the stop cleared it");
}

fn preferred_rows(w: &World) -> usize {
    pbx_teams_presence::store::read_snapshot(&w.db_path()).map_or(0, |s| s.preferred.len())
}

/// `preferred`: DND on the phone is the user's preferred presence DoNotDisturb (a real "Do not
/// disturb" in Teams), recorded in the store while it is ours; DND off clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_mode_sets_the_teams_status_and_clears_it() {
    let mut w = World::new().await;
    dnd_mode(&w, "preferred");
    w.start().await;
    let bob = w.id(BOB);
    event(&w, BOB, "idle", true).await;
    eventually(5, "DND status set", || {
        w.graph.preferred(&bob) == pair("DoNotDisturb", "DoNotDisturb")
    })
    .await;
    assert_eq!(w.graph.presence(&bob), pair("DoNotDisturb", "DoNotDisturb"));
    assert!(
        session(&w, BOB).is_none(),
        "no app session for DND in this mode"
    );
    eventually(5, "recorded", || preferred_rows(&w) == 1).await;
    event(&w, BOB, "idle", false).await;
    eventually(5, "DND status cleared", || {
        w.graph.preferred(&bob).is_none()
    })
    .await;
    eventually(5, "forgotten", || preferred_rows(&w) == 0).await;
    w.stop().await.unwrap();
}

/// A status the user picked in Teams after our DND is theirs: DND off on the phone leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_mode_leaves_a_status_the_user_changed() {
    let mut w = World::new().await;
    dnd_mode(&w, "preferred");
    w.start().await;
    let bob = w.id(BOB);
    event(&w, BOB, "idle", true).await;
    eventually(5, "DND status set", || w.graph.preferred(&bob).is_some()).await;
    eventually(5, "recorded", || preferred_rows(&w) == 1).await;
    w.graph.set_user_preferred(&bob, Some(("Away", "Away")));
    event(&w, BOB, "idle", false).await;
    eventually(5, "forgotten, not cleared", || preferred_rows(&w) == 0).await;
    assert_eq!(w.graph.preferred(&bob), pair("Away", "Away"));
    assert!(w.graph_requests("clearUserPreferredPresence").is_empty());
    w.stop().await.unwrap();
    assert_eq!(
        w.graph.preferred(&bob),
        pair("Away", "Away"),
        "the stop left it too"
    );
}
