//! Presence writes to Teams: per Teams user, never more than one write in flight, and the
//! latest wanted state wins (states wanted while a write is in flight collapse into one).
//!
//! Each user's writer is a task on the daemon's tracker, in a span naming the extension and
//! the Teams user. At shutdown the main loop drops the senders and waits for the writers the
//! way mini-redis waits for its connections: every writer holds a clone of one `done` sender,
//! and the receiver sees the channel close when the last writer has finished.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::clock::monotonic;
use crate::graph::{ClearOutcome, GraphClient, GraphError};
use crate::metrics::Metrics;
use crate::sync::engine::PREFERRED_DND;
use crate::sync::types::SessionPresence;

/// What we want the app's session of one Teams user to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// The session says `presence` for `expiration` (written again on every new value: that
    /// is the refresh).
    Session {
        extension: String,
        presence: SessionPresence,
        expiration: Duration,
        /// When the main loop took the PBX event that asked for it (`None`: a refresh):
        /// Graph's answer is measured from then (`speaking_to_teams_seconds`).
        since: Option<Instant>,
    },
    /// No session (it said `presence`).
    Clear {
        extension: String,
        presence: SessionPresence,
    },
    /// The user's preferred presence DoNotDisturb for `expiration`; `checked`: only if
    /// Teams still shows DoNotDisturb.
    PreferredDnd {
        extension: String,
        expiration: Duration,
        checked: bool,
    },
    /// The preferred DND we set cleared, if Teams still shows DoNotDisturb.
    ClearPreferred { extension: String },
}

/// The independent writes of one Teams user: its app session, and its preferred presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    Session = 0,
    Preferred = 1,
}

/// One Teams user's writers, by [`Lane`].
type Lanes = [Option<watch::Sender<Option<Wanted>>>; 2];

impl Wanted {
    /// What the session says, or said before this clear (the preferred DND: DND).
    pub fn presence(&self) -> SessionPresence {
        match self {
            Wanted::Session { presence, .. } | Wanted::Clear { presence, .. } => *presence,
            Wanted::PreferredDnd { .. } | Wanted::ClearPreferred { .. } => SessionPresence::Dnd,
        }
    }

    pub fn lane(&self) -> Lane {
        match self {
            Wanted::Session { .. } | Wanted::Clear { .. } => Lane::Session,
            Wanted::PreferredDnd { .. } | Wanted::ClearPreferred { .. } => Lane::Preferred,
        }
    }

    /// Whether this write takes something away (a session, a preferred DND).
    pub fn clears(&self) -> bool {
        matches!(self, Wanted::Clear { .. } | Wanted::ClearPreferred { .. })
    }

    pub fn extension(&self) -> &str {
        match self {
            Wanted::Session { extension, .. }
            | Wanted::Clear { extension, .. }
            | Wanted::PreferredDnd { extension, .. }
            | Wanted::ClearPreferred { extension } => extension,
        }
    }
}

/// The result of one write, for the store and the log.
#[derive(Debug)]
pub struct Written {
    pub teams_id: String,
    pub wanted: Wanted,
    /// A session written again with what the last one that landed said (the refresh during a
    /// call), or a clear after a clear: nothing changed in Teams.
    pub repeat: bool,
    /// A checked preferred DND write found the user's status changed since: left as it is.
    pub left: bool,
    pub result: Result<(), GraphError>,
}

/// One writer task per Teams user that ever needed a write.
pub struct Writers {
    graph: watch::Receiver<GraphClient>,
    outcomes: mpsc::Sender<Written>,
    tracker: TaskTracker,
    senders: HashMap<String, Lanes>,
    /// Wanted states of the main loop's current step, not yet handed over.
    staged: Vec<(String, Wanted)>,
    /// Held by every writer; closed once the last one is gone.
    done: Option<mpsc::Sender<()>>,
    all_done: Option<mpsc::Receiver<()>>,
    metrics: Metrics,
}

impl Writers {
    pub fn new(
        graph: watch::Receiver<GraphClient>,
        outcomes: mpsc::Sender<Written>,
        tracker: TaskTracker,
        metrics: Metrics,
    ) -> Writers {
        let (done, all_done) = mpsc::channel(1);
        Writers {
            graph,
            outcomes,
            tracker,
            senders: HashMap::new(),
            staged: Vec::new(),
            done: Some(done),
            all_done: Some(all_done),
            metrics,
        }
    }

    /// Ask for `wanted` on `teams_id`, handed to its writer at the next [`Writers::release`]:
    /// the main loop releases once the step's store writes are queued, so a session is on its
    /// way to the store before it is written to Teams (a crash leaves a trace to clear).
    pub fn want(&mut self, teams_id: &str, wanted: Wanted) {
        self.staged.push((teams_id.to_owned(), wanted));
    }

    /// Whether a staged state writes a session or a preferred DND (its row must be committed
    /// first).
    pub fn opens_session(&self) -> bool {
        self.staged
            .iter()
            .any(|(_, w)| matches!(w, Wanted::Session { .. } | Wanted::PreferredDnd { .. }))
    }

    /// Hand every staged state to its writer (the latest replaces anything still waiting).
    pub fn release(&mut self) {
        let mut staged = std::mem::take(&mut self.staged);
        for (teams_id, wanted) in staged.drain(..) {
            self.send(&teams_id, wanted);
        }
        self.staged = staged;
    }

    fn send(&mut self, teams_id: &str, wanted: Wanted) {
        let lane = wanted.lane() as usize;
        if let Some(tx) = self.senders.get(teams_id).and_then(|l| l[lane].as_ref())
            && tx.send(Some(wanted.clone())).is_ok()
        {
            return;
        }
        let Some(done) = self.done.clone() else {
            let extension = wanted.extension();
            tracing::warn!(
                extension,
                teams_user = teams_id,
                "{extension}: presence write after shutdown began, dropped"
            );
            return;
        };
        // The Teams user only: one writer serves every extension of that user.
        let span = tracing::info_span!("writer", teams_user = teams_id);
        let (tx, rx) = watch::channel(None);
        let _ = tx.send(Some(wanted));
        let task = run(
            teams_id.to_owned(),
            rx,
            self.graph.clone(),
            self.outcomes.clone(),
            self.metrics.clone(),
        );
        self.tracker.spawn(
            async move {
                task.await;
                drop(done);
            }
            .instrument(span),
        );
        self.senders.entry(teams_id.to_owned()).or_default()[lane] = Some(tx);
    }

    /// Stop taking work: every writer finishes what it was asked, then ends. The future
    /// resolves once the last writer has ended.
    pub fn close(&mut self) -> impl Future<Output = ()> + Send + 'static {
        self.senders.clear();
        self.done = None;
        let mut all_done = self.all_done.take();
        async move {
            if let Some(rx) = &mut all_done {
                while rx.recv().await.is_some() {}
            }
        }
    }
}

/// Retries of a write that failed for a passing reason (throttling, outage, network), after the
/// Graph client's own retries gave up: 1 s doubling up to 5 s, until it lands or a newer
/// state is wanted. A failed clear must not leave anybody "In a call". Short, because while
/// Graph is down a retry costs nothing: the Graph client's breaker holds it until a probe gets
/// an answer; and once Graph is back every write is retried within 5 s.
const RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));

/// The shortest time between the starts of two writes for one user: states wanted meanwhile
/// collapse into the latest. The first write of a call is never delayed.
const MIN_GAP: Duration = Duration::from_millis(500);

/// What a write that landed left in Teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Landed {
    Session(SessionPresence),
    Cleared,
    /// The preferred lane: every write goes out (the engine sends only changes and refreshes).
    Preferred,
}

async fn run(
    teams_id: String,
    mut rx: watch::Receiver<Option<Wanted>>,
    graph: watch::Receiver<GraphClient>,
    outcomes: mpsc::Sender<Written>,
    metrics: Metrics,
) {
    let mut last_write: Option<tokio::time::Instant> = None;
    // What the last write that landed left in Teams; `None` at start and after a failure (a
    // timeout may have landed: Teams is unknown, so the next write goes out). After a clear,
    // a clear wanted again (a call that began and ended within MIN_GAP) has nothing to clear;
    // after a session, the next one saying the same is a refresh.
    let mut landed: Option<Landed> = None;
    // `changed` still reports a value sent just before the sender was dropped, so a final
    // Clear queued at shutdown is written before the task ends.
    while rx.changed().await.is_ok() {
        // A flapping line (a transfer, a phone toggling) collapses into its latest state.
        if let Some(at) = last_write {
            tokio::time::sleep_until(at + MIN_GAP).await;
        }
        let Some(wanted) = rx.borrow_and_update().clone() else {
            continue;
        };
        let clear = wanted.clears();
        if matches!(wanted, Wanted::Clear { .. }) && landed == Some(Landed::Cleared) {
            // Still told to the main loop: a session it opened meanwhile (and never had
            // written) is closed in the store.
            let written = Written {
                teams_id: teams_id.clone(),
                wanted,
                repeat: true,
                left: false,
                result: Ok(()),
            };
            let _ = outcomes.send(written).await;
            continue;
        }
        last_write = Some(monotonic());
        let mut failures = 0;
        loop {
            let client = graph.borrow().clone();
            let result = write(&client, &teams_id, &wanted).await;
            let left = matches!(result, Ok(Done::Left));
            let result = result.map(drop);
            if let (
                Ok(()),
                Wanted::Session {
                    since: Some(at), ..
                },
            ) = (&result, &wanted)
            {
                metrics.speaking_to_teams(monotonic().saturating_duration_since(*at));
            }
            let transient = matches!(&result, Err(e) if e.is_transient());
            let now = match &wanted {
                Wanted::Session { presence, .. } => Landed::Session(*presence),
                Wanted::Clear { .. } => Landed::Cleared,
                Wanted::PreferredDnd { .. } | Wanted::ClearPreferred { .. } => Landed::Preferred,
            };
            let repeat = !clear && now != Landed::Preferred && landed == Some(now);
            landed = result.is_ok().then_some(now);
            if !transient || failures == 0 {
                let written = Written {
                    teams_id: teams_id.clone(),
                    wanted: wanted.clone(),
                    repeat,
                    left,
                    result,
                };
                let _ = outcomes.send(written).await;
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

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Written,
    /// A checked preferred DND write found another status in Teams: nothing done.
    Left,
}

async fn write(client: &GraphClient, teams_id: &str, wanted: &Wanted) -> Result<Done, GraphError> {
    match wanted {
        Wanted::Session {
            presence,
            expiration,
            ..
        } => {
            let (availability, activity) = presence.pair();
            client
                .set_presence(teams_id, availability, activity, *expiration)
                .await?;
        }
        // Cleared, or no session left to clear: either way the user is not "In a call".
        Wanted::Clear { .. } => {
            client
                .clear_presence(teams_id)
                .await
                .map(|_: ClearOutcome| ())?;
        }
        Wanted::PreferredDnd {
            expiration,
            checked,
            ..
        } => {
            if *checked && !shows_dnd(client, teams_id).await? {
                return Ok(Done::Left);
            }
            let (availability, activity) = PREFERRED_DND;
            client
                .set_preferred_presence(teams_id, availability, activity, *expiration)
                .await?;
        }
        Wanted::ClearPreferred { .. } => {
            if !shows_dnd(client, teams_id).await? {
                return Ok(Done::Left);
            }
            client.clear_preferred_presence(teams_id).await?;
        }
    }
    Ok(Done::Written)
}

/// Whether Teams shows the user DoNotDisturb now (a preferred DND is the user's own status
/// too: one that is not DND any more was changed by the user, and is theirs).
async fn shows_dnd(client: &GraphClient, teams_id: &str) -> Result<bool, GraphError> {
    let now = client.get_presences(&[teams_id]).await?;
    Ok(now
        .first()
        .is_some_and(|p| p.availability == PREFERRED_DND.0))
}
