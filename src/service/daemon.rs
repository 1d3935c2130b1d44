//! The main loop: one task owns the engine and the directory; every other task talks to it
//! through channels.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use super::build::{
    cached_matches, engine_settings, forget_departed, graph_settings, known_extensions, millis,
    open_store, restore, user_extensions, watch_config,
};
use super::connector::{Connector, ConnectorLinks};
use super::matching::{self, Matches};
use super::notify;
use super::poller::{self, PollInputs, Polled};
use super::voicemail;
use super::writer::{Writers, Written};
use super::{RunOptions, systemd};
use crate::backoff::Backoff;
use crate::config::{self, Config, Directory, PbxConfig};
use crate::graph::{GraphClient, GraphError, UserMatch};
use crate::pbx::asterisk::ami::VoicemailUser;
use crate::pbx::{LinkState, PbxUpdate};
use crate::store::{Store, Write};
use crate::sync::engine::Engine;
use crate::sync::types::Millis;
use crate::sync::types::PbxEvent;

/// Why the daemon could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The config or users file is invalid: fix the named key or line.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The state database cannot be used: check `sync.state_db`.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The Graph client cannot be built.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The PBX connector cannot start: check the `[pbx]` section.
    #[error(transparent)]
    Pbx(#[from] crate::pbx::http::HttpPbxError),
    /// Change notifications cannot start: check the `[notifications]` section.
    #[error(transparent)]
    Notify(#[from] notify::NotifyError),
    /// Something else failed at start-up.
    #[error("{0}")]
    Start(String),
}

/// Retries of a failed matching round: 5 s doubling up to 5 min, with jitter.
pub(super) const RESOLVE_RETRY: Backoff =
    Backoff::new(Duration::from_secs(5), Duration::from_secs(300));

/// How often the main loop looks at the clock (session refreshes, recovery, re-matching).
const TICK: Duration = Duration::from_secs(1);

/// How a lookup round ended; its answers came chunk by chunk on `Inputs::resolved`.
pub(super) type Resolved = Result<(), GraphError>;

pub(super) struct Daemon {
    pub(super) options: RunOptions,
    pub(super) config: Config,
    /// Every user: the users file, plus voicemail boxes when configured.
    pub(super) directory: Directory,
    /// The voicemail boxes last read (kept when a later read fails: nobody is dropped).
    pub(super) voicemail_boxes: Vec<VoicemailUser>,
    pub(super) matches: Matches,
    pub(super) engine: Engine,
    pub(super) store: Store,
    pub(super) writers: Writers,
    pub(super) connector: Connector,
    pub(super) links: ConnectorLinks,
    pub(super) tracker: TaskTracker,
    pub(super) graph_tx: watch::Sender<GraphClient>,
    pub(super) ids_tx: watch::Sender<Arc<Vec<Arc<str>>>>,
    pub(super) interval_tx: watch::Sender<Duration>,
    pub(super) known_tx: watch::Sender<Arc<crate::pbx::http::ExtensionSet>>,
    pub(super) users_tx: watch::Sender<Arc<Vec<String>>>,
    /// Users a healthy change-notification subscription covers.
    pub(super) covered: watch::Receiver<Arc<HashSet<Arc<str>>>>,
    /// Covered users whose change only a poll saw (to the notification manager).
    pub(super) suspects: Option<mpsc::Sender<Arc<str>>>,
    /// Held so the poller's watch stays open (only the notification manager sends on it).
    pub(super) _covered_tx: watch::Sender<Arc<HashSet<Arc<str>>>>,
    pub(super) rx: Inputs,
    pub(super) resolving: JoinSet<Resolved>,
    /// Where lookup rounds send their answers, chunk by chunk.
    pub(super) resolved_tx: mpsc::UnboundedSender<Vec<(String, UserMatch)>>,
    /// E-mails whose match changed in the running lookup round.
    pub(super) match_changes: HashSet<String>,
    pub(super) ready: bool,
    /// True once one matching round went through (READY=1 waits for it).
    pub(super) matched_once: bool,
    /// When the next matching round is due (`sync.resolve_interval`, sooner after a failure).
    pub(super) next_resolve_at: Millis,
    pub(super) resolve_failures: u32,
    /// Poll cycles failed in a row (logged once, when it starts and when it ends).
    pub(super) poll_failures: u32,
}

/// Everything the main loop listens to.
pub(super) struct Inputs {
    events: mpsc::Receiver<Vec<PbxEvent>>,
    polled: mpsc::Receiver<Polled>,
    written: mpsc::UnboundedReceiver<Written>,
    delivered: mpsc::UnboundedReceiver<Vec<PbxUpdate>>,
    link: mpsc::UnboundedReceiver<LinkState>,
    pub(super) reload: mpsc::Receiver<()>,
    pub(super) resolved: mpsc::UnboundedReceiver<Vec<(String, UserMatch)>>,
    /// Keeps the file watcher alive.
    pub(super) watch: Option<config::FileWatch>,
}

impl Daemon {
    pub(super) async fn start(options: RunOptions) -> Result<Daemon, ServiceError> {
        let path = options.config_path.clone();
        let (config, directory) = tokio::task::spawn_blocking(move || config::load_all(&path))
            .await
            .map_err(|e| ServiceError::Start(format!("loading the config: {e}")))??;
        let voicemail_boxes = match voicemail::fetch(&config).await {
            Some(Ok(boxes)) => {
                tracing::info!(
                    boxes = boxes.len(),
                    "users read from Asterisk's voicemail boxes"
                );
                boxes
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "users from voicemail boxes not read (pbx.ami_address); the users file alone is used until the next reload");
                Vec::new()
            }
            None => Vec::new(),
        };
        let directory = voicemail::merge(directory, &voicemail_boxes);
        let store = open_store(&config).await?;
        let snapshot = store.snapshot().await?;
        forget_departed(&store, &snapshot, &directory);
        let graph = GraphClient::new(graph_settings(&config))?;
        let (graph_tx, graph_rx) = watch::channel(graph);
        let now = options.clock.now();

        let mut engine = Engine::new(engine_settings(&config), config.mapping.clone());
        let matches = cached_matches(&snapshot, &directory);
        engine.set_users(matching::user_specs(&directory, &matches), now);
        restore(&mut engine, &snapshot, now);

        let tracker = TaskTracker::new();
        let (events_tx, events) = mpsc::channel(1024);
        let (delivered_tx, delivered) = mpsc::unbounded_channel();
        let (known_tx, known_rx) = watch::channel(known_extensions(&directory));
        let (users_tx, users_rx) = watch::channel(user_extensions(&config, &directory));
        let (link_tx, link) = mpsc::unbounded_channel();
        let links = ConnectorLinks {
            known: known_rx,
            users: users_rx,
            events: events_tx,
            delivered: delivered_tx,
            status: link_tx,
        };
        let connector = Connector::start(&config.pbx, &links, &tracker).await?;
        // What an earlier run said about its PBX link is not true of this one.
        let link_state = match config.pbx {
            PbxConfig::Asterisk(_) => "connecting",
            PbxConfig::Http(_) => "",
        };
        store.write(Write::SetMeta {
            key: "pbx_link".into(),
            value: link_state.into(),
        });

        let (ids_tx, ids_rx) = watch::channel(Arc::new(engine.poll_ids()));
        let (interval_tx, interval_rx) = watch::channel(config.sync.poll_interval);
        let (polled_tx, polled) = mpsc::channel(64);
        let (covered_tx, covered) = watch::channel(Arc::default());
        let mut webhook_bound = None;
        let suspects = match &config.notifications {
            Some(n) => Some({
                let handle = notify::start(
                    n,
                    &config,
                    &store,
                    snapshot.subscriptions.clone(),
                    notify::Channels {
                        clock: options.clock.clone(),
                        tick: options.notify_tick,
                        graph: graph_rx.clone(),
                        ids: ids_rx.clone(),
                        covered: covered_tx.clone(),
                        out: polled_tx.clone(),
                    },
                    options.shutdown.child_token(),
                    &tracker,
                )
                .await?;
                webhook_bound = Some(handle.bound);
                handle.suspects
            }),
            None => None,
        };
        let bound = super::Bound {
            pbx: connector.bound(),
            webhook: webhook_bound,
        };
        for (key, addr) in [("pbx_listen", bound.pbx), ("webhook_listen", bound.webhook)] {
            store.write(Write::SetMeta {
                key: key.into(),
                value: addr.map(|a| a.to_string()).unwrap_or_default(),
            });
        }
        options.bound.send_replace(bound);
        let inputs = PollInputs {
            graph: graph_rx.clone(),
            ids: ids_rx,
            interval: interval_rx,
            covered: covered.clone(),
            clock: options.clock.clone(),
            reconcile: config
                .notifications
                .as_ref()
                .map_or(config.sync.poll_interval, |n| n.reconciliation_interval),
        };
        tracker.spawn(poller::run(
            inputs,
            polled_tx,
            options.shutdown.child_token(),
        ));

        let (written_tx, written) = mpsc::unbounded_channel();
        let writers = Writers::new(graph_rx, written_tx);
        let (watch, reload) = watch_config(&config);
        let next_resolve_at = now + millis(config.sync.resolve_interval);
        let (resolved_tx, resolved) = mpsc::unbounded_channel();
        let rx = Inputs {
            events,
            polled,
            written,
            delivered,
            link,
            reload,
            resolved,
            watch,
        };
        let mut daemon = Daemon {
            options,
            config,
            directory,
            voicemail_boxes,
            matches,
            engine,
            store,
            writers,
            connector,
            links,
            tracker,
            graph_tx,
            ids_tx,
            interval_tx,
            known_tx,
            users_tx,
            covered,
            suspects,
            _covered_tx: covered_tx,
            rx,
            resolving: JoinSet::new(),
            resolved_tx,
            match_changes: HashSet::new(),
            ready: false,
            matched_once: false,
            next_resolve_at,
            resolve_failures: 0,
            poll_failures: 0,
        };
        daemon.resolve(matching::all_emails(&daemon.directory));
        daemon.save_directory_since(&snapshot);
        Ok(daemon)
    }

    pub(super) async fn run(mut self) -> Result<(), ServiceError> {
        let mut tick = tokio::time::interval(TICK);
        let mut watchdog =
            tokio::time::interval(systemd::watchdog_interval().unwrap_or(TICK * 3600));
        let shutdown = self.options.shutdown.clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(batch) = self.rx.events.recv() => self.on_pbx_events(batch),
                Some(polled) = self.rx.polled.recv() => self.on_polled(polled),
                Some(written) = self.rx.written.recv() => self.on_written(written),
                Some(batch) = self.rx.delivered.recv() => self.on_delivered(batch),
                Some(link) = self.rx.link.recv() => self.on_link(link),
                Some(()) = self.rx.reload.recv() => super::reload::apply(&mut self).await,
                Some(chunk) = self.rx.resolved.recv() => self.on_resolved_chunk(chunk),
                Some(joined) = self.resolving.join_next() => match joined {
                    Ok(resolved) => self.on_resolved(resolved),
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => tracing::error!(error = %e, "user matching task failed"),
                },
                _ = tick.tick() => self.on_tick(),
                _ = watchdog.tick() => systemd::watchdog(),
            }
        }
        self.shutdown().await
    }

    /// A batch of PBX events, already validated by the connector.
    pub(super) fn error(&self, component: &str, user: Option<&str>, message: &str) {
        self.store.write(Write::RecordError {
            component: component.into(),
            user: user.map(Into::into),
            message: message.into(),
            at: self.options.clock.now(),
        });
    }

    pub(super) fn count(&self, name: &str, delta: i64) {
        self.store.write(Write::AddCounter {
            name: name.into(),
            delta,
        });
    }

    /// Ordered stop: no more PBX input, clear every session (bounded), flush the store.
    async fn shutdown(mut self) -> Result<(), ServiceError> {
        systemd::stopping();
        self.connector.stop();
        let commands = self.engine.shutdown(self.options.clock.now());
        let sessions = commands.len();
        self.execute(commands);
        // One budget for the whole stop (sync.shutdown_timeout, at most 10 s): the session
        // clears get all of it but half a second, the other tasks and the store the rest.
        let budget = self.config.sync.shutdown_timeout;
        let until = tokio::time::Instant::now() + budget;
        let for_clears = budget.saturating_sub(Duration::from_millis(500));
        tracing::info!(
            sessions,
            ?budget,
            "shutting down: clearing In-a-call sessions"
        );
        let drained = self.writers.drain(for_clears).await;
        while let Ok(w) = self.rx.written.try_recv() {
            self.on_written(w);
        }
        if !drained {
            tracing::warn!(
                "shutdown deadline reached before every session was cleared; they expire by themselves (sync.in_call_expiration) and are cleared at the next start"
            );
        }
        self.options.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout_at(until, self.tracker.wait()).await;
        self.store.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}
