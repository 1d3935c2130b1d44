//! The ARI events WebSocket: connect, subscribe the users' devices, read every device state
//! (a full resync: nothing missed while away), then follow `DeviceStateChanged`. On any loss
//! it reports the connector disconnected and reconnects with backoff and jitter; after an
//! Asterisk restart subscriptions are gone, so they are made again on every connect.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt, stream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::ari::{Ari, AriError};
use super::calls::DeviceBook;
use super::events::{Parsed, parse};
use crate::config::AsteriskPbxConfig;
use crate::pbx::tls::Outage;
use crate::pbx::{LinkLost, LinkState};
use crate::sync::types::PbxEvent;

/// Device states read at once during a resync.
const READ_CONCURRENCY: usize = 16;
/// A ping is sent this often; a connection silent for three times as long is dropped.
const PING_EVERY: Duration = Duration::from_secs(20);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Listener {
    pub ari: Ari,
    pub config: Arc<AsteriskPbxConfig>,
    pub users: watch::Receiver<Arc<Vec<String>>>,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub status: mpsc::Sender<LinkState>,
    pub cancel: CancellationToken,
}

enum Ended {
    Cancelled,
    /// Lost after having been connected (`true`) or before.
    Lost(LinkLost, bool),
}

/// The devices of every user, without the ones the daemon writes itself.
fn book_of(config: &AsteriskPbxConfig, users: &[String]) -> DeviceBook {
    DeviceBook::new(users.iter().map(|ext| {
        let devices = config
            .devices_of(ext)
            .into_iter()
            .filter(|d| {
                let own = config.is_own_device(d);
                if own {
                    tracing::error!(extension = %ext, device = %d, "{ext}: device {d} skipped: the daemon writes it (loop)");
                }
                !own
            })
            .collect();
        (ext.clone(), devices)
    }))
    .with_dnd(
        users
            .iter()
            .filter_map(|ext| Some((ext.clone(), config.dnd_device_of(ext)?))),
    )
}

impl Listener {
    pub async fn run(mut self) {
        let backoff = super::RETRY;
        let mut outage = Outage::default();
        let mut book = book_of(&self.config, &self.users.borrow_and_update());
        loop {
            match self.session(&mut book).await {
                Ended::Cancelled => return,
                Ended::Lost(why, was_connected) => {
                    if was_connected {
                        outage.end();
                    }
                    if outage.failed(why.certificate().is_some()) {
                        self.tell(why).await;
                    }
                }
            }
            let delay = backoff.delay(outage.failures());
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Log a loss and show it in `status`: a refused certificate is an ERROR (it will not
    /// go away by itself), anything else a WARN.
    async fn tell(&self, why: LinkLost) {
        let url = self.ari.shown_url();
        match why.certificate() {
            Some(reason) => tracing::error!(url = %url,
                "Asterisk's TLS certificate at {url} refused, {reason}; retrying with backoff (calls are not followed meanwhile)"),
            None => tracing::warn!(url = %url, error = %why,
                "Asterisk connection to {url} lost ({why}); reconnecting with backoff (calls are not followed meanwhile)"),
        }
        let _ = self.status.send(LinkState::Disconnected(why)).await;
    }

    async fn session(&mut self, book: &mut DeviceBook) -> Ended {
        let request = match self.ari.events_request() {
            Ok(r) => r,
            Err(why) => return Ended::Lost(LinkLost::Request(why), false),
        };
        let tls = Some(Connector::Rustls(self.ari.tls()));
        let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls);
        let mut ws = tokio::select! {
            () = self.cancel.cancelled() => return Ended::Cancelled,
            r = timeout(CONNECT_TIMEOUT, connect) => match r {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => return Ended::Lost(e.into(), false),
                Err(_) => return Ended::Lost(LinkLost::ConnectTimeout(CONNECT_TIMEOUT), false),
            },
        };
        let names: Vec<String> = book.device_names().map(str::to_owned).collect();
        if let Err(e) = self.resync(book, &names).await {
            return Ended::Lost(e.into(), false);
        }
        let report = book.full_report();
        let users = report.len();
        if self.events.send(report).await.is_err() {
            return Ended::Cancelled;
        }
        let url = self.ari.shown_url();
        tracing::info!(url = %url, users, devices = names.len(),
            "Asterisk connected at {url}: {} devices of {users} users subscribed and read", names.len());
        let _ = self.status.send(LinkState::Connected).await;

        let mut ping = tokio::time::interval(PING_EVERY);
        let mut heard = crate::clock::monotonic();
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    return Ended::Cancelled;
                }
                frame = ws.next() => {
                    heard = crate::clock::monotonic();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(events) = self.on_text(book, &text)
                                && self.events.send(events).await.is_err() {
                                    return Ended::Cancelled;
                                }
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            return Ended::Lost(LinkLost::Closed, true);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Ended::Lost(e.into(), true),
                    }
                }
                changed = self.users.changed() => {
                    if changed.is_err() {
                        return Ended::Cancelled;
                    }
                    if let Err(e) = self.users_changed(book).await {
                        return Ended::Lost(e.into(), true);
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > PING_EVERY * 3 {
                        return Ended::Lost(LinkLost::Silent(PING_EVERY * 3), true);
                    }
                    if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                        return Ended::Lost(e.into(), true);
                    }
                }
            }
        }
    }

    fn on_text(&self, book: &mut DeviceBook, text: &str) -> Option<Vec<PbxEvent>> {
        match parse(text) {
            Parsed::Device(d) => {
                let events = book.on_device(&d.name, &d.state);
                for e in &events {
                    tracing::debug!(extension = %e.extension, device = %d.name, device_state = %d.state,
                        call_state = e.state.as_str(), "Asterisk device changed");
                }
                (!events.is_empty()).then_some(events)
            }
            Parsed::Other(kind) => {
                tracing::debug!(kind, "ARI event ignored");
                None
            }
            Parsed::Invalid(why) => {
                tracing::warn!(error = %why, "unreadable ARI message ignored: {why}");
                None
            }
        }
    }

    /// Subscribe `names`, then read their states. Subscribing first means any change after
    /// the read also arrives as an event, and events are applied after the reads.
    async fn resync(&self, book: &mut DeviceBook, names: &[String]) -> Result<(), AriError> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.ari.subscribe(&refs).await?;
        let mut reads = stream::iter(names.to_vec())
            .map(|name| {
                let ari = self.ari.clone();
                async move {
                    let state = ari.device_state(&name).await;
                    (name, state)
                }
            })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some((name, state)) = reads.next().await {
            match state {
                Ok(state) => book.set_state(&name, &state),
                Err(e @ (AriError::Unreachable(_) | AriError::Unauthorized)) => return Err(e),
                Err(e) => {
                    tracing::warn!(device = %name, error = %e, "device state of {name} not readable ({e}); counted as idle");
                }
            }
        }
        Ok(())
    }

    async fn users_changed(&mut self, book: &mut DeviceBook) -> Result<(), AriError> {
        let users = self.users.borrow_and_update().clone();
        let mut fresh = book_of(&self.config, &users);
        let added: Vec<String> = fresh.new_devices(book).map(str::to_owned).collect();
        let old_users: std::collections::HashSet<String> =
            book.users().map(str::to_owned).collect();
        fresh.adopt(std::mem::take(book));
        *book = fresh;
        self.resync(book, &added).await?;
        let new_users: Vec<&str> = users
            .iter()
            .map(String::as_str)
            .filter(|u| !old_users.contains(*u))
            .collect();
        let report = book.report_users(new_users);
        if !report.is_empty() && self.events.send(report).await.is_err() {
            return Ok(());
        }
        tracing::info!(
            users = users.len(),
            new_devices = added.len(),
            "Asterisk devices updated: {} users, {} new devices",
            users.len(),
            added.len()
        );
        Ok(())
    }
}

#[cfg(test)]
#[path = "listener_tests.rs"]
mod tests;
