//! Starting and stopping the PBX connector selected by `pbx.kind`.

use std::time::Duration;

use tokio::sync::mpsc;
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
    cancel: CancellationToken,
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
        let cancel = CancellationToken::new();
        let listener = http::bind(cfg.listen).await?;
        let listen = listener.local_addr().unwrap_or(cfg.listen);
        let token = cfg.token.expose().to_owned();
        let (known, events, stop) = (links.known.clone(), links.events.clone(), cancel.clone());
        tracker.spawn(async move {
            if let Err(e) = http::serve(listener, &token, known, events, stop).await {
                tracing::error!(error = %e, "PBX event listener stopped");
            }
        });
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
        tracing::info!(kind = "http", %listen, push = pusher.is_some(), "PBX connector started");
        Ok(Connector { cancel, pusher })
    }

    /// Stop taking PBX events and pushing.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}
