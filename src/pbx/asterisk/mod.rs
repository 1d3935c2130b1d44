//! The Asterisk connector (also FreePBX): call state from ARI device states, Teams state
//! written back as a custom device state and a presence state, users optionally from
//! voicemail boxes over AMI. Setup and facts: `docs/asterisk.md`, `tests/pbx/README.md`.

pub mod ami;
pub mod ari;
pub mod calls;
pub mod events;
mod listener;
pub mod probe;
#[cfg(test)]
mod role_tests;
mod writer;
pub mod writes;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::AsteriskPbxConfig;
use crate::metrics::Metrics;
use crate::pbx::push::Pusher;
use crate::pbx::{LinkState, PbxUpdate};
use crate::sync::types::PbxEvent;

pub use ari::AriError;

/// Retries of a lost connection or a failed write: 200 ms doubling up to 30 s, with jitter.
const RETRY: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));

/// Timeout of one ARI request or AMI exchange (Asterisk usually runs on the same host).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connector needs from the daemon.
pub struct AsteriskLinks {
    pub users: watch::Receiver<Arc<Vec<String>>>,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub delivered: mpsc::Sender<Vec<PbxUpdate>>,
    pub status: mpsc::Sender<LinkState>,
    /// Pushes counted, changes' way to Asterisk measured.
    pub metrics: Metrics,
    /// Checked before each write to Asterisk (`[ha]`: only the leader writes).
    pub fence: crate::fence::Fence,
}

/// What the connector does on Asterisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read call state (the listener) and write Teams states (the writer).
    ReadAndWrite,
    /// Write Teams states only: call state comes from elsewhere (`"sip"` in `pbx.kind`), so
    /// the two never both report it. Nothing reports the link then: `links.status` and
    /// `links.events` stay unused.
    WriteOnly,
}

impl Role {
    /// The role `[pbx]` gives the Asterisk connector.
    pub fn of(config: &crate::config::PbxConfig) -> Role {
        if config.asterisk_reads_calls() {
            Role::ReadAndWrite
        } else {
            Role::WriteOnly
        }
    }
}

/// Start the writer, and the listener when `role` says so; both stop when `cancel` fires.
/// The returned pusher takes Teams changes for Asterisk.
pub fn spawn(
    config: &AsteriskPbxConfig,
    role: Role,
    links: AsteriskLinks,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Pusher, AriError> {
    let ari = ari::Ari::new(config, REQUEST_TIMEOUT)?;
    if crate::pbx::tls::in_clear_text(&config.ari_url) {
        let url = ari.shown_url();
        tracing::warn!(url = %url,
            "the ARI password goes to {url} in clear text (plain http to another host): whoever reads the traffic can take it; use https:// in pbx.ari_url (Asterisk's http.conf: tlsenable)");
    }
    let config = Arc::new(config.clone());
    let (pusher, queue) = crate::pbx::mailbox::mailbox();
    let span = tracing::info_span!("asterisk", ari = %crate::pbx::push::redacted(&config.ari_url));
    if role == Role::ReadAndWrite {
        let listener = listener::Listener {
            ari: ari.clone(),
            config: config.clone(),
            users: links.users,
            events: links.events,
            status: links.status,
            cancel: cancel.clone(),
        };
        tracker.spawn(listener.run().instrument(span.clone()));
    }
    let writer = writer::Writer {
        ari,
        config,
        queue,
        delivered: links.delivered,
        metrics: links.metrics,
        fence: links.fence,
        cancel: cancel.clone(),
    };
    tracker.spawn(writer.run().instrument(span));
    Ok(pusher)
}

/// The listener alone, as a standby runs it (`[ha]`): it follows the users' devices and
/// writes nothing. `links.delivered`, `links.metrics` and `links.fence` stay unused.
pub fn spawn_listener(
    config: &AsteriskPbxConfig,
    links: AsteriskLinks,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), AriError> {
    let ari = ari::Ari::new(config, REQUEST_TIMEOUT)?;
    let span = tracing::info_span!("asterisk_standby", app = %config.ari_app);
    let listener = listener::Listener {
        ari,
        config: Arc::new(config.clone()),
        users: links.users,
        events: links.events,
        status: links.status,
        cancel: cancel.clone(),
    };
    tracker.spawn(listener.run().instrument(span));
    Ok(())
}
