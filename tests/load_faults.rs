//! Load and faults together: 1,000 calls start within a second while Graph throttles 30 % of
//! writes, then Graph is down for 20 s while some of the calls end. Once it is back, Teams
//! must show exactly the calls still running within 10 s: no session lost, none left behind.
//! And one extension flapping 50 times in a second ends in its last state with few writes.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use std::time::{Duration, Instant};

use common::*;
use graph_emulator::{Fault, FaultKind};

const CALLS: usize = 1000;
/// Calls that end while Graph is down.
const ENDED: usize = 300;

fn extension(i: usize) -> String {
    format!("{}", 20_000 + i)
}

/// A world with [`CALLS`] more users, each matched by mail; returns their Teams ids.
async fn big_world() -> (World, Vec<String>) {
    World::crowd(CALLS, "load", extension, 200_000).await
}

/// POSTs `state` for extensions `range` in batches of 100.
async fn report(w: &World, range: std::ops::Range<usize>, state: &str) {
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(100) {
        let events: Vec<String> = chunk
            .iter()
            .map(|i| format!(r#"{{"extension":"{}","state":"{state}"}}"#, extension(*i)))
            .collect();
        let (status, body) = w
            .post_raw(&format!("[{}]", events.join(",")), Some(&w.token))
            .await;
        assert_eq!(status, 202, "{body}");
    }
}

fn fault(method: &str, path: &str, kind: FaultKind) -> Fault {
    Fault {
        method: (!method.is_empty()).then(|| method.to_owned()),
        path_contains: path.into(),
        kind,
        times: u32::MAX,
    }
}

/// The users whose app session is not what the calls say: (in a call without a session,
/// session without a call).
fn mismatches(w: &World, ids: &[String]) -> (usize, usize) {
    let client = w.graph.client_id();
    let mut lost = 0;
    let mut left = 0;
    for (i, id) in ids.iter().enumerate() {
        let running = i >= ENDED;
        let session = w.graph.app_session(id, &client).is_some();
        if running && !session {
            lost += 1;
        }
        if !running && session {
            left += 1;
        }
    }
    (lost, left)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_throttling_and_an_outage_teams_shows_exactly_the_running_calls() {
    let (mut w, ids) = big_world().await;
    w.start().await;
    eventually(60, "every user matched", || {
        w.status()["users"]
            .as_array()
            .is_some_and(|u| u.iter().filter(|u| !u["teams_id"].is_null()).count() == CALLS + 3)
    })
    .await;

    // 30 % of writes throttled with Retry-After while 1,000 calls start within a second.
    w.graph.inject_share(
        fault(
            "POST",
            "setPresence",
            FaultKind::Throttle {
                retry_after_secs: 1,
            },
        ),
        30,
    );
    let started = Instant::now();
    report(&w, 0..CALLS, "speaking").await;
    let posted = started.elapsed();
    eprintln!("1,000 call starts posted in {} ms", posted.as_millis());

    // Graph goes down entirely for 20 s; 300 calls end meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.graph.clear_faults();
    let logged_at_outage = w.graph.requests().len();
    w.graph.inject(fault("", "", FaultKind::Status(503)));
    report(&w, 0..ENDED, "idle").await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let outage_end = Instant::now();
    let logged_before = w.graph.requests().len();
    {
        let mut seen = std::collections::BTreeMap::new();
        for r in w
            .graph
            .requests()
            .iter()
            .skip(logged_at_outage)
            .take(logged_before - logged_at_outage)
        {
            let kind = r.path.rsplit('/').next().unwrap_or("").to_owned();
            *seen.entry((kind, r.status)).or_insert(0) += 1;
        }
        eprintln!("requests during the outage: {seen:?}");
    }
    w.graph.clear_faults();
    let (lost, left) = mismatches(&w, &ids);
    eprintln!(
        "when Graph came back: {lost} calls without a session, {left} sessions without a call"
    );

    let mut last = (lost, left);
    while last != (0, 0) && outage_end.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = mismatches(&w, &ids);
    }
    eprintln!(
        "converged in {} ms after the outage: {last:?}",
        outage_end.elapsed().as_millis()
    );
    let mut seen = std::collections::BTreeMap::new();
    for r in w.graph.requests().iter().skip(logged_before) {
        let kind = r.path.rsplit('/').next().unwrap_or("").to_owned();
        *seen.entry((kind, r.status)).or_insert(0) += 1;
    }
    eprintln!("requests after the outage: {seen:?}");
    assert_eq!(
        last,
        (0, 0),
        "10 s after Graph came back: (calls without a session, sessions without a call)"
    );
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_ends_in_the_last_state_with_few_writes() {
    let mut w = World::new().await;
    w.start().await;
    let started = Instant::now();
    for i in 0..50 {
        let state = if i % 2 == 0 { "speaking" } else { "idle" };
        w.pbx_event(ALICE, state).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("50 toggles in {} ms", started.elapsed().as_millis());
    // The last toggle was idle. One writer per user takes only the latest wanted state, so once
    // its last request is a clear nothing else can follow.
    let id = w.id(ALICE);
    let cleared = || {
        let last = w
            .graph_requests(&format!("/users/{id}/presence/"))
            .into_iter()
            .next_back();
        w.app_session(ALICE).is_none()
            && last.is_some_and(|r| r.path.ends_with("clearPresence") && r.status == 200)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cleared() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let requests: Vec<_> = w
        .graph_requests(&format!("/users/{id}/presence/"))
        .into_iter()
        .map(|r| format!("{} {}", r.path.rsplit('/').next().unwrap_or(""), r.status))
        .collect();
    assert!(
        cleared(),
        "not cleared after the last idle: session {:?}, requests {requests:?}, user {}",
        w.app_session(ALICE),
        w.user_status(ALICE)
    );
    let writes = w.set_presence_calls(ALICE) + w.clear_presence_calls(ALICE);
    eprintln!("writes to Teams for 50 toggles: {writes}");
    assert!(writes <= 10, "{writes} writes for 50 toggles");
    w.stop().await.unwrap();
}
