//! The only place where the parts meet: builds the adapters from the config, owns every task
//! and channel, runs the main loop, and shuts down in order (PBX input -> clear sessions ->
//! store -> exit).

mod build;
mod connector;
mod daemon;
mod error;
mod group;
mod ha;
mod matching;
mod notify;
mod outbox;
mod poller;
mod reloader;
mod resolver;
mod signals;
mod status;
pub mod systemd;
mod voicemail;
mod writer;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use crate::clock::Clock;
pub use build::delegated_settings;
pub use build::graph_settings_for;
pub use error::ServiceError;
pub use matching::{MatchInfo, all_emails as directory_emails};
pub use signals::cancel_on_signal;
pub use status::{StatusReport, status_report, status_text};

pub use crate::logging::LogReload;

/// How to run the daemon; tests and the demo set the clock and the shutdown token.
#[derive(Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    pub clock: Clock,
    /// Cancelled on SIGTERM (by `main`) or by a test.
    pub shutdown: CancellationToken,
    pub log_reload: Option<LogReload>,
    /// How often change-notification subscriptions are looked after (30 s; tests shorten it).
    pub notify_tick: std::time::Duration,
    /// Where the listeners are bound: set once at start, when every listener is (and `pbx`
    /// again after a reload moves it). Port 0 in the config picks a free port; tests read the
    /// address back here instead of guessing one.
    pub bound: watch::Sender<Bound>,
    /// The leader's right to act outward: open on a single node; under `[ha]` the node's
    /// lease task opens it for each term.
    pub fence: crate::fence::Fence,
    /// Under `[ha]`: the term this daemon runs for (set by the node, `ha.rs`).
    pub ha: Option<ha::HaTerm>,
    /// Under `[ha]`: the node's metrics registry (its listener serves both roles); `None`:
    /// the daemon makes its own.
    pub metrics: Option<crate::metrics::Metrics>,
}

/// The addresses the daemon's listeners are bound to (`None`: that listener is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bound {
    /// `POST /pbx/events` of the HTTP connector.
    pub pbx: Option<SocketAddr>,
    /// The change-notification webhook.
    pub webhook: Option<SocketAddr>,
    /// `GET /metrics` (`[metrics] listen`).
    pub metrics: Option<SocketAddr>,
}

impl RunOptions {
    pub fn new(config_path: &Path) -> RunOptions {
        RunOptions {
            config_path: config_path.to_owned(),
            clock: Clock::default(),
            shutdown: CancellationToken::new(),
            log_reload: None,
            notify_tick: std::time::Duration::from_secs(30),
            bound: watch::Sender::new(Bound::default()),
            fence: crate::fence::Fence::open(),
            ha: None,
            metrics: None,
        }
    }
}

/// Run the daemon until `options.shutdown` is cancelled; returns after the ordered shutdown.
pub async fn run(options: RunOptions) -> Result<(), ServiceError> {
    let path = options.config_path.clone();
    let config = tokio::task::spawn_blocking(move || crate::config::Config::load(&path))
        .await
        .map_err(ServiceError::join("loading the config"))??;
    let (Some(ha), crate::config::StoreConfig::Postgres(pg)) = (&config.ha, &config.store) else {
        return daemon::Daemon::start(options).await?.run().await;
    };
    let target =
        crate::ha::sql::PgTarget::from_store(pg).map_err(|e| ServiceError::Tls(e.to_string()))?;
    // The schema first (the lease lives in it): the node fails at once if the database
    // cannot be reached or is newer than this build.
    let prepared = pg.clone();
    tokio::task::spawn_blocking(move || crate::store::prepare(&prepared))
        .await
        .map_err(ServiceError::join("preparing the state database"))??;
    ha::run(options, &config, ha, target).await
}
