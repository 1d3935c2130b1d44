//! Change notifications: subscription accounts hold presence subscriptions for up to 650
//! users each; the webhook hands their notifications here; changes reach the main loop like
//! poll results. Users no subscription covers (or whose subscription is unhealthy) are polled
//! at full speed; covered ones only at the reconciliation interval.
//!
//! One task owns every account (`account.rs`), and does everything in [`Manager::maintain`],
//! run every 30 s and at once after anything that needs it: read tokens `login` stored, assign
//! users to accounts (`sync::shards`), make, renew or drop subscriptions, and publish which
//! subscriptions exist (for the webhook) and who is covered (for the poller and `status`).

mod account;
mod incoming;
mod subs;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::RngCore;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::daemon::ServiceError;
use super::poller::Polled;
use crate::clock::Clock;
use crate::config::NotificationsConfig;
use crate::graph::delegated::Delegated;
use crate::graph::notify_crypto::{self, CryptoError, EncryptedContent, KeyStore};
use crate::graph::subscriptions::{MAX_IDS, NewSubscription};
use crate::graph::webhook::{self, Notification};
use crate::graph::{Bearer, GraphClient, GraphError, Presence};
use crate::store::{Store, SubscriptionRow, Write};
use crate::subscriptions::shards;
use crate::sync::types::millis;
use account::{Account, Sub, TokenOutcome, ids_of_resource};

/// Lifetime asked for; presence allows at most 60 minutes [D13][D3].
const LIFETIME: Duration = Duration::from_secs(55 * 60);
/// Renew this long before expiry.
const RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
/// Rotate the notification certificate this long before it expires.
const ROTATE_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Basic notifications are fetched together after this pause.
const FETCH_AFTER: Duration = Duration::from_millis(5);
/// A change found by polling that no notification announced within this time marks the
/// subscription unhealthy (presence notifications take up to a minute [D19]).
const MISSED_AFTER: Duration = Duration::from_secs(90);

/// The channels the manager talks through.
pub struct Links {
    pub graph: watch::Receiver<GraphClient>,
    /// Every matched user (the poller's list).
    pub ids: watch::Receiver<Arc<Vec<Arc<str>>>>,
    pub notes: mpsc::Receiver<Vec<Notification>>,
    /// Covered users whose change a poll found (the main loop sends them).
    pub suspects: mpsc::UnboundedReceiver<Arc<str>>,
    pub known: watch::Sender<Arc<HashMap<String, String>>>,
    pub covered: watch::Sender<Arc<HashSet<Arc<str>>>>,
    pub out: mpsc::Sender<Polled>,
}

/// What the daemon hands over.
pub struct Channels {
    pub clock: Clock,
    pub tick: Duration,
    pub graph: watch::Receiver<GraphClient>,
    pub ids: watch::Receiver<Arc<Vec<Arc<str>>>>,
    pub covered: watch::Sender<Arc<HashSet<Arc<str>>>>,
    pub out: mpsc::Sender<Polled>,
}

/// Bind the webhook, start it and the manager. Returns where the main loop reports covered
/// users whose change only a poll saw.
pub async fn start(
    n: &NotificationsConfig,
    config: &crate::config::Config,
    store: &Store,
    recorded: Vec<SubscriptionRow>,
    ch: Channels,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(mpsc::UnboundedSender<Arc<str>>, std::net::SocketAddr), ServiceError> {
    let listener = webhook::bind(n.listen)
        .await
        .map_err(|e| ServiceError::Start(e.to_string()))?;
    let bound = listener.local_addr().unwrap_or(n.listen);
    let tls = match n.tls.clone() {
        Some(files) => Some(
            tokio::task::spawn_blocking(move || webhook::tls_config(&files.cert, &files.key))
                .await
                .map_err(|e| ServiceError::Start(format!("notifications TLS: {e}")))?
                .map_err(|e| ServiceError::Start(e.to_string()))?,
        ),
        None => None,
    };
    let delegated = Delegated::new(&super::build::delegated_settings(config))
        .map_err(|e| ServiceError::Start(format!("notifications: {e}")))?;
    let keys = if n.include_resource_data {
        let dir = key_dir(config);
        let now = ch.clock.wall();
        let loaded =
            tokio::task::spawn_blocking(move || KeyStore::load_or_create(&dir, now, ROTATE_BEFORE))
                .await
                .map_err(|e| ServiceError::Start(format!("notification keys: {e}")))?
                .map_err(|e| ServiceError::Start(format!("notification keys: {e}")))?;
        tracing::info!(certificate = %loaded.current().certificate_id(),
            "rich notifications: encryption certificate ready");
        Some(Arc::new(loaded))
    } else {
        None
    };
    let (known_tx, known_rx) = watch::channel(Arc::default());
    let (notes_tx, notes) = mpsc::channel(1024);
    let (suspects_tx, suspects) = mpsc::unbounded_channel();
    let stop = shutdown.clone();
    tracker.spawn(async move {
        if let Err(e) = webhook::serve(listener, tls, known_rx, notes_tx, stop).await {
            tracing::error!(error = %e, "notification endpoint stopped");
        }
    });
    let links = Links {
        graph: ch.graph,
        ids: ch.ids,
        notes,
        suspects,
        known: known_tx,
        covered: ch.covered,
        out: ch.out,
    };
    let mut manager = Manager::new(
        n.clone(),
        config.source.display().to_string(),
        delegated,
        store.clone(),
        recorded,
        links,
    );
    manager.clock = ch.clock;
    manager.tick = ch.tick;
    manager.keys = keys;
    manager.key_dir = key_dir(config);
    tracing::info!(listen = %bound, public_url = %n.public_url, accounts = n.accounts.len(),
        "change notifications enabled");
    tracker.spawn(manager.run(shutdown.clone()));
    Ok((suspects_tx, bound))
}

/// The notification keys live next to the state database (its directory is private).
fn key_dir(config: &crate::config::Config) -> PathBuf {
    config
        .sync
        .state_db
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

pub struct Manager {
    config: NotificationsConfig,
    clock: Clock,
    tick: Duration,
    /// Rich notifications: our key pair and certificate (`None`: basic notifications).
    keys: Option<Arc<KeyStore>>,
    key_dir: PathBuf,
    /// The config file, for the `login` command in messages.
    config_path: String,
    delegated: Delegated,
    store: Store,
    accounts: Vec<Account>,
    links: Links,
    /// Ids of basic notifications waiting to be fetched.
    pending: HashSet<String>,
    /// Covered users a poll found changed, and since when.
    suspects: HashMap<Arc<str>, crate::sync::types::Millis>,
    /// Subscriptions recorded by an earlier run (id -> row), for adoption at start.
    recorded: HashMap<String, SubscriptionRow>,
}

impl Manager {
    pub fn new(
        config: NotificationsConfig,
        config_path: String,
        delegated: Delegated,
        store: Store,
        recorded: Vec<SubscriptionRow>,
        links: Links,
    ) -> Manager {
        let accounts = config.accounts.iter().cloned().map(Account::new).collect();
        Manager {
            config,
            clock: Clock::default(),
            tick: Duration::from_secs(30),
            keys: None,
            key_dir: PathBuf::new(),
            config_path,
            delegated,
            store,
            accounts,
            links,
            pending: HashSet::new(),
            suspects: HashMap::new(),
            recorded: recorded.into_iter().map(|r| (r.id.clone(), r)).collect(),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.tick);
        let fetch = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(fetch);
        let mut fetch_armed = false;
        loop {
            let mut maintain = false;
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => maintain = true,
                changed = self.links.ids.changed() => {
                    if changed.is_err() { break }
                    maintain = true;
                }
                Some(notes) = self.links.notes.recv() => {
                    maintain = self.on_notes(notes).await;
                    if !self.pending.is_empty() && !fetch_armed {
                        fetch.as_mut().reset(tokio::time::Instant::now() + FETCH_AFTER);
                        fetch_armed = true;
                    }
                }
                Some(user) = self.links.suspects.recv() => {
                    let now = self.clock.now();
                    self.suspects.entry(user).or_insert(now);
                }
                () = &mut fetch, if fetch_armed => {
                    fetch_armed = false;
                    self.fetch_pending().await;
                }
            }
            if maintain {
                self.maintain().await;
            }
        }
        if self.config.delete_on_shutdown {
            self.delete_all().await;
        }
    }

    fn now(&self) -> SystemTime {
        self.clock.wall()
    }

    fn sub_mut(&mut self, id: &str) -> Option<&mut Sub> {
        self.accounts
            .iter_mut()
            .filter_map(|a| a.sub.as_mut())
            .find(|s| s.id == id)
    }

    async fn maintain(&mut self) {
        self.rotate_keys().await;
        self.read_tokens().await;
        self.judge_suspects();
        // Subscriptions an earlier run left are adopted first, so the assignment keeps them.
        for i in 0..self.accounts.len() {
            if self.accounts[i].usable(Instant::now())
                && !self.accounts[i].adopted
                && let Some(token) = self.token(i).await
            {
                self.adopt(i, &token).await;
            }
        }
        let now = Instant::now();
        let wanted = self.links.ids.borrow().clone();
        let current: Vec<shards::Shard> = self
            .accounts
            .iter()
            .map(|a| a.sub.as_ref().map(|s| s.ids.clone()).unwrap_or_default())
            .collect();
        let holds: Vec<bool> = self.accounts.iter().map(Account::can_hold).collect();
        let (assigned, polled) = shards::assign(&current, &holds, &wanted, MAX_IDS);
        for (i, ids) in assigned.into_iter().enumerate() {
            if self.accounts[i].usable(now) {
                self.settle(i, ids).await;
            }
        }
        self.publish(polled.len());
    }

    /// A certificate near its end is replaced (the previous key still decrypts what is under
    /// way); subscriptions are then made again with the new one.
    async fn rotate_keys(&mut self) {
        let Some(keys) = &self.keys else { return };
        let now = self.now();
        let left = keys
            .current()
            .expires_at()
            .duration_since(now)
            .unwrap_or_default();
        if left > ROTATE_BEFORE {
            return;
        }
        let dir = self.key_dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || KeyStore::load_or_create(&dir, now, ROTATE_BEFORE))
                .await;
        match loaded {
            Ok(Ok(fresh)) if fresh.rotated => {
                tracing::info!(certificate = %fresh.current().certificate_id(),
                    "notification certificate rotated; subscriptions are made again");
                self.keys = Some(Arc::new(fresh));
                for sub in self.accounts.iter_mut().filter_map(|a| a.sub.as_mut()) {
                    sub.healthy = false;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "notification certificate not rotated"),
            Err(e) => tracing::error!(error = %e, "notification certificate rotation failed"),
        }
    }

    /// Pick up refresh tokens `login` wrote (or rotated ones).
    async fn read_tokens(&mut self) {
        let needed = self
            .accounts
            .iter()
            .any(|a| a.refresh.is_none() || a.signed_out);
        if !needed {
            return;
        }
        match self.store.account_tokens().await {
            Ok(tokens) => {
                for (name, token) in tokens {
                    if let Some(a) = self
                        .accounts
                        .iter_mut()
                        .find(|a| a.name == name && (a.refresh.is_none() || a.signed_out))
                    {
                        tracing::info!(account = %a.name, "subscription account token found");
                        a.set_refresh(token);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read subscription account tokens"),
        }
        for a in &mut self.accounts {
            if a.refresh.is_none() && !a.told_no_token {
                tracing::warn!(account = %a.name,
                    "subscription account not signed in; its share of users is polled. Sign it in: pbx-teams-presence login --config {} --account {}",
                    self.config_path, a.name);
                a.told_no_token = true;
            }
        }
    }

    /// Covered users a poll found changed, never announced: their subscription is unhealthy.
    fn judge_suspects(&mut self) {
        let now = self.clock.now();
        let late: Vec<Arc<str>> = self
            .suspects
            .iter()
            .filter(|(_, since)| now - **since >= millis(MISSED_AFTER))
            .map(|(u, _)| u.clone())
            .collect();
        for user in late {
            self.suspects.remove(&user);
            for a in &mut self.accounts {
                if let Some(sub) = a
                    .sub
                    .as_mut()
                    .filter(|s| s.healthy && s.ids.contains(&user))
                {
                    tracing::warn!(account = %a.name, subscription = %sub.id, %user,
                        "a change polling found was never notified; the subscription is made again and its users are polled meanwhile");
                    sub.healthy = false;
                }
            }
        }
    }

    async fn token(&mut self, i: usize) -> Option<Bearer> {
        let (outcome, rotated) = self.accounts[i].token(&self.delegated).await;
        let name = self.accounts[i].name.clone();
        if let Some(r) = rotated {
            self.store.write(Write::SetAccountToken {
                account: name.clone(),
                refresh_token: r,
                at: self.clock.now(),
            });
        }
        match outcome {
            TokenOutcome::Ok(t) => Some(t),
            TokenOutcome::SignedOut(e) => {
                // Not the app's credentials: this account's own sign-in (its refresh token).
                let e = match e {
                    GraphError::Credentials { aadsts, error, .. } => format!(
                        "Entra refused the account's refresh token ({error}{})",
                        aadsts.map_or(String::new(), |c| format!(", AADSTS{c}"))
                    ),
                    other => other.to_string(),
                };
                tracing::error!(account = %name, error = %e,
                    "subscription account signed out; its users are polled. Sign it in again: pbx-teams-presence login --config {} --account {name}",
                    self.config_path);
                self.store.write(Write::RemoveAccountToken {
                    account: name.clone(),
                });
                self.store.write(Write::RecordError {
                    component: "notifications".into(),
                    user: Some(name.clone()),
                    message: format!(
                        "signed out ({e}); run: pbx-teams-presence login --account {name}"
                    ),
                    at: self.clock.now(),
                });
                self.accounts[i].refresh = None;
                self.accounts[i].told_no_token = true;
                // It cannot be deleted without a token; Graph drops it when it expires.
                if let Some(sub) = self.accounts[i].sub.take() {
                    self.store.write(Write::DropSubscription { id: sub.id });
                }
                None
            }
            TokenOutcome::Later(e) => {
                tracing::warn!(account = %name, error = %e, "subscription account token not refreshed; retrying later");
                self.accounts[i].failed(Instant::now());
                None
            }
        }
    }

    fn publish(&self, polled: usize) {
        let known: HashMap<String, String> = self
            .accounts
            .iter()
            .filter_map(|a| a.sub.as_ref())
            .map(|s| (s.id.clone(), s.client_state.clone()))
            .collect();
        self.links.known.send_replace(Arc::new(known));
        let now = self.now();
        // Each account's covered users, once; the set the poller needs is their union.
        let per_account: Vec<(&str, &[Arc<str>])> = self
            .accounts
            .iter()
            .map(|a| {
                let ids = a
                    .sub
                    .as_ref()
                    .filter(|s| s.covers(now))
                    .map_or(&[][..], |s| &s.ids[..]);
                (a.name.as_str(), ids)
            })
            .collect();
        let covered: HashSet<Arc<str>> = per_account
            .iter()
            .flat_map(|(_, ids)| ids.iter().cloned())
            .collect();
        let count = covered.len();
        let changed = **self.links.covered.borrow() != covered;
        if changed {
            self.links.covered.send_replace(Arc::new(covered));
            for (account, ids) in per_account {
                self.store.write(Write::SetCoverage {
                    account: account.to_owned(),
                    teams_ids: ids.iter().map(|i| i.to_string()).collect(),
                });
            }
            tracing::info!(covered = count, polled, "notification coverage changed");
        }
    }
}
