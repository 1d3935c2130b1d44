//! Nobody is left "In a call": SIGTERM clears every session; after a crash, sessions found in
//! the state database are cleared at start unless the PBX reports the call still running.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The daemon as a child process; killed if the test fails half-way, so no daemon outlives
/// its test.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary on the world's config (any earlier run has exited) and wait until it
/// takes PBX events on the address it reports.
async fn spawn_binary(w: &mut World) -> Daemon {
    w.forget_listen().await;
    let child = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
        .args(["run", "--config"])
        .arg(w.config_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child = Daemon(child);
    w.wait_for_binary().await;
    child
}

fn signal(child: &Daemon, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The real binary, stopped with SIGTERM during two calls: both sessions are cleared and it
/// exits 0 within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_clears_every_session_and_exits_zero() {
    let mut w = World::new().await;
    let mut child = spawn_binary(&mut w).await;
    w.pbx_event(ALICE, "speaking").await;
    w.pbx_event(BOB, "speaking").await;
    eventually(10, "both in a call", || {
        w.app_session(ALICE).is_some() && w.app_session(BOB).is_some()
    })
    .await;
    let started = Instant::now();
    signal(&child, "-TERM");
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
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
    let mut w = World::new().await;
    w.write_config("");
    let mut child = spawn_binary(&mut w).await;
    w.pbx_event(CAROL, "speaking").await;
    eventually(10, "in a call", || w.app_session(CAROL).is_some()).await;
    signal(&child, "-KILL");
    let _ = child.0.wait();
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
    let mut child = spawn_binary(&mut w).await;
    eventually(10, "cleared after the grace", || {
        w.app_session(CAROL).is_none()
    })
    .await;
    eventually(5, "store forgot it", || {
        w.user_status(CAROL)["in_call_session"] == false
    })
    .await;
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
}

/// SIGKILL during a call, a restart with a long recovery grace, then the PBX reports the
/// extension idle: the session left by the crash is cleared at once, not after the grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_idle_ends_a_session_left_by_a_crash() {
    let mut w = World::new().await;
    let mut child = spawn_binary(&mut w).await;
    w.pbx_event(CAROL, "speaking").await;
    eventually(10, "in a call", || w.app_session(CAROL).is_some()).await;
    signal(&child, "-KILL");
    let _ = child.0.wait();
    assert!(w.app_session(CAROL).is_some(), "the crash left the session");

    let config = std::fs::read_to_string(w.config_path()).unwrap();
    common::write_atomically(
        &w.config_path(),
        &config.replace(
            "shutdown_timeout = \"5s\"",
            "shutdown_timeout = \"5s\"\nrecovery_grace = \"10m\"",
        ),
    );
    let mut child = spawn_binary(&mut w).await;
    assert!(
        w.app_session(CAROL).is_some(),
        "kept while the PBX says nothing"
    );
    w.pbx_event(CAROL, "idle").await;
    eventually(10, "cleared by the idle report", || {
        w.app_session(CAROL).is_none() && w.user_status(CAROL)["in_call_session"] == false
    })
    .await;
    assert_eq!(w.clear_presence_calls(CAROL), 1);
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
}

/// The crash window between recording a session and writing it: the state database is held
/// locked by the test (a stalled disk), a call starts, and the daemon is SIGKILLed the moment
/// its setPresence reaches Graph. The session must have been committed before that write left,
/// so the next start finds it and clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_durable_before_its_write_reaches_teams() {
    let mut w = World::new().await;
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    common::write_atomically(
        &w.config_path(),
        &config.replace(
            "shutdown_timeout = \"5s\"",
            "shutdown_timeout = \"5s\"\nrecovery_grace = \"1s\"",
        ),
    );
    let mut child = spawn_binary(&mut w).await;
    let mut lock = rusqlite::Connection::open(w.db_path()).unwrap();
    let held = lock
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    w.pbx_event(CAROL, "speaking").await;
    // A daemon that writes before its record is committed sends setPresence now, with the
    // database still locked; a correct one waits for the lock, released after this window.
    let window = Instant::now();
    while w.set_presence_calls(CAROL) == 0 && window.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let written_while_locked = w.set_presence_calls(CAROL) > 0;
    if written_while_locked {
        signal(&child, "-KILL");
    }
    held.rollback().unwrap();
    if !written_while_locked {
        eventually(10, "written once the store is free", || {
            w.set_presence_calls(CAROL) > 0
        })
        .await;
        signal(&child, "-KILL");
    }
    let _ = child.0.wait();
    assert!(w.app_session(CAROL).is_some(), "the crash left the session");

    let mut child = spawn_binary(&mut w).await;
    eventually(
        10,
        "the recorded session is cleared after the grace",
        || w.app_session(CAROL).is_none(),
    )
    .await;
    assert!(
        !written_while_locked,
        "setPresence left before the session was recorded"
    );
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
}

/// After a crash, a PBX that reports the call still running keeps the session (re-written),
/// and the orderly stop clears it. Bob's session, which the PBX does not report again, is the
/// witness that the recovery grace has run out: both were restored at the same start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_still_in_use_survives_the_restart() {
    let mut w = World::new().await;
    let mut child = spawn_binary(&mut w).await;
    w.pbx_event(ALICE, "speaking").await;
    w.pbx_event(BOB, "speaking").await;
    eventually(10, "in a call", || {
        w.app_session(ALICE).is_some() && w.app_session(BOB).is_some()
    })
    .await;
    signal(&child, "-KILL");
    let _ = child.0.wait();

    let config = std::fs::read_to_string(w.config_path()).unwrap();
    common::write_atomically(
        &w.config_path(),
        &config.replace(
            "shutdown_timeout = \"5s\"",
            "shutdown_timeout = \"5s\"\nrecovery_grace = \"2s\"",
        ),
    );
    let mut child = spawn_binary(&mut w).await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "re-written after restart", || {
        w.set_presence_calls(ALICE) == 2
    })
    .await;
    // The grace is over once Bob's session is cleared, and recorded so: Alice's session, had
    // it not been claimed, was due at the same tick, its clear sent alongside Bob's.
    eventually(
        10,
        "Bob's unclaimed session cleared after the grace",
        || w.app_session(BOB).is_none() && w.user_status(BOB)["in_call_session"] == false,
    )
    .await;
    assert!(w.app_session(ALICE).is_some());
    assert_eq!(w.clear_presence_calls(ALICE), 0);
    assert_eq!(w.user_status(ALICE)["in_call_session"], true);
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
    assert!(
        w.app_session(ALICE).is_none(),
        "cleared by the orderly stop"
    );
}

/// Under systemd (Type=notify): READY=1 once the first sync is done, WATCHDOG=1 while the
/// main loop runs, STOPPING=1 on SIGTERM. The notify socket here is the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notifications_ready_watchdog_stopping() {
    let w = World::new().await;
    let socket_path = w.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // systemd names the watched process in WATCHDOG_PID: `exec` keeps the shell's pid.
    let child = Command::new("sh")
        .arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" run --config "$1""#)
        .arg(env!("CARGO_BIN_EXE_pbx-teams-presence"))
        .arg(w.config_path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Daemon(child);
    let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let messages = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(20) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let stop = text.contains("STOPPING=1");
                    messages.lock().unwrap().push(text);
                    if stop {
                        break;
                    }
                }
            }
        })
    };
    let seen = |needle: &str| {
        messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(needle))
            .count()
    };
    eventually(10, "READY=1", || seen("READY=1") == 1).await;
    // The first sync had polled the users before READY.
    assert!(!w.graph_requests("getPresencesByUserId").is_empty());
    eventually(5, "several WATCHDOG=1", || seen("WATCHDOG=1") >= 3).await;
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
    reader.join().unwrap();
    assert_eq!(seen("STOPPING=1"), 1);
    assert_eq!(seen("READY=1"), 1, "READY is sent once");
}

/// The log tells each change once, its text saying who and what (the journal's short output
/// shows only the text) and its fields following: one line per PBX state change, one per
/// Teams write, one per Teams presence change; nothing about secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_is_logged_once_with_its_fields() {
    let mut w = World::new().await;
    let log_path = w.dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
        .args(["run", "--config"])
        .arg(w.config_path())
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut child = Daemon(child);
    w.wait_for_binary().await;
    eventually(10, "first pushes", || w.pbx.updates().len() == 3).await;
    w.pbx_event(BOB, "ringing").await;
    w.pbx_event(BOB, "speaking").await;
    w.pbx_event(BOB, "speaking").await;
    eventually(5, "in a call", || w.app_session(BOB).is_some()).await;
    w.graph.set_user_presence(&w.id(CAROL), "Away", "Away");
    eventually(10, "Carol pushed", || w.pbx.updates_for(CAROL).len() == 2).await;
    w.pbx_event(BOB, "idle").await;
    eventually(5, "cleared", || w.app_session(BOB).is_none()).await;
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());

    let text = std::fs::read_to_string(&log_path).unwrap();
    let count = |needles: &[&str]| {
        text.lines()
            .filter(|l| l.contains(" INFO ") && needles.iter().all(|n| l.contains(n)))
            .count()
    };
    let bob = "extension=\"1002\"";
    let matched = "1002 bob@contoso.com: matched to Teams user ";
    assert_eq!(count(&[matched, bob]), 1, "each match said once:\n{text}");
    let pbx = |from: &str, to: &str| format!("1002 bob@contoso.com: PBX {from} -> {to}");
    assert_eq!(count(&[&pbx("idle", "ringing"), bob]), 1, "{text}");
    assert_eq!(count(&[&pbx("ringing", "speaking"), bob]), 1, "{text}");
    assert_eq!(
        count(&["1002 bob@contoso.com: PBX ", "-> speaking"]),
        1,
        "repeated speaking is not a change:\n{text}"
    );
    assert_eq!(count(&[&pbx("speaking", "idle")]), 1, "{text}");
    let written = "1002 bob@contoso.com: speaking -> In a call written to Teams";
    assert_eq!(count(&[written, bob, "teams_user="]), 1, "{text}");
    let cleared = "1002 bob@contoso.com: In a call cleared in Teams";
    assert_eq!(count(&[cleared, bob]), 1, "{text}");
    let carol = "1003 carol@contoso.com: Teams Available -> Away (poll); PBX state away";
    assert_eq!(count(&[carol, "email=\"carol@contoso.com\""]), 1, "{text}");
    assert!(
        !text.contains(&w.graph.client_secret()),
        "the client secret is in the log"
    );
    assert!(!text.contains(&w.token), "the PBX token is in the log");
}

/// A Do not disturb status set with `pbx_dnd_to_teams = "preferred"`, then SIGKILL: the
/// store remembers it, and the next start clears it once the PBX reports the phone out of DND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dnd_status_left_by_a_crash_is_cleared_when_the_pbx_reports_dnd_off() {
    let mut w = World::new().await;
    w.add_to_section("sync", "pbx_dnd_to_teams = \"preferred\"");
    let bob = w.id(BOB);
    let dnd = |on: bool| format!(r#"{{"extension":"{BOB}","state":"idle","dnd":{on}}}"#);
    let mut child = spawn_binary(&mut w).await;
    assert_eq!(w.post_raw(&dnd(true), Some(&w.token)).await.0, 202);
    eventually(10, "DND status set", || w.graph.preferred(&bob).is_some()).await;
    let recorded = |w: &World| {
        pbx_teams_presence::store::read_snapshot(&w.db_path()).map_or(0, |s| s.preferred.len())
    };
    eventually(10, "recorded", || recorded(&w) == 1).await;
    signal(&child, "-KILL");
    let _ = child.0.wait();
    assert!(w.graph.preferred(&bob).is_some(), "left by the crash");

    child = spawn_binary(&mut w).await;
    assert_eq!(w.post_raw(&dnd(false), Some(&w.token)).await.0, 202);
    eventually(10, "cleared after the restart", || {
        w.graph.preferred(&bob).is_none()
    })
    .await;
    eventually(10, "and forgotten", || recorded(&w) == 0).await;
    signal(&child, "-TERM");
    assert!(child.0.wait().unwrap().success());
}
