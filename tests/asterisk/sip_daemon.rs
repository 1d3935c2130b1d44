//! `[pbx] kind = "sip"` end to end: the daemon (its real service wiring, or the real binary)
//! subscribes to the real Asterisk's hints as the SIP account `teams-presence`, SIPp places
//! real calls, and the Graph emulator sees the Teams writes.

use std::process::{Command, Stdio};

use crate::common::{ALICE, BOB, World, eventually};
use crate::in_a_call;
use crate::sandbox::{PHONES, Pbx, credential, finish};

/// `[pbx]` of kind "sip" against the test Asterisk, plus `extra` keys.
pub fn sip_section(extra: &str) -> String {
    format!(
        "[pbx]\nkind = \"sip\"\nregistrar = \"127.0.0.1:5060\"\nusername = \"teams-presence\"\n\
         password_file = \"{}\"\ndomain = \"127.0.0.1\"\nlocal_address = \"127.0.0.1:0\"\n{extra}\n",
        credential("sip_password").display()
    )
}

async fn world(extra: &str) -> World {
    let mut w = World::new().await;
    w.pbx_section = Some(sip_section(extra));
    w.write_config("");
    w.start().await;
    connected(&w).await;
    w
}

async fn connected(w: &World) {
    eventually(15, "the daemon reached the SIP server", || {
        pbx_teams_presence::store::read_snapshot(&w.db_path())
            .is_ok_and(|s| s.meta.get("pbx_link").is_some_and(|v| v == "connected"))
    })
    .await;
}

/// Every user's first NOTIFY was taken: the status shows a PBX state for each.
async fn followed(w: &World, extensions: &[&str]) {
    eventually(15, "the first NOTIFY of every user", || {
        extensions
            .iter()
            .all(|e| w.user_status(e)["pbx_state"] == "idle")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_answered_call_is_in_a_call_until_hangup_and_ringing_sets_nothing() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    followed(&w, &[ALICE, BOB]).await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 300);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 3000, &[]);
    eventually(10, "Alice and Bob in a call", || {
        in_a_call(&w, ALICE) && in_a_call(&w, BOB)
    })
    .await;
    finish(caller, "1001 calls 1002").await;
    finish(callee, "1002 answers").await;
    eventually(10, "both cleared after the hangup", || {
        w.app_session(ALICE).is_none() && w.app_session(BOB).is_none()
    })
    .await;
    assert_eq!(w.clear_presence_calls(BOB), 1, "one clear for one call");

    let sets_before = w.set_presence_calls(BOB);
    let callee = PHONES.ring_only("1002");
    let caller = PHONES.dial("uac_cancel.xml", "1001", "1002", 2000, &[]);
    finish(caller, "1001 gives up").await;
    finish(callee, "1002 rang").await;
    // The caller's own call (dialling counts for the caller) is the fence: cleared after
    // the CANCEL, so Bob's ringing was taken before it.
    eventually(10, "Alice cleared after the cancelled call", || {
        w.app_session(ALICE).is_none() && w.clear_presence_calls(ALICE) >= 2
    })
    .await;
    assert_eq!(
        w.set_presence_calls(BOB),
        sets_before,
        "ringing alone is not a call"
    );
    w.stop().await.unwrap();
}

/// A session left by a daemon killed mid-call is settled by the first NOTIFY after the
/// restart: the call ended meanwhile, so the session is cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_session_left_by_a_crash_is_cleared_by_the_first_notify() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    w.pbx_section = Some(sip_section(""));
    w.write_config("");
    let mut daemon = binary(&w, None);
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 2000, &[]);
    eventually(15, "Bob in a call", || in_a_call(&w, BOB)).await;
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    finish(caller, "the call").await;
    finish(callee, "the callee").await;
    assert!(
        w.app_session(BOB).is_some(),
        "the killed daemon left Bob in a call"
    );
    let mut daemon = binary(&w, None);
    eventually(15, "Bob's session cleared after the restart", || {
        w.app_session(BOB).is_none()
    })
    .await;
    daemon.kill().unwrap();
    let _ = daemon.wait();
}

/// An extension the PBX has no hint for: one WARN naming it and what to set up, and the
/// other users followed all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_extension_without_hint_is_one_warning_naming_it() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    w.pbx_section = Some(sip_section(""));
    w.write_users(&["1999,nobody@contoso.com"]);
    w.write_config("");
    let log = w.dir.path().join("daemon.log");
    let mut daemon = binary(&w, Some(&log));
    eventually(15, "Alice followed and 1999 refused", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("1999: the PBX answered 404") && w.user_status(ALICE)["pbx_state"] == "idle"
    })
    .await;
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 1000, &[]);
    eventually(10, "Bob in a call", || in_a_call(&w, BOB)).await;
    finish(caller, "the call").await;
    finish(callee, "the callee").await;
    daemon.kill().unwrap();
    let _ = daemon.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("1999: the PBX"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:?}");
    assert!(warnings[0].contains("hint"), "{}", warnings[0]);
}

/// The real binary on the world's config; its log to `log` if given.
pub fn binary(w: &World, log: Option<&std::path::Path>) -> std::process::Child {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
        None => Stdio::null(),
    };
    Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
        .args(["run", "--config"])
        .arg(w.config_path())
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}
