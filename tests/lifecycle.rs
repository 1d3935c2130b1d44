//! Nobody is left "In a call": SIGTERM clears every session; after a crash, sessions found in
//! the state database are cleared at start unless the PBX reports the call still running.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn spawn_binary(w: &World) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
        .args(["run", "--config"])
        .arg(w.config_path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The real binary, stopped with SIGTERM during two calls: both sessions are cleared and it
/// exits 0 within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_clears_every_session_and_exits_zero() {
    let w = World::new().await;
    let mut child = spawn_binary(&w);
    wait_for_port(w.listen).await;
    w.pbx_event(ALICE, "speaking").await;
    w.pbx_event(BOB, "speaking").await;
    eventually(10, "both in a call", || {
        w.app_session(ALICE).is_some() && w.app_session(BOB).is_some()
    })
    .await;
    let started = Instant::now();
    signal(&child, "-TERM");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(w.app_session(ALICE).is_none() && w.app_session(BOB).is_none());
    assert_eq!(w.user_status(ALICE)["in_call_session"], false);
}

/// SIGKILL during a call, then a restart: the session left behind is cleared after the
/// recovery grace because the PBX reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_left_by_a_crash_is_cleared_at_the_next_start() {
    let w = World::new().await;
    w.write_config("");
    let mut child = spawn_binary(&w);
    wait_for_port(w.listen).await;
    w.pbx_event(CAROL, "speaking").await;
    eventually(10, "in a call", || w.app_session(CAROL).is_some()).await;
    signal(&child, "-KILL");
    let _ = child.wait();
    assert!(w.app_session(CAROL).is_some(), "the crash left the session");
    assert_eq!(w.user_status(CAROL)["in_call_session"], true);

    let config = std::fs::read_to_string(w.config_path()).unwrap();
    common::write_atomically(
        &w.config_path(),
        &config.replace("[log]", "[log]\n").replace(
            "shutdown_timeout = \"5s\"",
            "shutdown_timeout = \"5s\"\nrecovery_grace = \"1s\"",
        ),
    );
    let mut child = spawn_binary(&w);
    wait_for_port(w.listen).await;
    eventually(10, "cleared after the grace", || {
        w.app_session(CAROL).is_none()
    })
    .await;
    eventually(5, "store forgot it", || {
        w.user_status(CAROL)["in_call_session"] == false
    })
    .await;
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// After a crash, a PBX that reports the call still running keeps the session (re-written),
/// and the orderly stop clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_still_in_use_survives_the_restart() {
    let w = World::new().await;
    let mut child = spawn_binary(&w);
    wait_for_port(w.listen).await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "in a call", || w.app_session(ALICE).is_some()).await;
    signal(&child, "-KILL");
    let _ = child.wait();

    let mut child = spawn_binary(&w);
    wait_for_port(w.listen).await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "re-written after restart", || {
        w.set_presence_calls(ALICE) == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.app_session(ALICE).is_some());
    assert_eq!(w.clear_presence_calls(ALICE), 0);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert!(
        w.app_session(ALICE).is_none(),
        "cleared by the orderly stop"
    );
}
