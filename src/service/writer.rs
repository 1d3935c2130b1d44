//! Presence writes to Teams: per Teams user, never more than one write in flight, and the
//! latest wanted state wins (states wanted while a write is in flight collapse into one).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::graph::{ClearOutcome, GraphClient, GraphError};
use crate::sync::engine::IN_CALL;

/// What we want the app's session of one Teams user to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// Busy/InACall for `expiration` (written again on every new value: that is the refresh).
    InCall {
        extension: String,
        expiration: Duration,
    },
    /// No session.
    Clear { extension: String },
}

/// The result of one write, for the store and the log.
#[derive(Debug)]
pub struct Written {
    pub teams_id: String,
    pub wanted: Wanted,
    pub result: Result<(), String>,
}

/// One writer task per Teams user that ever needed a write.
pub struct Writers {
    graph: watch::Receiver<GraphClient>,
    outcomes: mpsc::UnboundedSender<Written>,
    tracker: TaskTracker,
    senders: HashMap<String, watch::Sender<Option<Wanted>>>,
}

impl Writers {
    pub fn new(
        graph: watch::Receiver<GraphClient>,
        outcomes: mpsc::UnboundedSender<Written>,
    ) -> Writers {
        Writers {
            graph,
            outcomes,
            tracker: TaskTracker::new(),
            senders: HashMap::new(),
        }
    }

    /// Ask for `wanted` on `teams_id`; replaces anything still waiting for that user.
    pub fn want(&mut self, teams_id: &str, wanted: Wanted) {
        if let Some(tx) = self.senders.get(teams_id)
            && tx.send(Some(wanted.clone())).is_ok()
        {
            return;
        }
        let (tx, rx) = watch::channel(None);
        let _ = tx.send(Some(wanted));
        let task = run(
            teams_id.to_owned(),
            rx,
            self.graph.clone(),
            self.outcomes.clone(),
        );
        self.tracker.spawn(task);
        self.senders.insert(teams_id.to_owned(), tx);
    }

    /// Stop taking work and wait (at most `deadline`) for every queued write to finish.
    /// Returns false when the deadline passed first.
    pub async fn drain(&mut self, deadline: Duration) -> bool {
        self.senders.clear();
        self.tracker.close();
        tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Retries of a write that failed for a passing reason (throttling, outage, network), after the
/// Graph client's own retries gave up: 1 s doubling up to 30 s, until it lands or a newer
/// state is wanted. A failed clear must not leave anybody "In a call".
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

async fn run(
    teams_id: String,
    mut rx: watch::Receiver<Option<Wanted>>,
    graph: watch::Receiver<GraphClient>,
    outcomes: mpsc::UnboundedSender<Written>,
) {
    // `changed` still reports a value sent just before the sender was dropped, so a final
    // Clear queued at shutdown is written before the task ends.
    while rx.changed().await.is_ok() {
        let Some(wanted) = rx.borrow_and_update().clone() else {
            continue;
        };
        let mut failures = 0;
        loop {
            let client = graph.borrow().clone();
            let result = write(&client, &teams_id, &wanted).await;
            let transient = matches!(&result, Err(e) if e.is_transient());
            if !transient || failures == 0 {
                let result = result.map_err(|e| e.to_string());
                let written = Written {
                    teams_id: teams_id.clone(),
                    wanted: wanted.clone(),
                    result,
                };
                let _ = outcomes.send(written);
            }
            if !transient {
                break;
            }
            failures += 1;
            // A newer wanted state replaces this one; otherwise try again after the backoff.
            tokio::select! {
                () = tokio::time::sleep(RETRY.delay(failures).max(Duration::from_millis(200))) => {}
                changed = rx.changed() => {
                    if changed.is_ok() {
                        rx.mark_changed();
                    }
                    break;
                }
            }
        }
    }
}

async fn write(client: &GraphClient, teams_id: &str, wanted: &Wanted) -> Result<(), GraphError> {
    match wanted {
        Wanted::InCall { expiration, .. } => {
            client
                .set_presence(teams_id, IN_CALL.0, IN_CALL.1, *expiration)
                .await
        }
        // Cleared, or no session left to clear: either way the user is not "In a call".
        Wanted::Clear { .. } => client
            .clear_presence(teams_id)
            .await
            .map(|_: ClearOutcome| ()),
    }
}
