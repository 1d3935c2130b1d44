//! Teams -> PBX by polling: every `sync.poll_interval`, read the presence of every matched user
//! with getPresencesByUserId (650 ids per request, `graph::limits`) and hand each
//! chunk to the main loop as soon as it arrives.
//!
//! Users covered by a healthy change-notification subscription are left out of most cycles:
//! they are read only every `notifications.reconciliation_interval`, which also proves the
//! subscriptions right (a change found by polling that no notification announced marks the
//! subscription unhealthy, and its users are polled at full speed again).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::graph::limits::PRESENCE_IDS_PER_REQUEST;
use crate::graph::{GraphClient, GraphError, Presence};
use crate::metrics::Metrics;

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
    pub interval: watch::Receiver<Duration>,
    /// Users covered by a healthy subscription (empty without notifications).
    pub covered: watch::Receiver<Arc<HashSet<Arc<str>>>>,
    /// How often covered users are read anyway.
    pub reconcile: Duration,
    /// The service clock (tests move it to reach a reconciliation cycle at once).
    pub clock: crate::clock::Clock,
    /// Each whole cycle's time.
    pub metrics: Metrics,
}

/// Poll until cancelled. A change of the id list starts a cycle at once (new users are
/// known within moments of being matched).
pub async fn run(mut inputs: PollInputs, out: mpsc::Sender<Polled>, cancel: CancellationToken) {
    let mut ticker = new_ticker(*inputs.interval.borrow_and_update());
    let mut last_full: Option<crate::sync::types::Millis> = None;
    let reconcile = crate::sync::types::millis(inputs.reconcile);
    let mut covered = inputs.covered.borrow_and_update().clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticker.tick() => {}
            changed = inputs.ids.changed() => if changed.is_err() { return },
            changed = inputs.covered.changed() => {
                if changed.is_err() { return }
                // Users that lost their subscription are read at once; users that gained
                // one wait for the next cycle (nothing to read for them now).
                let before = std::mem::replace(&mut covered, inputs.covered.borrow_and_update().clone());
                if !lost_coverage(&before, &covered) {
                    continue;
                }
            }
            changed = inputs.interval.changed() => {
                if changed.is_err() { return }
                ticker = new_ticker(*inputs.interval.borrow_and_update());
                continue;
            }
        }
        let all = inputs.ids.borrow_and_update().clone();
        covered = inputs.covered.borrow_and_update().clone();
        let now = inputs.clock.now();
        let full = covered.is_empty() || last_full.is_none_or(|t| now - t + 500 >= reconcile);
        let ids = if full {
            last_full = Some(now);
            all
        } else {
            Arc::new(
                all.iter()
                    .filter(|id| !covered.contains(*id))
                    .cloned()
                    .collect(),
            )
        };
        let graph = inputs.graph.borrow().clone();
        let report = tokio::select! {
            () = cancel.cancelled() => return,
            r = cycle(&graph, &ids, &out) => r,
        };
        // A cycle with nothing to read (everybody covered by notifications, nobody matched)
        // is no poll: it would pull the histogram towards 0.
        if let Polled::Done {
            elapsed, requests, ..
        } = &report
            && *requests > 0
        {
            inputs.metrics.poll_cycle(*elapsed);
        }
        if out.send(report).await.is_err() {
            return;
        }
    }
}

/// Whether a user covered before is not covered now.
fn lost_coverage(before: &HashSet<Arc<str>>, now: &HashSet<Arc<str>>) -> bool {
    before.iter().any(|id| !now.contains(id))
}

fn new_ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period.max(Duration::from_millis(100)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

async fn cycle(graph: &GraphClient, ids: &[Arc<str>], out: &mpsc::Sender<Polled>) -> Polled {
    let started = crate::clock::monotonic();
    let mut requests = 0;
    for chunk in ids.chunks(PRESENCE_IDS_PER_REQUEST) {
        requests += 1;
        match graph.get_presences(chunk).await {
            Ok(presences) => {
                if out.send(Polled::Chunk(presences)).await.is_err() {
                    break;
                }
            }
            Err(e) => return Polled::Failed(e),
        }
    }
    Polled::Done {
        users: ids.len(),
        requests,
        elapsed: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> HashSet<Arc<str>> {
        ids.iter().map(|id| Arc::from(*id)).collect()
    }

    #[test]
    fn only_users_losing_their_subscription_start_a_poll() {
        assert!(
            !lost_coverage(&set(&[]), &set(&["a", "b"])),
            "gained: nothing to read now"
        );
        assert!(!lost_coverage(&set(&["a"]), &set(&["a", "b"])));
        assert!(
            lost_coverage(&set(&["a", "b"]), &set(&["b"])),
            "a lost it: read a at once"
        );
        assert!(lost_coverage(&set(&["a"]), &set(&[])));
    }
}
