//! The main loop. It owns the engine (the pure core) and the directory, and only routes: a
//! message from a component goes to the engine with `now`, and the engine's commands go to
//! the components. Every component is an owned task reached through a handle (or a watch it
//! reads); nothing here waits for the network.
//!
//! Shutdown order (SIGTERM or `RunOptions::shutdown`): every input stops (the root token:
//! PBX connector, poller, notifications, resolver, reloader) -> the engine clears every
//! In-a-call session and the writers finish, within `sync.shutdown_timeout` -> every task
//! ends -> the store commits and closes.

mod ha;
mod lines;
mod matched;
mod reload;
mod route;
mod start;
mod written;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connector::PbxHandle;
use super::error::ServiceError;
use super::matching::Matching;
use super::outbox::Outbox;
use super::poller::Polled;
use super::reloader::Reloaded;
use super::resolver::{Matched, ResolverHandle};
use super::systemd;
use super::writer::{Writers, Written};
use crate::clock::{self, Clock};
use crate::config::{Config, Directory};
use crate::fence::Fence;
use crate::graph::GraphClient;
use crate::metrics::Metrics;
use crate::pbx::http::ExtensionSet;
use crate::pbx::{LinkState, PbxUpdate};
use crate::sync::engine::Engine;
use crate::sync::types::PbxEvent;

/// How often the main loop looks at the clock (session refreshes, recovery, re-matching).
const TICK: Duration = Duration::from_secs(1);

pub(super) struct Daemon {
    clock: Clock,
    config: Config,
    /// Every user: the users file, plus voicemail boxes when configured.
    directory: Arc<Directory>,
    engine: Engine,
    matching: Matching,
    parts: Parts,
    out: Outbox,
    rx: Inputs,
    /// Ready (READY=1 sent) and polling failures in a row.
    health: Health,
    stop: Stop,
    /// Where the main loop records what it sees (events, sessions, matches, the PBX link).
    metrics: Metrics,
    /// The leader's right to act outward (`[ha]`; always open on a single node).
    fence: Fence,
    /// Under `[ha]`: the term this daemon leads for.
    options_ha: Option<super::ha::HaTerm>,
}

/// The components the main loop hands work to.
struct Parts {
    pbx: PbxHandle,
    writers: Writers,
    resolver: ResolverHandle,
    /// Covered users whose change only a poll saw, for the notification manager.
    suspects: Option<mpsc::Sender<Arc<str>>>,
    feeds: Feeds,
}

/// What components read and the main loop updates (latest value wins).
struct Feeds {
    graph: watch::Sender<GraphClient>,
    /// Every matched user's Teams id (poller, notification manager).
    ids: watch::Sender<Arc<Vec<Arc<str>>>>,
    /// `sync.poll_interval` and the budget keys (poller).
    pacing: watch::Sender<crate::sync::pacing::PaceSettings>,
    /// Extensions the HTTP connector accepts events for.
    known: watch::Sender<Arc<ExtensionSet>>,
    /// Extensions whose devices the Asterisk connector follows.
    users: watch::Sender<Arc<Vec<String>>>,
    /// Users a healthy change-notification subscription covers (the manager sends).
    covered: watch::Sender<Arc<HashSet<Arc<str>>>>,
}

/// Everything the main loop listens to; every channel is bounded.
struct Inputs {
    pbx: mpsc::Receiver<Vec<PbxEvent>>,
    link: mpsc::Receiver<LinkState>,
    delivered: mpsc::Receiver<Vec<PbxUpdate>>,
    polled: mpsc::Receiver<Polled>,
    written: mpsc::Receiver<Written>,
    matched: mpsc::Receiver<Matched>,
    reloaded: mpsc::Receiver<Reloaded>,
    /// Under `[ha]`: PBX events any node accepted, in order.
    inbox: mpsc::Receiver<super::ha::InboxBatch>,
}

#[derive(Debug, Default)]
struct Health {
    ready: bool,
    poll_failures: u32,
}

/// The shutdown tree: `trigger` starts it (SIGTERM), `root` stops every component (each has a
/// child token), `tracker` holds every task.
struct Stop {
    trigger: CancellationToken,
    root: CancellationToken,
    tracker: TaskTracker,
}

impl Daemon {
    pub(super) async fn run(mut self) -> Result<(), ServiceError> {
        let mut tick = tokio::time::interval(TICK);
        let mut watchdog =
            tokio::time::interval(systemd::watchdog_interval().unwrap_or(TICK * 3600));
        let trigger = self.stop.trigger.clone();
        loop {
            tokio::select! {
                () = trigger.cancelled() => break,
                Some(batch) = self.rx.pbx.recv() => self.on_pbx_events(batch),
                Some(polled) = self.rx.polled.recv() => self.on_polled(polled),
                Some(written) = self.rx.written.recv() => self.on_written(written),
                Some(batch) = self.rx.delivered.recv() => self.on_delivered(batch),
                Some(link) = self.rx.link.recv() => self.on_link(link),
                Some(reloaded) = self.rx.reloaded.recv() => self.on_reloaded(reloaded),
                Some(matched) = self.rx.matched.recv() => self.on_matched(matched),
                Some(batch) = self.rx.inbox.recv() => self.on_inbox(batch),
                _ = tick.tick() => self.on_tick(),
                _ = watchdog.tick() => systemd::watchdog(),
            }
            self.end_step().await;
        }
        self.shutdown().await
    }

    /// The ordered stop (module doc), on one budget: `sync.shutdown_timeout`, at most 10 s;
    /// the session clears get all of it but half a second.
    async fn shutdown(mut self) -> Result<(), ServiceError> {
        if self.options_ha.is_none() {
            // Under [ha] the node says so: a step-down is no stop of the service.
            systemd::stopping();
        }
        let budget = self.config.sync.shutdown_timeout;
        let until = clock::monotonic() + budget;
        self.stop.root.cancel();
        if self.hands_over() {
            return self.stop_quietly(until).await;
        }
        let commands = self.engine.shutdown(self.clock.now());
        let sessions = commands.len();
        self.execute(commands);
        self.end_step().await;
        tracing::info!(
            sessions,
            ?budget,
            "shutting down: clearing {sessions} In a call sessions"
        );
        let clears_until = until - budget.min(Duration::from_millis(500));
        if !self.drain_writers(clears_until).await {
            tracing::warn!(
                "shutdown deadline reached before every session was cleared; they expire by themselves (sync.in_call_expiration) and are cleared at the next start"
            );
        }
        self.stop.tracker.close();
        let _ = tokio::time::timeout_at(until, self.stop.tracker.wait()).await;
        self.out.close().await?;
        tracing::info!("stopped");
        Ok(())
    }

    /// The end of every step: the store writes go out first, then the presence writes. A step
    /// that opens (or refreshes) an "In a call" session waits until the session's row is
    /// committed, so a crash at any moment leaves a record of every session Teams may have.
    async fn end_step(&mut self) {
        let opens_session = self.parts.writers.opens_session();
        self.metrics
            .set_sessions_active(self.engine.session_count());
        self.out.flush().await;
        if opens_session {
            self.out.commit().await;
        }
        self.parts.writers.release();
    }

    /// Let every writer finish (recording what they report) until `until`. False when the
    /// deadline came first.
    async fn drain_writers(&mut self, until: tokio::time::Instant) -> bool {
        let finished = self.parts.writers.close();
        tokio::pin!(finished);
        let done = loop {
            tokio::select! {
                () = &mut finished => break true,
                () = tokio::time::sleep_until(until) => break false,
                Some(w) = self.rx.written.recv() => self.on_written(w),
            }
        };
        while let Ok(w) = self.rx.written.try_recv() {
            self.on_written(w);
        }
        done
    }
}
