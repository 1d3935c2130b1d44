//! The SIP connector's adapter on its own against the real Asterisk: dialog subscriptions
//! (BLF) to the `blf` context's hints as the endpoint `teams-presence`, real calls placed by
//! SIPp, call states read from the connector's channel (no daemon, no Graph). The daemon
//! end to end with Teams is in `sip_daemon.rs`.

use std::sync::Arc;
use std::time::Duration;

use pbx_teams_presence::config::{HostPort, PublishBody, Secret, SipPbxConfig, SipTransport};
use pbx_teams_presence::pbx::LinkState;
use pbx_teams_presence::pbx::sip::{SipLinks, spawn};
use pbx_teams_presence::sync::types::{CallState, PbxEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sandbox::{Pbx, credential, finish};

/// `[pbx]` of kind "sip" against the test Asterisk, as the daemon's SIP account.
pub fn sip_config() -> SipPbxConfig {
    let password = std::fs::read_to_string(credential("sip_password")).unwrap();
    SipPbxConfig {
        registrar: HostPort {
            host: "127.0.0.1".into(),
            port: 5060,
        },
        proxy: None,
        transport: SipTransport::Udp,
        ca_file: None,
        username: "teams-presence".into(),
        password: Some(Secret::new(password.trim().to_owned())),
        domain: "127.0.0.1".into(),
        register: true,
        local_address: Some("127.0.0.1:0".parse().unwrap()),
        subscribe_expires: Duration::from_secs(600),
        subscribe_rate: 50,
        watch_uri: "sip:{extension}@{domain}".into(),
        watch: Default::default(),
        presence_server: None,
        publish_entity: "teams-{extension}".into(),
        publish_body: PublishBody::Pidf,
    }
}

/// The adapter running, and what it reports.
struct Watcher {
    events: mpsc::Receiver<Vec<PbxEvent>>,
    status: mpsc::Receiver<LinkState>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    _users: watch::Sender<Arc<Vec<String>>>,
}

impl Watcher {
    async fn start(users: &[&str]) -> Watcher {
        let (users_tx, users_rx) = watch::channel(Arc::new(
            users.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
        ));
        let (events_tx, events) = mpsc::channel(64);
        let (status_tx, status) = mpsc::channel(64);
        let (delivered, _) = mpsc::channel(8);
        let links = SipLinks {
            users: users_rx,
            events: events_tx,
            status: status_tx,
            delivered,
            metrics: Default::default(),
        };
        let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
        spawn(&sip_config(), links, &cancel, &tracker)
            .await
            .unwrap();
        Watcher {
            events,
            status,
            cancel,
            tracker,
            _users: users_tx,
        }
    }

    /// The next call state reported for `extension` (others are skipped), within `secs`.
    async fn next(&mut self, extension: &str, secs: u64) -> CallState {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let batch = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no call state for {extension} within {secs} s"))
                .expect("the connector stopped");
            if let Some(e) = batch.iter().rev().find(|e| e.extension == extension) {
                return e.state;
            }
        }
    }

    /// Every state reported for `extension` until it reports `until`.
    async fn states_until(
        &mut self,
        extension: &str,
        until: CallState,
        secs: u64,
    ) -> Vec<CallState> {
        let mut seen = Vec::new();
        loop {
            let s = self.next(extension, secs).await;
            seen.push(s);
            if s == until {
                return seen;
            }
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("the SIP connector stopped within 10 s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_answered_call_is_speaking_then_idle_and_ringing_is_only_ringing() {
    let _pbx = Pbx::acquire().await;
    let mut w = Watcher::start(&["1001", "1002"]).await;
    assert_eq!(
        w.next("1001", 10).await,
        CallState::Idle,
        "first NOTIFY: idle"
    );
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::answer("1002", 500);
    let caller = Pbx::dial("uac.xml", "1001", "1002", 2000, &[]);
    let states = w.states_until("1002", CallState::Speaking, 10).await;
    assert!(states.contains(&CallState::Speaking));
    finish(caller, "1001 calls 1002").await;
    finish(callee, "1002 answers").await;
    assert_eq!(
        w.states_until("1002", CallState::Idle, 10).await.last(),
        Some(&CallState::Idle)
    );

    let callee = Pbx::ring_only("1002");
    let caller = Pbx::dial("uac_cancel.xml", "1001", "1002", 2000, &[]);
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
    let mut w = Watcher::start(&["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle);
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::answer("1002", 200);
    let caller = Pbx::dial(
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
    let mut w = Watcher::start(&["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle);
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::answer("1002", 200);
    let caller = Pbx::dial("uac.xml", "1001", "1002", 30_000, &[]);
    w.states_until("1002", CallState::Speaking, 10).await;
    Pbx::restart(&["--hard"]).await;
    drop((caller, callee));
    // The call died with Asterisk: idle within the keep-alive's 35 s plus a new subscription.
    assert_eq!(
        w.states_until("1002", CallState::Idle, 60).await.last(),
        Some(&CallState::Idle)
    );
    // And the new subscription follows calls again.
    Pbx::register("1001").await;
    Pbx::register("1002").await;
    let callee = Pbx::answer("1002", 200);
    let caller = Pbx::dial("uac.xml", "1001", "1002", 1000, &[]);
    w.states_until("1002", CallState::Speaking, 15).await;
    finish(caller, "call after the restart").await;
    finish(callee, "callee after the restart").await;
    w.states_until("1002", CallState::Idle, 10).await;
    while let Ok(s) = w.status.try_recv() {
        let _ = s;
    }
    w.stop().await;
}
