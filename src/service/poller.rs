//! Teams -> PBX by polling: read the presence of every matched user with
//! getPresencesByUserId (650 ids per request, `graph::limits`) and hand each chunk to the
//! main loop as soon as it arrives.
//!
//! How often is the pacing core's ([`crate::sync::pacing`]): `sync.poll_interval = "auto"`
//! polls as often as the budget share allows, minus what the other Graph requests used (read
//! off the Graph client's counters each cycle), slower after 429s; a fixed interval is used
//! as it is. A cycle's requests are spread over its interval. The first cycle, and one started
//! by new users or users losing their subscription, goes as fast as the budget allows
//! (catch-up: nobody waits a whole interval to be known).
//!
//! Users covered by a healthy change-notification subscription are left out of most cycles:
//! they are read only every `notifications.reconciliation_interval`, which also proves the
//! subscriptions right (a change found by polling that no notification announced marks the
//! subscription unhealthy, and its users are polled at full speed again).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::graph::limits::PRESENCE_IDS_PER_REQUEST;
use crate::graph::{GraphClient, GraphError, GraphStats, Presence};
use crate::metrics::Metrics;
use crate::sync::pacing::{PaceSettings, Pacer, Plan};

/// What the poller reports to the main loop.
#[derive(Debug)]
pub enum Polled {
    /// Presences of one chunk of users.
    Chunk(Vec<Presence>),
    /// A whole cycle went through.
    Done {
        users: usize,
        requests: usize,
        elapsed: Duration,
        /// The cycle's interval (start to next start).
        interval: Duration,
        /// The share of the Graph budget the poll uses at that interval (0..=1).
        budget_used: f64,
    },
    /// A cycle stopped at an error; the next one starts at the next interval.
    Failed(GraphError),
    /// Presences a change notification announced (not a poll).
    Notified(Vec<Presence>),
}

/// The inputs of the poller, all hot-reloadable.
pub struct PollInputs {
    pub graph: watch::Receiver<GraphClient>,
    pub ids: watch::Receiver<Arc<Vec<Arc<str>>>>,
    /// `sync.poll_interval` and the budget keys.
    pub pacing: watch::Receiver<PaceSettings>,
    /// Users covered by a healthy subscription (empty without notifications).
    pub covered: watch::Receiver<Arc<HashSet<Arc<str>>>>,
    /// How often covered users are read anyway.
    pub reconcile: Duration,
    /// The service clock (tests move it to reach a reconciliation cycle at once).
    pub clock: crate::clock::Clock,
    /// Each whole cycle's time, the interval and the budget in use.
    pub metrics: Metrics,
}

/// What woke the poller.
enum Wake {
    /// The next cycle is due.
    Due,
    /// New users matched: a catch-up cycle now, for them.
    NewUsers,
    /// Users who lost their subscription: a catch-up cycle now, for them.
    Lost(Vec<Arc<str>>),
    /// The pacing keys changed: plan anew from now.
    Replan,
    Stop,
}

/// The pacing core and what it was last told of the Graph client's counters.
struct Pace {
    pacer: Pacer,
    counted: GraphStats,
    /// The last plan's interval and budget share.
    last: (Duration, f64),
}

impl Pace {
    fn new(inputs: &mut PollInputs) -> Pace {
        Pace {
            pacer: Pacer::new(*inputs.pacing.borrow_and_update(), inputs.clock.now()),
            counted: inputs.graph.borrow().stats(),
            last: (Duration::ZERO, 0.0),
        }
    }

    /// The plan of a cycle of `requests` starting now, after telling the pacer what the
    /// other requests did since the last one; said and shown in the metrics.
    fn plan(&mut self, inputs: &PollInputs, graph: &GraphClient, ids: usize) -> Plan {
        let requests = ids.div_ceil(PRESENCE_IDS_PER_REQUEST);
        let now = inputs.clock.now();
        let stats = graph.stats();
        observe(&mut self.pacer, &self.counted, &stats, now);
        self.counted = stats;
        let plan = self.pacer.plan(requests, now);
        let used = budget_used(self.pacer.settings(), &plan, requests);
        say(&plan, ids, requests, used);
        inputs.metrics.set_poll_pace(plan.interval, used);
        self.last = (plan.interval, used);
        plan
    }

    /// The interval and budget share of the last plan (a cycle's report carries them).
    fn last(&self) -> (Duration, f64) {
        self.last
    }

    /// A poll request is going out: it is not an "other" request for the next plan.
    fn sent(&mut self) {
        self.counted.requests += 1;
    }
}

/// Poll until cancelled.
pub async fn run(mut inputs: PollInputs, out: mpsc::Sender<Polled>, cancel: CancellationToken) {
    let mut pace = Pace::new(&mut inputs);
    let mut next = crate::clock::monotonic();
    // The first cycle reads everyone at once.
    let mut first = true;
    let mut last_full: Option<crate::sync::types::Millis> = None;
    let mut covered = inputs.covered.borrow_and_update().clone();
    // The ids as of the last cycle: a catch-up reads only those added since.
    let mut known: Arc<Vec<Arc<str>>> = Arc::default();
    loop {
        let catch_up = match wake(&mut inputs, &mut covered, next, &cancel).await {
            Wake::Stop => return,
            Wake::Replan => {
                pace = Pace::new(&mut inputs);
                next = crate::clock::monotonic();
                continue;
            }
            Wake::NewUsers => Some(added(&mut inputs, &mut known)),
            Wake::Lost(ids) => Some(Arc::new(ids)),
            Wake::Due => None,
        };
        let graph = inputs.graph.borrow().clone();
        // A catch-up goes between two cycles, as fast as the budget lets; the schedule stays.
        // So does the first cycle; the others are paced request by request.
        let (ids, paced) = match catch_up {
            Some(ids) => (ids, false),
            None => {
                let ids = to_read(&mut inputs, &mut covered, &mut last_full);
                known = inputs.ids.borrow().clone();
                let plan = pace.plan(&inputs, &graph, ids.len());
                next = crate::clock::monotonic() + plan.interval;
                (ids, !std::mem::replace(&mut first, false))
            }
        };
        let gaps = if paced {
            Gaps::Paced(&inputs)
        } else {
            Gaps::Burst
        };
        let (report, then) = tokio::select! {
            () = cancel.cancelled() => return,
            r = cycle(&graph, &ids, gaps, &mut pace, &out) => r,
        };
        if paced {
            next = then;
        }
        if !send(&inputs.metrics, &out, report).await {
            return;
        }
    }
}

/// The ids matched since the last cycle (and now `known`).
fn added(inputs: &mut PollInputs, known: &mut Arc<Vec<Arc<str>>>) -> Arc<Vec<Arc<str>>> {
    let all = inputs.ids.borrow_and_update().clone();
    let before: HashSet<&Arc<str>> = known.iter().collect();
    let new: Vec<Arc<str>> = all
        .iter()
        .filter(|id| !before.contains(id))
        .cloned()
        .collect();
    drop(before);
    *known = all;
    Arc::new(new)
}

/// Hands a cycle's report to the main loop (`false`: it is gone); a cycle that read nobody
/// (everybody covered by notifications, nobody matched) is no poll for the histogram.
async fn send(metrics: &Metrics, out: &mpsc::Sender<Polled>, report: Polled) -> bool {
    if let Polled::Done {
        elapsed, requests, ..
    } = &report
        && *requests > 0
    {
        metrics.poll_cycle(*elapsed);
    }
    out.send(report).await.is_ok()
}

/// Waits for the next cycle, or for what starts one early.
async fn wake(
    inputs: &mut PollInputs,
    covered: &mut Arc<HashSet<Arc<str>>>,
    next: Instant,
    cancel: &CancellationToken,
) -> Wake {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Wake::Stop,
            () = tokio::time::sleep_until(next) => return Wake::Due,
            changed = inputs.ids.changed() => {
                return if changed.is_err() { Wake::Stop } else { Wake::NewUsers };
            }
            changed = inputs.covered.changed() => {
                if changed.is_err() { return Wake::Stop }
                // Users that lost their subscription are read at once; users that gained
                // one wait for the next cycle (nothing to read for them now).
                let now = inputs.covered.borrow_and_update().clone();
                let before = std::mem::replace(covered, now);
                let lost = lost_coverage(&before, covered);
                if !lost.is_empty() {
                    return Wake::Lost(lost);
                }
            }
            changed = inputs.pacing.changed() => {
                return if changed.is_err() { Wake::Stop } else { Wake::Replan };
            }
        }
    }
}

/// The ids of this cycle: everyone on a full cycle (no notifications, or reconciliation
/// due), else those no healthy subscription covers.
fn to_read(
    inputs: &mut PollInputs,
    covered: &mut Arc<HashSet<Arc<str>>>,
    last_full: &mut Option<crate::sync::types::Millis>,
) -> Arc<Vec<Arc<str>>> {
    let all = inputs.ids.borrow_and_update().clone();
    *covered = inputs.covered.borrow_and_update().clone();
    let now = inputs.clock.now();
    let reconcile = crate::sync::types::millis(inputs.reconcile);
    let full = covered.is_empty() || last_full.is_none_or(|t| now - t + 500 >= reconcile);
    if full {
        *last_full = Some(now);
        return all;
    }
    Arc::new(
        all.iter()
            .filter(|id| !covered.contains(*id))
            .cloned()
            .collect(),
    )
}

/// Tells the pacer what the Graph client counted since the last cycle, besides the poll.
fn observe(
    pacer: &mut Pacer,
    before: &GraphStats,
    now_stats: &GraphStats,
    now: crate::sync::types::Millis,
) {
    // A new client (reloaded `[azure]`) counts from 0.
    let delta = |b: u64, n: u64| if n >= b { n - b } else { n };
    pacer.observe(
        delta(before.requests, now_stats.requests),
        delta(before.throttled, now_stats.throttled),
        now,
    );
}

/// The share of the budget `requests` every `plan.interval` use.
fn budget_used(settings: &PaceSettings, plan: &Plan, requests: usize) -> f64 {
    let per_window = requests as f64 * settings.window.as_secs_f64()
        / plan.interval.as_secs_f64().max(f64::MIN_POSITIVE);
    per_window / f64::from(settings.budget.max(1))
}

/// One INFO line when `auto` changes the interval more than twofold.
fn say(plan: &Plan, users: usize, requests: usize, used: f64) {
    if !plan.say {
        return;
    }
    let secs = plan.interval.as_secs_f64();
    let pct = (used * 100.0).round();
    tracing::info!(
        interval_s = secs,
        users,
        requests,
        budget_used_pct = pct,
        "polling every {secs:.1} s: {users} users in {requests} requests, {pct} % of the Graph budget"
    );
}

/// Whether a user covered before is not covered now.
fn lost_coverage(before: &HashSet<Arc<str>>, now: &HashSet<Arc<str>>) -> Vec<Arc<str>> {
    before
        .iter()
        .filter(|id| !now.contains(*id))
        .cloned()
        .collect()
}

/// How a cycle's requests go out.
enum Gaps<'a> {
    /// As fast as the budget lets (the first cycle, catch-ups).
    Burst,
    /// Each one a plan's spacing after the one before, planned anew before each (writes and
    /// 429s meanwhile count at once).
    Paced(&'a PollInputs),
}

/// One cycle: a request per chunk of ids. Returns its report and, paced, when the next
/// cycle's first request is due (one spacing after its last).
async fn cycle(
    graph: &GraphClient,
    ids: &[Arc<str>],
    gaps: Gaps<'_>,
    pace: &mut Pace,
    out: &mpsc::Sender<Polled>,
) -> (Polled, Instant) {
    let started = crate::clock::monotonic();
    let mut sent = started;
    let mut requests = 0;
    let due = |pace: &mut Pace, sent: Instant| match &gaps {
        Gaps::Paced(inputs) => sent + pace.plan(inputs, graph, ids.len()).spacing,
        Gaps::Burst => sent,
    };
    for chunk in ids.chunks(PRESENCE_IDS_PER_REQUEST) {
        if requests > 0 {
            tokio::time::sleep_until(due(pace, sent)).await;
        }
        sent = crate::clock::monotonic();
        pace.sent();
        requests += 1;
        match graph.get_presences(chunk).await {
            Ok(presences) => {
                if out.send(Polled::Chunk(presences)).await.is_err() {
                    break;
                }
            }
            Err(e) => return (Polled::Failed(e), due(pace, sent)),
        }
    }
    let (interval, budget_used) = pace.last();
    let done = Polled::Done {
        users: ids.len(),
        requests,
        elapsed: started.elapsed(),
        interval,
        budget_used,
    };
    (done, due(pace, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<Arc<str>> {
        ids.iter().map(|id| Arc::from(*id)).collect()
    }

    #[test]
    fn only_users_losing_their_subscription_are_read_at_once() {
        let lost = |a: &[&str], b: &[&str]| lost_coverage(&set(a), &set(b));
        assert!(
            lost(&[], &["a", "b"]).is_empty(),
            "gained: nothing to read now"
        );
        assert!(lost(&["a"], &["a", "b"]).is_empty());
        assert_eq!(
            lost(&["a", "b"], &["b"]),
            vec![Arc::from("a")],
            "a lost it: read a"
        );
        assert_eq!(lost(&["a"], &[]).len(), 1);
    }
}
