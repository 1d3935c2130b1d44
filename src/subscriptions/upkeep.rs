//! Keeping subscriptions alive: renewals and checks, whose answer (the `expirationDateTime`
//! Graph returns, not the one asked for) sets the next renewal; a 404 on either; lifecycle
//! events (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).
//!
//! Graph may grant less than asked: a renewal of a presence subscription was reported to
//! extend it by 5 minutes only
//! (<https://learn.microsoft.com/en-us/answers/questions/1037466/facing-issue-in-expriration-time-using-update-subs>).

use super::planner::{Op, Planner};
use super::state::{Health, Session};
use super::types::{Command, Fact, Failure, LifecycleEvent};
use crate::sync::types::Millis;

/// Longest lifecycle event name said in the log (Graph's are under 30 characters).
const EVENT_CHARS: usize = 64;

impl Planner {
    pub(super) fn renewed(
        &mut self,
        account: &str,
        result: Result<Option<Millis>, Failure>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some((
            i,
            Op::Renew {
                id,
                expires_at,
                asked_at,
            },
        )) = self.answer(account, |op| matches!(op, Op::Renew { .. }))
        else {
            return;
        };
        let Some(session) = self.session_mut(i) else {
            return;
        };
        let account = account.to_owned();
        let fact = match result.and_then(|t| granted(t, expires_at, now)) {
            Ok(granted) => renewal_done(session, id, (granted, asked_at, now), account, out),
            // Expired or deleted at Graph: forgotten; the next plan makes a new one at once.
            Err(Failure::Gone(_)) => gone(session, id, account, out),
            Err(f) => renewal_failed(session, f, account, id, now),
        };
        out.push(Command::Report(fact));
    }

    /// Graph's answer to a look-up: it still holds the subscription (its expiry is taken if
    /// it differs), or it does not (404: made again at once). Any other failure waits for
    /// the next check.
    pub(super) fn checked(
        &mut self,
        account: &str,
        result: Result<Option<Millis>, Failure>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let Some((i, Op::Check { id })) = self.answer(account, |op| matches!(op, Op::Check { .. }))
        else {
            return;
        };
        let Some(session) = self.session_mut(i) else {
            return;
        };
        let account = account.to_owned();
        if let Err(Failure::Gone(_)) = result {
            let fact = gone(session, id, account, out);
            out.push(Command::Report(fact));
            return;
        }
        if let Err(Failure::Unauthorized(_)) = result {
            session.token_due = None;
        }
        let Some(sub) = session.sub_mut().filter(|s| s.id == id) else {
            return;
        };
        sub.checked_at = now;
        match result {
            Ok(Some(t)) if t != sub.expires_at => {
                sub.grant(t, now, now);
                out.push(Command::Save(sub.record(&account)));
            }
            Ok(_) => {}
            Err(f) => out.push(Command::Report(Fact::CheckFailed {
                account,
                subscription: id,
                error: f.message().to_owned(),
            })),
        }
    }

    /// A lifecycle event for one of our subscriptions: `reauthorizationRequired` (and any
    /// unknown event) renews at once, which reauthorizes, and its users are polled
    /// meanwhile; `subscriptionRemoved` forgets it, so a new one is made at once; `missed`
    /// reads its users' presences at once. For another subscription it is only said.
    pub(super) fn lifecycle(&mut self, subscription: String, event: &str, out: &mut Vec<Command>) {
        let holder = self
            .accounts
            .iter()
            .position(|a| a.state.sub().is_some_and(|s| s.id == subscription));
        out.push(Command::Report(Fact::Lifecycle {
            account: holder.map(|i| self.accounts[i].name.clone()),
            subscription,
            event: event.chars().take(EVENT_CHARS).collect(),
        }));
        let Some(session) = holder.and_then(|i| self.session_mut(i)) else {
            return;
        };
        match LifecycleEvent::parse(event) {
            LifecycleEvent::ReauthorizationRequired | LifecycleEvent::Other => {
                if let Some(sub) = session.sub_mut().filter(|s| s.health == Health::Healthy) {
                    sub.health = Health::ReauthPending;
                }
            }
            LifecycleEvent::SubscriptionRemoved => {
                if let Some(sub) = session.take_sub() {
                    out.push(Command::Drop { id: sub.id });
                }
            }
            LifecycleEvent::Missed => {
                if let Some(sub) = session.sub() {
                    out.push(Command::Read {
                        ids: sub.ids.clone(),
                    });
                }
            }
        }
    }
}

/// The expiry Graph granted (the one asked for when Graph's could not be read); a failure
/// when it has already passed, so a useless grant is not taken as a subscription.
pub(super) fn granted(
    given: Option<Millis>,
    asked: Millis,
    now: Millis,
) -> Result<Millis, Failure> {
    let expires_at = given.unwrap_or(asked);
    if expires_at > now {
        Ok(expires_at)
    } else {
        Err(Failure::Other(
            "Graph returned an expirationDateTime that has already passed".into(),
        ))
    }
}

/// A renewal went through: Graph's expiry is recorded (it sets the next renewal), a
/// reauthorization is over.
fn renewal_done(
    session: &mut Session,
    id: String,
    (expires_at, asked_at, now): (Millis, Millis, Millis),
    account: String,
    out: &mut Vec<Command>,
) -> Fact {
    if let Some(sub) = session.sub_mut().filter(|s| s.id == id) {
        sub.grant(expires_at, asked_at, now);
        if sub.health == Health::ReauthPending {
            sub.health = Health::Healthy;
        }
        out.push(Command::Save(sub.record(&account)));
    }
    session.backoff = None;
    Fact::Renewed {
        account,
        subscription: id,
        expires_at,
    }
}

/// 404: the subscription is forgotten (the next plan makes a new one at once).
fn gone(session: &mut Session, id: String, account: String, out: &mut Vec<Command>) -> Fact {
    if session.sub().is_some_and(|s| s.id == id)
        && let Some(sub) = session.take_sub()
    {
        out.push(Command::Drop { id: sub.id });
    }
    Fact::Gone {
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
