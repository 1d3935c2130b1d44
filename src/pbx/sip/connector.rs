//! The SIP connector's task: it owns the [`Watch`] core, carries out its commands on the SIP
//! stack, and feeds it the users, the answers, the NOTIFYs and the keep-alive's news. Call
//! states go to the daemon as [`PbxEvent`]s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::DialogId;
use rsipstack::dialog::dialog::{
    DialogState, DialogStateReceiver, DialogStateSender, TransactionHandle,
};
use rsipstack::dialog::subscription::ClientSubscriptionDialog;
use rsipstack::sip::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::incoming::Pending;
use super::keepalive::News;
use super::notify;
use super::requests::{self, Done, NewSub};
use super::stack::Stack;
use super::watch::{Command, Fact, Input, Refusal, SubId, Watch, Watched};
use crate::config::SipPbxConfig;
use crate::listener::refusals::{Cause, Refusals};
use crate::sync::types::{Millis, PbxEvent, millis};

/// How often one subscription is refreshed out of turn to learn whether the PBX restarted
/// (forgetting every subscription) faster than the keep-alive could notice.
const PROBE_EVERY: Duration = Duration::from_secs(20);
/// Unsubscribes sent at once at shutdown, and how long they may take in all.
const STOP_CONCURRENCY: usize = 50;
const STOP_WAIT: Duration = Duration::from_secs(3);

static BAD_NOTIFY: Cause = Cause {
    key: "sip_bad_notify",
    verb: "ignored",
    one: "a NOTIFY that could not be read (answered 200, no state changed)",
    many: "NOTIFYs that could not be read (answered 200, no state changed)",
};

/// One subscription the core asked for.
struct Entry {
    call_id: String,
    tag: String,
    dialog: Option<ClientSubscriptionDialog>,
}

pub struct Connector {
    pub config: Arc<SipPbxConfig>,
    pub stack: Stack,
    pub watch: Watch,
    pub started: Instant,
    pub pending: Pending,
    pub notifies_tx: DialogStateSender,
    pub notifies: DialogStateReceiver,
    pub users: watch::Receiver<Arc<Vec<String>>>,
    pub events: mpsc::Sender<Vec<PbxEvent>>,
    pub news: mpsc::Receiver<News>,
    pub refusals: Refusals,
    pub metrics: crate::metrics::Metrics,
    /// A restart noticed here (not by the keep-alive) is told as a new connection, so that
    /// the daemon writes every Teams state again (the presence server forgot them too).
    pub status: mpsc::Sender<crate::pbx::LinkState>,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

/// The connector's bookkeeping besides the core.
struct Book {
    subs: HashMap<SubId, Entry>,
    by_dialog: HashMap<(String, String), SubId>,
    done_tx: mpsc::Sender<Done>,
    /// The subscription probed last (they take turns).
    probed: Option<SubId>,
    /// Since when every user is being subscribed (start, PBX restart), until all are.
    ramp: Option<Instant>,
}

impl Connector {
    pub async fn run(mut self) {
        let (done_tx, mut done) = mpsc::channel(1024);
        let mut book = Book {
            subs: HashMap::new(),
            by_dialog: HashMap::new(),
            done_tx,
            probed: None,
            ramp: Some(crate::clock::monotonic()),
        };
        let mut probe =
            tokio::time::interval_at(crate::clock::monotonic() + PROBE_EVERY, PROBE_EVERY);
        let first = self.watched();
        self.handle(Input::Users(first), &mut book).await;
        loop {
            let wake = self.wake_at();
            let input = tokio::select! {
                () = self.cancel.cancelled() => break,
                changed = self.users.changed() => match changed {
                    Ok(()) => Input::Users(self.watched()),
                    Err(_) => break,
                },
                () = tokio::time::sleep_until(wake) => Input::Tick,
                _ = probe.tick() => {
                    self.probe(&mut book);
                    self.count();
                    continue;
                }
                Some(d) = done.recv() => self.finished(d, &mut book).await,
                Some(state) = self.notifies.recv() => match self.notified(state, &book).await {
                    Some(input) => input,
                    None => continue,
                },
                Some(news) = self.news.recv() => match news {
                    News::Restarted => Input::PbxRestarted,
                },
            };
            self.handle(input, &mut book).await;
        }
        self.stop(&mut book).await;
    }

    fn now(&self) -> Millis {
        millis(crate::clock::monotonic().saturating_duration_since(self.started))
    }

    fn wake_at(&self) -> Instant {
        let now = self.now();
        let at = self.watch.next_deadline(now).unwrap_or(now + 3_600_000);
        let wait = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
        crate::clock::monotonic() + Duration::from_millis(wait)
    }

    fn watched(&mut self) -> Vec<Watched> {
        let users = self.users.borrow_and_update().clone();
        users
            .iter()
            .map(|ext| Watched {
                extension: Arc::from(ext.as_str()),
                uri: Arc::from(self.config.watch_uri_of(ext)),
            })
            .collect()
    }

    async fn handle(&mut self, input: Input, book: &mut Book) {
        let now = self.now();
        let answered = matches!(input, Input::Accepted { .. } | Input::Failed { .. });
        if matches!(input, Input::PbxRestarted) {
            book.ramp = Some(crate::clock::monotonic());
        }
        let commands = self.watch.handle(input, now);
        let mut events = Vec::new();
        for command in commands {
            self.carry_out(command, book, &mut events);
        }
        if !events.is_empty() && self.events.send(events).await.is_err() {
            self.cancel.cancel();
        }
        if answered {
            self.ramp_done(book);
        }
    }

    /// Once every user holds a subscription after a start or a restart, say so, with the time
    /// it took.
    fn ramp_done(&self, book: &mut Book) {
        let Some(since) = book.ramp else {
            return;
        };
        let (active, pending, refused) = self.watch.counts();
        if pending == 0 {
            book.ramp = None;
            let took = crate::clock::monotonic().saturating_duration_since(since);
            let secs = took.as_secs_f64();
            let but = match refused {
                0 => String::new(),
                n => format!(" ({n} refused by the PBX, see above)"),
            };
            tracing::info!(
                users = active,
                refused,
                seconds = secs,
                "SIP: {active} users subscribed in {secs:.1} s{but}"
            );
        }
    }

    /// The subscriptions by state, for the metrics (every [`PROBE_EVERY`]: a count walks
    /// every user).
    fn count(&self) {
        let (active, pending, refused) = self.watch.counts();
        self.metrics.set_sip_subscriptions(active, pending, refused);
    }

    fn carry_out(&self, command: Command, book: &mut Book, events: &mut Vec<PbxEvent>) {
        match command {
            Command::Subscribe {
                id, uri, expires, ..
            } => {
                let sub = NewSub::new(id, &uri, expires);
                book.by_dialog
                    .insert((sub.call_id.clone(), sub.tag.clone()), id);
                book.subs.insert(
                    id,
                    Entry {
                        call_id: sub.call_id.clone(),
                        tag: sub.tag.clone(),
                        dialog: None,
                    },
                );
                let (stack, pending) = (self.stack.clone(), self.pending.clone());
                let (notifies, done) = (self.notifies_tx.clone(), book.done_tx.clone());
                self.tracker
                    .spawn(requests::subscribe(stack, pending, notifies, sub, done));
            }
            Command::Refresh { id, expires } => {
                let dialog = book.subs.get(&id).and_then(|e| e.dialog.clone());
                let done = book.done_tx.clone();
                match dialog {
                    Some(d) => self.tracker.spawn(requests::refresh(d, id, expires, done)),
                    None => self.tracker.spawn(async move {
                        let failure = super::watch::Failure::Transport;
                        let _ = done.send(Done::Failed { id, failure }).await;
                    }),
                };
            }
            Command::Unsubscribe { id } => {
                if let Some(dialog) = book.forget(id) {
                    self.tracker
                        .spawn(requests::unsubscribe(self.stack.clone(), dialog));
                }
            }
            Command::Forget { id } => {
                if let Some(dialog) = book.forget(id) {
                    self.stack.dialogs.remove_dialog(&dialog.id());
                }
            }
            Command::CallState { extension, state } => {
                tracing::debug!(extension = %extension, state = %state, "{extension}: {state} (SIP dialog state)");
                events.push(PbxEvent {
                    extension: extension.to_string(),
                    state,
                    dnd: None,
                });
            }
            Command::Fact(fact) => say(&fact),
        }
    }

    async fn finished(&self, done: Done, book: &mut Book) -> Input {
        match done {
            Done::Subscribed {
                id,
                dialog,
                expires,
            } => {
                match book.subs.get_mut(&id) {
                    Some(entry) => entry.dialog = Some(dialog),
                    // Given up while the SUBSCRIBE was on its way: end it.
                    None => {
                        self.tracker
                            .spawn(requests::unsubscribe(self.stack.clone(), dialog));
                    }
                }
                Input::Accepted { id, expires }
            }
            Done::Refreshed { id, expires } => Input::Accepted { id, expires },
            Done::Failed { id, failure } => Input::Failed { id, failure },
            Done::Forgotten { id } => {
                if book.subs.contains_key(&id) {
                    tracing::info!(
                        "SIP: the PBX no longer knows the daemon's subscriptions (481 to a refresh): it restarted or lost them; subscribing every user again"
                    );
                    let _ = self.status.send(crate::pbx::LinkState::Connected).await;
                    Input::PbxRestarted
                } else {
                    Input::Tick
                }
            }
        }
    }

    /// Refresh the next subscription in turn (see [`PROBE_EVERY`]).
    fn probe(&self, book: &mut Book) {
        let after = book.probed.unwrap_or(SubId(0));
        let with_dialog = |(id, e): (&SubId, &Entry)| e.dialog.clone().map(|d| (*id, d));
        let next = book
            .subs
            .iter()
            .filter(|(id, _)| **id > after)
            .filter_map(with_dialog)
            .min_by_key(|(id, _)| *id)
            .or_else(|| {
                book.subs
                    .iter()
                    .filter_map(with_dialog)
                    .min_by_key(|(id, _)| *id)
            });
        if let Some((id, dialog)) = next {
            book.probed = Some(id);
            let expires = self.config.subscribe_expires;
            self.tracker
                .spawn(requests::probe(dialog, id, expires, book.done_tx.clone()));
        }
    }

    /// A NOTIFY from a dialog: answered here (200, also when it cannot be read), then given
    /// to the core.
    async fn notified(&self, state: DialogState, book: &Book) -> Option<Input> {
        let DialogState::Notify(dialog, request, handle) = state else {
            return None;
        };
        let Some(id) = book.by_dialog.get(&key(&dialog)).copied() else {
            reply(&handle, StatusCode::CallTransactionDoesNotExist).await;
            self.stack.dialogs.remove_dialog(&dialog);
            return None;
        };
        reply(&handle, StatusCode::OK).await;
        match notify::read_request(&request) {
            Ok(notice) => Some(Input::Notified {
                id,
                state: notice.state,
                body: notice.body,
            }),
            Err(e) => {
                self.refusals
                    .refused(&BAD_NOTIFY, || format!("{e} (Call-ID {})", dialog.call_id));
                None
            }
        }
    }

    async fn stop(&mut self, book: &mut Book) {
        let now = self.now();
        let mut ends = Vec::new();
        for command in self.watch.handle(Input::Stop, now) {
            if let Command::Unsubscribe { id } = command
                && let Some(dialog) = book.forget(id)
            {
                ends.push(requests::unsubscribe(self.stack.clone(), dialog));
            }
        }
        let count = ends.len();
        let all = futures_util::StreamExt::for_each_concurrent(
            futures_util::stream::iter(ends),
            STOP_CONCURRENCY,
            |f| f,
        );
        if tokio::time::timeout(STOP_WAIT, all).await.is_err() {
            tracing::info!(
                count,
                "SIP: not every unsubscribe was answered within {STOP_WAIT:?}; the PBX ends those subscriptions when they expire"
            );
        }
        self.refusals.drain();
    }
}

impl Book {
    fn forget(&mut self, id: SubId) -> Option<ClientSubscriptionDialog> {
        let entry = self.subs.remove(&id)?;
        self.by_dialog.remove(&(entry.call_id, entry.tag));
        entry.dialog
    }
}

fn key(dialog: &DialogId) -> (String, String) {
    (dialog.call_id.clone(), dialog.local_tag.clone())
}

async fn reply(handle: &TransactionHandle, status: StatusCode) {
    if handle.reply(status).await.is_err() {
        tracing::debug!("a NOTIFY's transaction ended before it was answered");
    }
}

fn say(fact: &Fact) {
    match fact {
        Fact::Refused {
            extension,
            uri,
            why,
        } => {
            let answer = match why {
                Refusal::Status(code) => format!("answered {code}"),
                Refusal::Terminated(reason) => format!("ended the subscription ({reason})"),
            };
            let advice = match why {
                Refusal::Status(404) | Refusal::Terminated(_) => {
                    "give the extension a hint (Asterisk: exten => EXT,hint,PJSIP/EXT in the daemon's subscribe_context) or check pbx.watch_uri / [pbx.watch]"
                }
                Refusal::Status(403 | 603) => {
                    "allow the daemon's SIP account to subscribe to it (Asterisk: allow_subscribe = yes on its endpoint)"
                }
                _ => {
                    "make the PBX accept dialog subscriptions (Event: dialog) from the daemon's SIP account"
                }
            };
            tracing::warn!(extension = %extension, uri = %uri, "{extension}: the PBX {answer} to the dialog subscription for {uri}: no call state from SIP for {extension}; {advice}; trying again in an hour");
        }
        Fact::Unheard { extension, uri } => {
            tracing::warn!(extension = %extension, uri = %uri, "{extension}: the PBX granted the dialog subscription for {uri} but sent no NOTIFY within 32 s; subscribing again (said once until its NOTIFYs come)");
        }
    }
}
