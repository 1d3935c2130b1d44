//! The PBX connector selected by `pbx.kind`, run by one owned task: it starts the connector,
//! applies a reloaded `[pbx]` section (binding, connecting: waits that must not hold up the
//! main loop), and stops it on its token. Every task of the connector runs on child tokens of
//! the one the daemon gave it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::Bound;
use crate::config::{HttpPbxConfig, PbxConfig};
use crate::metrics::Metrics;
use crate::pbx::asterisk::{self, AriError, AsteriskLinks};
use crate::pbx::http::{self, HttpPbxError, KnownExtensions};
use crate::pbx::push::{self, PushClientError, PushSettings, Pusher};
use crate::pbx::{LinkState, PbxUpdate};
use crate::store::{MetaKey, Store, Write};
use crate::sync::types::PbxEvent;

/// Why a connector cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The HTTP listener cannot be bound.
    #[error(transparent)]
    Listen(#[from] HttpPbxError),
    /// The ARI client cannot be built from `[pbx]`.
    #[error("cannot start the Asterisk connector: {0}")]
    Asterisk(#[from] AriError),
    /// The HTTP client for `pbx.push_url` cannot be built.
    #[error("cannot build the PBX push client: {0}")]
    PushClient(#[source] PushClientError),
}

/// The channels a connector talks to the main loop through.
#[derive(Clone)]
pub struct ConnectorLinks {
    pub known: KnownExtensions,
    /// The extensions of the users file, sorted (connectors that watch devices per user).
    pub users: watch::Receiver<Arc<Vec<String>>>,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub delivered: mpsc::Sender<Vec<PbxUpdate>>,
    pub status: mpsc::Sender<LinkState>,
    pub metrics: Metrics,
}

/// The main loop's side of the connector task.
pub struct PbxHandle {
    /// The `[pbx]` section in force; the task applies the latest one.
    config: watch::Sender<Arc<PbxConfig>>,
    /// Where Teams changes go; `None` when the PBX takes no pushes (no `pbx.push_url`).
    pusher: watch::Receiver<Option<Pusher>>,
    /// Where the first connector's listener is bound (later ones: `RunOptions::bound`).
    first_bound: Option<SocketAddr>,
}

impl PbxHandle {
    /// Start the connector (an error here stops the daemon's start) and the task that keeps
    /// it in line with the config.
    pub async fn start(
        config: &PbxConfig,
        links: ConnectorLinks,
        bound: watch::Sender<Bound>,
        store: Store,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<PbxHandle, ConnectorError> {
        let running = Connector::start(config, &links, &cancel, tracker).await?;
        let (pusher_tx, pusher) = watch::channel(running.pusher.clone());
        let (config_tx, config_rx) = watch::channel(Arc::new(config.clone()));
        let task = Supervisor {
            running,
            links,
            config: config_rx,
            pusher: pusher_tx,
            bound,
            store,
            tracker: tracker.clone(),
        };
        let first_bound = task.running.bound();
        tracker.spawn(task.run(cancel).instrument(tracing::info_span!("pbx")));
        Ok(PbxHandle {
            config: config_tx,
            pusher,
            first_bound,
        })
    }

    /// Where the connector started at start-up listens (`None`: no listener).
    pub fn first_bound(&self) -> Option<SocketAddr> {
        self.first_bound
    }

    /// Hand a Teams change to the PBX (never waits).
    pub fn push(&self, update: PbxUpdate) {
        if let Some(pusher) = &*self.pusher.borrow() {
            tracing::debug!(extension = %update.extension, state = %update.state, "push queued");
            pusher.push(update);
        }
    }

    /// Apply a changed `[pbx]` section (in the connector task).
    pub fn update(&self, config: PbxConfig) {
        self.config.send_replace(Arc::new(config));
    }
}

struct Supervisor {
    running: Connector,
    links: ConnectorLinks,
    config: watch::Receiver<Arc<PbxConfig>>,
    pusher: watch::Sender<Option<Pusher>>,
    bound: watch::Sender<Bound>,
    store: Store,
    tracker: TaskTracker,
}

impl Supervisor {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = self.config.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let config = self.config.borrow_and_update().clone();
                    self.apply(&config, &cancel).await;
                }
            }
        }
        self.running.stop();
    }

    /// The new `[pbx]` section; on failure the old connector keeps running and the log says
    /// what to fix.
    async fn apply(&mut self, config: &PbxConfig, cancel: &CancellationToken) {
        match self
            .running
            .update(config, &self.links, cancel, &self.tracker)
            .await
        {
            Ok(()) => {
                self.pusher.send_replace(self.running.pusher.clone());
                let pbx = self.running.bound();
                self.bound.send_modify(|b| b.pbx = pbx);
                self.record_bound().await;
            }
            Err(e) => tracing::error!(error = %e,
                "the new [pbx] settings cannot be used ({e}); the connector keeps the old ones where it can"),
        }
    }

    /// Where the new HTTP listener is bound, for `status` (at start the daemon records the
    /// first one with the webhook's).
    async fn record_bound(&self) {
        let pbx = self.running.bound();
        let value = pbx.map(|a| a.to_string()).unwrap_or_default();
        self.store
            .write(Write::SetMeta {
                key: MetaKey::PbxListen,
                value,
            })
            .await;
    }
}

/// A running connector. Dropping it does not stop it; call [`Connector::stop`].
struct Connector {
    kind: Kind,
    push: CancellationToken,
    pusher: Option<Pusher>,
}

enum Kind {
    Http {
        /// The configured listen address: the listener is kept across reloads that leave it alone.
        listen: SocketAddr,
        /// Where it is bound (differs from `listen` when that asks for port 0).
        bound: SocketAddr,
        listener: CancellationToken,
        token: watch::Sender<Arc<str>>,
    },
    /// Listener and writer stop with `push`.
    Asterisk,
}

impl Connector {
    async fn start(
        config: &PbxConfig,
        links: &ConnectorLinks,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Connector, ConnectorError> {
        let push = cancel.child_token();
        match config {
            PbxConfig::Http(cfg) => start_http(cfg, links, push, cancel, tracker).await,
            PbxConfig::Asterisk(cfg) => {
                let asterisk_links = AsteriskLinks {
                    users: links.users.clone(),
                    events: links.events.clone(),
                    delivered: links.delivered.clone(),
                    status: links.status.clone(),
                    metrics: links.metrics.clone(),
                };
                let pusher = asterisk::spawn(cfg, asterisk_links, &push, tracker)?;
                // Connecting: the listener's LinkState says when the ARI WebSocket is up.
                links.metrics.set_pbx_connected(false);
                let ari = push::redacted(&cfg.ari_url);
                tracing::info!(kind = "asterisk", ari = %ari, "PBX connector started: Asterisk ARI at {ari}");
                Ok(Connector {
                    kind: Kind::Asterisk,
                    push,
                    pusher: Some(pusher),
                })
            }
        }
    }

    /// Apply a changed `[pbx]` section. For `http` with the same listen address the listener
    /// is kept (the new token takes effect for the next request, no connection is refused)
    /// and the pusher starts over with the new settings; anything else restarts the connector.
    async fn update(
        &mut self,
        config: &PbxConfig,
        links: &ConnectorLinks,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), ConnectorError> {
        if let (PbxConfig::Http(cfg), Kind::Http { listen, token, .. }) = (config, &self.kind)
            && cfg.listen == *listen
        {
            token.send_replace(Arc::from(cfg.token.expose()));
            self.push.cancel();
            self.push = cancel.child_token();
            self.pusher = start_pusher(cfg, links, &self.push, tracker)?;
            // A new pusher starts with a clean slate, as at start (the old one's failures
            // are not the new settings').
            links.metrics.set_pbx_connected(true);
            tracing::info!(
                push = self.pusher.is_some(),
                "PBX connector updated (pushes to the PBX: {})",
                on_off(self.pusher.is_some())
            );
            return Ok(());
        }
        let fresh = Connector::start(config, links, cancel, tracker).await?;
        self.stop();
        *self = fresh;
        Ok(())
    }

    /// Where the HTTP listener is bound; `None` for connectors without one.
    fn bound(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Http { bound, .. } => Some(*bound),
            Kind::Asterisk => None,
        }
    }

    /// Stop taking PBX events and pushing.
    fn stop(&self) {
        if let Kind::Http { listener, .. } = &self.kind {
            listener.cancel();
        }
        self.push.cancel();
    }
}

async fn start_http(
    cfg: &HttpPbxConfig,
    links: &ConnectorLinks,
    push: CancellationToken,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Connector, ConnectorError> {
    let listener_stop = cancel.child_token();
    let listener = http::bind(cfg.listen).await?;
    let bound = listener.local_addr().unwrap_or(cfg.listen);
    let (token, token_rx) = watch::channel(Arc::from(cfg.token.expose()));
    let (known, events, stop) = (
        links.known.clone(),
        links.events.clone(),
        listener_stop.clone(),
    );
    let span = tracing::info_span!("pbx_http", listen = %bound);
    tracker.spawn(http::serve(listener, token_rx, known, events, stop).instrument(span));
    let pusher = start_pusher(cfg, links, &push, tracker)?;
    // No link to keep: the PBX is reached as long as the pushes go through (push.rs).
    links.metrics.set_pbx_connected(true);
    tracing::info!(kind = "http", listen = %bound, push = pusher.is_some(),
        "PBX connector started: HTTP events on {bound}, pushes to the PBX {}", on_off(pusher.is_some()));
    Ok(Connector {
        kind: Kind::Http {
            listen: cfg.listen,
            bound,
            listener: listener_stop,
            token,
        },
        push,
        pusher,
    })
}

/// The push half, when `pbx.push_url` is set.
fn start_pusher(
    cfg: &HttpPbxConfig,
    links: &ConnectorLinks,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<Pusher>, ConnectorError> {
    let Some(url) = &cfg.push_url else {
        return Ok(None);
    };
    let settings = PushSettings {
        url: url.clone(),
        token: cfg.push_token.as_ref().map(|t| t.expose().to_owned()),
        ca_file: cfg.ca_file.clone(),
        timeout: cfg.push_timeout,
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_secs(30),
    };
    let delivered = links.delivered.clone();
    let metrics = links.metrics.clone();
    push::spawn(settings, delivered, metrics, cancel.clone(), tracker)
        .map(Some)
        .map_err(ConnectorError::PushClient)
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}
