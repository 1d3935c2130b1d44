//! The Asterisk connector end to end: a real Asterisk, real SIP calls placed by SIPp, the
//! daemon's real service wiring, and the Graph emulator. See `tests/pbx/README.md` for the
//! PBX and `docs/asterisk.md` for what is being proven.

#[path = "../common/mod.rs"]
mod common;
mod sandbox;

use common::{ALICE, BOB, CAROL, World, eventually};
use sandbox::{Pbx, finish};

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
        w.db_path().exists() && w.status()["pbx_link"] == "connected"
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
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::answer("1002", 300);
    let caller = Pbx::dial("uac.xml", "1001", "1002", 3000, &[]);
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
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::ring_only("1002");
    let caller = Pbx::dial("uac_cancel.xml", "1001", "1002", 2000, &[]);
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
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::answer("1002", 200);
    // Talk 1 s, hold 3 s (Bob's device is ONHOLD), resume, 1 s more, hang up.
    let caller = Pbx::dial(
        "uac_hold.xml",
        "1001",
        "1002",
        1000,
        &["-key", "talk_ms", "1000", "-key", "hold_ms", "3000"],
    );
    eventually(10, "Bob in a call", || in_a_call(&w, BOB)).await;
    Pbx::wait_device("PJSIP/1002", "ONHOLD", 10).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(2500);
    while tokio::time::Instant::now() < deadline {
        assert!(in_a_call(&w, BOB), "held, and still in a call in Teams");
        assert_eq!(w.clear_presence_calls(BOB), 0);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    finish(caller, "call with hold").await;
    finish(callee, "held callee").await;
    eventually(10, "cleared after the hangup", || w.app_session(BOB).is_none()).await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_two_devices_is_in_a_call_on_either() {
    let _pbx = Pbx::acquire().await;
    let mut w = world("").await;
    for d in ["1001", "1011", "1002"] {
        Pbx::register(d).await;
    }
    // Bob dials Alice: both her phones ring, the softphone answers, the desk phone is
    // cancelled by Asterisk.
    let desk = Pbx::ring_only("1001");
    let soft = Pbx::answer("1011", 500);
    let caller = Pbx::dial("uac.xml", "1002", "1001", 3000, &[]);
    eventually(10, "Alice in a call on her softphone", || in_a_call(&w, ALICE)).await;
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
