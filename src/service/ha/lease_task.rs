//! The lease task: owns the [`Elector`] and a PostgreSQL connection, asks the database when
//! the core says so, keeps the [`Fence`] in line with the answers, and tells the node when it
//! leads or must step down. Questions run beside the timer, so a hung database never delays a
//! step-down.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock;
use crate::fence::Fence;
use crate::ha::lease::{Answer, Ask, Command, Elector, Holder, LeaseSettings, Previous, Role, Why};
use crate::ha::sql::{self, NodeView, PgTarget};

/// What the node learns from the lease task.
#[derive(Debug)]
pub enum Term {
    /// Lead from now on, for `epoch`.
    Lead {
        epoch: i64,
        previous: Option<Previous>,
    },
    /// Stop leading at once (the fence is already shut).
    StepDown { epoch: i64, why: Why },
}

/// What `status` and the metrics show of the lease, as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// `Some(epoch)` while this node leads.
    pub leading: Option<i64>,
    /// The other node holding the lease, as last seen.
    pub holder: Option<Holder>,
    /// The last question that failed, while it keeps failing.
    pub error: Option<String>,
}

type Asking = Pin<Box<dyn Future<Output = (Option<Client>, Instant, Answer)> + Send>>;

pub struct LeaseTask {
    pub target: PgTarget,
    pub node: String,
    pub settings: LeaseSettings,
    pub fence: Fence,
    pub terms: mpsc::Sender<Term>,
    pub view: watch::Sender<LeaseView>,
    /// What `ha_nodes.detail` says of this node: its version, where it takes PBX events.
    pub detail: String,
    /// And, while it stands by, its own link to the PBX (`standby.rs`).
    pub link: watch::Receiver<String>,
    pub metrics: crate::metrics::Metrics,
}

impl LeaseTask {
    pub async fn run(self, cancel: CancellationToken) {
        let mut elector = Elector::new(self.settings, clock::monotonic());
        let mut client: Option<Client> = None;
        let mut asking: Option<Asking> = None;
        let mut failures = 0u32;
        let backoff = Backoff::new(Duration::from_millis(200), self.settings.retry);
        loop {
            let deadline = elector.next_deadline();
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(deadline) => {
                    // The instant the core recorded is the question's: its answer is matched by it.
                    let now = clock::monotonic();
                    let commands = elector.tick(now);
                    for c in commands {
                        if let Command::Ask(ask) = c {
                            asking = Some(self.ask(client.take(), ask, now, failures, &backoff));
                        } else {
                            self.command(c).await;
                        }
                    }
                }
                (back, sent, answer) = answer(&mut asking) => {
                    asking = None;
                    failures = if matches!(answer, Answer::Failed(_)) { failures + 1 } else { 0 };
                    client = back;
                    self.view.send_modify(|v| v.error = failed(&answer));
                    let commands = elector.answered(sent, answer, clock::monotonic());
                    // The fence first: a new leader's first write must find it open.
                    self.follow(&elector);
                    for c in commands {
                        self.command(c).await;
                    }
                }
            }
        }
        self.fence.shut();
    }

    /// Keep the fence and the view in line with the core after an answer.
    fn follow(&self, elector: &Elector) {
        if let (Role::Leader { epoch }, Some(until)) = (elector.role(), elector.valid_until()) {
            self.fence.extend(epoch, until);
        }
        let leading = match elector.role() {
            Role::Leader { epoch } => Some(epoch),
            Role::Standby => None,
        };
        let holder = elector.seen().cloned();
        let now = clock::monotonic();
        let (epoch, remaining) = match (leading, elector.valid_until(), &holder) {
            (Some(epoch), Some(until), _) => (epoch, until.saturating_duration_since(now)),
            (_, _, Some(h)) => (h.epoch, h.expires_in),
            _ => (0, Duration::ZERO),
        };
        self.metrics.set_ha(leading.is_some(), epoch, remaining);
        self.view.send_modify(|v| {
            v.leading = leading;
            v.holder = holder;
        });
    }

    async fn command(&self, c: Command) {
        let term = match c {
            Command::Ask(_) => return,
            Command::Lead { epoch, previous } => Term::Lead { epoch, previous },
            Command::StepDown { epoch, why } => {
                // Before anything else: nothing leaves this node from now on.
                self.fence.shut();
                self.view.send_modify(|v| v.leading = None);
                self.metrics.set_ha(false, epoch, Duration::ZERO);
                Term::StepDown { epoch, why }
            }
        };
        let _ = self.terms.send(term).await;
    }

    /// One question on its own future: (re)connects when needed, bounded by half the lease.
    fn ask(
        &self,
        client: Option<Client>,
        ask: Ask,
        sent: Instant,
        failures: u32,
        backoff: &Backoff,
    ) -> Asking {
        let target = self.target.clone();
        let node = self.node.clone();
        let lease = self.settings.lease;
        let me = NodeView {
            role: "standby",
            epoch: 0,
            detail: format!("{} {}", self.detail, *self.link.borrow())
                .trim_end()
                .to_owned(),
        };
        let pause = if client.is_none() && failures > 0 {
            backoff.delay(failures)
        } else {
            Duration::ZERO
        };
        Box::pin(async move {
            let limit = lease / 2;
            let asked = tokio::time::timeout(limit, async {
                tokio::time::sleep(pause).await;
                let mut client = match client {
                    Some(c) if !c.is_closed() => c,
                    _ => target.connect(None).await.map_err(|e| sql::describe(&e))?,
                };
                let answer = sql::ask(&mut client, ask, &node, lease, &me).await;
                answer.map(|a| (client, a)).map_err(|e| sql::describe(&e))
            })
            .await;
            match asked {
                Ok(Ok((client, answer))) => (Some(client), sent, answer),
                Ok(Err(e)) => (None, sent, Answer::Failed(e)),
                Err(_) => {
                    let why = format!("no answer within {}", humantime::format_duration(limit));
                    (None, sent, Answer::Failed(why))
                }
            }
        })
    }
}

/// The answer of the question on its way; never resolves without one.
async fn answer(asking: &mut Option<Asking>) -> (Option<Client>, Instant, Answer) {
    match asking.as_mut() {
        Some(question) => question.await,
        None => std::future::pending().await,
    }
}

fn failed(answer: &Answer) -> Option<String> {
    match answer {
        Answer::Failed(e) => Some(e.clone()),
        _ => None,
    }
}
