//! Starting and stopping the PBX connector selected by `pbx.kind`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::daemon::ServiceError;
use crate::config::{HttpPbxConfig, PbxConfig};
use crate::pbx::asterisk::{self, AsteriskLinks};
use crate::pbx::http::{self, KnownExtensions};
use crate::pbx::push::{self, PushSettings, Pusher};
use crate::pbx::{LinkState, PbxUpdate};
use crate::sync::types::PbxEvent;

/// A running connector. Dropping it does not stop it; call [`Connector::stop`].
pub struct Connector {
    kind: Kind,
    push: CancellationToken,
    /// Where Teams changes go; `None` when the PBX takes no pushes (no `pbx.push_url`).
    pub pusher: Option<Pusher>,
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

/// The channels a connector talks to the main loop through.
pub struct ConnectorLinks {
    pub known: KnownExtensions,
    /// The extensions of the users file, sorted (connectors that watch devices per user).
    pub users: watch::Receiver<Arc<Vec<String>>>,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub delivered: mpsc::UnboundedSender<Vec<PbxUpdate>>,
    pub status: mpsc::UnboundedSender<LinkState>,
}

impl Connector {
    pub async fn start(
        config: &PbxConfig,
        links: &ConnectorLinks,
        tracker: &TaskTracker,
    ) -> Result<Connector, ServiceError> {
        let push = CancellationToken::new();
        match config {
            PbxConfig::Http(cfg) => start_http(cfg, links, push, tracker).await,
            PbxConfig::Asterisk(cfg) => {
                let asterisk_links = AsteriskLinks {
                    users: links.users.clone(),
                    events: links.events.clone(),
                    delivered: links.delivered.clone(),
                    status: links.status.clone(),
                };
                let pusher = asterisk::spawn(cfg, asterisk_links, &push, tracker).map_err(|e| {
                    ServiceError::Start(format!("cannot start the Asterisk connector: {e}"))
                })?;
                tracing::info!(kind = "asterisk", ari = %crate::pbx::push::redacted(&cfg.ari_url),
                    "PBX connector started");
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
    pub async fn update(
        &mut self,
        config: &PbxConfig,
        links: &ConnectorLinks,
        tracker: &TaskTracker,
    ) -> Result<(), ServiceError> {
        if let (PbxConfig::Http(cfg), Kind::Http { listen, token, .. }) = (config, &self.kind)
            && cfg.listen == *listen
        {
            token.send_replace(Arc::from(cfg.token.expose()));
            self.push.cancel();
            self.push = CancellationToken::new();
            self.pusher = start_pusher(cfg, links, &self.push, tracker)?;
            tracing::info!(push = self.pusher.is_some(), "PBX connector updated");
            return Ok(());
        }
        let fresh = Connector::start(config, links, tracker).await?;
        self.stop();
        *self = fresh;
        Ok(())
    }

    /// Where the HTTP listener is bound; `None` for connectors without one.
    pub fn bound(&self) -> Option<SocketAddr> {
        match &self.kind {
            Kind::Http { bound, .. } => Some(*bound),
            Kind::Asterisk => None,
        }
    }

    /// Stop taking PBX events and pushing.
    pub fn stop(&self) {
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
    tracker: &TaskTracker,
) -> Result<Connector, ServiceError> {
    let listener_stop = CancellationToken::new();
    let listener = http::bind(cfg.listen).await?;
    let listen = listener.local_addr().unwrap_or(cfg.listen);
    let (token, token_rx) = watch::channel(Arc::from(cfg.token.expose()));
    let (known, events, stop) = (
        links.known.clone(),
        links.events.clone(),
        listener_stop.clone(),
    );
    tracker.spawn(async move {
        if let Err(e) = http::serve(listener, token_rx, known, events, stop).await {
            tracing::error!(error = %e, "PBX event listener stopped");
        }
    });
    let pusher = start_pusher(cfg, links, &push, tracker)?;
    tracing::info!(kind = "http", %listen, push = pusher.is_some(), "PBX connector started");
    Ok(Connector {
        kind: Kind::Http {
            listen: cfg.listen,
            bound: listen,
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
) -> Result<Option<Pusher>, ServiceError> {
    let pusher = match &cfg.push_url {
        Some(url) => {
            let settings = PushSettings {
                url: url.clone(),
                token: cfg.token.expose().to_owned(),
                timeout: cfg.push_timeout,
                backoff_base: Duration::from_millis(200),
                backoff_cap: Duration::from_secs(30),
            };
            let delivered = links.delivered.clone();
            Some(
                push::spawn(settings, delivered, cancel.clone(), tracker).map_err(|e| {
                    ServiceError::Start(format!("cannot build the PBX push client: {e}"))
                })?,
            )
        }
        None => None,
    };
    Ok(pusher)
}
