//! The Asterisk connector end to end: a real Asterisk, real SIP calls placed by SIPp, the
//! daemon's real service wiring, and the Graph emulator. See `tests/pbx/README.md` for the
//! PBX and `docs/asterisk.md` for what is being proven.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod behaviours;
#[path = "../common/mod.rs"]
mod common;
mod ha;
#[path = "../common/phones.rs"]
mod phones;
mod sandbox;
mod sip;
mod sip_daemon;
#[path = "../common/sip_watcher.rs"]
mod sip_watcher;
mod tls;

use common::{ALICE, BOB, CAROL, World, eventually};
use sandbox::{PHONES, Pbx, finish};

/// Alice has a desk phone (1001) and a softphone (1011); Bob and Carol one phone each.
const DEVICES: &str = "[pbx.devices]\n1001 = [\"PJSIP/1001\", \"PJSIP/1011\"]\n";

async fn world(extra_pbx_keys: &str) -> World {
    let mut w = World::new().await;
    w.pbx_section = Some(format!("{}{DEVICES}", Pbx::pbx_section(extra_pbx_keys)));
    w.write_config("");
    w.start().await;
    connected(&w).await;
    w
}

async fn connected(w: &World) {
    eventually(15, "the daemon connected to Asterisk", || {
        // The file exists a moment before it is migrated: read errors mean "not yet".
        pbx_teams_presence::store::read_snapshot(&w.db_path())
            .is_ok_and(|s| s.meta.get("pbx_link").is_some_and(|v| v == "connected"))
    })
    .await;
}

fn in_a_call(w: &World, extension: &str) -> bool {
    w.app_session(extension)
        .is_some_and(|s| s.availability == "Busy" && s.activity == "InACall")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_is_in_a_call_for_both_parties_until_hangup() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 300);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 3000, &[]);
    eventually(10, "Alice and Bob in a call", || {
        in_a_call(&w, ALICE) && in_a_call(&w, BOB)
    })
    .await;
    assert!(w.app_session(CAROL).is_none(), "Carol is not in the call");
    finish(caller, "1001 calls 1002").await;
    finish(callee, "1002 answers").await;
    eventually(10, "both cleared after the hangup", || {
        w.app_session(ALICE).is_none() && w.app_session(BOB).is_none()
    })
    .await;
    assert!(w.clear_presence_calls(ALICE) >= 1 && w.clear_presence_calls(BOB) >= 1);
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ringing_but_never_answered_sets_nothing_for_the_callee() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.ring_only("1002");
    let caller = PHONES.dial("uac_cancel.xml", "1001", "1002", 2000, &[]);
    finish(caller, "1001 gives up").await;
    finish(callee, "1002 rang").await;
    // The caller was off-hook (dialling counts as a call); the callee only rang.
    eventually(10, "the caller's session is cleared", || {
        w.app_session(ALICE).is_none()
    })
    .await;
    assert_eq!(w.set_presence_calls(BOB), 0, "ringing alone is not a call");
    assert_eq!(w.user_status(BOB)["pbx_state"], "idle");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_is_still_a_call() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    // Talk 1 s, hold 3 s (Bob's device is ONHOLD), resume, 1 s more, hang up.
    let caller = PHONES.dial(
        "uac_hold.xml",
        "1001",
        "1002",
        1000,
        &["-key", "talk_ms", "1000", "-key", "hold_ms", "3000"],
    );
    eventually(10, "Bob in a call", || in_a_call(&w, BOB)).await;
    Pbx::wait_device("PJSIP/1002", "ONHOLD", 10).await;
    assert!(in_a_call(&w, BOB), "held, and still in a call in Teams");
    finish(caller, "call with hold").await;
    finish(callee, "held callee").await;
    // The hang-up's clear is the fence: Bob's writes are sent in order, so a clear for the
    // hold (with a write again for the resume) would have come before it.
    eventually(10, "cleared after the hangup", || {
        w.app_session(BOB).is_none() && w.user_status(BOB)["in_call_session"] == false
    })
    .await;
    assert_eq!(
        w.clear_presence_calls(BOB),
        1,
        "only the hang-up cleared Bob's session, not the hold"
    );
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_two_devices_is_in_a_call_on_either() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    for d in ["1001", "1011", "1002"] {
        PHONES.register(d).await;
    }
    // Bob dials Alice: both her phones ring, the softphone answers, the desk phone is
    // cancelled by Asterisk.
    let desk = PHONES.ring_only("1001");
    let soft = PHONES.answer("1011", 500);
    let caller = PHONES.dial("uac.xml", "1002", "1001", 3000, &[]);
    eventually(10, "Alice in a call on her softphone", || {
        in_a_call(&w, ALICE)
    })
    .await;
    finish(desk, "desk phone rang and was cancelled").await;
    assert!(
        in_a_call(&w, ALICE),
        "the desk phone going idle does not end the call"
    );
    finish(caller, "1002 calls 1001").await;
    finish(soft, "1011 answers").await;
    eventually(10, "Alice cleared", || w.app_session(ALICE).is_none()).await;
    assert_eq!(w.clear_presence_calls(ALICE), 1, "one clear for one call");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_states_are_readable_in_asterisk_as_device_and_presence_state() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    Pbx::wait_device("Custom:teams-1002", "NOT_INUSE", 10).await;
    let bob = w.id(BOB);
    for (availability, activity, device, presence, message) in [
        ("Busy", "InAMeeting", "INUSE", "dnd", "In a meeting"),
        ("DoNotDisturb", "Presenting", "BUSY", "dnd", "Presenting"),
        ("Away", "Away", "NOT_INUSE", "away", "Away"),
        ("Busy", "InACall", "INUSE", "dnd", "In a call"),
        (
            "Available",
            "Available",
            "NOT_INUSE",
            "available",
            "Available",
        ),
    ] {
        w.graph.set_user_presence(&bob, availability, activity);
        Pbx::wait_device("Custom:teams-1002", device, 10).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let got = Pbx::presence("CustomPresence:1002").await;
            if got == (presence.to_owned(), message.to_owned()) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{activity}: presence is {got:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Alice's state went to her own device state, not Bob's.
    assert_eq!(Pbx::device_state("Custom:teams-1001").await, "NOT_INUSE");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_in_a_call_does_not_come_back_to_asterisk() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    Pbx::wait_device("Custom:teams-1002", "NOT_INUSE", 10).await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 100);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 4000, &[]);
    eventually(10, "Bob in a call", || in_a_call(&w, BOB)).await;
    // Teams now reports our own Busy/InACall at every poll (each second): it must not be
    // written to Bob's Teams device state, which still says what Teams said before.
    let polls = w.graph_requests("getPresencesByUserId").len();
    eventually(10, "two more polls", || {
        w.graph_requests("getPresencesByUserId").len() >= polls + 2
    })
    .await;
    assert_eq!(Pbx::device_state("Custom:teams-1002").await, "NOT_INUSE");
    assert_eq!(w.user_status(BOB)["pushed_state"], "available");
    finish(caller, "call").await;
    finish(callee, "answer").await;
    eventually(10, "cleared", || w.app_session(BOB).is_none()).await;
    assert_eq!(Pbx::device_state("Custom:teams-1002").await, "NOT_INUSE");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_on_busy_refuses_calls_while_the_callee_is_in_a_teams_meeting() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    w.graph.set_user_presence(&w.id(BOB), "Busy", "InAMeeting");
    Pbx::wait_device("Custom:teams-1002", "INUSE", 10).await;
    // 6XXXX is the recipe of docs/asterisk.md: 486 Busy Here while Teams says busy.
    let refused = PHONES.dial("uac_busy.xml", "1001", "61002", 0, &[]);
    finish(refused, "61002 refused with 486 while Bob is in a meeting").await;
    assert_eq!(w.set_presence_calls(BOB), 0, "Bob's phone never rang");

    w.graph
        .set_user_presence(&w.id(BOB), "Available", "Available");
    Pbx::wait_device("Custom:teams-1002", "NOT_INUSE", 10).await;
    let callee = PHONES.answer("1002", 100);
    let caller = PHONES.dial("uac.xml", "1001", "61002", 1000, &[]);
    finish(caller, "61002 put through once Bob is available").await;
    finish(callee, "Bob answers").await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_killed_mid_call_is_followed_by_reconnect_and_the_right_state() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 100);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 30_000, &[]);
    eventually(10, "Alice and Bob in a call", || {
        in_a_call(&w, ALICE) && in_a_call(&w, BOB)
    })
    .await;
    // SIGKILL: Asterisk sends nothing; only the resync after the reconnect can tell that
    // the call is gone (registrations come back from astdb, devices NOT_INUSE).
    Pbx::restart(&["--hard"]).await;
    drop((caller, callee));
    eventually(20, "both cleared after the reconnect", || {
        w.app_session(ALICE).is_none() && w.app_session(BOB).is_none()
    })
    .await;
    connected(&w).await;
    let errors = w.status()["errors"].clone();
    assert!(
        errors
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["component"] == "pbx"),
        "the loss is recorded for status: {errors}"
    );
    // Subscriptions were made again: a new call is seen. Phones re-register (a SIGKILL can
    // lose the last seconds of astdb, registrations included).
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 100);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 1500, &[]);
    eventually(10, "a call after the restart is seen", || {
        in_a_call(&w, BOB)
    })
    .await;
    finish(caller, "call after restart").await;
    finish(callee, "answer after restart").await;
    eventually(10, "and cleared", || w.app_session(BOB).is_none()).await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_states_are_written_again_after_asterisk_lost_them() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    w.graph.set_user_presence(&w.id(BOB), "Busy", "InAMeeting");
    Pbx::wait_device("Custom:teams-1002", "INUSE", 10).await;
    // A restart that wipes astdb (like a reinstall): Custom: and presence states are gone.
    Pbx::restart(&["--clean"]).await;
    Pbx::wait_device("Custom:teams-1002", "INUSE", 20).await;
    assert_eq!(
        Pbx::presence("CustomPresence:1002").await,
        ("dnd".to_owned(), "In a meeting".to_owned())
    );
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_come_from_voicemail_boxes_too() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    let dave = w.graph.add_user(common::user(
        "Dave",
        "dave@contoso.com",
        Some("dave@contoso.com"),
        &[],
    ));
    w.graph.set_user_presence(&dave, "Busy", "InAMeeting");
    let ami = format!(
        "ami_address = \"{}\"\nami_password_file = \"{}\"\nusers_from_voicemail = true\n",
        sandbox::AMI_ADDR,
        sandbox::credential("ami_password").display()
    );
    w.pbx_section = Some(format!("{}{DEVICES}", Pbx::pbx_section(&ami)));
    w.write_config("");
    w.start().await;
    connected(&w).await;
    // 1004 is only in voicemail.conf (dave@contoso.com); the users file has 1001-1003.
    eventually(10, "Dave matched from his voicemail box", || {
        let d = w.user_status("1004");
        d["email"] == "dave@contoso.com" && d["match"] == "matched"
    })
    .await;
    Pbx::wait_device("Custom:teams-1004", "INUSE", 10).await;
    w.stop().await.unwrap();
}

/// `pbx-teams-presence check` (the real binary): success, and what it printed.
async fn run_check(w: &World) -> (bool, String) {
    let path = w.config_path();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
            .args(["check", "--config"])
            .arg(path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_ari_ami_and_unknown_devices_by_key() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    let ami = format!(
        "ami_address = \"{}\"\nami_password_file = \"{}\"\nusers_from_voicemail = true\n",
        sandbox::AMI_ADDR,
        sandbox::credential("ami_password").display()
    );
    w.pbx_section = Some(format!(
        "{}{DEVICES}1003 = [\"SIP/1003\"]\n",
        Pbx::pbx_section(&ami)
    ));
    w.write_config("");
    let (ok, out) = run_check(&w).await;
    assert!(!ok, "an unknown device is a problem: {out}");
    assert!(out.contains("ok: ari (http://127.0.0.1:8088/ari)"), "{out}");
    assert!(out.contains("ok: ami (4 voicemail boxes)"), "{out}");
    assert!(
        out.contains(
            "problem: user 1003: device SIP/1003: Asterisk does not know this device; fix pbx.devices"
        ),
        "{out}"
    );
    assert!(
        !out.contains("device PJSIP/1002"),
        "known devices pass: {out}"
    );

    // A wrong ARI password: named by its key, never shown.
    let wrong = w.dir.path().join("wrong-ari-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    w.pbx_section = Some(format!(
        "[pbx]\nkind = \"asterisk\"\nari_password_file = \"{}\"\n",
        wrong.display()
    ));
    w.write_config("");
    let (ok, out) = run_check(&w).await;
    assert!(!ok);
    assert!(
        out.contains("problem: ari: ARI refused the credentials (HTTP 401): check pbx.ari_username and pbx.ari_password_file"),
        "{out}"
    );
    assert!(!out.contains("not-the-password"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_added_to_the_users_file_is_followed_without_a_restart() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    let dave = w.graph.add_user(common::user(
        "Dave",
        "dave@contoso.com",
        Some("dave@contoso.com"),
        &[],
    ));
    w.write_users(&["1004,dave@contoso.com"]);
    eventually(10, "Dave matched", || {
        w.user_status("1004")["match"] == "matched"
    })
    .await;
    PHONES.register("1004").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 100);
    let caller = PHONES.dial("uac.xml", "1004", "1002", 2000, &[]);
    let client = w.graph.client_id();
    eventually(10, "Dave's new phone is followed: in a call", || {
        w.graph.app_session(&dave, &client).is_some()
    })
    .await;
    finish(caller, "1004 calls 1002").await;
    finish(callee, "1002 answers").await;
    eventually(10, "Dave cleared", || {
        w.graph.app_session(&dave, &client).is_none()
    })
    .await;
    assert_eq!(w.status()["pbx_link"], "connected");
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_disconnected_while_asterisk_is_down() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    Pbx::stop().await;
    eventually(15, "status shows the connector disconnected", || {
        w.status()["pbx_link"]
            .as_str()
            .is_some_and(|l| l.starts_with("disconnected"))
    })
    .await;
    let text = w.status();
    assert!(text["pbx_link_since"].is_string(), "{text}");
    // The daemon kept running; Asterisk comes back and so does the connector.
    Pbx::restart(&["--clean"]).await;
    connected(&w).await;
    Pbx::wait_device("Custom:teams-1002", "NOT_INUSE", 10).await;
    w.stop().await.unwrap();
}
