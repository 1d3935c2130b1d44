//! How each input changes the accounts: ticks and suspects, tokens, listings (adoption),
//! creates, renewals, lifecycle events, certificate rotation, the final delete.

use std::sync::Arc;

use super::planner::{Op, Planner, token_due};
use super::state::{AccountState, Health, Holding, Session, Sub};
use super::types::{Command, Fact, Failure, Listed, MISSED_AFTER, Made, Record};
use crate::sync::types::{Millis, millis};

impl Planner {
    /// Judge the suspects; ask for the tokens when an account has none. True when the
    /// tokens were asked for.
    pub(super) fn tick(&mut self, now: Millis, out: &mut Vec<Command>) -> bool {
        self.judge_suspects(now, out);
        let wanted = self.accounts.iter().any(|a| {
            matches!(
                a.state,
                AccountState::NoToken { .. } | AccountState::SignedOut
            )
        });
        if wanted && !self.stopping {
            out.push(Command::ReadTokens);
        }
        wanted && !self.stopping
    }

    /// A covered user's change no notification announced within 90 s: the subscriptions
    /// naming that user are unhealthy (made again; their users are polled meanwhile).
    fn judge_suspects(&mut self, now: Millis, out: &mut Vec<Command>) {
        let missed = millis(MISSED_AFTER);
        let late: Vec<Arc<str>> = self
            .suspects
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) >= missed)
            .map(|(user, _)| user.clone())
            .collect();
        for user in late {
            self.suspects.remove(&user);
            for a in &mut self.accounts {
                let sub = a.state.session_mut().and_then(Session::sub_mut);
                if let Some(sub) =
                    sub.filter(|s| s.health != Health::Unhealthy && s.ids.contains(&user))
                {
                    sub.health = Health::Unhealthy;
                    out.push(Command::Report(Fact::Unhealthy {
                        account: a.name.clone(),
                        subscription: sub.id.clone(),
                        user: user.clone(),
                    }));
                }
            }
        }
    }

    /// The stored tokens were read: accounts waiting for one take it; those still without
    /// one are said to be not signed in (once).
    pub(super) fn tokens_read(&mut self, found: &[String], out: &mut Vec<Command>) {
        for a in &mut self.accounts {
            let has = found.contains(&a.name);
            match &mut a.state {
                AccountState::NoToken { .. } | AccountState::SignedOut if has => {
                    a.state = AccountState::SignedIn(Session::new());
                    out.push(Command::Report(Fact::TokenFound {
                        account: a.name.clone(),
                    }));
                    out.push(Command::UseToken {
                        account: a.name.clone(),
                    });
                }
                AccountState::NoToken { told } if !*told => {
                    *told = true;
                    out.push(Command::Report(Fact::NotSignedIn {
                        account: a.name.clone(),
                    }));
                }
                AccountState::NoToken { .. }
                | AccountState::SignedOut
                | AccountState::SignedIn(_) => {}
            }
        }
    }

    pub(super) fn token_refreshed(&mut self, account: &str, valid_until: Millis, now: Millis) {
        let Some(i) = self.index(account) else { return };
        if let Some(s) = self.session_mut(i) {
            s.token_due = Some(token_due(valid_until, now));
        }
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.account == i && p.op == Op::Refresh)
        {
            self.pending = None;
        }
    }

    /// Entra refused the refresh token: the account is signed out, its token forgotten. Its
    /// subscription cannot be deleted without a token: it is forgotten, and Graph drops it
    /// when it expires.
    pub(super) fn token_refused(&mut self, account: &str, error: String, out: &mut Vec<Command>) {
        let Some(i) = self.index(account) else { return };
        self.end_pending(i);
        let state = std::mem::replace(&mut self.accounts[i].state, AccountState::SignedOut);
        let AccountState::SignedIn(mut session) = state else {
            self.accounts[i].state = state;
            return;
        };
        let account = account.to_owned();
        out.push(Command::Report(Fact::SignedOut {
            account: account.clone(),
            error,
        }));
        out.push(Command::ForgetToken { account });
        if let Some(sub) = session.take_sub() {
            out.push(Command::Drop { id: sub.id });
        }
    }

    /// The refresh failed for a passing reason: pause.
    pub(super) fn token_failed(
        &mut self,
        account: &str,
        error: String,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some(i) = self.index(account) else { return };
        self.end_pending(i);
        if let Some(s) = self.session_mut(i) {
            s.failed(now);
            out.push(Command::Report(Fact::TokenNotRefreshed {
                account: account.to_owned(),
                error,
            }));
        }
    }

    /// A token refresh on the way failed: the operation under way for `i` ended.
    fn end_pending(&mut self, i: usize) {
        if self.pending.as_ref().is_some_and(|p| p.account == i) {
            self.pending = None;
        }
    }

    /// The awaited operation of `account`, if `kind` is what it was.
    fn answer(&mut self, account: &str, kind: fn(&Op) -> bool) -> Option<(usize, Op)> {
        let i = self.index(account)?;
        let p = self.pending.take_if(|p| p.account == i && kind(&p.op))?;
        Some((i, p.op))
    }

    pub(super) fn listed(
        &mut self,
        account: &str,
        result: Result<Vec<Listed>, Failure>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some((i, _)) = self.answer(account, |op| *op == Op::List) else {
            return;
        };
        match result {
            Ok(listed) => self.adopt(i, listed, now, out),
            Err(f) => {
                if let Some(s) = self.session_mut(i) {
                    s.failed(now);
                }
                out.push(Command::Report(Fact::ListFailed {
                    account: account.to_owned(),
                    error: f.message().to_owned(),
                }));
            }
        }
    }

    /// First look at what Graph holds for account `i`: keep the subscription the last run
    /// recorded (if it has not expired), delete the ones nobody recorded (no orphans, no 409
    /// loops), and forget records Graph no longer has.
    fn adopt(&mut self, i: usize, listed: Vec<Listed>, now: Millis, out: &mut Vec<Command>) {
        let name = self.accounts[i].name.clone();
        for s in listed {
            let free = self.accounts[i].state.sub().is_none();
            let recorded = self
                .recorded
                .remove(&s.id)
                .filter(|r| r.account == name && free);
            match recorded.zip(s.expires_at.filter(|t| *t > now)) {
                Some((r, expires_at)) => self.keep(i, r, s, expires_at, out),
                None => {
                    out.push(Command::Report(Fact::UnknownDeleted {
                        account: name.clone(),
                        subscription: s.id.clone(),
                    }));
                    out.push(Command::Delete {
                        account: name.clone(),
                        id: s.id.clone(),
                    });
                    out.push(Command::Drop { id: s.id });
                }
            }
        }
        if let Some(session) = self.session_mut(i)
            && session.holding == Holding::Unlisted
        {
            session.holding = Holding::Nothing;
        }
        self.recorded.retain(|id, r| {
            let stale = r.account == name;
            if stale {
                out.push(Command::Drop { id: id.clone() });
            }
            !stale
        });
    }

    /// Adopt a subscription the last run recorded. A rich one made with a certificate we no
    /// longer hold is unhealthy from the start (so it is made again).
    fn keep(&mut self, i: usize, r: Record, s: Listed, expires_at: Millis, out: &mut Vec<Command>) {
        let lost = r.rich && self.certificate_changed;
        let account = self.accounts[i].name.clone();
        let Some(session) = self.session_mut(i) else {
            return;
        };
        out.push(Command::Report(Fact::Kept {
            account,
            subscription: s.id.clone(),
            users: s.ids.len(),
        }));
        session.holding = Holding::Subscribed(Sub {
            id: s.id,
            client_state: r.client_state,
            expires_at,
            ids: s.ids,
            health: if lost {
                Health::Unhealthy
            } else {
                Health::Healthy
            },
            rich: r.rich,
        });
    }

    pub(super) fn created(
        &mut self,
        account: &str,
        result: Result<Made, Failure>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some((i, Op::Create { ids, expires_at })) =
            self.answer(account, |op| matches!(op, Op::Create { .. }))
        else {
            return;
        };
        let rich = self.rich;
        let Some(session) = self.session_mut(i) else {
            return;
        };
        let account = account.to_owned();
        let Ok(made) =
            result.map_err(|f| create_failed(session, f, account.clone(), &ids, now, out))
        else {
            return;
        };
        let sub = Sub {
            id: made.id,
            client_state: made.client_state,
            expires_at,
            ids,
            health: Health::Healthy,
            rich,
        };
        out.push(Command::Report(Fact::Created {
            account: account.clone(),
            subscription: sub.id.clone(),
            users: sub.ids.len(),
        }));
        out.push(Command::Save(sub.record(&account)));
        session.holding = Holding::Subscribed(sub);
        session.backoff = None;
    }

    pub(super) fn renewed(
        &mut self,
        account: &str,
        result: Result<(), Failure>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some((i, Op::Renew { id, expires_at })) =
            self.answer(account, |op| matches!(op, Op::Renew { .. }))
        else {
            return;
        };
        let Some(session) = self.session_mut(i) else {
            return;
        };
        let account = account.to_owned();
        let fact = match result {
            Ok(()) => renewal_done(session, id, expires_at, account, out),
            // Expired or deleted at Graph: forgotten; the next plan makes a new one at once.
            Err(Failure::Gone(_)) => {
                if let Some(sub) = session.take_sub() {
                    out.push(Command::Drop { id: sub.id });
                }
                Fact::Gone {
                    account,
                    subscription: id,
                }
            }
            Err(f) => renewal_failed(session, f, account, id, now),
        };
        out.push(Command::Report(fact));
    }

    /// Any lifecycle event (for presence Graph sends `reauthorizationRequired`): the
    /// subscription's users are polled and it is renewed at once, which reauthorizes it
    /// (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).
    pub(super) fn lifecycle(
        &mut self,
        subscription: String,
        event: String,
        out: &mut Vec<Command>,
    ) {
        let mut holder = None;
        for a in &mut self.accounts {
            let sub = a.state.session_mut().and_then(Session::sub_mut);
            if let Some(sub) = sub.filter(|s| s.id == subscription) {
                if sub.health == Health::Healthy {
                    sub.health = Health::ReauthPending;
                }
                holder = Some(a.name.clone());
            }
        }
        out.push(Command::Report(Fact::Lifecycle {
            account: holder,
            subscription,
            event,
        }));
    }

    /// A new certificate: every subscription is made again with it.
    pub(super) fn certificate_rotated(&mut self) {
        self.certificate_changed = true;
        for a in &mut self.accounts {
            if let Some(sub) = a.state.session_mut().and_then(Session::sub_mut) {
                sub.health = Health::Unhealthy;
            }
        }
    }

    /// The daemon stops: delete every subscription (a token refresh first where the token
    /// is stale). Nothing new is planned afterwards.
    pub(super) fn delete_all(&mut self, now: Millis, out: &mut Vec<Command>) {
        self.stopping = true;
        self.pending = None;
        for a in &mut self.accounts {
            let Some(session) = a.state.session_mut() else {
                continue;
            };
            let Some(sub) = session.take_sub() else {
                continue;
            };
            let account = a.name.clone();
            if session.token_stale(now) {
                out.push(Command::RefreshToken {
                    account: account.clone(),
                });
            }
            out.push(Command::Delete {
                account,
                id: sub.id.clone(),
            });
            out.push(Command::Drop { id: sub.id });
        }
    }
}

/// A create failed: pause, and list again before the next try (a 409 means Graph holds one
/// we do not know). Said at the first failure in a row only; a 401 drops the access token.
fn create_failed(
    session: &mut Session,
    f: Failure,
    account: String,
    ids: &[Arc<str>],
    now: Millis,
    out: &mut Vec<Command>,
) {
    if matches!(f, Failure::Unauthorized(_)) {
        session.token_due = None;
    }
    session.holding = Holding::Unlisted;
    out.push(Command::Report(Fact::CreateFailed {
        account,
        users: ids.len(),
        error: f.message().to_owned(),
        first: session.backoff.is_none(),
    }));
    session.failed(now);
}

/// A renewal went through: the new expiry is recorded, a reauthorization is over.
fn renewal_done(
    session: &mut Session,
    id: String,
    expires_at: Millis,
    account: String,
    out: &mut Vec<Command>,
) -> Fact {
    if let Some(sub) = session.sub_mut().filter(|s| s.id == id) {
        sub.expires_at = expires_at;
        if sub.health == Health::ReauthPending {
            sub.health = Health::Healthy;
        }
        out.push(Command::Save(sub.record(&account)));
    }
    session.backoff = None;
    Fact::Renewed {
        account,
        subscription: id,
    }
}

/// A renewal failed (not 404): pause; the subscription stays (and counts as covered until it
/// expires). A 401 drops the access token.
fn renewal_failed(
    session: &mut Session,
    f: Failure,
    account: String,
    subscription: String,
    now: Millis,
) -> Fact {
    if matches!(f, Failure::Unauthorized(_)) {
        session.token_due = None;
    }
    session.failed(now);
    Fact::RenewFailed {
        account,
        subscription,
        error: f.message().to_owned(),
    }
}
