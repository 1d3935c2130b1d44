//! The dialog-subscription core of one SIP connector: [`Input`]s and `now` in, [`Command`]s
//! out; no I/O, no clock reads, no tokio (the style of `subscriptions::Planner`).
//!
//! Per watched user (extension -> SIP URI) it keeps the subscription ([`Sub`]) and the dialogs
//! the PBX announced, and decides:
//! - when to SUBSCRIBE: at start and for new users, paced by a token bucket
//!   ([`Settings::rate`] a second, [`Settings::burst`] at once) so that thousands of users do
//!   not storm the PBX; refreshes go through the same bucket;
//! - when to refresh: once [`Settings::refresh_percent`] of the granted `Expires` is gone;
//! - when to subscribe again, in a new dialog: after a failed refresh (481, timeout...), a
//!   `Subscription-State: terminated`, an unanswered SUBSCRIBE, a granted one that brought no
//!   NOTIFY within [`Settings::notify_wait`], or [`Input::PbxRestarted`], after an exponential
//!   backoff with seeded jitter;
//! - after a refusal (403, 404, 489, 603, terminated with `rejected`/`noresource`): a long wait
//!   ([`Settings::refused_wait`]) and one [`Fact::Refused`] naming the extension;
//! - what NOTIFYs change: a full state replaces the user's dialogs, a partial one updates
//!   them if its version is newer than the last applied in the subscription (a full state
//!   is taken whatever its version: Asterisk restarted hard renumbers), and
//!   the call state they give ([`User::call_state`]) is reported only when it changes. A new
//!   subscription's first full state settles the user (a call that ended while it was away
//!   becomes idle); until then the last known state stands.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::dialog_info::DialogInfo;
pub use super::watch_state::{Bucket, Jitter, Known, Sub, User};
pub use super::watch_types::{
    Command, Fact, Failure, Input, Refusal, Settings, SubId, SubState, Watched,
};
use crate::sync::types::{CallState, Millis, millis};

/// Every watched user's subscription and dialogs, decided from inputs and `now` alone.
#[derive(Debug)]
pub struct Watch {
    settings: Settings,
    users: HashMap<Arc<str>, User>,
    /// `(due, extension)` of every user with something due; mirrors `User::due`.
    agenda: BTreeSet<(Millis, Arc<str>)>,
    /// The current subscription of each user, by id.
    subs: HashMap<SubId, Arc<str>>,
    next_id: u64,
    bucket: Bucket,
    jitter: Jitter,
    stopping: bool,
}

impl Watch {
    pub fn new(settings: Settings, now: Millis) -> Watch {
        Watch {
            bucket: Bucket::new(settings.rate, settings.burst, now),
            jitter: Jitter::new(settings.seed),
            settings,
            users: HashMap::new(),
            agenda: BTreeSet::new(),
            subs: HashMap::new(),
            next_id: 0,
            stopping: false,
        }
    }

    /// Take one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input, now: Millis) -> Vec<Command> {
        let mut out = Vec::new();
        match input {
            Input::Users(list) => self.set_users(list, now, &mut out),
            Input::Tick => {}
            Input::Accepted { id, expires } => self.accepted(id, expires, now, &mut out),
            Input::Failed { id, failure } => self.failed(id, failure, now, &mut out),
            Input::Notified { id, state, body } => self.notified(id, &state, body, now, &mut out),
            Input::PbxRestarted => self.restarted(now, &mut out),
            Input::Stop => self.stop(&mut out),
        }
        if !self.stopping {
            self.run_due(now, &mut out);
        }
        out
    }

    /// When the adapter should send [`Input::Tick`]: the next refresh, retry or answer
    /// timeout, or the next token when SUBSCRIBEs are waiting for one.
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        if self.stopping {
            return None;
        }
        let (due, _) = self.agenda.first()?;
        Some(if *due > now {
            *due
        } else {
            self.bucket.next_token(now)
        })
    }

    /// A user's state, by extension.
    pub fn user(&self, extension: &str) -> Option<&User> {
        self.users.get(extension)
    }

    /// Users by where their subscription is: (granted, on their way, refused).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for user in self.users.values() {
            match user.sub {
                Sub::Active { .. } | Sub::Refreshing { .. } => counts.0 += 1,
                _ if user.warned => counts.2 += 1,
                _ => counts.1 += 1,
            }
        }
        counts
    }

    /// How many users hold a granted subscription.
    pub fn subscribed(&self) -> usize {
        let granted = |u: &&User| matches!(u.sub, Sub::Active { .. } | Sub::Refreshing { .. });
        self.users.values().filter(granted).count()
    }

    fn set_due(&mut self, extension: &Arc<str>, due: Option<Millis>) {
        let Some(user) = self.users.get_mut(extension) else {
            return;
        };
        if let Some(old) = user.due.take() {
            self.agenda.remove(&(old, extension.clone()));
        }
        if let Some(at) = due {
            self.agenda.insert((at, extension.clone()));
        }
        user.due = due;
    }

    fn set_users(&mut self, list: Vec<Watched>, now: Millis, out: &mut Vec<Command>) {
        let wanted: HashMap<Arc<str>, Arc<str>> =
            list.into_iter().map(|w| (w.extension, w.uri)).collect();
        let gone: Vec<Arc<str>> = self
            .users
            .iter()
            .filter(|(ext, user)| wanted.get(*ext) != Some(&user.uri))
            .map(|(ext, _)| ext.clone())
            .collect();
        for ext in gone {
            self.set_due(&ext, None);
            if let Some(user) = self.users.remove(&ext) {
                self.end(user.sub, out);
            }
        }
        if self.stopping {
            return;
        }
        for (ext, uri) in wanted {
            if !self.users.contains_key(&ext) {
                self.users.insert(ext.clone(), User::new(uri));
                self.set_due(&ext, Some(now));
            }
        }
    }

    /// Ends a subscription the core no longer wants.
    fn end(&mut self, sub: Sub, out: &mut Vec<Command>) {
        let Some(id) = sub.id() else { return };
        self.subs.remove(&id);
        out.push(match sub {
            Sub::Active { .. } | Sub::Refreshing { .. } => Command::Unsubscribe { id },
            Sub::Asking { .. } | Sub::Idle => Command::Forget { id },
        });
    }

    /// The user of a current subscription.
    fn owner(&self, id: SubId) -> Option<Arc<str>> {
        self.subs.get(&id).cloned()
    }

    fn accepted(&mut self, id: SubId, expires: Duration, now: Millis, out: &mut Vec<Command>) {
        let Some(ext) = self.owner(id) else { return };
        if expires.is_zero() {
            // Granted for no time at all: it ends at once, so it is made again.
            return self.lost(&ext, None, now, out);
        }
        let refresh = millis(expires) / 100 * Millis::from(self.settings.refresh_percent.min(100));
        let notify_wait = millis(self.settings.notify_wait);
        let Some(user) = self.users.get_mut(&ext) else {
            return;
        };
        let refresh_at = now.saturating_add(refresh.max(1));
        // Not heard from yet: woken when the first NOTIFY is overdue, if that comes first.
        let wake = match user.heard {
            true => refresh_at,
            false => {
                user.refresh_at = Some(refresh_at);
                refresh_at.min(now.saturating_add(notify_wait))
            }
        };
        user.sub = Sub::Active {
            id,
            expires_at: now.saturating_add(millis(expires)),
        };
        user.warned = false;
        if user.heard {
            user.failures = 0;
        }
        self.set_due(&ext, Some(wake));
    }

    fn failed(&mut self, id: SubId, failure: Failure, now: Millis, out: &mut Vec<Command>) {
        let Some(ext) = self.owner(id) else { return };
        match failure {
            Failure::Status(code @ (403 | 404 | 489 | 603)) => {
                self.refused(&ext, Refusal::Status(code), now, out);
            }
            Failure::Status(_) | Failure::Timeout | Failure::Transport => {
                self.lost(&ext, None, now, out);
            }
        }
    }

    fn notified(
        &mut self,
        id: SubId,
        state: &SubState,
        body: Option<DialogInfo>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some(ext) = self.owner(id) else { return };
        let Some(user) = self.users.get_mut(&ext) else {
            return;
        };
        if !user.heard {
            user.heard = true;
            user.unheard_said = false;
            user.failures = 0;
            if let Some(at) = user.refresh_at.take() {
                self.set_due(&ext, Some(at));
            }
        }
        let Some(user) = self.users.get_mut(&ext) else {
            return;
        };
        let changed = match (&body, state) {
            (Some(info), _) => user.apply(info),
            (None, SubState::Active { .. }) => {
                user.clear();
                true
            }
            (None, _) => false,
        };
        if changed {
            report(&ext, user, out);
        }
        match state {
            SubState::Active {
                expires: Some(left),
            } => self.shortened(&ext, *left, now),
            SubState::Active { expires: None } | SubState::Pending => {}
            SubState::Terminated {
                reason,
                retry_after,
            } => self.terminated(&ext, reason.as_deref(), *retry_after, now, out),
        }
    }

    /// A NOTIFY says how long the subscription has left: refresh earlier if that is sooner.
    fn shortened(&mut self, ext: &Arc<str>, left: Duration, now: Millis) {
        let Some(user) = self.users.get_mut(ext) else {
            return;
        };
        let Sub::Active { id, expires_at } = user.sub else {
            return;
        };
        let until = now.saturating_add(millis(left)).min(expires_at);
        user.sub = Sub::Active {
            id,
            expires_at: until,
        };
        let pct = Millis::from(self.settings.refresh_percent.min(100));
        let refresh = now.saturating_add(millis(left) / 100 * pct);
        if user.due.is_none_or(|due| refresh < due) {
            self.set_due(ext, Some(refresh));
        }
    }

    /// RFC 6665 section 4.1.3: `deactivated`/`timeout` (or no reason): subscribe again;
    /// `probation`/`giveup`: after `retry-after` when given; `rejected`/`noresource`: refused.
    fn terminated(
        &mut self,
        ext: &Arc<str>,
        reason: Option<&str>,
        retry_after: Option<Duration>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        match reason {
            Some(r @ ("rejected" | "noresource")) => {
                self.refused(ext, Refusal::Terminated(r.to_owned()), now, out);
            }
            _ => self.lost(ext, retry_after.map(millis), now, out),
        }
    }

    /// The subscription is gone: a new one after the backoff (or `wait`, when the PBX said).
    fn lost(&mut self, ext: &Arc<str>, wait: Option<Millis>, now: Millis, out: &mut Vec<Command>) {
        let Some(user) = self.users.get_mut(ext) else {
            return;
        };
        let sub = std::mem::replace(&mut user.sub, Sub::Idle);
        user.failures = user.failures.saturating_add(1);
        let failures = user.failures;
        self.end_quietly(sub, out);
        let wait = wait.unwrap_or_else(|| self.backoff(failures));
        self.set_due(ext, Some(now.saturating_add(wait)));
    }

    /// Granted, but no NOTIFY came: end it (the PBX may hold it) and subscribe again after
    /// the backoff; said once until the user's NOTIFYs come.
    fn unheard(&mut self, ext: &Arc<str>, now: Millis, out: &mut Vec<Command>) {
        let Some(user) = self.users.get_mut(ext) else {
            return;
        };
        if !user.unheard_said {
            user.unheard_said = true;
            out.push(Command::Fact(Fact::Unheard {
                extension: ext.clone(),
                uri: user.uri.clone(),
            }));
        }
        let sub = std::mem::replace(&mut user.sub, Sub::Idle);
        user.failures = user.failures.saturating_add(1);
        let failures = user.failures;
        self.end(sub, out);
        let wait = self.backoff(failures);
        self.set_due(ext, Some(now.saturating_add(wait)));
    }

    /// The PBX will not let us watch this user: wait long, say so once.
    fn refused(&mut self, ext: &Arc<str>, why: Refusal, now: Millis, out: &mut Vec<Command>) {
        let Some(user) = self.users.get_mut(ext) else {
            return;
        };
        let sub = std::mem::replace(&mut user.sub, Sub::Idle);
        user.failures = user.failures.saturating_add(1);
        if !user.warned {
            user.warned = true;
            out.push(Command::Fact(Fact::Refused {
                extension: ext.clone(),
                uri: user.uri.clone(),
                why,
            }));
        }
        self.end_quietly(sub, out);
        let wait = self.jitter.wait(millis(self.settings.refused_wait));
        self.set_due(ext, Some(now.saturating_add(wait)));
    }

    /// Forgets a subscription the PBX ended or never made (nothing to unsubscribe).
    fn end_quietly(&mut self, sub: Sub, out: &mut Vec<Command>) {
        if let Some(id) = sub.id() {
            self.subs.remove(&id);
            out.push(Command::Forget { id });
        }
    }

    /// The wait after `failures` failures in a row: doubling from `retry_base` up to
    /// `retry_max`, with equal jitter.
    fn backoff(&mut self, failures: u32) -> Millis {
        let doublings = failures.saturating_sub(1).min(30);
        let ceiling = millis(self.settings.retry_base)
            .saturating_mul(1 << doublings)
            .min(millis(self.settings.retry_max));
        self.jitter.wait(ceiling)
    }

    /// Every subscription is made again, spread over the first backoff step.
    fn restarted(&mut self, now: Millis, out: &mut Vec<Command>) {
        let exts: Vec<Arc<str>> = self.users.keys().cloned().collect();
        for ext in exts {
            let Some(user) = self.users.get_mut(&ext) else {
                continue;
            };
            let sub = std::mem::replace(&mut user.sub, Sub::Idle);
            self.end_quietly(sub, out);
            let wait = self.jitter.wait(millis(self.settings.retry_base));
            self.set_due(&ext, Some(now.saturating_add(wait)));
        }
    }

    fn stop(&mut self, out: &mut Vec<Command>) {
        self.stopping = true;
        let mut exts: Vec<Arc<str>> = self.users.keys().cloned().collect();
        exts.sort();
        for ext in exts {
            self.set_due(&ext, None);
            if let Some(user) = self.users.get_mut(&ext) {
                let sub = std::mem::replace(&mut user.sub, Sub::Idle);
                self.end(sub, out);
            }
        }
    }

    /// Sends what is due, oldest first, as far as the bucket allows; overdue answers count
    /// as timeouts.
    fn run_due(&mut self, now: Millis, out: &mut Vec<Command>) {
        let mut seen = HashSet::new();
        while let Some((due, ext)) = self.agenda.first().cloned() {
            if due > now || !seen.insert(ext.clone()) {
                break;
            }
            let Some(sub) = self.users.get(&ext).map(|u| u.sub) else {
                self.agenda.remove(&(due, ext));
                continue;
            };
            let heard = self.users.get(&ext).is_some_and(|u| u.heard);
            match sub {
                Sub::Asking { .. } | Sub::Refreshing { .. } => self.lost(&ext, None, now, out),
                Sub::Active { .. } if !heard => self.unheard(&ext, now, out),
                Sub::Idle | Sub::Active { .. } if !self.bucket.take(now) => break,
                Sub::Idle => self.subscribe(&ext, now, out),
                Sub::Active { id, expires_at } => self.refresh(&ext, id, expires_at, now, out),
            }
        }
    }

    fn subscribe(&mut self, ext: &Arc<str>, now: Millis, out: &mut Vec<Command>) {
        self.next_id += 1;
        let id = SubId(self.next_id);
        let Some(user) = self.users.get_mut(ext) else {
            return;
        };
        user.restart(Sub::Asking { id });
        out.push(Command::Subscribe {
            id,
            extension: ext.clone(),
            uri: user.uri.clone(),
            expires: self.settings.expires,
        });
        self.subs.insert(id, ext.clone());
        let guard = now.saturating_add(millis(self.settings.answer_wait));
        self.set_due(ext, Some(guard));
    }

    fn refresh(
        &mut self,
        ext: &Arc<str>,
        id: SubId,
        expires_at: Millis,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        if let Some(user) = self.users.get_mut(ext) {
            user.sub = Sub::Refreshing { id, expires_at };
        }
        out.push(Command::Refresh {
            id,
            expires: self.settings.expires,
        });
        let guard = now.saturating_add(millis(self.settings.answer_wait));
        self.set_due(ext, Some(guard));
    }
}

/// Reports the user's call state when it is settled and changed.
fn report(ext: &Arc<str>, user: &mut User, out: &mut Vec<Command>) {
    if !user.settled {
        return;
    }
    let state: CallState = user.call_state();
    if user.reported != Some(state) {
        user.reported = Some(state);
        out.push(Command::CallState {
            extension: ext.clone(),
            state,
        });
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "watch_notify_tests.rs"]
mod notify_tests;
