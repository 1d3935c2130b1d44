//! The one task that carries out the planner's commands: it wakes on a tick (30 s), when the
//! next renewal, look-up, retry or judgement falls due, when the user list changes, and when
//! notifications or suspects arrive; it feeds the planner, runs what comes back in order, and
//! feeds each answer back before anything else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::super::poller::Polled;
use super::account::Credentials;
use super::replay::Replays;
use super::{Channels, ROTATE_BEFORE, row};
use crate::clock::{Clock, monotonic};
use crate::config::{Config, NotificationsConfig, Secret};
use crate::graph::GraphClient;
use crate::graph::delegated::Delegated;
use crate::graph::notify_crypto::KeyStore;
use crate::graph::webhook::Notification;
use crate::metrics::Metrics;
use crate::service::outbox::Outbox;
use crate::store::{Store, Write};
use crate::subscriptions::{Command, Coverage, Input, Planner};

/// Basic notifications are read together after this pause.
const FETCH_AFTER: Duration = Duration::from_millis(5);

/// The channels the manager talks through.
pub(super) struct Links {
    pub(super) graph: watch::Receiver<GraphClient>,
    /// Every matched user (the poller's list).
    pub(super) ids: watch::Receiver<Arc<Vec<Arc<str>>>>,
    /// What the webhook accepted.
    pub(super) notes: mpsc::Receiver<Vec<Notification>>,
    /// Covered users whose change a poll found (the main loop sends them).
    pub(super) suspects: mpsc::Receiver<Arc<str>>,
    /// Subscription id -> secret, for the webhook.
    pub(super) known: watch::Sender<Arc<HashMap<String, String>>>,
    pub(super) covered: watch::Sender<Arc<HashSet<Arc<str>>>>,
    pub(super) out: mpsc::Sender<Polled>,
    pub(super) metrics: Metrics,
}

pub(super) struct Manager {
    pub(super) planner: Planner,
    pub(super) config: NotificationsConfig,
    /// The config file, for the `login` command in messages.
    pub(super) config_path: String,
    pub(super) clock: Clock,
    tick: Duration,
    /// Rich notifications: our key pair and certificate (`None`: basic notifications).
    pub(super) keys: Option<Arc<KeyStore>>,
    key_dir: PathBuf,
    pub(super) delegated: Delegated,
    /// Store writes, sent after each input is handled.
    pub(super) out: Outbox,
    /// Each signed-in account's tokens.
    pub(super) accounts: HashMap<String, Credentials>,
    /// Tokens just read from the store, until the planner says which accounts take theirs.
    pub(super) read: HashMap<String, Secret>,
    pub(super) links: Links,
    /// Users named by basic notifications (or a `missed` lifecycle event), waiting to be read.
    pub(super) pending: HashSet<String>,
    /// Rich items already taken, per subscription.
    pub(super) replays: Replays,
}

impl Links {
    /// The daemon's channels, and the webhook's and the main loop's ends.
    pub(super) fn new(
        ch: Channels,
        notes: mpsc::Receiver<Vec<Notification>>,
        suspects: mpsc::Receiver<Arc<str>>,
        known: watch::Sender<Arc<HashMap<String, String>>>,
    ) -> Links {
        Links {
            graph: ch.graph,
            ids: ch.ids,
            notes,
            suspects,
            known,
            covered: ch.covered,
            out: ch.out,
            metrics: ch.metrics,
        }
    }
}

impl Manager {
    pub(super) fn new(
        planner: Planner,
        n: &NotificationsConfig,
        config: &Config,
        delegated: Delegated,
        store: Store,
        links: Links,
    ) -> Manager {
        Manager {
            planner,
            config: n.clone(),
            config_path: config.source.display().to_string(),
            clock: Clock::default(),
            tick: Duration::from_secs(30),
            keys: None,
            key_dir: PathBuf::new(),
            delegated,
            out: Outbox::new(store),
            accounts: HashMap::new(),
            read: HashMap::new(),
            links,
            pending: HashSet::new(),
            replays: Replays::default(),
        }
    }

    pub(super) fn with_time(mut self, clock: Clock, tick: Duration) -> Manager {
        self.clock = clock;
        self.tick = tick;
        self
    }

    pub(super) fn with_keys(mut self, keys: Option<Arc<KeyStore>>, dir: PathBuf) -> Manager {
        self.keys = keys;
        self.key_dir = dir;
        self
    }

    /// Until `cancel`; then the subscriptions are deleted if `delete_on_shutdown` says so.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.tick);
        let fetch = tokio::time::sleep(Duration::ZERO);
        let wake = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(fetch, wake);
        let mut fetch_armed = false;
        let users = self.links.ids.borrow_and_update().clone();
        self.feed(Input::Users(users)).await;
        loop {
            let wake_armed = self.arm(wake.as_mut());
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => self.on_tick().await,
                () = &mut wake, if wake_armed => self.on_tick().await,
                changed = self.links.ids.changed() => {
                    if changed.is_err() { break }
                    let users = self.links.ids.borrow_and_update().clone();
                    self.feed(Input::Users(users)).await;
                }
                Some(notes) = self.links.notes.recv() => self.on_notes(notes).await,
                Some(user) = self.links.suspects.recv() => self.feed(Input::Suspect(user)).await,
                () = &mut fetch, if fetch_armed => {
                    fetch_armed = false;
                    self.fetch_pending().await;
                }
            }
            // Users to read: named by basic notifications, or by a `missed` lifecycle event.
            if !self.pending.is_empty() && !fetch_armed {
                fetch.as_mut().reset(monotonic() + FETCH_AFTER);
                fetch_armed = true;
            }
        }
        if self.config.delete_on_shutdown {
            self.feed(Input::DeleteAll).await;
            tracing::info!("subscriptions deleted (notifications.delete_on_shutdown)");
        }
    }

    /// Set `wake` to the planner's next deadline; false when there is none.
    fn arm(&self, wake: Pin<&mut Sleep>) -> bool {
        let now = self.clock.now();
        let Some(at) = self.planner.next_deadline(now) else {
            return false;
        };
        let wait = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
        wake.reset(monotonic() + Duration::from_millis(wait));
        true
    }

    async fn on_tick(&mut self) {
        if self.rotate_keys().await {
            self.feed(Input::CertificateRotated).await;
        }
        self.feed(Input::Tick).await;
    }

    /// Give the planner one input and carry out everything that follows from it.
    pub(super) async fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from(self.planner.handle(input, self.clock.now()));
        while let Some(command) = queue.pop_front() {
            for answer in self.execute(command).await {
                queue.extend(self.planner.handle(answer, self.clock.now()));
            }
        }
        self.read.clear();
        let (healthy, unhealthy) = self.planner.subscription_health(self.clock.now());
        self.links.metrics.set_subscriptions(healthy, unhealthy);
        self.out.flush().await;
    }

    /// Carry out one command; returns the answers for the planner.
    async fn execute(&mut self, command: Command) -> Vec<Input> {
        let account = match &command {
            Command::RefreshToken { account }
            | Command::List { account }
            | Command::Create { account, .. }
            | Command::Renew { account, .. }
            | Command::Check { account, .. }
            | Command::Delete { account, .. } => account.clone(),
            _ => return self.apply(command).await,
        };
        let span = tracing::info_span!("account", %account);
        self.call(command).instrument(span).await
    }

    /// A command that stays on this side: tokens, the store, the watches, the log.
    async fn apply(&mut self, command: Command) -> Vec<Input> {
        match command {
            Command::ReadTokens => return vec![self.read_tokens().await],
            Command::UseToken { account } => self.use_token(account),
            Command::ForgetToken { account } => self.forget_token(account),
            Command::Save(record) => self.out.write(Write::SaveSubscription(row(record))),
            Command::Drop { id } => self.out.write(Write::DropSubscription { id }),
            Command::Known(known) => {
                self.links.known.send_replace(Arc::new(known));
            }
            Command::Publish(coverage) => self.publish(coverage),
            Command::Report(fact) => self.report(fact),
            // Read with the basic notifications' next batch (within `FETCH_AFTER`).
            Command::Read { ids } => self.pending.extend(ids.iter().map(ToString::to_string)),
            Command::RefreshToken { .. }
            | Command::List { .. }
            | Command::Create { .. }
            | Command::Renew { .. }
            | Command::Check { .. }
            | Command::Delete { .. } => return self.call(command).await,
        }
        Vec::new()
    }

    /// Covered users: to the poller (only when the set changed, as a change starts a poll
    /// cycle) and, per account, to the store for `status`.
    fn publish(&mut self, coverage: Coverage) {
        let covered = coverage.covered.len();
        if **self.links.covered.borrow() != coverage.covered {
            self.links.covered.send_replace(Arc::new(coverage.covered));
        }
        for (account, ids) in coverage.accounts {
            self.out.write(Write::SetCoverage {
                account,
                teams_ids: ids.iter().map(ToString::to_string).collect(),
            });
        }
        tracing::info!(
            covered,
            polled = coverage.polled,
            "notification coverage changed: {covered} users covered by subscriptions, {} polled only",
            coverage.polled
        );
    }

    /// A certificate near its end is replaced (the previous key still decrypts what is under
    /// way). True when it was: every subscription is then made again with the new one.
    async fn rotate_keys(&mut self) -> bool {
        let Some(keys) = &self.keys else {
            return false;
        };
        let now = self.clock.wall();
        let left = keys
            .current()
            .expires_at()
            .duration_since(now)
            .unwrap_or_default();
        if left > ROTATE_BEFORE {
            return false;
        }
        let dir = self.key_dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || KeyStore::load_or_create(&dir, now, ROTATE_BEFORE))
                .await;
        match loaded {
            Ok(Ok(fresh)) if fresh.rotated => {
                let certificate = fresh.current().certificate_id();
                tracing::info!(%certificate,
                    "notification certificate rotated to {certificate}; subscriptions are made again");
                self.keys = Some(Arc::new(fresh));
                return true;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "notification certificate not rotated: {e}"),
            Err(e) => tracing::error!(error = %e, "notification certificate rotation failed: {e}"),
        }
        false
    }
}
