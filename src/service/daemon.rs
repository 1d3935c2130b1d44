//! The main loop: one task owns the engine and the directory; every other task talks to it
//! through channels.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;

use super::build::{
    cached_matches, direction_name, engine_settings, graph_settings, known_extensions, millis,
    open_store, restore, watch_config,
};
use super::connector::{Connector, ConnectorLinks};
use super::matching::{self, MatchInfo, Matches};
use super::poller::{self, PollInputs, Polled};
use super::writer::{Wanted, Writers, Written};
use super::{RunOptions, systemd};
use crate::backoff::Backoff;
use crate::config::{self, Config, Directory};
use crate::graph::{GraphClient, GraphError, UserMatch};
use crate::pbx::PbxUpdate;
use crate::store::{Store, Write};
use crate::sync::engine::Engine;
use crate::sync::types::Millis;
use crate::sync::types::{Command, PbxEvent, TeamsPresence};

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
    /// Something else failed at start-up.
    #[error("{0}")]
    Start(String),
}

/// Retries of a failed matching round: 5 s doubling up to 5 min, with jitter.
const RESOLVE_RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));

/// How often the main loop looks at the clock (session refreshes, recovery, re-matching).
const TICK: Duration = Duration::from_secs(1);

type Resolved = Result<Vec<(String, UserMatch)>, GraphError>;

pub(super) struct Daemon {
    pub(super) options: RunOptions,
    pub(super) config: Config,
    pub(super) directory: Directory,
    pub(super) matches: Matches,
    pub(super) engine: Engine,
    pub(super) store: Store,
    writers: Writers,
    pub(super) connector: Connector,
    pub(super) links: ConnectorLinks,
    pub(super) tracker: TaskTracker,
    pub(super) graph_tx: watch::Sender<GraphClient>,
    pub(super) ids_tx: watch::Sender<Arc<Vec<String>>>,
    pub(super) interval_tx: watch::Sender<Duration>,
    pub(super) known_tx: watch::Sender<Arc<HashSet<String>>>,
    pub(super) rx: Inputs,
    resolving: JoinSet<Resolved>,
    ready: bool,
    /// True once one matching round went through (READY=1 waits for it).
    matched_once: bool,
    /// When the next matching round is due (`sync.resolve_interval`, sooner after a failure).
    next_resolve_at: Millis,
    resolve_failures: u32,
}

/// Everything the main loop listens to.
pub(super) struct Inputs {
    events: mpsc::Receiver<Vec<PbxEvent>>,
    polled: mpsc::Receiver<Polled>,
    written: mpsc::UnboundedReceiver<Written>,
    delivered: mpsc::UnboundedReceiver<Vec<PbxUpdate>>,
    pub(super) reload: mpsc::Receiver<()>,
    /// Keeps the file watcher alive.
    pub(super) watch: Option<config::FileWatch>,
}

impl Daemon {
    pub(super) async fn start(options: RunOptions) -> Result<Daemon, ServiceError> {
        let path = options.config_path.clone();
        let (config, directory) = tokio::task::spawn_blocking(move || config::load_all(&path))
            .await
            .map_err(|e| ServiceError::Start(format!("loading the config: {e}")))??;
        let store = open_store(&config).await?;
        let snapshot = store.snapshot().await?;
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
        let links = ConnectorLinks {
            known: known_rx,
            events: events_tx,
            delivered: delivered_tx,
        };
        let connector = Connector::start(&config.pbx, &links, &tracker).await?;

        let (ids_tx, ids_rx) = watch::channel(Arc::new(engine.poll_ids()));
        let (interval_tx, interval_rx) = watch::channel(config.sync.poll_interval);
        let (polled_tx, polled) = mpsc::channel(64);
        let inputs = PollInputs {
            graph: graph_rx.clone(),
            ids: ids_rx,
            interval: interval_rx,
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
        let rx = Inputs {
            events,
            polled,
            written,
            delivered,
            reload,
            watch,
        };
        let mut daemon = Daemon {
            options,
            config,
            directory,
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
            rx,
            resolving: JoinSet::new(),
            ready: false,
            matched_once: false,
            next_resolve_at,
            resolve_failures: 0,
        };
        daemon.resolve(matching::all_emails(&daemon.directory));
        daemon.save_directory();
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
                Some(()) = self.rx.reload.recv() => super::reload::apply(&mut self).await,
                Some(joined) = self.resolving.join_next() => match joined {
                    Ok(resolved) => self.on_resolved(resolved),
                    Err(e) => tracing::error!(error = %e, "user matching task failed"),
                },
                _ = tick.tick() => self.on_tick(),
                _ = watchdog.tick() => systemd::watchdog(),
            }
        }
        self.shutdown().await
    }

    /// A batch of PBX events, already validated by the connector.
    fn on_pbx_events(&mut self, batch: Vec<PbxEvent>) {
        let now = self.options.clock.now();
        for event in batch {
            let outcome = self.engine.on_pbx_event(&event, now);
            let Some(previous) = outcome.previous else {
                continue;
            };
            if previous != event.state {
                tracing::info!(extension = %event.extension, from = %previous, to = %event.state,
                    "PBX call state changed");
            }
            self.store.write(Write::SetPbx {
                extension: event.extension.clone(),
                state: event.state.as_str().to_owned(),
                dnd: event.dnd,
                at: now,
            });
            self.execute(outcome.commands);
        }
        self.count("pbx_events", 1);
    }

    fn on_polled(&mut self, polled: Polled) {
        let now = self.options.clock.now();
        match polled {
            Polled::Chunk(presences) => {
                for p in presences {
                    let presence = TeamsPresence::new(&p.availability, &p.activity);
                    let outcome = self.engine.on_teams_presence(&p.id, &presence, now);
                    for (extension, previous) in &outcome.changed {
                        let from = previous
                            .as_ref()
                            .map_or("-".to_owned(), ToString::to_string);
                        tracing::info!(%extension, user = %p.id, %from, to = %presence,
                            own_call = outcome.echo, "Teams presence changed");
                        self.store.write(Write::SetTeams {
                            extension: extension.clone(),
                            availability: presence.availability.clone(),
                            activity: presence.activity.clone(),
                            at: now,
                        });
                    }
                    self.execute(outcome.commands);
                }
            }
            Polled::Done {
                users,
                requests,
                elapsed,
            } => {
                tracing::debug!(users, requests, ?elapsed, "poll cycle done");
                self.count("polls", 1);
                let meta = [
                    ("last_poll_at", now.to_string()),
                    ("last_poll_users", users.to_string()),
                    ("last_poll_requests", requests.to_string()),
                    ("last_poll_ms", elapsed.as_millis().to_string()),
                ];
                for (key, value) in meta {
                    self.store.write(Write::SetMeta {
                        key: key.into(),
                        value,
                    });
                }
                if !self.ready && self.matched_once && self.resolving.is_empty() {
                    self.ready = true;
                    tracing::info!(
                        users = self.directory.entries.len(),
                        polled = users,
                        "first sync done, ready"
                    );
                    systemd::ready(&format!("in sync: {users} Teams users polled"));
                }
            }
            Polled::Failed(why) => {
                tracing::warn!(error = %why, "poll cycle failed; retrying at the next interval");
                self.error("poll", None, &why);
                self.count("poll_failures", 1);
            }
        }
    }

    fn on_written(&mut self, w: Written) {
        let (extension, what) = match &w.wanted {
            Wanted::InCall { extension, .. } => (extension, "In a call written to Teams"),
            Wanted::Clear { extension } => (extension, "In a call cleared in Teams"),
        };
        match &w.result {
            Ok(()) => {
                tracing::info!(%extension, user = %w.teams_id, "{what}");
                if matches!(w.wanted, Wanted::Clear { .. }) && !self.engine.has_session(&w.teams_id)
                {
                    self.close_sessions_of(&w.teams_id);
                }
                self.count(
                    if matches!(w.wanted, Wanted::Clear { .. }) {
                        "clear_presence"
                    } else {
                        "set_presence"
                    },
                    1,
                );
            }
            Err(why) => {
                tracing::warn!(%extension, user = %w.teams_id, error = %why, "presence write failed");
                self.error("graph", Some(extension), why);
                self.count("write_errors", 1);
            }
        }
    }

    /// Forget the stored session of every extension that maps to `teams_id`.
    fn close_sessions_of(&self, teams_id: &str) {
        let owners = self.directory.entries.iter().filter(|e| {
            self.matches
                .get(&e.email)
                .and_then(|m| m.teams_id.as_deref())
                == Some(teams_id)
        });
        for e in owners {
            self.store.write(Write::CloseSession {
                extension: e.extension.clone(),
            });
        }
    }

    fn on_delivered(&mut self, batch: Vec<PbxUpdate>) {
        let now = self.options.clock.now();
        for u in &batch {
            self.store.write(Write::SetPushed {
                extension: u.extension.clone(),
                state: u.state.clone(),
                availability: u.availability.clone(),
                activity: u.activity.clone(),
                at: now,
            });
        }
        self.count(
            "pushes_delivered",
            i64::try_from(batch.len()).unwrap_or(i64::MAX),
        );
    }

    fn on_tick(&mut self) {
        let now = self.options.clock.now();
        let commands = self.engine.on_tick(now);
        self.execute(commands);
        if now >= self.next_resolve_at && self.resolving.is_empty() {
            self.next_resolve_at = now + millis(self.config.sync.resolve_interval);
            self.resolve(matching::all_emails(&self.directory));
        }
    }

    /// Carry out the core's commands.
    pub(super) fn execute(&mut self, commands: Vec<Command>) {
        let now = self.options.clock.now();
        for command in commands {
            match command {
                Command::SetInCall {
                    extension,
                    teams_id,
                    expiration,
                } => {
                    // Recorded before the write: after a crash the session is found and cleared.
                    let expires_at = now + millis(expiration);
                    self.store.write(Write::OpenSession {
                        extension: extension.clone(),
                        teams_id: teams_id.clone(),
                        expires_at,
                    });
                    self.writers.want(
                        &teams_id,
                        Wanted::InCall {
                            extension,
                            expiration,
                        },
                    );
                }
                Command::ClearInCall {
                    extension,
                    teams_id,
                } => {
                    self.writers.want(&teams_id, Wanted::Clear { extension });
                }
                Command::PushToPbx {
                    extension,
                    email,
                    presence,
                    state,
                } => {
                    if let Some(pusher) = &self.connector.pusher {
                        tracing::debug!(%extension, %state, "push queued");
                        pusher.push(PbxUpdate {
                            extension,
                            email,
                            availability: presence.availability,
                            activity: presence.activity,
                            state,
                        });
                    }
                }
            }
        }
    }

    pub(super) fn resolve(&mut self, emails: Vec<String>) {
        if emails.is_empty() {
            return;
        }
        let graph = self.graph_tx.borrow().clone();
        self.resolving
            .spawn(async move { graph.resolve_users(&emails).await });
    }

    pub(super) fn on_resolved(&mut self, resolved: Resolved) {
        let now = self.options.clock.now();
        let results = match resolved {
            Ok(results) => results,
            Err(e) => {
                self.resolve_failures = self.resolve_failures.saturating_add(1);
                let wait = RESOLVE_RETRY
                    .delay(self.resolve_failures)
                    .max(Duration::from_secs(1));
                self.next_resolve_at = now + millis(wait);
                tracing::warn!(error = %e, retry_in = ?wait, "matching users to Teams failed; keeping the cached matches");
                self.error("match", None, &e.to_string());
                return;
            }
        };
        self.matched_once = true;
        self.resolve_failures = 0;
        for (email, m) in results {
            let info = MatchInfo::from_graph(&m);
            let before = self.matches.insert(email.clone(), info.clone());
            if before.as_ref() == Some(&info) {
                continue;
            }
            match info.status.as_str() {
                "matched" => {
                    tracing::info!(%email, user = info.teams_id.as_deref().unwrap_or("-"), "matched to a Teams user")
                }
                _ => tracing::warn!(%email, status = %info.status, detail = ?info.detail,
                    "no Teams user for this e-mail; fix the users file or the Entra account"),
            }
        }
        let commands = self
            .engine
            .set_users(matching::user_specs(&self.directory, &self.matches), now);
        self.execute(commands);
        self.ids_tx.send_replace(Arc::new(self.engine.poll_ids()));
        self.save_directory();
    }

    /// Write the directory and its matches to the store (for `status` and restarts).
    pub(super) fn save_directory(&self) {
        let now = self.options.clock.now();
        for e in &self.directory.entries {
            self.store.write(Write::UpsertUser {
                extension: e.extension.clone(),
                email: e.email.clone(),
                direction: direction_name(e.direction).into(),
            });
            if let Some(m) = self.matches.get(&e.email) {
                self.store.write(Write::SetMatch {
                    extension: e.extension.clone(),
                    teams_id: m.teams_id.clone(),
                    status: m.status.clone(),
                    detail: m.detail.clone(),
                    at: now,
                });
            }
        }
    }

    pub(super) fn error(&self, component: &str, user: Option<&str>, message: &str) {
        self.store.write(Write::RecordError {
            component: component.into(),
            user: user.map(Into::into),
            message: message.into(),
            at: self.options.clock.now(),
        });
    }

    fn count(&self, name: &str, delta: i64) {
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
        let deadline = self.config.sync.shutdown_timeout;
        tracing::info!(
            sessions,
            ?deadline,
            "shutting down: clearing In-a-call sessions"
        );
        let writers = std::mem::replace(
            &mut self.writers,
            Writers::new(self.graph_tx.subscribe(), mpsc::unbounded_channel().0),
        );
        let drained = writers.drain(deadline).await;
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
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tracker.wait()).await;
        self.store.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}
