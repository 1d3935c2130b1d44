//! `[ha]`: this node among others sharing one PostgreSQL database. The lease task says when
//! this node leads; while it leads, the whole daemon runs (`Daemon`, its store and Graph writes
//! fenced by the term's epoch); in both roles the node takes the PBX's events into the inbox.
//!
//! Order of a node's life: lease task and intake start -> standby -> (lead: the daemon runs ->
//! step down or stop) ... -> on SIGTERM: stop the daemon (handing the sessions over when a
//! standby is alive), release the lease, stop the lease task and the intake.

mod inbox;
mod lease_task;
mod say;
mod standby;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use inbox::{InboxBatch, Reader};
pub use lease_task::LeaseView;

use super::connector::ConnectorError;
use super::{RunOptions, ServiceError, daemon::Daemon};
use crate::config::{Config, HaConfig, HttpPbxConfig};
use crate::fence::Fence;
use crate::ha::lease::LeaseSettings;
use crate::ha::sql::{self, PgTarget};
use inbox::Intake;
use lease_task::{LeaseTask, Term};

/// What a daemon running as the leader needs to know of its term.
#[derive(Clone)]
pub struct HaTerm {
    pub node: String,
    pub epoch: i64,
    pub target: PgTarget,
    /// Set before the daemon is told to stop: leave the sessions to the next leader.
    pub keep_sessions: Arc<AtomicBool>,
}

/// A standby seen this recently takes over a stopping leader's sessions.
fn standby_fresh(lease: Duration) -> Duration {
    lease * 2
}

/// Runs this node until `options.shutdown`.
pub async fn run(
    options: RunOptions,
    config: &Config,
    ha: &HaConfig,
    target: PgTarget,
) -> Result<(), ServiceError> {
    let fence = Fence::for_node(&ha.node);
    let node = Node::start(&options, config, ha, &target, &fence).await?;
    node.run(options, ha, target, fence).await
}

/// The node's own tasks (both roles).
struct Node {
    terms: mpsc::Receiver<Term>,
    view: watch::Receiver<LeaseView>,
    stop: CancellationToken,
    tracker: TaskTracker,
    /// Served by the node in both roles; the daemon records into it while it leads.
    metrics: crate::metrics::Metrics,
    /// The PBX link kept while standing by (Asterisk), and what it shows in `ha_nodes`.
    warm: Warm,
}

/// `standby.rs` while this node stands by, with `pbx.kind = "asterisk"`.
struct Warm {
    asterisk: Option<crate::config::AsteriskPbxConfig>,
    /// The users file's extensions, read at the node's start.
    file: Vec<String>,
    link: standby::LinkView,
    running: Option<standby::Standby>,
}

impl Warm {
    /// Follow Asterisk while standing by (a failure to start is logged: the daemon's start
    /// says the same when this node leads).
    fn start(&mut self, node: &str, target: &PgTarget, tracker: &TaskTracker) {
        let Some(config) = &self.asterisk else { return };
        if self.running.is_some() {
            return;
        }
        match standby::start(config, node, &self.file, target, &self.link, tracker) {
            Ok(s) => self.running = Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "node {node} cannot follow Asterisk while standing by: {e}")
            }
        }
    }

    /// Leading: the daemon's own listener takes over (and reads every device again).
    fn stop(&mut self) {
        self.running = None;
    }
}

impl Node {
    async fn start(
        options: &RunOptions,
        config: &Config,
        ha: &HaConfig,
        target: &PgTarget,
        fence: &Fence,
    ) -> Result<Node, ServiceError> {
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut detail = format!("version={}", env!("CARGO_PKG_VERSION"));
        let file = users_file(options).await;
        if let Some(http) = &config.pbx.http {
            let bound = intake(options, http, ha, target, &file, &stop, &tracker).await?;
            detail.push_str(&format!(" pbx={bound}"));
        }
        let metrics = crate::metrics::Metrics::new();
        if let Some(m) = &config.metrics {
            let listener = crate::metrics::server::bind(m.listen).await?;
            let bound = listener.local_addr().unwrap_or(m.listen);
            let serve =
                crate::metrics::server::serve(listener, metrics.clone(), stop.child_token());
            tracker.spawn(serve.instrument(tracing::info_span!("metrics", listen = %bound)));
            options.bound.send_modify(|b| b.metrics = Some(bound));
            tracing::info!(listen = %bound, "metrics served on GET /metrics in both roles");
        }
        let (terms_tx, terms) = mpsc::channel(8);
        let (view_tx, view) = watch::channel(LeaseView::default());
        let (link, link_view) = watch::channel(String::new());
        let lease = LeaseTask {
            target: target.clone(),
            node: ha.node.clone(),
            settings: LeaseSettings::for_lease(ha.lease),
            fence: fence.clone(),
            terms: terms_tx,
            view: view_tx,
            detail,
            link: link_view,
            metrics: metrics.clone(),
        };
        let span = tracing::info_span!("lease");
        tracker.spawn(lease.run(stop.child_token()).instrument(span));
        say::standing_by(&ha.node);
        super::systemd::ready(&format!("node {}: standby", ha.node));
        Ok(Node {
            terms,
            view,
            stop,
            tracker,
            metrics,
            warm: Warm {
                asterisk: config
                    .pbx
                    .asterisk
                    .clone()
                    .filter(|_| config.pbx.asterisk_reads_calls()),
                file,
                link,
                running: None,
            },
        })
    }

    async fn run(
        mut self,
        options: RunOptions,
        ha: &HaConfig,
        target: PgTarget,
        fence: Fence,
    ) -> Result<(), ServiceError> {
        let mut last_epoch = None;
        let every = super::systemd::watchdog_interval().unwrap_or(Duration::from_secs(3600));
        let mut watchdog = tokio::time::interval(every);
        let result = loop {
            self.warm.start(&ha.node, &target, &self.tracker);
            let term = tokio::select! {
                () = options.shutdown.cancelled() => break Ok(()),
                term = self.terms.recv() => term,
                // A standby is alive too (the daemon feeds the watchdog while it leads).
                _ = watchdog.tick() => {
                    super::systemd::watchdog();
                    continue;
                }
            };
            let (epoch, previous) = match term {
                Some(Term::Lead { epoch, previous }) => (epoch, previous),
                Some(Term::StepDown { .. }) => continue,
                None => break Err(ServiceError::LeaseTaskEnded),
            };
            say::leads(&ha.node, epoch, previous.as_ref());
            self.warm.stop();
            last_epoch = Some(epoch);
            let term = HaTerm {
                node: ha.node.clone(),
                epoch,
                target: target.clone(),
                keep_sessions: Arc::new(AtomicBool::new(false)),
            };
            match self.lead(&options, term, &fence, ha).await {
                Led::Stopped(r) => break r,
                Led::SteppedDown => {}
            }
        };
        super::systemd::stopping();
        self.finish(&target, &ha.node, last_epoch).await;
        result
    }

    /// One term: the daemon runs until SIGTERM or until the lease task says to step down.
    async fn lead(
        &mut self,
        options: &RunOptions,
        term: HaTerm,
        fence: &Fence,
        ha: &HaConfig,
    ) -> Led {
        let stop = CancellationToken::new();
        let mut opts = options.clone();
        opts.shutdown = stop.clone();
        opts.fence = fence.clone();
        opts.ha = Some(term.clone());
        opts.metrics = Some(self.metrics.clone());
        let daemon = match Daemon::start(opts).await {
            Ok(d) => d,
            Err(e) => {
                // Not fit to lead (the database, a listener): let another node lead.
                tracing::error!(error = %e, "node {} cannot start leading: {e}; giving the lease up", ha.node);
                fence.shut();
                let _ = release(&term.target, &ha.node, Some(term.epoch)).await;
                return Led::Stopped(Err(e));
            }
        };
        let run = daemon.run();
        tokio::pin!(run);
        loop {
            tokio::select! {
                result = &mut run => return Led::Stopped(result),
                () = options.shutdown.cancelled() => {
                    let standby = standby_alive(&term.target, &ha.node, standby_fresh(ha.lease)).await;
                    if let Some(other) = &standby {
                        say::handing_over(&ha.node, other);
                        term.keep_sessions.store(true, Ordering::SeqCst);
                    }
                    stop.cancel();
                    return Led::Stopped(run.await);
                }
                Some(t) = self.terms.recv() => {
                    if let Term::StepDown { epoch, why } = t {
                        say::steps_down(&ha.node, epoch, &why);
                        term.keep_sessions.store(true, Ordering::SeqCst);
                        stop.cancel();
                        if let Err(e) = run.await {
                            tracing::warn!(error = %e, "the daemon stopped with an error after stepping down: {e}");
                        }
                        return Led::SteppedDown;
                    }
                }
            }
        }
    }

    /// Give the lease up (a standby takes over at its next question), then stop the node's
    /// tasks.
    async fn finish(mut self, target: &PgTarget, node: &str, epoch: Option<i64>) {
        self.warm.stop();
        let leading = self.view.borrow().leading;
        match release(target, node, leading.or(epoch)).await {
            Ok(true) => tracing::info!(node, "node {node} gave the leader lease up"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "node {node} could not mark itself stopped: {e}; its lease runs out by itself")
            }
        }
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The node's `POST /pbx/events` (both roles), its events stored for the leader; returns
/// where it is bound.
async fn intake(
    options: &RunOptions,
    http: &HttpPbxConfig,
    ha: &HaConfig,
    target: &PgTarget,
    file: &[String],
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<std::net::SocketAddr, ServiceError> {
    let listener = crate::pbx::http::bind(http.listen)
        .await
        .map_err(|e| ServiceError::Pbx(ConnectorError::Listen(e)))?;
    let bound = listener.local_addr().unwrap_or(http.listen);
    options.bound.send_modify(|b| b.pbx = Some(bound));
    let (events_tx, events) = mpsc::channel(1024);
    let (known_tx, known) = watch::channel(Arc::default());
    let (_token_tx, token) = watch::channel(Arc::from(http.token.expose()));
    let sink = crate::pbx::http::Sink::Stored(events_tx);
    let serve = crate::pbx::http::serve(listener, token, known, sink, stop.child_token());
    tracker.spawn(serve.instrument(tracing::info_span!("pbx_http", listen = %bound)));
    let intake = Intake {
        target: target.clone(),
        node: ha.node.clone(),
        events,
        known: known_tx,
        file: file.to_vec(),
    };
    tracker.spawn(
        intake
            .run(stop.child_token())
            .instrument(tracing::info_span!("intake")),
    );
    tracing::info!(listen = %bound, "PBX events taken on {bound} in both roles, stored for the leader");
    Ok(bound)
}

/// The users file's extensions (empty when it cannot be read: the daemon's start says why).
async fn users_file(options: &RunOptions) -> Vec<String> {
    let path = options.config_path.clone();
    match tokio::task::spawn_blocking(move || crate::config::load_all(&path)).await {
        Ok(Ok((_, directory))) => directory
            .entries
            .into_iter()
            .map(|e| e.extension.to_string())
            .collect(),
        _ => Vec::new(),
    }
}

enum Led {
    /// The daemon stopped (SIGTERM, or an error).
    Stopped(Result<(), ServiceError>),
    /// The lease is gone; back to standby.
    SteppedDown,
}

async fn release(target: &PgTarget, node: &str, epoch: Option<i64>) -> Result<bool, String> {
    let mut client = target.connect(None).await.map_err(|e| e.to_string())?;
    let released = tokio::time::timeout(
        Duration::from_secs(5),
        sql::release(&mut client, node, epoch),
    )
    .await;
    match released {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 5 s".into()),
    }
}

async fn standby_alive(target: &PgTarget, node: &str, within: Duration) -> Option<String> {
    let client = target.connect(None).await.ok()?;
    let asked = tokio::time::timeout(
        Duration::from_secs(2),
        sql::standby_alive(&client, node, within),
    )
    .await;
    asked.ok()?.ok()?
}
