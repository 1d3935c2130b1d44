//! Starting and stopping the PBX connector selected by `pbx.kind`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::daemon::ServiceError;
use crate::config::PbxConfig;
use crate::pbx::PbxUpdate;
use crate::pbx::http::{self, KnownExtensions};
use crate::pbx::push::{self, PushSettings, Pusher};
use crate::sync::types::PbxEvent;

/// A running connector. Dropping it does not stop it; call [`Connector::stop`].
pub struct Connector {
    /// The configured listen address: the listener is kept across reloads that leave it alone.
    listen: SocketAddr,
    listener: CancellationToken,
    token: watch::Sender<Arc<str>>,
    push: CancellationToken,
    /// Where Teams changes go; `None` when the PBX takes no pushes (no `pbx.push_url`).
    pub pusher: Option<Pusher>,
}

/// The channels a connector talks to the main loop through.
pub struct ConnectorLinks {
    pub known: KnownExtensions,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub delivered: mpsc::UnboundedSender<Vec<PbxUpdate>>,
}

impl Connector {
    pub async fn start(
        config: &PbxConfig,
        links: &ConnectorLinks,
        tracker: &TaskTracker,
    ) -> Result<Connector, ServiceError> {
        let PbxConfig::Http(cfg) = config;
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
        let push = CancellationToken::new();
        let pusher = start_pusher(config, links, &push, tracker)?;
        tracing::info!(kind = "http", %listen, push = pusher.is_some(), "PBX connector started");
        Ok(Connector {
            listen: cfg.listen,
            listener: listener_stop,
            token,
            push,
            pusher,
        })
    }

    /// Apply a changed `[pbx]` section. The same listen address keeps the listener (the new
    /// token takes effect for the next request, no connection is refused); the pusher starts
    /// over with the new settings. A new listen address restarts the whole connector.
    pub async fn update(
        &mut self,
        config: &PbxConfig,
        links: &ConnectorLinks,
        tracker: &TaskTracker,
    ) -> Result<(), ServiceError> {
        let PbxConfig::Http(cfg) = config;
        if cfg.listen != self.listen {
            let fresh = Connector::start(config, links, tracker).await?;
            self.stop();
            *self = fresh;
            return Ok(());
        }
        self.token.send_replace(Arc::from(cfg.token.expose()));
        self.push.cancel();
        self.push = CancellationToken::new();
        self.pusher = start_pusher(config, links, &self.push, tracker)?;
        tracing::info!(push = self.pusher.is_some(), "PBX connector updated");
        Ok(())
    }

    /// Stop taking PBX events and pushing.
    pub fn stop(&self) {
        self.listener.cancel();
        self.push.cancel();
    }
}

/// The push half, when `pbx.push_url` is set.
fn start_pusher(
    config: &PbxConfig,
    links: &ConnectorLinks,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<Pusher>, ServiceError> {
    let PbxConfig::Http(cfg) = config;
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
