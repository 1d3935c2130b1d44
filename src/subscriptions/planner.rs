//! The planner: every account's state, the users, the suspects. [`Input`]s and `now` in,
//! [`Command`]s out.
//!
//! One operation whose answer matters (a token refresh, a listing, a create, a renewal, a
//! look-up) is under way at a time, as when one task did everything in turn: after each
//! answer the planner looks again at what is due. Within a pass the accounts not compared with
//! Graph yet are listed first (so the assignment keeps what the last run made), then each
//! account's subscription is brought in line with its share of the users.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::shards::{self, Shard};
use super::state::{AccountState, Holding, Session};
use super::types::{
    Command, Coverage, Input, LIFETIME, MISSED_AFTER, Record, Settings, TOKEN_MARGIN,
};
use crate::sync::types::{Millis, millis};

/// One account: its name (the lowercased UPN) and state.
#[derive(Debug, Clone)]
pub(super) struct Account {
    pub(super) name: String,
    pub(super) state: AccountState,
}

/// An operation whose answer is awaited, with what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Op {
    Refresh,
    List,
    /// `asked_at`: when it was asked for; the lifetime Graph grants counts from then.
    Create {
        ids: Vec<Arc<str>>,
        expires_at: Millis,
        asked_at: Millis,
    },
    Renew {
        id: String,
        expires_at: Millis,
        asked_at: Millis,
    },
    Check {
        id: String,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) account: usize,
    pub(super) op: Op,
}

/// What one account's subscription needs now.
enum Step {
    Nothing,
    RefreshToken,
    Renew(String),
    /// Ask Graph whether it still holds it.
    Check(String),
    /// Drop what it holds (if anything) and make one for its users (if any).
    Make,
}

/// Every account's subscription, decided from inputs and `now` alone.
#[derive(Debug)]
pub struct Planner {
    pub(super) capacity: usize,
    pub(super) rich: bool,
    /// Rich subscriptions the last run recorded name a certificate we no longer hold.
    pub(super) certificate_changed: bool,
    pub(super) accounts: Vec<Account>,
    /// Every matched user, in a stable order.
    pub(super) users: Arc<Vec<Arc<str>>>,
    /// Subscriptions the last run recorded and no listing has shown yet (id -> record).
    pub(super) recorded: HashMap<String, Record>,
    /// Covered users a poll found changed, and since when.
    pub(super) suspects: HashMap<Arc<str>, Millis>,
    pub(super) pending: Option<Pending>,
    /// [`Input::DeleteAll`] came: nothing new is planned.
    pub(super) stopping: bool,
    /// Each account's covering subscription, as last published.
    published: Vec<Option<String>>,
    /// Each account's subscription, as last given to the webhook.
    known: Vec<Option<String>>,
    /// Users no account has room for, at the last assignment.
    polled: usize,
}

impl Planner {
    pub fn new(settings: Settings, recorded: Vec<Record>) -> Planner {
        let n = settings.accounts.len();
        Planner {
            capacity: settings.capacity,
            rich: settings.rich,
            certificate_changed: settings.new_certificate,
            accounts: settings
                .accounts
                .into_iter()
                .map(|name| Account {
                    name,
                    state: AccountState::NoToken { told: false },
                })
                .collect(),
            users: Arc::default(),
            recorded: recorded.into_iter().map(|r| (r.id.clone(), r)).collect(),
            suspects: HashMap::new(),
            pending: None,
            stopping: false,
            published: vec![None; n],
            known: vec![None; n],
            polled: 0,
        }
    }

    /// Take one input; returns what to do, in order. Who is covered is published before the
    /// next request to Graph, so its users are polled while it runs.
    pub fn handle(&mut self, input: Input, now: Millis) -> Vec<Command> {
        let mut out = Vec::new();
        if self.apply(input, now, &mut out) {
            let mut planned = Vec::new();
            if !self.stopping {
                self.plan(now, &mut planned);
            }
            self.publish(now, &mut out);
            out.append(&mut planned);
        }
        out
    }

    /// The input's own change; false when nothing else can follow from it (a notification,
    /// a suspect, or a tick that asked for the tokens: their answer plans).
    fn apply(&mut self, input: Input, now: Millis, out: &mut Vec<Command>) -> bool {
        match input {
            Input::Notified(user) => {
                self.suspects.remove(user.as_str());
                return false;
            }
            Input::Suspect(user) => {
                self.suspects.entry(user).or_insert(now);
                return false;
            }
            Input::Tick => return !self.tick(now, out),
            Input::Users(users) => self.users = users,
            Input::TokensRead(found) => self.tokens_read(&found, out),
            Input::TokenRefreshed {
                account,
                valid_until,
            } => self.token_refreshed(&account, valid_until, now),
            Input::TokenRefused { account, error } => self.token_refused(&account, error, out),
            Input::TokenFailed { account, error } => self.token_failed(&account, error, now, out),
            Input::Listed { account, result } => self.listed(&account, result, now, out),
            Input::Created { account, result } => self.created(&account, result, now, out),
            Input::Renewed { account, result } => self.renewed(&account, result, now, out),
            Input::Checked { account, result } => self.checked(&account, result, now, out),
            Input::Lifecycle {
                subscription,
                event,
            } => self.lifecycle(subscription, &event, out),
            Input::CertificateRotated => self.certificate_rotated(),
            Input::DeleteAll => self.delete_all(now, out),
        }
        true
    }

    /// The state of an account, by name.
    pub fn state(&self, account: &str) -> Option<&AccountState> {
        self.accounts
            .iter()
            .find(|a| a.name == account)
            .map(|a| &a.state)
    }

    /// The users covered at `now`: by a healthy subscription, not waiting for
    /// reauthorization, not expired.
    pub fn covered(&self, now: Millis) -> HashSet<Arc<str>> {
        self.accounts
            .iter()
            .filter_map(|a| a.state.sub())
            .filter(|s| s.covers(now))
            .flat_map(|s| s.ids.iter().cloned())
            .collect()
    }

    /// Subscriptions held at `now`: how many cover their users, how many do not (unhealthy,
    /// waiting for reauthorization, or expired).
    pub fn subscription_health(&self, now: Millis) -> (usize, usize) {
        let subs = self.accounts.iter().filter_map(|a| a.state.sub());
        let covering = subs.clone().filter(|s| s.covers(now)).count();
        (covering, subs.count() - covering)
    }

    /// The next time after `now` something falls due (a renewal, a check, a token refresh,
    /// the end of a pause or of a subscription, a suspect's 90 s): the adapter wakes up then.
    pub fn next_deadline(&self, now: Millis) -> Option<Millis> {
        let suspects = self
            .suspects
            .values()
            .map(|since| since.saturating_add(millis(MISSED_AFTER)));
        let accounts = self
            .accounts
            .iter()
            .filter_map(|a| a.state.session())
            .flat_map(|s| {
                let sub = s
                    .sub()
                    .map(|sub| [sub.renew_at(), sub.check_at(), sub.expires_at]);
                s.token_due
                    .into_iter()
                    .chain(s.backoff.map(|b| b.until))
                    .chain(sub.into_iter().flatten())
            });
        suspects.chain(accounts).filter(|t| *t > now).min()
    }

    pub(super) fn index(&self, account: &str) -> Option<usize> {
        self.accounts.iter().position(|a| a.name == account)
    }

    pub(super) fn session_mut(&mut self, i: usize) -> Option<&mut Session> {
        self.accounts.get_mut(i).and_then(|a| a.state.session_mut())
    }

    /// Ask for the next thing due, if no answer is awaited.
    fn plan(&mut self, now: Millis, out: &mut Vec<Command>) {
        if self.pending.is_some() {
            return;
        }
        let unlisted = self.accounts.iter().position(|a| {
            a.state
                .session()
                .is_some_and(|s| s.may_ask(now) && s.holding == Holding::Unlisted)
        });
        if let Some(i) = unlisted {
            self.ask(i, Op::List, now, out);
            return;
        }
        let targets = self.assignment();
        for (i, ids) in targets.into_iter().enumerate() {
            if self.settle(i, ids, now, out) {
                return;
            }
        }
    }

    /// Each account's share of the users (`sync::shards` keeps it stable).
    fn assignment(&mut self) -> Vec<Shard> {
        let current: Vec<Shard> = self
            .accounts
            .iter()
            .map(|a| a.state.sub().map(|s| s.ids.clone()).unwrap_or_default())
            .collect();
        let holds: Vec<bool> = self
            .accounts
            .iter()
            .map(|a| a.state.session().is_some())
            .collect();
        let (targets, polled) = shards::assign(&current, &holds, &self.users, self.capacity);
        self.polled = polled.len();
        targets
    }

    /// Bring account `i`'s subscription in line with `ids`; true when an answer is awaited.
    fn settle(&mut self, i: usize, ids: Shard, now: Millis, out: &mut Vec<Command>) -> bool {
        let step = match self.accounts[i].state.session() {
            Some(s) if s.may_ask(now) => self.step(s, &ids, now),
            _ => return false,
        };
        let expires_at = now.saturating_add(millis(LIFETIME));
        match step {
            Step::Nothing => return false,
            Step::RefreshToken => self.ask(i, Op::Refresh, now, out),
            Step::Renew(id) => {
                let op = Op::Renew {
                    id,
                    expires_at,
                    asked_at: now,
                };
                self.ask(i, op, now, out);
            }
            Step::Check(id) => self.ask(i, Op::Check { id }, now, out),
            Step::Make => {
                self.drop_sub(i, out);
                if ids.is_empty() {
                    return false;
                }
                let op = Op::Create {
                    ids,
                    expires_at,
                    asked_at: now,
                };
                self.ask(i, op, now, out);
            }
        }
        true
    }

    fn step(&self, session: &Session, ids: &[Arc<str>], now: Millis) -> Step {
        // Every pass keeps the token fresh, so a revoked account shows within minutes.
        if session.token_stale(now) {
            return Step::RefreshToken;
        }
        match session.sub() {
            Some(sub) if !ids.is_empty() && sub.fits(ids, self.rich, now) => {
                if sub.renew_at() <= now {
                    Step::Renew(sub.id.clone())
                } else if sub.check_at() <= now {
                    Step::Check(sub.id.clone())
                } else {
                    Step::Nothing
                }
            }
            Some(_) => Step::Make,
            None if ids.is_empty() => Step::Nothing,
            None => Step::Make,
        }
    }

    /// Delete account `i`'s subscription at Graph and forget it.
    fn drop_sub(&mut self, i: usize, out: &mut Vec<Command>) {
        let account = self.accounts[i].name.clone();
        if let Some(sub) = self.session_mut(i).and_then(Session::take_sub) {
            delete(account, sub.id, out);
        }
    }

    /// Ask Graph for `op` on account `i` (a token refresh first, when its token is stale).
    fn ask(&mut self, i: usize, op: Op, now: Millis, out: &mut Vec<Command>) {
        let account = self.accounts[i].name.clone();
        let stale = self.accounts[i]
            .state
            .session()
            .is_none_or(|s| s.token_stale(now));
        let op = if stale { Op::Refresh } else { op };
        out.push(match &op {
            Op::Refresh => Command::RefreshToken { account },
            Op::List => Command::List { account },
            Op::Create {
                ids, expires_at, ..
            } => Command::Create {
                account,
                ids: ids.clone(),
                expires_at: *expires_at,
            },
            Op::Renew { id, expires_at, .. } => Command::Renew {
                account,
                id: id.clone(),
                expires_at: *expires_at,
            },
            Op::Check { id } => Command::Check {
                account,
                id: id.clone(),
            },
        });
        self.pending = Some(Pending { account: i, op });
    }

    /// Tell the webhook which subscriptions exist and the poller who is covered, when that
    /// changed.
    fn publish(&mut self, now: Millis, out: &mut Vec<Command>) {
        let known: Vec<Option<String>> = self
            .accounts
            .iter()
            .map(|a| a.state.sub().map(|s| s.id.clone()))
            .collect();
        if known != self.known {
            let secrets = self
                .accounts
                .iter()
                .filter_map(|a| a.state.sub())
                .map(|s| (s.id.clone(), s.client_state.clone()))
                .collect();
            out.push(Command::Known(secrets));
            self.known = known;
        }
        let covering: Vec<Option<String>> = self
            .accounts
            .iter()
            .map(|a| {
                a.state
                    .sub()
                    .filter(|s| s.covers(now))
                    .map(|s| s.id.clone())
            })
            .collect();
        if covering != self.published {
            out.push(Command::Publish(self.coverage(now)));
            self.published = covering;
        }
    }

    fn coverage(&self, now: Millis) -> Coverage {
        let accounts = self
            .accounts
            .iter()
            .map(|a| {
                let ids = a
                    .state
                    .sub()
                    .filter(|s| s.covers(now))
                    .map(|s| s.ids.clone())
                    .unwrap_or_default();
                (a.name.clone(), ids)
            })
            .collect();
        Coverage {
            accounts,
            covered: self.covered(now),
            polled: self.polled,
        }
    }
}

/// When a token good until `valid_until` is refreshed: [`TOKEN_MARGIN`] before its end, or
/// halfway for one shorter than that (so a short-lived token is not refreshed in a loop).
pub(super) fn token_due(valid_until: Millis, now: Millis) -> Millis {
    let due = valid_until.saturating_sub(millis(TOKEN_MARGIN));
    if due > now {
        due
    } else {
        now.saturating_add((valid_until.saturating_sub(now) / 2).max(1_000))
    }
}

/// Delete subscription `id` of `account` at Graph and forget its record.
pub(super) fn delete(account: String, id: String, out: &mut Vec<Command>) {
    out.push(Command::Delete {
        account,
        id: id.clone(),
    });
    out.push(Command::Drop { id });
}
