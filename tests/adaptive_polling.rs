//! `sync.poll_interval = "auto"` against the Graph emulator, counted by the emulator: polling
//! stays within its share of the budget and gives way to writes, slows down after 429s and
//! recovers, and spreads a cycle's requests over its interval. The budget is scaled down
//! (20 requests per 1 s window instead of 1,500 per 30 s) so that windows pass in seconds.

#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time, as the emulator stamps requests

mod common;

use std::time::{Duration, Instant};

use common::*;
use graph_emulator::{Fault, FaultKind, LoggedRequest};

/// 20 presence requests per 1 s, half of them for polling: 10 polls a second at most.
const PACING: &str = "poll_interval = \"auto\"\ngraph_budget = 20\ngraph_budget_window = \"1s\"\npoll_budget_share = 0.5\npoll_min_interval = \"100ms\"";
const SHARE_PER_WINDOW: usize = 10;
const WINDOW: Duration = Duration::from_secs(1);

/// The world's config with `pacing` in place of its fixed `poll_interval = "1s"`.
fn with_pacing(w: &World, pacing: &str) {
    w.write_config("");
    let path = w.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("poll_interval = \"1s\""));
    write_atomically(&path, &text.replace("poll_interval = \"1s\"", pacing));
}

fn polls(w: &World) -> Vec<Instant> {
    times(&w.graph_requests("getPresencesByUserId"))
}

fn writes(w: &World) -> Vec<Instant> {
    let mut all = times(&w.graph_requests("/setPresence"));
    all.extend(times(&w.graph_requests("/clearPresence")));
    all.sort();
    all
}

fn times(requests: &[LoggedRequest]) -> Vec<Instant> {
    requests.iter().map(|r| r.at).collect()
}

/// The most requests of `times` in any `WINDOW` starting at one of them within `[from, to)`.
fn busiest(times: &[Instant], from: Instant, to: Instant) -> usize {
    times
        .iter()
        .filter(|t| **t >= from && **t < to)
        .map(|t| {
            times
                .iter()
                .filter(|u| **u >= *t && **u < *t + WINDOW)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn count(times: &[Instant], from: Instant, to: Instant) -> usize {
    times.iter().filter(|t| **t >= from && **t < to).count()
}

async fn run_for(d: Duration) -> (Instant, Instant) {
    let from = Instant::now();
    tokio::time::sleep(d).await;
    (from, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_polls_within_its_share_and_gives_way_to_writes() {
    let mut w = World::new().await;
    with_pacing(&w, PACING);
    w.start().await;
    eventually(10, "polling under way", || polls(&w).len() >= 20).await;
    let (from, to) = run_for(Duration::from_secs(3)).await;
    let quiet = count(&polls(&w), from, to);
    assert!(
        busiest(&polls(&w), from, to) <= SHARE_PER_WINDOW + 1,
        "quiet: at most the share (10) per window, one cycle of slack"
    );
    assert!(quiet >= 15, "and close to it: {quiet} polls in 3 s");
    // Writes burst: a call state change every 100 ms, round the three users.
    let from = Instant::now();
    let mut state = "speaking";
    for round in 0..30 {
        let ext = [ALICE, BOB, CAROL][round % 3];
        w.pbx_event(ext, state).await;
        if round % 3 == 2 {
            state = if state == "speaking" {
                "idle"
            } else {
                "speaking"
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to = Instant::now();
    let (p, wr) = (polls(&w), writes(&w));
    let busy = count(&p, from, to);
    assert!(count(&wr, from, to) >= 10, "the writes went out");
    assert!(
        busy < quiet,
        "polling gave way: {busy} polls in 3 s against {quiet}"
    );
    for t in p.iter().filter(|t| **t >= from + WINDOW && **t < to) {
        let in_window = |v: &[Instant]| v.iter().filter(|u| **u >= *t && **u < *t + WINDOW).count();
        assert!(
            in_window(&p) + in_window(&wr) <= SHARE_PER_WINDOW + 3,
            "polls and writes together within the share (10), a cycle's lag of slack"
        );
    }
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_slows_polling_and_it_recovers() {
    let mut w = World::new().await;
    with_pacing(&w, PACING);
    w.start().await;
    eventually(10, "polling under way", || polls(&w).len() >= 20).await;
    let steady = w.status()["poll_interval_s"].as_f64().unwrap();
    assert!(steady <= 0.15, "10 polls a second: {steady} s");
    w.graph.inject(Fault {
        method: None,
        path_contains: "getPresencesByUserId".into(),
        kind: FaultKind::Throttle {
            retry_after_secs: 1,
        },
        times: 3,
    });
    eventually(15, "the interval grew after the 429s", || {
        w.status()["poll_interval_s"]
            .as_f64()
            .is_some_and(|s| s >= 4.0 * steady)
    })
    .await;
    let slowest = w.status()["poll_interval_s"].as_f64().unwrap();
    // +0.1 of the share per window without 429: back to the whole share within ~10 s.
    eventually(20, "the interval came back", || {
        w.status()["poll_interval_s"]
            .as_f64()
            .is_some_and(|s| s <= 1.5 * steady)
    })
    .await;
    let (from, to) = run_for(Duration::from_secs(2)).await;
    assert!(
        count(&polls(&w), from, to) >= 12,
        "polling at its share again (slowest interval was {slowest} s)"
    );
    w.stop().await.unwrap();
}

/// 1,301 users are three requests a cycle; with a fixed 3 s interval they go about a second
/// apart, not in a burst (a catch-up cycle, after new users were matched, goes at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycles_requests_are_spread_over_its_interval() {
    let mut w = World::new().await;
    let mut lines = Vec::new();
    for i in 0..1_298 {
        let mail = format!("spread{i}@contoso.com");
        let id = w
            .graph
            .add_user(user(&format!("S {i}"), &mail, Some(&mail), &[]));
        w.graph.set_user_presence(&id, "Available", "Available");
        lines.push(format!("{},{mail}", 20_000 + i));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    w.write_users(&lines);
    with_pacing(&w, "poll_interval = \"3s\"");
    w.start().await;
    eventually(30, "everyone matched", || {
        w.status()["users"]
            .as_array()
            .is_some_and(|u| u.len() == 1_301 && u.iter().all(|u| u["match"] == "matched"))
    })
    .await;
    let t0 = Instant::now();
    let after = |w: &World| -> Vec<Instant> { polls(w).into_iter().filter(|t| *t >= t0).collect() };
    eventually(30, "two cycles more", || after(&w).len() >= 7).await;
    // The first three may still be the catch-up of the last users matched.
    let p = after(&w);
    for pair in p[3..7].windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(800),
            "requests ~1 s apart, not a burst: {gap:?}"
        );
    }
    w.stop().await.unwrap();
}

/// A user added to the users file is read at once, alone: the catch-up does not read
/// everyone again, and the 30 s schedule is not moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_is_read_at_once_alone() {
    let mut w = World::new().await;
    with_pacing(&w, "poll_interval = \"30s\"");
    w.start().await;
    eventually(10, "the first poll", || polls(&w).len() == 1).await;
    let dave = w.graph.add_user(user(
        "Dave",
        "dave@contoso.com",
        Some("dave@contoso.com"),
        &[],
    ));
    w.graph.set_user_presence(&dave, "Busy", "Busy");
    w.write_users(&["1004,dave@contoso.com"]);
    eventually(10, "Dave pushed", || !w.pbx.updates_for("1004").is_empty()).await;
    let reads = w.graph_requests("getPresencesByUserId");
    assert_eq!(reads.len(), 2, "one catch-up, no new cycle");
    let ids = reads[1].body.as_ref().unwrap()["ids"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids, vec![serde_json::Value::String(dave)], "Dave alone");
    w.stop().await.unwrap();
}
