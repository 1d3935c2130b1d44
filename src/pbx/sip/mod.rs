//! The SIP connector (`[pbx] kind = "sip"`, docs/sip.md): call state from RFC 4235 dialog
//! subscriptions ("busy lamp field"), for any SIP PBX, with nothing installed on the PBX.
//!
//! - [`dialog_info`]: `application/dialog-info+xml` NOTIFY bodies -> [`dialog_info::DialogInfo`].
//! - [`watch`]: the pure subscription core: when to SUBSCRIBE, refresh and subscribe again
//!   (rate-limited, with backoff), how NOTIFYs change each user's dialogs, and which call
//!   state that gives ([`watch::Command::CallState`]).
//! - The adapter around it: [`stack`] (rsipstack: transactions, dialogs, digest auth),
//!   `requests` (the SUBSCRIBEs the core asks for), `incoming` (NOTIFYs, OPTIONS),
//!   `keepalive` (REGISTER, OPTIONS, restarts noticed), `connector` (the task that owns the
//!   core and routes between them), `publish` (Teams states PUBLISHed to a presence server,
//!   bodies from [`publish_body`]).

mod connector;
pub mod dialog_info;
mod dialog_read;
mod incoming;
mod keepalive;
pub mod notify;
mod publish;
pub mod publish_body;
mod requests;
pub mod stack;
mod stream;
pub mod watch;
mod watch_state;
mod watch_types;

use std::sync::Arc;

use tokio::sync::{mpsc, watch as channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::SipPbxConfig;
use crate::listener::refusals::Refusals;
use crate::metrics::Metrics;
use crate::pbx::mailbox::Pusher;
use crate::pbx::{LinkState, PbxUpdate};
use crate::sync::types::PbxEvent;

pub use stack::StackError;

/// What the connector needs from the daemon.
pub struct SipLinks {
    /// The extensions of the users file, sorted.
    pub users: channel::Receiver<Arc<Vec<String>>>,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub status: mpsc::Sender<LinkState>,
    /// Teams states the presence server took (`pbx.presence_server`).
    pub delivered: mpsc::Sender<Vec<PbxUpdate>>,
    pub metrics: Metrics,
    /// Checked before each PUBLISH (`[ha]`: only the leader publishes).
    pub fence: crate::fence::Fence,
}

/// A started SIP connector.
pub struct Started {
    /// Where the SIP socket is bound.
    pub local: String,
    /// Takes Teams states for the presence server; `None` without `pbx.presence_server`.
    pub pusher: Option<Pusher>,
}

/// Bind the SIP socket and start the connector's tasks; they stop when `cancel` fires.
/// The SIP stack itself (socket, transactions, incoming requests) outlives them until the
/// subscriptions and publications are ended: it stops once the connector and the publisher
/// are done.
pub async fn spawn(
    config: &SipPbxConfig,
    links: SipLinks,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Started, StackError> {
    let stack_stop = CancellationToken::new();
    let stack = stack::Stack::start(config, &stack_stop).await?;
    let presence_server = match publish::server(config).await {
        Ok(server) => server,
        Err(e) => {
            stack_stop.cancel();
            return Err(e);
        }
    };
    let local = stack.local_addr();
    let span = tracing::info_span!("sip", server = %config.next_hop(), local = %local);
    let requests = stack.endpoint.incoming_transactions()?;
    let (notifies_tx, notifies) = stack.dialogs.new_dialog_state_channel();
    let (news_tx, news) = mpsc::channel(4);
    let pending = incoming::Pending::default();
    let endpoint = stack.endpoint.clone();
    tracker.spawn(async move { endpoint.serve().await }.instrument(span.clone()));
    let incoming = incoming::Incoming {
        stack: stack.clone(),
        pending: pending.clone(),
        notifies: notifies_tx.clone(),
        refusals: Refusals::new("sip"),
        cancel: stack_stop.clone(),
        tracker: tracker.clone(),
    };
    tracker.spawn(incoming.run(requests).instrument(span.clone()));
    let keepalive = keepalive::KeepAlive {
        stack: stack.clone(),
        domain: config.next_hop().to_string(),
        register: config.register,
        news: news_tx,
        status: links.status.clone(),
        cancel: cancel.clone(),
    };
    tracker.spawn(keepalive.run().instrument(span.clone()));
    let settings = watch::Settings {
        expires: config.subscribe_expires,
        rate: config.subscribe_rate,
        burst: config.subscribe_rate,
        seed: rand::random(),
        ..watch::Settings::default()
    };
    let connector = connector::Connector {
        config: Arc::new(config.clone()),
        stack,
        watch: watch::Watch::new(settings, 0),
        started: crate::clock::monotonic(),
        pending,
        notifies_tx,
        notifies,
        users: links.users,
        events: links.events,
        news,
        refusals: Refusals::new("sip"),
        metrics: links.metrics.clone(),
        status: links.status,
        cancel: cancel.clone(),
        tracker: tracker.clone(),
    };
    let publishing = presence_server.map(|server| {
        let (pusher, queue) = crate::pbx::mailbox::mailbox();
        let publisher = publish::Publisher {
            stack: connector.stack.clone(),
            server,
            config: connector.config.clone(),
            queue,
            delivered: links.delivered,
            metrics: links.metrics,
            fence: links.fence,
            cancel: cancel.clone(),
        };
        let done = tracker.spawn(publisher.run().instrument(span.clone()));
        (pusher, done)
    });
    let connector_done = tracker.spawn(connector.run().instrument(span));
    let (pusher, publisher_done) = publishing.unzip();
    tracker.spawn(async move {
        let _ = connector_done.await;
        if let Some(done) = publisher_done {
            let _ = done.await;
        }
        stack_stop.cancel();
    });
    Ok(Started { local, pusher })
}
