//! Graph misbehaving: throttling, server errors, expired tokens. The daemon waits as told,
//! retries, and the writes still land.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use std::time::{Duration, Instant};

use common::*;
use graph_emulator::{Fault, FaultKind};

fn fault(path: &str, kind: FaultKind, times: u32) -> Fault {
    Fault {
        method: Some("POST".into()),
        path_contains: path.into(),
        kind,
        times,
    }
}

/// A 429 with Retry-After: 1 is waited out, then the write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_write_waits_for_retry_after() {
    let mut w = World::new().await;
    w.start().await;
    w.graph.inject(fault(
        "/presence/setPresence",
        FaultKind::Throttle {
            retry_after_secs: 1,
        },
        1,
    ));
    let started = Instant::now();
    w.pbx_event(ALICE, "speaking").await;
    // The emulator logs a request once it has answered it: wait for the log, not the session.
    eventually(10, "written after the throttle", || {
        w.set_presence_calls(ALICE) == 1
    })
    .await;
    assert!(w.app_session(ALICE).is_some());
    let attempts: Vec<_> = w.graph_requests("/presence/setPresence");
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].status, 429);
    assert!(attempts[1].at.duration_since(attempts[0].at) >= Duration::from_millis(950));
    assert!(started.elapsed() >= Duration::from_secs(1));
    w.stop().await.unwrap();
}

/// 503s are retried with backoff; the write lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let mut w = World::new().await;
    w.start().await;
    w.graph
        .inject(fault("/presence/setPresence", FaultKind::Status(503), 2));
    w.pbx_event(BOB, "speaking").await;
    eventually(15, "written after two 503s", || {
        w.set_presence_calls(BOB) == 1
    })
    .await;
    assert!(w.app_session(BOB).is_some());
    let statuses: Vec<u16> = w
        .graph_requests("/presence/setPresence")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    w.stop().await.unwrap();
}

/// A throttled poll does not lose changes: the next cycle delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_poll_is_retried() {
    let mut w = World::new().await;
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    w.graph.inject(fault(
        "getPresencesByUserId",
        FaultKind::Throttle {
            retry_after_secs: 1,
        },
        2,
    ));
    w.graph
        .set_user_presence(&w.id(CAROL), "DoNotDisturb", "Presenting");
    eventually(15, "change pushed after throttling", || {
        w.pbx.updates_for(CAROL).len() == 2
    })
    .await;
    assert!(
        w.graph_requests("getPresencesByUserId")
            .iter()
            .any(|r| r.status == 429)
    );
    w.stop().await.unwrap();
}

/// An expired token gets a 401; the daemon fetches a new token once and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_renewed_and_the_request_retried() {
    let mut w = World::new().await;
    w.start().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    let tokens_before = w.graph_requests("/oauth2/v2.0/token").len();
    w.graph.expire_tokens();
    w.pbx_event(CAROL, "speaking").await;
    eventually(10, "written with a new token", || {
        w.app_session(CAROL).is_some()
    })
    .await;
    assert!(w.graph_requests("/oauth2/v2.0/token").len() > tokens_before);
    assert!(w.graph_requests("").iter().any(|r| r.status == 401));
    w.stop().await.unwrap();
}

/// A clear that keeps failing after the Graph client's own retries is tried again until it
/// lands: nobody is left "In a call" by an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_clear_is_retried_until_it_lands() {
    let mut w = World::new().await;
    w.start().await;
    w.pbx_event(BOB, "speaking").await;
    eventually(5, "in a call", || w.app_session(BOB).is_some()).await;
    w.graph
        .inject(fault("/presence/clearPresence", FaultKind::Status(503), 7));
    w.pbx_event(BOB, "idle").await;
    eventually(30, "cleared after the outage, and recorded", || {
        w.app_session(BOB).is_none() && w.stored_sessions() == 0
    })
    .await;
    let statuses: Vec<u16> = w
        .graph_requests("/presence/clearPresence")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        7,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&200));
    w.stop().await.unwrap();
}
