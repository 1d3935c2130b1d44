//! The SIP connector's adapter on its own against the real Asterisk: dialog subscriptions
//! (BLF) to the `blf` context's hints as the endpoint `teams-presence`, real calls placed by
//! SIPp, call states read from the connector's channel (no daemon, no Graph). The daemon
//! end to end with Teams is in `sip_daemon.rs`.

use pbx_teams_presence::sync::types::CallState;

use crate::sandbox::{PHONES, Pbx, credential, finish};
use crate::sip_watcher::{Watcher, sip_config};

/// The daemon's SIP account on the test Asterisk.
fn asterisk() -> pbx_teams_presence::config::SipPbxConfig {
    sip_config("127.0.0.1", 5060, &credential("sip_password"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_answered_call_is_speaking_then_idle_and_ringing_is_only_ringing() {
    let _pbx = Pbx::acquire().await;
    let mut w = Watcher::start(asterisk(), &["1001", "1002"]).await;
    assert_eq!(
        w.next("1001", 10).await,
        CallState::Idle,
        "first NOTIFY: idle"
    );
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 500);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 2000, &[]);
    let states = w.states_until("1002", CallState::Speaking, 10).await;
    assert!(states.contains(&CallState::Speaking));
    finish(caller, "1001 calls 1002").await;
    finish(callee, "1002 answers").await;
    assert_eq!(
        w.states_until("1002", CallState::Idle, 10).await.last(),
        Some(&CallState::Idle)
    );

    let callee = PHONES.ring_only("1002");
    let caller = PHONES.dial("uac_cancel.xml", "1001", "1002", 2000, &[]);
    let rang = w.states_until("1002", CallState::Idle, 15).await;
    finish(caller, "1001 gives up").await;
    finish(callee, "1002 rang").await;
    assert_eq!(
        rang,
        vec![CallState::Ringing, CallState::Idle],
        "ringing only, never speaking"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_held_call_stays_a_call() {
    let _pbx = Pbx::acquire().await;
    let mut w = Watcher::start(asterisk(), &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle);
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    let caller = PHONES.dial(
        "uac_hold.xml",
        "1001",
        "1002",
        1000,
        &["-key", "talk_ms", "1000", "-key", "hold_ms", "3000"],
    );
    let states = w.states_until("1002", CallState::Idle, 20).await;
    finish(caller, "call with hold").await;
    finish(callee, "held callee").await;
    let speaking_at = states
        .iter()
        .position(|s| *s == CallState::Speaking)
        .unwrap();
    assert_eq!(
        &states[speaking_at..],
        &[CallState::Speaking, CallState::Idle],
        "from answer to hang-up one call, the hold included: {states:?}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_asterisk_restarted_mid_call_ends_the_call_and_subscriptions_come_back() {
    let _pbx = Pbx::acquire().await;
    let mut w = Watcher::start(asterisk(), &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle);
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 30_000, &[]);
    w.states_until("1002", CallState::Speaking, 10).await;
    Pbx::restart(&["--hard"]).await;
    drop((caller, callee));
    // The call died with Asterisk: idle within the keep-alive's 35 s plus a new subscription.
    assert_eq!(
        w.states_until("1002", CallState::Idle, 60).await.last(),
        Some(&CallState::Idle)
    );
    // And the new subscription follows calls again.
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 1000, &[]);
    w.states_until("1002", CallState::Speaking, 15).await;
    finish(caller, "call after the restart").await;
    finish(callee, "callee after the restart").await;
    w.states_until("1002", CallState::Idle, 10).await;
    w.stop().await;
}
