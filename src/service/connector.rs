//! The PBX connector selected by `pbx.kind`, run by one owned task: it starts the connector,
//! applies a reloaded `[pbx]` section (binding, connecting: waits that must not hold up the
//! main loop), and stops it on its token. Every task of the connector runs on child tokens of
//! the one the daemon gave it. One connector runs the parts `[pbx]` lists: the HTTP listener
//! and pusher, the Asterisk writer (and its listener unless SIP gives call state).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::Bound;
use crate::config::{HttpPbxConfig, PbxConfig, SipPbxConfig};
use crate::metrics::Metrics;
use crate::pbx::asterisk::{self, AriError, AsteriskLinks, Role};
use crate::pbx::http::{self, HttpPbxError, KnownExtensions};
use crate::pbx::push::{self, PushClientError, PushSettings, Pusher};
use crate::pbx::sip::{self, SipLinks};
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
    /// The SIP socket cannot be bound, or the SIP server's name does not resolve.
    #[error("cannot start the SIP connector: {0}")]
    Sip(#[from] crate::pbx::sip::StackError),
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
    /// Whether the HTTP connector binds `pbx.listen` itself (under `[ha]` the node does).
    pub serve_http: bool,
    /// Checked by the pushers before each write to the PBX (`[ha]`: only the leader writes).
    pub fence: crate::fence::Fence,
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

/// A running connector: the parts `[pbx]` lists, each on its own tokens. Dropping it does not
/// stop it; call [`Connector::stop`].
struct Connector {
    /// The `[pbx]` section it runs: a reload compares the new one with it.
    config: PbxConfig,
    /// The HTTP listener, with `"http"` in `pbx.kind`.
    http: Option<HttpListener>,
    /// Stops what carries Teams states to the PBX: the HTTP pusher, or the Asterisk writer
    /// (and the Asterisk listener, which runs on it too).
    push: CancellationToken,
    pusher: Option<Pusher>,
}

/// The HTTP listener: kept across reloads that leave `pbx.listen` alone.
struct HttpListener {
    /// Where it is bound (differs from `pbx.listen` when that asks for port 0).
    bound: SocketAddr,
    stop: CancellationToken,
    token: watch::Sender<Arc<str>>,
}

impl Connector {
    /// Start every part `config` lists; on an error the parts already started are stopped.
    async fn start(
        config: &PbxConfig,
        links: &ConnectorLinks,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Connector, ConnectorError> {
        let mut running = Connector {
            config: config.clone(),
            http: None,
            push: cancel.child_token(),
            pusher: None,
        };
        if let Err(e) = running.start_parts(links, cancel, tracker).await {
            running.stop();
            return Err(e);
        }
        // A connector watching users says when its link is up (LinkState); the others keep
        // none: the PBX is reached as long as the pushes go through (push.rs).
        links.metrics.set_pbx_connected(!config.watches_users());
        Ok(running)
    }

    async fn start_parts(
        &mut self,
        links: &ConnectorLinks,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), ConnectorError> {
        if let Some(cfg) = &self.config.http {
            if links.serve_http {
                self.http = Some(start_listener(cfg, links, cancel, tracker).await?);
            }
            self.pusher = start_pusher(cfg, links, &self.push, tracker)?;
            let listen = self
                .bound()
                .map_or("the node's listener".to_owned(), |b| b.to_string());
            tracing::info!(kind = "http", listen = %listen, push = self.pusher.is_some(),
                "PBX connector started: HTTP events on {listen}, pushes to the PBX {}", on_off(self.pusher.is_some()));
        }
        if let Some(cfg) = &self.config.asterisk {
            let asterisk_links = AsteriskLinks {
                users: links.users.clone(),
                events: links.events.clone(),
                delivered: links.delivered.clone(),
                status: links.status.clone(),
                metrics: links.metrics.clone(),
                fence: links.fence.clone(),
            };
            let role = Role::of(&self.config);
            let pusher = asterisk::spawn(cfg, role, asterisk_links, &self.push, tracker)?;
            self.pusher = Some(pusher);
            let ari = push::redacted(&cfg.ari_url);
            let what = match role {
                Role::ReadAndWrite => "call state and Teams states",
                Role::WriteOnly => "Teams states only",
            };
            tracing::info!(kind = "asterisk", ari = %ari, "PBX connector started: Asterisk ARI at {ari} ({what})");
        }
        if let Some(cfg) = self.config.sip.clone() {
            self.start_sip(&cfg, links, tracker).await?;
        }
        Ok(())
    }

    /// The SIP part: call state from dialog subscriptions, and Teams states PUBLISHed to
    /// `pbx.presence_server` when set (only kind "sip" alone: another kind carries them).
    async fn start_sip(
        &mut self,
        cfg: &SipPbxConfig,
        links: &ConnectorLinks,
        tracker: &TaskTracker,
    ) -> Result<(), ConnectorError> {
        let sip_links = SipLinks {
            fence: links.fence.clone(),
            users: links.users.clone(),
            events: links.events.clone(),
            status: links.status.clone(),
            delivered: links.delivered.clone(),
            metrics: links.metrics.clone(),
        };
        let started = sip::spawn(cfg, sip_links, &self.push, tracker).await?;
        let server = cfg.next_hop();
        let local = &started.local;
        let publish = match &cfg.presence_server {
            Some(p) => format!("; Teams states published to {p}"),
            None => String::new(),
        };
        if self.pusher.is_none() {
            self.pusher = started.pusher;
        }
        tracing::info!(kind = "sip", server = %server, local = %local,
            "PBX connector started: SIP dialog subscriptions at {server} as {} from {local}{publish}", cfg.username);
        Ok(())
    }

    /// Apply a changed `[pbx]` section. When only the `http` keys changed and `pbx.listen`
    /// is the same, the listener is kept (the new token takes effect for the next request,
    /// no connection is refused) and the pusher starts over with the new settings; anything
    /// else restarts the connector.
    async fn update(
        &mut self,
        config: &PbxConfig,
        links: &ConnectorLinks,
        cancel: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), ConnectorError> {
        let only_http = self.config.asterisk.is_none()
            && config.asterisk.is_none()
            && self.config.sip == config.sip;
        if let (Some(cfg), Some(old), Some(listener)) =
            (&config.http, &self.config.http, &self.http)
            && only_http
            && cfg.listen == old.listen
        {
            listener.token.send_replace(Arc::from(cfg.token.expose()));
            self.push.cancel();
            self.push = cancel.child_token();
            self.pusher = start_pusher(cfg, links, &self.push, tracker)?;
            self.config = config.clone();
            // A new pusher starts with a clean slate, as at start (the old one's failures
            // are not the new settings').
            links.metrics.set_pbx_connected(!config.watches_users());
            tracing::info!(
                push = self.pusher.is_some(),
                "PBX connector updated (pushes to the PBX: {})",
                on_off(self.pusher.is_some())
            );
            return Ok(());
        }
        // The SIP socket may be bound to a fixed `pbx.local_address`: the old part lets go of
        // it before the new one binds (a refused new section then starts the old one again).
        if self.config.sip.is_some() && config.sip.is_some() {
            self.stop();
            return match Connector::start(config, links, cancel, tracker).await {
                Ok(fresh) => {
                    *self = fresh;
                    Ok(())
                }
                Err(e) => {
                    *self = Connector::start(&self.config, links, cancel, tracker).await?;
                    Err(e)
                }
            };
        }
        let fresh = Connector::start(config, links, cancel, tracker).await?;
        self.stop();
        *self = fresh;
        Ok(())
    }

    /// Where the HTTP listener is bound; `None` without one.
    fn bound(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.bound)
    }

    /// Stop taking PBX events and pushing.
    fn stop(&self) {
        if let Some(h) = &self.http {
            h.stop.cancel();
        }
        self.push.cancel();
    }
}

/// Bind `pbx.listen` and serve the PBX's POSTs on it.
async fn start_listener(
    cfg: &HttpPbxConfig,
    links: &ConnectorLinks,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<HttpListener, ConnectorError> {
    let stop = cancel.child_token();
    let listener = http::bind(cfg.listen).await?;
    let bound = listener.local_addr().unwrap_or(cfg.listen);
    let (token, token_rx) = watch::channel(Arc::from(cfg.token.expose()));
    let (known, events) = (links.known.clone(), links.events.clone());
    let span = tracing::info_span!("pbx_http", listen = %bound);
    tracker.spawn(http::serve(listener, token_rx, known, events, stop.clone()).instrument(span));
    Ok(HttpListener { bound, stop, token })
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
        fence: links.fence.clone(),
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
