//! Starting the daemon: read the config and the store, build the engine, start every component
//! on the shutdown tree, and wire the channels.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Daemon, Feeds, Health, Inputs, Parts, Stop};
use crate::config::{self, Config, Directory};
use crate::graph::GraphClient;
use crate::metrics::Metrics;
use crate::pbx::asterisk::ami::VoicemailUser;
use crate::pbx::{LinkState, PbxUpdate};
use crate::service::build::{
    cached_matches, engine_settings, forget_departed, graph_settings, known_extensions, open_store,
    restore, user_extensions,
};
use crate::service::connector::{ConnectorLinks, PbxHandle};
use crate::service::error::ServiceError;
use crate::service::group::{self, GroupUsers};
use crate::service::ha::InboxBatch;
use crate::service::matching::{self, Matching};
use crate::service::outbox::Outbox;
use crate::service::poller::Polled;
use crate::service::reloader::{Reloaded, Reloader};
use crate::service::resolver::{Matched, ResolverHandle};
use crate::service::writer::{Writers, Written};
use crate::service::{RunOptions, notify, poller, voicemail};
use crate::store::postgres::StoreFence;
use crate::store::{MetaKey, Snapshot, Store};
use crate::sync::engine::Engine;
use crate::sync::types::{Millis, PbxEvent};

/// Capacity of the channels into the main loop: enough for bursts, small enough that a
/// stalled main loop makes the components wait instead of piling up memory.
const QUEUE: usize = 1024;

impl Daemon {
    pub(in crate::service) async fn start(options: RunOptions) -> Result<Daemon, ServiceError> {
        let path = options.config_path.clone();
        let (config, file_users) = tokio::task::spawn_blocking(move || config::load_all(&path))
            .await
            .map_err(ServiceError::join("loading the config"))??;
        let boxes = first_voicemail_read(&config).await;
        let fence = options.ha.as_ref().map(|t| StoreFence {
            node: t.node.clone(),
            epoch: t.epoch,
        });
        let store = open_store(&config, fence).await?;
        let snapshot = store.snapshot().await?;
        // Under [ha] the node's registry, which its metrics listener serves in both roles.
        let metrics = options.metrics.clone().unwrap_or_default();
        let graph = GraphClient::new(graph_settings(&config, &metrics, &options.fence))?;
        let local = voicemail::merge(file_users, &boxes);
        let (group, read) = first_group_read(&config, &graph, &snapshot, &local).await;
        let (directory, conflicts) = group::merge(local, &group.entries);
        if read {
            group::say(&config, &group, conflicts);
        }
        let directory = Arc::new(directory);
        let mut out = Outbox::new(store.clone());
        out.meta(MetaKey::GroupUnusable, group::shown(&group.unusable));
        forget_departed(&mut out, &snapshot, &directory);
        let now = options.clock.now();
        let take_over = options.ha.is_some();
        let (engine, matching) = core(&config, &directory, &snapshot, now, take_over);
        let stop = Stop {
            trigger: options.shutdown.clone(),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let (tx, rx) = channels();
        let feeds = feeds(&config, graph, &directory, &engine);
        let graph = feeds.graph.subscribe();
        let start = Start {
            options: &options,
            config: &config,
            store: &store,
            stop: &stop,
            metrics: &metrics,
        };
        let reloaded = tx.reloaded.clone();
        let parts = start.parts(feeds, tx, &snapshot, &mut out).await?;
        start.reloader(
            Sources {
                directory: Arc::clone(&directory),
                boxes,
                group,
                graph,
            },
            reloaded,
        );
        let mut daemon = Daemon {
            clock: options.clock,
            config,
            directory,
            engine,
            matching,
            parts,
            out,
            rx,
            health: Health::default(),
            stop,
            metrics,
            fence: options.fence.clone(),
            options_ha: options.ha.clone(),
        };
        daemon.begin(&snapshot).await;
        Ok(daemon)
    }

    /// First steps once everything runs: record the directory, look every user up.
    async fn begin(&mut self, snapshot: &Snapshot) {
        // After the listeners' addresses (same outbox, earlier): a reader that sees this
        // run's start sees this run's addresses.
        self.out
            .meta(MetaKey::StartedAt, self.clock.now().to_string());
        self.inherit_calls(snapshot);
        self.start_lookup();
        self.count_users();
        self.save_directory_since(snapshot);
        self.end_step().await;
    }
}

/// The engine with the users, their cached matches and what the store remembers (last
/// states, sessions a crash left), and the matching bookkeeping.
fn core(
    config: &Config,
    directory: &Directory,
    snapshot: &Snapshot,
    now: Millis,
    take_over: bool,
) -> (Engine, Matching) {
    let matches = cached_matches(snapshot, directory);
    let mut engine = Engine::new(engine_settings(config), config.mapping.clone());
    engine.set_users(matching::user_specs(directory, &matches), now);
    restore(&mut engine, snapshot, now, take_over);
    // Addresses without a cached match are looked up at once, the others again when
    // `sync.resolve_interval` has passed since the last full round.
    let looked_up = snapshot.meta_time(MetaKey::LookedUpAt).filter(|_| {
        snapshot.meta(MetaKey::LookedUpIn) == Some(super::matched::looked_up_in(config).as_str())
    });
    let every = config.sync.resolve_interval;
    let due = matching::first_full_round(!matches.is_empty(), looked_up, now, every);
    let mut matching = Matching::new(matches, due);
    // A warm start's cached matches count as a round that went through (READY=1 waits for
    // one); new addresses are still looked up first (READY also waits for no round to run).
    matching.matched_once = due > now;
    matching.want_unresolved(directory);
    (engine, matching)
}

/// What the directory was made of at start, for the reloader.
struct Sources {
    directory: Arc<Directory>,
    boxes: Vec<VoicemailUser>,
    group: GroupUsers,
    graph: watch::Receiver<GraphClient>,
}

/// The Entra group's members at start (none when no group is configured), and whether they
/// were read now. When the read fails, the members the store remembers stand in until the
/// reloader's next read.
async fn first_group_read(
    config: &Config,
    graph: &GraphClient,
    snapshot: &Snapshot,
    local: &Directory,
) -> (GroupUsers, bool) {
    match group::fetch(config, graph).await {
        None => (GroupUsers::default(), false),
        Some(Ok(users)) => (users, true),
        Some(Err(e)) => {
            let entries = group::remembered(snapshot, local);
            tracing::warn!(error = %e, remembered = entries.len(),
                "users.entra_group not read ({e}); the {} members the last run had stand in until the next read", entries.len());
            let remembered = GroupUsers {
                entries,
                unusable: Vec::new(),
            };
            (remembered, false)
        }
    }
}

/// The voicemail boxes at start (none when not configured, or when the read fails: the users
/// file alone is used until the next reload).
async fn first_voicemail_read(config: &Config) -> Vec<VoicemailUser> {
    match voicemail::fetch(config).await {
        Some(Ok(boxes)) => {
            tracing::info!(
                boxes = boxes.len(),
                "{} users read from Asterisk's voicemail boxes",
                boxes.len()
            );
            boxes
        }
        Some(Err(e)) => {
            tracing::warn!(error = %e, "users from voicemail boxes not read (pbx.ami_address: {e}); the users file alone is used until the next reload");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Senders the components get, one per input of the main loop.
struct Senders {
    pbx: mpsc::Sender<Vec<PbxEvent>>,
    link: mpsc::Sender<LinkState>,
    delivered: mpsc::Sender<Vec<PbxUpdate>>,
    polled: mpsc::Sender<Polled>,
    written: mpsc::Sender<Written>,
    matched: mpsc::Sender<Matched>,
    reloaded: mpsc::Sender<Reloaded>,
    inbox: mpsc::Sender<InboxBatch>,
}

fn channels() -> (Senders, Inputs) {
    let (pbx, pbx_rx) = mpsc::channel(QUEUE);
    let (link, link_rx) = mpsc::channel(16);
    let (delivered, delivered_rx) = mpsc::channel(QUEUE);
    let (polled, polled_rx) = mpsc::channel(64);
    let (written, written_rx) = mpsc::channel(QUEUE);
    let (matched, matched_rx) = mpsc::channel(16);
    let (reloaded, reloaded_rx) = mpsc::channel(4);
    let (inbox, inbox_rx) = mpsc::channel(16);
    let senders = Senders {
        pbx,
        link,
        delivered,
        polled,
        written,
        matched,
        reloaded,
        inbox,
    };
    let inputs = Inputs {
        pbx: pbx_rx,
        link: link_rx,
        delivered: delivered_rx,
        polled: polled_rx,
        written: written_rx,
        matched: matched_rx,
        reloaded: reloaded_rx,
        inbox: inbox_rx,
    };
    (senders, inputs)
}

fn feeds(config: &Config, graph: GraphClient, directory: &Directory, engine: &Engine) -> Feeds {
    Feeds {
        graph: watch::Sender::new(graph),
        ids: watch::Sender::new(Arc::new(engine.poll_ids())),
        pacing: watch::Sender::new(config.sync.pacing()),
        known: watch::Sender::new(known_extensions(directory)),
        users: watch::Sender::new(user_extensions(config, directory)),
        covered: watch::Sender::new(Arc::default()),
    }
}

/// What starting the components needs.
pub(super) struct Start<'a> {
    pub(super) options: &'a RunOptions,
    config: &'a Config,
    store: &'a Store,
    pub(super) stop: &'a Stop,
    metrics: &'a Metrics,
}

impl Start<'_> {
    /// Start every component on the shutdown tree; returns their handles.
    async fn parts(
        &self,
        feeds: Feeds,
        tx: Senders,
        snapshot: &Snapshot,
        out: &mut Outbox,
    ) -> Result<Parts, ServiceError> {
        let (root, tracker) = (&self.stop.root, &self.stop.tracker);
        let links = ConnectorLinks {
            known: feeds.known.subscribe(),
            users: feeds.users.subscribe(),
            events: tx.pbx,
            delivered: tx.delivered,
            status: tx.link,
            metrics: self.metrics.clone(),
            // Under [ha] the node serves POST /pbx/events in both roles (service/ha/inbox.rs).
            serve_http: self.options.ha.is_none(),
            fence: self.options.fence.clone(),
        };
        let bound = self.options.bound.clone();
        let store = self.store.clone();
        let pbx = PbxHandle::start(
            &self.config.pbx,
            links,
            bound,
            store,
            root.child_token(),
            tracker,
        )
        .await?;
        // What an earlier run said about its PBX link is not true of this one.
        let link = if self.config.pbx.watches_users() {
            "connecting"
        } else {
            ""
        };
        out.meta(MetaKey::PbxLink, link.into());
        let (suspects, webhook) = self.notify(snapshot, &feeds, &tx.polled, out).await?;
        let metrics = self.metrics_server().await?;
        // Every listener is bound: say where, once.
        // Under [ha] the node's own listener (already reported).
        let pbx_bound = pbx.first_bound().or(self.options.bound.borrow().pbx);
        let value = pbx_bound.map(|a| a.to_string()).unwrap_or_default();
        out.meta(MetaKey::PbxListen, value);
        let value = metrics.map(|a| a.to_string()).unwrap_or_default();
        out.meta(MetaKey::MetricsListen, value);
        self.options.bound.send_replace(crate::service::Bound {
            pbx: pbx_bound,
            webhook,
            metrics,
        });
        self.poller(&feeds, tx.polled);
        self.inbox(snapshot, tx.inbox);
        Ok(Parts {
            pbx,
            writers: Writers::new(
                feeds.graph.subscribe(),
                tx.written,
                tracker.clone(),
                self.metrics.clone(),
            ),
            resolver: ResolverHandle::start(
                feeds.graph.subscribe(),
                tx.matched,
                root.child_token(),
                tracker,
            ),
            suspects,
            feeds,
        })
    }

    /// Change notifications, when configured; returns where suspects go.
    async fn notify(
        &self,
        snapshot: &Snapshot,
        feeds: &Feeds,
        polled: &mpsc::Sender<Polled>,
        out: &mut Outbox,
    ) -> Result<(Option<mpsc::Sender<Arc<str>>>, Option<std::net::SocketAddr>), ServiceError> {
        let handle = match &self.config.notifications {
            Some(n) => {
                let channels = notify::Channels {
                    clock: self.options.clock.clone(),
                    tick: self.options.notify_tick,
                    graph: feeds.graph.subscribe(),
                    ids: feeds.ids.subscribe(),
                    covered: feeds.covered.clone(),
                    out: polled.clone(),
                    metrics: self.metrics.clone(),
                };
                let recorded = snapshot.subscriptions.clone();
                let cancel = self.stop.root.child_token();
                let started = notify::start(
                    n,
                    self.config,
                    self.store,
                    recorded,
                    channels,
                    cancel,
                    &self.stop.tracker,
                );
                Some(started.await?)
            }
            None => None,
        };
        let bound = handle.as_ref().map(|h| h.bound);
        out.meta(
            MetaKey::WebhookListen,
            bound.map(|a| a.to_string()).unwrap_or_default(),
        );
        Ok((handle.map(|h| h.suspects), bound))
    }

    /// `GET /metrics`, when `[metrics]` is set; returns where it is bound.
    async fn metrics_server(&self) -> Result<Option<std::net::SocketAddr>, ServiceError> {
        let Some(m) = &self.config.metrics else {
            return Ok(None);
        };
        if self.options.metrics.is_some() {
            // The node serves it (service/ha).
            return Ok(self.options.bound.borrow().metrics);
        }
        let listener = crate::metrics::server::bind(m.listen).await?;
        let bound = listener.local_addr().unwrap_or(m.listen);
        let cancel = self.stop.root.child_token();
        let serve = crate::metrics::server::serve(listener, self.metrics.clone(), cancel);
        let span = tracing::info_span!("metrics", listen = %bound);
        self.stop.tracker.spawn(serve.instrument(span));
        tracing::info!(listen = %bound, "metrics served on GET /metrics");
        Ok(Some(bound))
    }

    /// The reloader starts from the config and directory in force.
    fn reloader(&self, sources: Sources, out: mpsc::Sender<Reloaded>) {
        let reloader = Reloader {
            path: self.options.config_path.clone(),
            config: self.config.clone(),
            directory: sources.directory,
            voicemail: sources.boxes,
            group: sources.group,
            graph: sources.graph,
            log_reload: self.options.log_reload.clone(),
            store: self.store.clone(),
            clock: self.options.clock.clone(),
            out,
        };
        reloader.spawn(self.stop.root.child_token(), &self.stop.tracker);
    }

    fn poller(&self, feeds: &Feeds, out: mpsc::Sender<Polled>) {
        let config = self.config;
        let inputs = poller::PollInputs {
            graph: feeds.graph.subscribe(),
            ids: feeds.ids.subscribe(),
            pacing: feeds.pacing.subscribe(),
            covered: feeds.covered.subscribe(),
            clock: self.options.clock.clone(),
            metrics: self.metrics.clone(),
            reconcile: config
                .notifications
                .as_ref()
                .map_or(std::time::Duration::ZERO, |n| n.reconciliation_interval),
        };
        let cancel = self.stop.root.child_token();
        let span = tracing::info_span!("poller");
        self.stop
            .tracker
            .spawn(poller::run(inputs, out, cancel).instrument(span));
    }
}
