//! What the daemon tells Prometheus: one registry with a fixed set of families, behind
//! [`Metrics`], a cheap-to-clone handle each component keeps to record the facts it observes
//! (the Graph client its requests, the main loop the PBX events and sessions, the PBX writers
//! their pushes, the poller its cycles, the notification manager its subscriptions).
//! `server.rs` serves the registry on `GET /metrics` when `[metrics] listen` is set.
//!
//! Every family is named `pbx_teams_presence_*` (docs/operations.md, "Metrics", lists them:
//! the names are a contract). No label names a user: at 50,000 users a scrape is as long as
//! at three. Durations are measured with [`crate::clock::monotonic`].
//!
//! The encoding is OpenMetrics text (`prometheus-client`), which Prometheus reads; counters
//! are registered without `_total`, which the encoder appends.

pub mod server;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::sync::types::{CallState, MatchStatus};

/// The prefix of every family.
pub const PREFIX: &str = "pbx_teams_presence";

/// Buckets of the latencies from one side to the other: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of a whole poll cycle (77 requests at 50,000 users, paced by the presence budget).
pub const POLL_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The label values of `users{match}`; `error` is a lookup Graph refused (retried).
const MATCH_STATES: [&str; 5] = ["matched", "not_found", "duplicate", "pending", "error"];

/// How one Graph request ended: an HTTP status, or no answer at all.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum GraphStatus {
    /// The status Graph (or the token endpoint) answered.
    Code(u16),
    /// No answer within `sync.request_timeout`.
    Timeout,
    /// The connection failed (refused, reset, TLS, DNS).
    Network,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
    status: GraphStatus,
}

/// `status` as it appears: `200`, `429`, `timeout`, `network`.
impl prometheus_client::encoding::EncodeLabelValue for GraphStatus {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), fmt::Error> {
        use std::fmt::Write as _;
        match self {
            GraphStatus::Code(code) => write!(encoder, "{code}"),
            GraphStatus::Timeout => encoder.write_str("timeout"),
            GraphStatus::Network => encoder.write_str("network"),
        }
    }
}

type One = [(&'static str, &'static str); 1];

/// Every family, registered once.
struct Families {
    registry: Registry,
    users: Family<One, Gauge>,
    sessions_active: Gauge,
    graph_requests: Family<RequestLabels, Counter>,
    graph_throttled: Counter,
    pbx_events: Family<One, Counter>,
    pbx_pushes: Family<One, Counter>,
    pbx_connected: Gauge,
    speaking_to_teams: Histogram,
    poll_cycle: Histogram,
    poll_interval: Gauge<f64, std::sync::atomic::AtomicU64>,
    poll_budget_used: Gauge<f64, std::sync::atomic::AtomicU64>,
    teams_to_pbx: Histogram,
    subscriptions: Family<One, Gauge>,
    sip_subscriptions: Family<One, Gauge>,
    ha_leader: Gauge,
    ha_epoch: Gauge,
    ha_lease_remaining: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The handle on the registry: clones share it. A handle that no server serves (the
/// default, and `check`'s) still counts; nobody reads it.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Families>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family registered; `build_info{version}` is 1, every other value 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let build_info = Family::<One, Gauge>::default();
        build_info
            .get_or_create(&[("version", env!("CARGO_PKG_VERSION"))])
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label is the daemon's",
            build_info,
        );
        let families = Families {
            users: Family::default(),
            sessions_active: Gauge::default(),
            graph_requests: Family::default(),
            graph_throttled: Counter::default(),
            pbx_events: Family::default(),
            pbx_pushes: Family::default(),
            pbx_connected: Gauge::default(),
            speaking_to_teams: Histogram::new(LATENCY_BUCKETS),
            poll_cycle: Histogram::new(POLL_BUCKETS),
            poll_interval: Gauge::default(),
            poll_budget_used: Gauge::default(),
            teams_to_pbx: Histogram::new(LATENCY_BUCKETS),
            subscriptions: Family::default(),
            sip_subscriptions: Family::default(),
            ha_leader: Gauge::default(),
            ha_epoch: Gauge::default(),
            ha_lease_remaining: Gauge::default(),
            registry,
        };
        let metrics = Metrics {
            inner: Arc::new(register(families)),
        };
        metrics.zeros();
        metrics
    }

    /// The series known in advance, at 0, so that a query finds them before the first event
    /// (`graph_requests` appears with each op and status, `subscriptions` once notifications
    /// run).
    fn zeros(&self) {
        self.set_users(&UserCounts::default());
        for state in [CallState::Idle, CallState::Ringing, CallState::Speaking] {
            let labels = [("state", state.as_str())];
            self.inner.pbx_events.get_or_create(&labels).inc_by(0);
        }
        self.pbx_pushes(true, 0);
        self.pbx_pushes(false, 0);
    }

    /// The registry in the OpenMetrics text format (what `GET /metrics` answers).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }

    /// Directory entries by match state (every state present, zeros included).
    pub fn set_users(&self, counts: &UserCounts) {
        for (state, n) in MATCH_STATES.iter().zip(counts.by_state()) {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.inner.users.get_or_create(&[("match", state)]).set(n);
        }
    }

    /// "In a call" sessions the daemon holds in Teams.
    pub fn set_sessions_active(&self, sessions: usize) {
        let n = i64::try_from(sessions).unwrap_or(i64::MAX);
        self.inner.sessions_active.set(n);
    }

    /// One HTTP request to Graph or to the token endpoint (each attempt counts).
    pub fn graph_request(&self, op: &'static str, status: GraphStatus) {
        let labels = RequestLabels { op, status };
        self.inner.graph_requests.get_or_create(&labels).inc();
    }

    /// Answers with status 429 (inner `$batch` answers included).
    pub fn graph_throttled(&self, answers: u64) {
        self.inner.graph_throttled.inc_by(answers);
    }

    /// The SIP connector's dialog subscriptions by state: `active` (granted), `pending`
    /// (being made, or waiting to be made again), `refused` (the PBX refused; retried hourly).
    pub fn set_sip_subscriptions(&self, active: usize, pending: usize, refused: usize) {
        for (state, n) in [
            ("active", active),
            ("pending", pending),
            ("refused", refused),
        ] {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.inner
                .sip_subscriptions
                .get_or_create(&[("state", state)])
                .set(n);
        }
    }

    /// One PBX event taken by the main loop.
    pub fn pbx_event(&self, state: CallState) {
        let labels = [("state", state.as_str())];
        self.inner.pbx_events.get_or_create(&labels).inc();
    }

    /// Pushes to the PBX (one POST of a batch, or one user's Asterisk writes).
    pub fn pbx_pushes(&self, ok: bool, pushes: u64) {
        let labels = [("result", if ok { "ok" } else { "failed" })];
        self.inner.pbx_pushes.get_or_create(&labels).inc_by(pushes);
    }

    /// Whether the daemon reaches the PBX (the ARI WebSocket; for the HTTP connector, the
    /// last push to `pbx.push_url` went through).
    pub fn set_pbx_connected(&self, connected: bool) {
        self.inner.pbx_connected.set(i64::from(connected));
    }

    /// A PBX event's "In a call" answered by Graph, this long after the main loop took it.
    pub fn speaking_to_teams(&self, took: Duration) {
        self.inner.speaking_to_teams.observe(took.as_secs_f64());
    }

    /// One whole poll cycle.
    pub fn poll_cycle(&self, took: Duration) {
        self.inner.poll_cycle.observe(took.as_secs_f64());
    }

    /// The poll interval in effect and the share of the Graph budget polling uses at it.
    pub fn set_poll_pace(&self, interval: Duration, budget_used: f64) {
        self.inner.poll_interval.set(interval.as_secs_f64());
        self.inner.poll_budget_used.set(budget_used);
    }

    /// A Teams change acknowledged by the PBX, this long after the main loop read it.
    pub fn teams_to_pbx(&self, took: Duration) {
        self.inner.teams_to_pbx.observe(took.as_secs_f64());
    }

    /// Subscriptions held, by whether their users count as covered.
    /// `[ha]`: whether this node leads, the epoch of the lease (its own term, or the
    /// holder's as last seen) and how long the lease has left as this node knows it.
    pub fn set_ha(&self, leading: bool, epoch: i64, remaining: Duration) {
        self.inner.ha_leader.set(i64::from(leading));
        self.inner.ha_epoch.set(epoch);
        self.inner.ha_lease_remaining.set(remaining.as_secs_f64());
    }

    pub fn set_subscriptions(&self, healthy: usize, unhealthy: usize) {
        for (state, n) in [("healthy", healthy), ("unhealthy", unhealthy)] {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.inner
                .subscriptions
                .get_or_create(&[("state", state)])
                .set(n);
        }
    }
}

/// Register every family but `build_info` (already in).
fn register(mut f: Families) -> Families {
    let r = &mut f.registry;
    r.register(
        "ha_leader",
        "[ha]: 1 while this node holds the leader lease, else 0 (0 without [ha])",
        f.ha_leader.clone(),
    );
    r.register(
        "ha_epoch",
        "[ha]: the lease's epoch: this node's term while it leads, else the holder's as last seen",
        f.ha_epoch.clone(),
    );
    r.register(
        "ha_lease_remaining_seconds",
        "[ha]: how long the lease has left as this node last saw it (its own fence while it leads)",
        f.ha_lease_remaining.clone(),
    );
    r.register(
        "users",
        "Directory entries by the state of their match to a Teams user",
        f.users.clone(),
    );
    r.register(
        "sessions_active",
        "\"In a call\" presence sessions the daemon holds in Teams",
        f.sessions_active.clone(),
    );
    r.register(
        "graph_requests",
        "HTTP requests to Microsoft Graph and the token endpoint, each attempt, by operation and status (HTTP code, timeout or network)",
        f.graph_requests.clone(),
    );
    r.register(
        "graph_throttled",
        "Answers with status 429 from Graph or the token endpoint",
        f.graph_throttled.clone(),
    );
    r.register(
        "poll_interval_seconds",
        "The poll interval in effect (sync.poll_interval: auto, or fixed)",
        f.poll_interval.clone(),
    );
    r.register(
        "poll_budget_used_ratio",
        "The share of the Graph presence request budget (sync.graph_budget) polling uses at that interval",
        f.poll_budget_used.clone(),
    );
    r.register(
        "pbx_events",
        "PBX call-state events taken, by state",
        f.pbx_events.clone(),
    );
    r.register(
        "pbx_pushes",
        "Teams states pushed to the PBX (a POST to pbx.push_url, or one user's Asterisk writes), by result",
        f.pbx_pushes.clone(),
    );
    r.register(
        "pbx_connected",
        "1 while the daemon reaches the PBX (ARI WebSocket up; for kind http, the last push went through)",
        f.pbx_connected.clone(),
    );
    r.register(
        "speaking_to_teams_seconds",
        "From a PBX event taken to Graph's answer to the setPresence it caused",
        f.speaking_to_teams.clone(),
    );
    r.register(
        "poll_cycle_seconds",
        "One whole poll cycle of getPresencesByUserId",
        f.poll_cycle.clone(),
    );
    r.register(
        "teams_to_pbx_seconds",
        "From a Teams change read (poll or notification) to the PBX acknowledging the push",
        f.teams_to_pbx.clone(),
    );
    r.register(
        "subscriptions",
        "Change-notification subscriptions held, by health (healthy: their users are covered)",
        f.subscriptions.clone(),
    );
    r.register(
        "sip_subscriptions",
        "The SIP connector's dialog subscriptions (one per user), by state",
        f.sip_subscriptions.clone(),
    );
    f
}

/// Directory entries by match state, for [`Metrics::set_users`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserCounts {
    pub matched: usize,
    pub not_found: usize,
    pub duplicate: usize,
    /// Not looked up yet.
    pub pending: usize,
    /// The lookup failed (looked up again).
    pub error: usize,
}

impl UserCounts {
    /// Count one entry: its match state, `None` while it waits for a lookup.
    pub fn add(&mut self, status: Option<MatchStatus>) {
        match status {
            Some(MatchStatus::Matched) => self.matched += 1,
            Some(MatchStatus::NotFound) => self.not_found += 1,
            Some(MatchStatus::Duplicate) => self.duplicate += 1,
            Some(MatchStatus::Error) => self.error += 1,
            None => self.pending += 1,
        }
    }

    /// In the order of `MATCH_STATES`.
    fn by_state(&self) -> [usize; 5] {
        [
            self.matched,
            self.not_found,
            self.duplicate,
            self.pending,
            self.error,
        ]
    }
}

#[cfg(test)]
mod tests;
