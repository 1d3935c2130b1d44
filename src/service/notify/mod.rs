//! Change notifications, the adapter around [`crate::subscriptions::Planner`]: the webhook
//! takes Graph's notifications; one task (`manager.rs`) feeds the planner its inputs (ticks,
//! the user list, notifications, suspects, answers), carries out its commands (Graph calls
//! with each account's delegated token, token refreshes, store writes) and feeds the answers
//! back. Notified presences reach the main loop like poll results. Users no healthy
//! subscription covers are polled at full speed; covered ones only at the reconciliation
//! interval.

mod account;
mod incoming;
mod manager;
mod replay;
mod report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::poller::Polled;
use crate::clock::Clock;
use crate::config::{Config, NotificationsConfig};
use crate::graph::delegated::Delegated;
use crate::graph::jwks::{Jwks, JwksSettings, jwks_url};
use crate::graph::notify_crypto::{CryptoError, KeyStore};
use crate::graph::subscriptions::MAX_IDS;
use crate::graph::validation_tokens::Trust;
use crate::graph::webhook::{self, WebhookError};
use crate::graph::{GraphClient, GraphError};
use crate::store::{Store, SubscriptionRow};
use crate::subscriptions::{Planner, Record, Settings};
use manager::{Links, Manager};

// The lifetime the planner asks for stays under what Graph grants presence subscriptions.
const _: () = assert!(
    crate::subscriptions::LIFETIME.as_secs()
        < crate::graph::limits::SUBSCRIPTION_MAX_LIFETIME.as_secs()
);

/// Rotate the notification certificate this long before it expires.
const ROTATE_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Room for covered users a poll found changed; more are dropped (a suspect is only a hint).
const SUSPECTS: usize = 4096;
/// Notification batches the webhook may queue; a full queue answers 503 and Graph retries.
const NOTES: usize = 1024;
/// The identity platform's signing keys are fetched again this often (and at once for a key
/// id they lack).
const KEYS_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// After a failed fetch of the signing keys, the next try comes this much later; unknown key
/// ids fetch at most this often too.
const KEYS_RETRY: Duration = Duration::from_secs(60);

/// Why change notifications could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `notifications.listen` cannot be bound.
    #[error(transparent)]
    Bind(WebhookError),
    /// `notifications.tls_cert_file` / `tls_key_file` cannot be used.
    #[error(transparent)]
    Tls(WebhookError),
    /// The notification keys cannot be read or made (the state directory).
    #[error("notification keys: {0}")]
    Keys(#[from] CryptoError),
    /// The client for the accounts' delegated tokens cannot be built.
    #[error("notifications: {0}")]
    Delegated(#[source] GraphError),
    /// The client for the identity platform's signing keys cannot be built.
    #[error("notifications: signing keys: {0}")]
    Trust(#[source] GraphError),
    /// A start-up step that runs off the runtime (TLS or key files) did not finish.
    #[error("notifications: {what}: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// What the daemon hands over.
pub struct Channels {
    pub clock: Clock,
    /// How often subscriptions are looked after even when nothing falls due (30 s).
    pub tick: Duration,
    pub graph: watch::Receiver<GraphClient>,
    /// Every matched user (the poller's list).
    pub ids: watch::Receiver<Arc<Vec<Arc<str>>>>,
    /// Users a healthy subscription covers (for the poller and `status`).
    pub covered: watch::Sender<Arc<HashSet<Arc<str>>>>,
    /// Presences notifications brought.
    pub out: mpsc::Sender<Polled>,
    /// Where the subscriptions' health is shown.
    pub metrics: crate::metrics::Metrics,
}

/// What the daemon gets back.
pub struct NotifyHandle {
    /// Covered users whose change only a poll saw (`try_send`: dropped when full).
    pub suspects: mpsc::Sender<Arc<str>>,
    /// Where the webhook listens.
    pub bound: std::net::SocketAddr,
}

/// Bind the webhook, start it and the manager; both stop on `cancel`.
pub async fn start(
    n: &NotificationsConfig,
    config: &Config,
    store: &Store,
    recorded: Vec<SubscriptionRow>,
    ch: Channels,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<NotifyHandle, NotifyError> {
    let listener = webhook::bind(n.listen).await.map_err(NotifyError::Bind)?;
    let bound = listener.local_addr().unwrap_or(n.listen);
    let tls = load_tls(n).await?;
    let delegated = Delegated::new(&super::build::delegated_settings(config))
        .map_err(NotifyError::Delegated)?;
    let keys = load_keys(n, config, &ch.clock).await?;
    let trust = trust(n, config, &cancel, tracker)?;
    let (known_tx, known_rx) = watch::channel(Arc::default());
    let (notes_tx, notes) = mpsc::channel(NOTES);
    let (suspects_tx, suspects) = mpsc::channel(SUSPECTS);
    let hooks = (known_rx, notes_tx, trust);
    spawn_webhook(listener, tls, hooks, cancel.clone(), tracker);
    let planner = planner(n, keys.as_deref(), recorded);
    let (clock, tick) = (ch.clock.clone(), ch.tick);
    let links = Links::new(ch, notes, suspects, known_tx);
    let manager = Manager::new(planner, n, config, delegated, store.clone(), links)
        .with_time(clock, tick)
        .with_keys(keys, key_dir(config));
    tracing::info!(listen = %bound, public_url = %n.public_url, accounts = n.accounts.len(),
        "change notifications enabled: webhook on {bound}, public URL {}, {} subscription accounts",
        n.public_url, n.accounts.len());
    tracker.spawn(
        manager
            .run(cancel)
            .instrument(tracing::info_span!("notifications")),
    );
    Ok(NotifyHandle {
        suspects: suspects_tx,
        bound,
    })
}

/// What the webhook checks against and hands its batches to.
type Hooks = (
    webhook::Known,
    mpsc::Sender<Vec<webhook::Notification>>,
    Option<Arc<Trust>>,
);

/// Serve the webhook until `cancel`.
fn spawn_webhook(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    (known, notes, trust): Hooks,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let serve = webhook::serve(listener, tls, known, notes, trust, cancel);
    tracker.spawn(serve.instrument(tracing::info_span!("webhook")));
}

/// Rich notifications: the `validationTokens` check, whose keys (and, for a tenant given by
/// domain name, the tenant's id) are fetched by a task of their own, now and every day.
fn trust(
    n: &NotificationsConfig,
    config: &Config,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<Option<Arc<Trust>>, NotifyError> {
    if !n.include_resource_data {
        return Ok(None);
    }
    let azure = &config.azure;
    let settings = JwksSettings {
        url: jwks_url(&azure.login_url).map_err(NotifyError::Trust)?,
        timeout: Duration::from_secs(2),
        min_refetch: KEYS_RETRY,
    };
    let jwks = Arc::new(Jwks::new(settings).map_err(NotifyError::Trust)?);
    let trust = Arc::new(Trust::new(&azure.client_id, &azure.tenant_id, jwks));
    let task = keep_keys(trust.clone(), azure.login_url.clone(), cancel.clone());
    tracker.spawn(task.instrument(tracing::info_span!("signing_keys")));
    Ok(Some(trust))
}

/// Fetch the signing keys now and every [`KEYS_REFRESH`]; a failure is tried again after
/// [`KEYS_RETRY`]. A fetch under way when `cancel` fires is dropped.
async fn keep_keys(trust: Arc<Trust>, login_url: url::Url, cancel: CancellationToken) {
    let mut wait = Duration::ZERO;
    loop {
        let fetched = tokio::select! {
            () = cancel.cancelled() => return,
            fetched = async {
                tokio::time::sleep(wait).await;
                fetch_keys(&trust, &login_url).await
            } => fetched,
        };
        wait = match fetched {
            Ok(keys) => {
                tracing::debug!(keys, "notification signing keys fetched");
                KEYS_REFRESH
            }
            Err(error) => {
                tracing::warn!(%error, "notification signing keys not fetched ({error}); rich notifications wait (503) until they are; retrying in a minute");
                KEYS_RETRY
            }
        };
    }
}

/// The tenant's id when only its domain is configured, then the key set; how many keys.
async fn fetch_keys(trust: &Trust, login_url: &url::Url) -> Result<usize, String> {
    trust
        .resolve_tenant(login_url)
        .await
        .map_err(|e| e.to_string())?;
    trust.jwks().refresh().await.map_err(|e| e.to_string())
}

/// The planner, with the accounts in their order and what the last run recorded.
fn planner(
    n: &NotificationsConfig,
    keys: Option<&KeyStore>,
    recorded: Vec<SubscriptionRow>,
) -> Planner {
    let settings = Settings {
        accounts: n.accounts.clone(),
        capacity: MAX_IDS,
        rich: keys.is_some(),
        new_certificate: keys.is_some_and(|k| k.rotated),
    };
    Planner::new(settings, recorded.into_iter().map(record).collect())
}

/// The webhook's own TLS settings, when configured (read off the runtime).
async fn load_tls(
    n: &NotificationsConfig,
) -> Result<Option<Arc<rustls::ServerConfig>>, NotifyError> {
    let Some(files) = n.tls.clone() else {
        return Ok(None);
    };
    let loaded = tokio::task::spawn_blocking(move || webhook::tls_config(&files.cert, &files.key))
        .await
        .map_err(|source| NotifyError::Task {
            what: "TLS",
            source,
        })?;
    loaded.map(Some).map_err(NotifyError::Tls)
}

/// Rich notifications: our key pair and certificate, made when missing or near its end.
async fn load_keys(
    n: &NotificationsConfig,
    config: &Config,
    clock: &Clock,
) -> Result<Option<Arc<KeyStore>>, NotifyError> {
    if !n.include_resource_data {
        return Ok(None);
    }
    let dir = key_dir(config);
    let now = clock.wall();
    let loaded =
        tokio::task::spawn_blocking(move || KeyStore::load_or_create(&dir, now, ROTATE_BEFORE))
            .await
            .map_err(|source| NotifyError::Task {
                what: "notification keys",
                source,
            })??;
    let certificate = loaded.current().certificate_id();
    tracing::info!(%certificate, "rich notifications: encryption certificate {certificate} ready");
    Ok(Some(Arc::new(loaded)))
}

/// The notification keys live next to the state database (its directory is private).
fn key_dir(config: &Config) -> PathBuf {
    config
        .sync
        .state_db
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// A recorded subscription, for the planner.
fn record(row: SubscriptionRow) -> Record {
    Record {
        id: row.id,
        account: row.account,
        client_state: row.client_state,
        expires_at: row.expires_at,
        users: usize::try_from(row.users).unwrap_or(0),
        rich: row.rich,
    }
}

/// A subscription the planner keeps, for the store.
fn row(r: Record) -> SubscriptionRow {
    SubscriptionRow {
        id: r.id,
        account: r.account,
        client_state: r.client_state,
        expires_at: r.expires_at,
        users: i64::try_from(r.users).unwrap_or(i64::MAX),
        rich: r.rich,
    }
}
