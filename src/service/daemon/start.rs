//! Starting the daemon: read the config and the store, build the engine, start every component
//! on the shutdown tree, and wire the channels.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::{Daemon, Feeds, Health, Inputs, Parts, Stop};
use crate::config::{self, Config, Directory, PbxConfig};
use crate::graph::GraphClient;
use crate::pbx::asterisk::ami::VoicemailUser;
use crate::service::build::{
    cached_matches, engine_settings, forget_departed, graph_settings, known_extensions, millis,
    open_store, restore, user_extensions,
};
use crate::service::connector::{ConnectorLinks, PbxHandle};
use crate::service::error::ServiceError;
use crate::service::matching::{self, Matching};
use crate::service::outbox::Outbox;
use crate::service::reloader::Reloader;
use crate::service::resolver::ResolverHandle;
use crate::service::writer::Writers;
use crate::service::{RunOptions, notify, poller, voicemail};
use crate::store::{MetaKey, Snapshot, Store};
use crate::sync::engine::Engine;

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
        let directory = Arc::new(voicemail::merge(file_users, &boxes));
        let store = open_store(&config).await?;
        let snapshot = store.snapshot().await?;
        let mut out = Outbox::new(store.clone());
        forget_departed(&mut out, &snapshot, &directory);
        let now = options.clock.now();
        let matches = cached_matches(&snapshot, &directory);
        let mut engine = Engine::new(engine_settings(&config), config.mapping.clone());
        engine.set_users(matching::user_specs(&directory, &matches), now);
        restore(&mut engine, &snapshot, now);
        let matching = Matching::new(matches, now + millis(config.sync.resolve_interval));
        let stop = Stop {
            trigger: options.shutdown.clone(),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        let (parts, rx) = start_parts(
            &options, &config, &directory, &engine, &store, &snapshot, &stop,
        )
        .await?;
        let reloader = Reloader {
            path: options.config_path.clone(),
            config: config.clone(),
            directory: Arc::clone(&directory),
            voicemail: boxes,
            log_reload: options.log_reload.clone(),
            store: store.clone(),
            clock: options.clock.clone(),
            out: rx.1,
        };
        reloader.spawn(stop.root.child_token(), &stop.tracker);
        let mut daemon = Daemon {
            clock: options.clock,
            config,
            directory,
            engine,
            matching,
            parts,
            out,
            rx: rx.0,
            health: Health::default(),
            stop,
        };
        daemon
            .matching
            .want(matching::all_emails(&daemon.directory));
        daemon.start_lookup();
        daemon.save_directory_since(&snapshot);
        daemon.out.flush().await;
        Ok(daemon)
    }
}

/// The voicemail boxes at start (none when not configured, or when the read fails: the users
/// file alone is used until the next reload).
async fn first_voicemail_read(config: &Config) -> Vec<VoicemailUser> {
    match voicemail::fetch(config).await {
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
    }
}

/// Senders the components get, one per input of the main loop.
struct Senders {
    pbx: mpsc::Sender<Vec<crate::sync::types::PbxEvent>>,
    link: mpsc::Sender<crate::pbx::LinkState>,
    delivered: mpsc::Sender<Vec<crate::pbx::PbxUpdate>>,
    polled: mpsc::Sender<crate::service::poller::Polled>,
    written: mpsc::Sender<crate::service::writer::Written>,
    matched: mpsc::Sender<crate::service::resolver::Matched>,
    reloaded: mpsc::Sender<crate::service::reloader::Reloaded>,
}

fn channels() -> (Senders, Inputs) {
    let (pbx, pbx_rx) = mpsc::channel(QUEUE);
    let (link, link_rx) = mpsc::channel(16);
    let (delivered, delivered_rx) = mpsc::channel(QUEUE);
    let (polled, polled_rx) = mpsc::channel(64);
    let (written, written_rx) = mpsc::channel(QUEUE);
    let (matched, matched_rx) = mpsc::channel(16);
    let (reloaded, reloaded_rx) = mpsc::channel(4);
    let senders = Senders {
        pbx,
        link,
        delivered,
        polled,
        written,
        matched,
        reloaded,
    };
    let inputs = Inputs {
        pbx: pbx_rx,
        link: link_rx,
        delivered: delivered_rx,
        polled: polled_rx,
        written: written_rx,
        matched: matched_rx,
        reloaded: reloaded_rx,
    };
    (senders, inputs)
}

fn feeds(config: &Config, directory: &Directory, engine: &Engine) -> Result<Feeds, ServiceError> {
    Ok(Feeds {
        graph: watch::Sender::new(GraphClient::new(graph_settings(config))?),
        ids: watch::Sender::new(Arc::new(engine.poll_ids())),
        interval: watch::Sender::new(config.sync.poll_interval),
        known: watch::Sender::new(known_extensions(directory)),
        users: watch::Sender::new(user_extensions(config, directory)),
        covered: watch::Sender::new(Arc::default()),
    })
}

/// Start every component; returns their handles and the main loop's inputs (and the sender
/// the reloader gets).
async fn start_parts(
    options: &RunOptions,
    config: &Config,
    directory: &Directory,
    engine: &Engine,
    store: &Store,
    snapshot: &Snapshot,
    stop: &Stop,
) -> Result<
    (
        Parts,
        (Inputs, mpsc::Sender<crate::service::reloader::Reloaded>),
    ),
    ServiceError,
> {
    let (tx, rx) = channels();
    let feeds = feeds(config, directory, engine)?;
    let (root, tracker) = (&stop.root, &stop.tracker);
    let links = ConnectorLinks {
        known: feeds.known.subscribe(),
        users: feeds.users.subscribe(),
        events: tx.pbx,
        delivered: tx.delivered,
        status: tx.link,
    };
    let pbx = PbxHandle::start(
        &config.pbx,
        links,
        options.bound.clone(),
        store.clone(),
        root.child_token(),
        tracker,
    )
    .await?;
    // What an earlier run said about its PBX link is not true of this one.
    let link = match config.pbx {
        PbxConfig::Asterisk(_) => "connecting",
        PbxConfig::Http(_) => "",
    };
    store
        .write(crate::store::Write::SetMeta {
            key: MetaKey::PbxLink,
            value: link.into(),
        })
        .await;
    let suspects = start_notify(options, config, store, snapshot, &feeds, &tx.polled, stop).await?;
    start_poller(
        options,
        config,
        &feeds,
        tx.polled,
        root.child_token(),
        tracker,
    );
    let writers = Writers::new(feeds.graph.subscribe(), tx.written, tracker.clone());
    let resolver = ResolverHandle::start(
        feeds.graph.subscribe(),
        tx.matched,
        root.child_token(),
        tracker,
    );
    let parts = Parts {
        pbx,
        writers,
        resolver,
        suspects,
        feeds,
    };
    Ok((parts, (rx, tx.reloaded)))
}

async fn start_notify(
    options: &RunOptions,
    config: &Config,
    store: &Store,
    snapshot: &Snapshot,
    feeds: &Feeds,
    polled: &mpsc::Sender<crate::service::poller::Polled>,
    stop: &Stop,
) -> Result<Option<mpsc::Sender<Arc<str>>>, ServiceError> {
    let webhook = match &config.notifications {
        Some(n) => {
            let channels = notify::Channels {
                clock: options.clock.clone(),
                tick: options.notify_tick,
                graph: feeds.graph.subscribe(),
                ids: feeds.ids.subscribe(),
                covered: feeds.covered.clone(),
                out: polled.clone(),
            };
            let recorded = snapshot.subscriptions.clone();
            let cancel = stop.root.child_token();
            Some(notify::start(n, config, store, recorded, channels, cancel, &stop.tracker).await?)
        }
        None => None,
    };
    let bound = webhook.as_ref().map(|h| h.bound);
    options.bound.send_modify(|b| b.webhook = bound);
    let value = bound.map(|a| a.to_string()).unwrap_or_default();
    store
        .write(crate::store::Write::SetMeta {
            key: MetaKey::WebhookListen,
            value,
        })
        .await;
    Ok(webhook.map(|h| h.suspects))
}

fn start_poller(
    options: &RunOptions,
    config: &Config,
    feeds: &Feeds,
    out: mpsc::Sender<crate::service::poller::Polled>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) {
    let inputs = poller::PollInputs {
        graph: feeds.graph.subscribe(),
        ids: feeds.ids.subscribe(),
        interval: feeds.interval.subscribe(),
        covered: feeds.covered.subscribe(),
        clock: options.clock.clone(),
        reconcile: config
            .notifications
            .as_ref()
            .map_or(config.sync.poll_interval, |n| n.reconciliation_interval),
    };
    let span = tracing::info_span!("poller");
    tracker.spawn(poller::run(inputs, out, cancel).instrument(span));
}
