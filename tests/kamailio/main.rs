//! The SIP connector against a real Kamailio 5.6 (registrar, proxy, presence server with
//! presence_dialoginfo and pua_dialoginfo): real calls placed by SIPp through it. See
//! `tests/pbx/README.md` ("Kamailio") and `docs/sip.md`.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/phones.rs"]
mod phones;
mod publish;
mod sandbox;
#[path = "../common/sip_watcher.rs"]
mod sip_watcher;
mod transport;

use pbx_teams_presence::config::SipPbxConfig;
use pbx_teams_presence::sync::types::CallState;
use sandbox::{Kam, PHONES, credential, finish};
use sip_watcher::{Watcher, sip_config};

/// The daemon's SIP account on the test Kamailio.
fn kamailio() -> SipPbxConfig {
    sip_config("127.0.0.1", 5080, &credential("sip_password"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_answered_call_is_speaking_then_idle_and_ringing_is_only_ringing() {
    let _kam = Kam::acquire().await;
    let mut w = Watcher::start(kamailio(), &["1001", "1002"]).await;
    assert_eq!(
        w.next("1002", 10).await,
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
        "ringing only"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_held_call_stays_a_call() {
    let _kam = Kam::acquire().await;
    let mut w = Watcher::start(kamailio(), &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle);
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = Kam::sipp(&["-sf", "uas_hold.xml", "-p", "5082", "-d", "200"]);
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

/// Kamailio keeps subscriptions in memory only: restarted mid-call, it forgets them and the
/// call. The connector notices (a refresh answered 481), subscribes again, and the first
/// NOTIFY says idle: the call's end is not lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_restarted_mid_call_forgets_subscriptions_and_they_come_back() {
    let _kam = Kam::acquire().await;
    let mut w = Watcher::start(kamailio(), &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle);
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 200);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 30_000, &[]);
    w.states_until("1002", CallState::Speaking, 10).await;
    Kam::restart().await;
    drop((caller, callee));
    assert_eq!(
        w.states_until("1002", CallState::Idle, 60).await.last(),
        Some(&CallState::Idle)
    );
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
