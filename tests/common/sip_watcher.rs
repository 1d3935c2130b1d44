//! The SIP connector's adapter on its own (no daemon, no Graph), as the SIP tests against
//! the real Asterisk and the real Kamailio drive it: started with a config and a users list,
//! its call states read from its channel.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pbx_teams_presence::config::{HostPort, PublishBody, Secret, SipPbxConfig, SipTransport};
use pbx_teams_presence::pbx::LinkState;
use pbx_teams_presence::pbx::sip::{SipLinks, spawn};
use pbx_teams_presence::sync::types::{CallState, PbxEvent};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// `[pbx]` of kind "sip" as the daemon's SIP account `teams-presence` at `host:port`.
pub fn sip_config(host: &str, port: u16, password_file: &Path) -> SipPbxConfig {
    let password = std::fs::read_to_string(password_file).unwrap();
    SipPbxConfig {
        registrar: HostPort {
            host: host.into(),
            port,
        },
        proxy: None,
        transport: SipTransport::Udp,
        ca_file: None,
        username: "teams-presence".into(),
        auth_username: None,
        password: Some(Secret::new(password.trim().to_owned())),
        domain: host.into(),
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
pub struct Watcher {
    pub events: mpsc::Receiver<Vec<PbxEvent>>,
    _status: mpsc::Receiver<LinkState>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    _users: watch::Sender<Arc<Vec<String>>>,
}

impl Watcher {
    pub async fn start(config: SipPbxConfig, users: &[&str]) -> Watcher {
        // RUST_LOG=pbx_teams_presence::pbx::sip=trace shows every SIP message.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
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
            fence: Default::default(),
        };
        let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
        spawn(&config, links, &cancel, &tracker).await.unwrap();
        Watcher {
            events,
            _status: status,
            cancel,
            tracker,
            _users: users_tx,
        }
    }

    /// The next call state reported for `extension` (others are skipped), within `secs`.
    pub async fn next(&mut self, extension: &str, secs: u64) -> CallState {
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
    pub async fn states_until(
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

    pub async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .expect("the SIP connector stopped within 10 s");
    }
}
