//! How each input changes the accounts: ticks and suspects, tokens, listings (adoption),
//! creates, certificate rotation, the final delete. Renewals, checks and lifecycle events are
//! in `upkeep.rs`.

use std::sync::Arc;

use super::planner::{Op, Planner, delete, token_due};
use super::state::{AccountState, Health, Holding, Session, Sub};
use super::types::{Command, Fact, Failure, Listed, MISSED_AFTER, Made, Record};
use super::upkeep::granted;
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
    pub(super) fn answer(&mut self, account: &str, kind: fn(&Op) -> bool) -> Option<(usize, Op)> {
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
    /// recorded (if it has not expired by Graph's date, or by the recorded one, which is what
    /// Graph returned, when Graph's cannot be read), delete the ones nobody recorded (no
    /// orphans, no 409 loops) and the ones notifying another URL (another node's, under
    /// `[ha]`), and forget records Graph no longer has.
    fn adopt(&mut self, i: usize, listed: Vec<Listed>, now: Millis, out: &mut Vec<Command>) {
        let name = self.accounts[i].name.clone();
        for s in listed {
            let free = self.accounts[i].state.sub().is_none();
            let recorded = self
                .recorded
                .remove(&s.id)
                .filter(|r| r.account == name && free && s.elsewhere.is_none());
            let alive = recorded.and_then(|r| {
                let expires_at = s.expires_at.unwrap_or(r.expires_at);
                (expires_at > now).then_some((r, expires_at))
            });
            match alive {
                Some((r, expires_at)) => self.keep(i, r, s, (expires_at, now), out),
                None => delete_listed(&name, s, out),
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

    /// Adopt a subscription the last run recorded, with the expiry Graph lists (recorded
    /// again); it is renewed by the lifetime left. A rich one made with a certificate we no
    /// longer hold is unhealthy from the start (so it is made again).
    fn keep(
        &mut self,
        i: usize,
        r: Record,
        s: Listed,
        (expires_at, now): (Millis, Millis),
        out: &mut Vec<Command>,
    ) {
        let lost = r.rich && self.certificate_changed;
        let account = self.accounts[i].name.clone();
        let Some(session) = self.session_mut(i) else {
            return;
        };
        out.push(Command::Report(Fact::Kept {
            account: account.clone(),
            subscription: s.id.clone(),
            users: s.ids.len(),
        }));
        let sub = Sub {
            id: s.id,
            client_state: r.client_state,
            expires_at,
            granted_at: now,
            checked_at: now,
            ids: s.ids,
            health: if lost {
                Health::Unhealthy
            } else {
                Health::Healthy
            },
            rich: r.rich,
        };
        out.push(Command::Save(sub.record(&account)));
        session.holding = Holding::Subscribed(sub);
    }

    pub(super) fn created(
        &mut self,
        account: &str,
        result: Result<Made, Failure>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some((
            i,
            Op::Create {
                ids,
                expires_at,
                asked_at,
            },
        )) = self.answer(account, |op| matches!(op, Op::Create { .. }))
        else {
            return;
        };
        let rich = self.rich;
        let Some(session) = self.session_mut(i) else {
            return;
        };
        let account = account.to_owned();
        let result = result.and_then(|m| Ok((granted(m.expires_at, expires_at, now)?, m)));
        let Ok((expires_at, made)) =
            result.map_err(|f| create_failed(session, f, account.clone(), &ids, now, out))
        else {
            return;
        };
        let sub = Sub {
            id: made.id,
            client_state: made.client_state,
            expires_at,
            granted_at: asked_at,
            checked_at: now,
            ids,
            health: Health::Healthy,
            rich,
        };
        out.push(Command::Report(Fact::Created {
            account: account.clone(),
            subscription: sub.id.clone(),
            users: sub.ids.len(),
            expires_at,
        }));
        out.push(Command::Save(sub.record(&account)));
        session.holding = Holding::Subscribed(sub);
        session.backoff = None;
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
            delete(account, sub.id, out);
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

/// A listed subscription this node does not adopt: said (unknown, or notifying another URL),
/// deleted at Graph and dropped from the records.
fn delete_listed(account: &str, s: Listed, out: &mut Vec<Command>) {
    let (account, subscription) = (account.to_owned(), s.id);
    out.push(Command::Report(match s.elsewhere {
        Some(url) => Fact::ElsewhereDeleted {
            account: account.clone(),
            subscription: subscription.clone(),
            url,
        },
        None => Fact::UnknownDeleted {
            account: account.clone(),
            subscription: subscription.clone(),
        },
    }));
    delete(account, subscription, out);
}
