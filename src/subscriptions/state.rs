//! One account's state, as one enum: what cannot happen cannot be written down (a signed-out
//! account holding a subscription, a retry time without a failure, a listed account without a
//! token).

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;

use super::types::{CHECK_EVERY, RENEW_BEFORE, RETRY_BASE, RETRY_MAX, Record};
use crate::sync::types::{Millis, millis};

/// Where an account stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    /// No refresh token is known: the tokens were not read yet, or `login` never ran.
    /// `told`: "not signed in" was said (once, until a token comes).
    NoToken { told: bool },
    /// Entra refused its refresh token: nothing is tried until `login` stores a new one.
    SignedOut,
    /// It has a refresh token.
    SignedIn(Session),
}

/// A signed-in account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// When the access token the adapter holds is to be refreshed (`None`: it holds none).
    pub token_due: Option<Millis>,
    pub holding: Holding,
    /// Failures in a row, kept until a subscription is made or renewed.
    pub backoff: Option<Backoff>,
}

/// What a signed-in account holds at Graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// Not known: Graph's list was not compared with what the last run recorded yet (first
    /// contact, or after a failed create, which may mean Graph holds one we do not know).
    Unlisted,
    /// Nothing.
    Nothing,
    Subscribed(Sub),
}

/// Failures in a row, and the time before which Graph is not asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub failures: NonZeroU32,
    pub until: Millis,
}

/// One subscription an account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    pub id: String,
    /// Its secret, checked in every notification.
    pub client_state: String,
    /// Until when Graph keeps it: the `expirationDateTime` Graph returned, which may be
    /// sooner than the one asked for.
    pub expires_at: Millis,
    /// When `expires_at` was asked for (or when it was adopted or looked up with it): the
    /// lifetime granted, `expires_at - granted_at`, sets when it is renewed.
    pub granted_at: Millis,
    /// When Graph last showed it exists (a grant, a renewal, a listing or a check).
    pub checked_at: Millis,
    /// The users its filter names.
    pub ids: Vec<Arc<str>>,
    pub health: Health,
    /// Made with our encryption certificate (rich notifications).
    pub rich: bool,
}

/// Whether a subscription can be trusted to announce its users' changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Graph asked for reauthorization: its users are polled until a renewal succeeds.
    ReauthPending,
    /// It missed a change, or names a certificate we replaced: it is made again.
    Unhealthy,
}

impl Backoff {
    /// The pause after one more failure: 10 s after the first, doubling, at most 5 min.
    pub fn after(previous: Option<Backoff>, now: Millis) -> Backoff {
        let failures = previous.map_or(NonZeroU32::MIN, |b| b.failures.saturating_add(1));
        let wait = RETRY_BASE
            .saturating_mul(1 << failures.get().min(6))
            .min(RETRY_MAX);
        Backoff {
            failures,
            until: now.saturating_add(millis(wait)),
        }
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            token_due: None,
            holding: Holding::Unlisted,
            backoff: None,
        }
    }

    /// Whether Graph may be asked now (not in a pause after a failure).
    pub fn may_ask(&self, now: Millis) -> bool {
        self.backoff.is_none_or(|b| now >= b.until)
    }

    /// Whether the access token must be refreshed before Graph is asked.
    pub fn token_stale(&self, now: Millis) -> bool {
        self.token_due.is_none_or(|due| now >= due)
    }

    /// One more failure: pause.
    pub fn failed(&mut self, now: Millis) {
        self.backoff = Some(Backoff::after(self.backoff, now));
    }

    pub fn sub(&self) -> Option<&Sub> {
        match &self.holding {
            Holding::Subscribed(s) => Some(s),
            Holding::Unlisted | Holding::Nothing => None,
        }
    }

    pub fn sub_mut(&mut self) -> Option<&mut Sub> {
        match &mut self.holding {
            Holding::Subscribed(s) => Some(s),
            Holding::Unlisted | Holding::Nothing => None,
        }
    }

    /// Lets go of the subscription, if it holds one (it then holds nothing).
    pub fn take_sub(&mut self) -> Option<Sub> {
        if !matches!(self.holding, Holding::Subscribed(_)) {
            return None;
        }
        match std::mem::replace(&mut self.holding, Holding::Nothing) {
            Holding::Subscribed(s) => Some(s),
            Holding::Unlisted | Holding::Nothing => None,
        }
    }
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl AccountState {
    pub fn session(&self) -> Option<&Session> {
        match self {
            AccountState::SignedIn(s) => Some(s),
            AccountState::NoToken { .. } | AccountState::SignedOut => None,
        }
    }

    pub fn session_mut(&mut self) -> Option<&mut Session> {
        match self {
            AccountState::SignedIn(s) => Some(s),
            AccountState::NoToken { .. } | AccountState::SignedOut => None,
        }
    }

    pub fn sub(&self) -> Option<&Sub> {
        self.session().and_then(Session::sub)
    }
}

impl Sub {
    /// Whether its users count as covered at `now`: healthy, not waiting for
    /// reauthorization, not expired.
    pub fn covers(&self, now: Millis) -> bool {
        self.health == Health::Healthy && self.expires_at > now
    }

    /// Whether it can stay as it is for `ids`: not unhealthy, of the kind wanted, not
    /// expired, naming exactly those users.
    pub fn fits(&self, ids: &[Arc<str>], rich: bool, now: Millis) -> bool {
        self.health != Health::Unhealthy
            && self.rich == rich
            && self.expires_at > now
            && same_ids(&self.ids, ids)
    }

    /// When it is renewed: once less than [`RENEW_BEFORE`] or a third of the lifetime Graph
    /// granted is left, whichever is less (15 minutes before the end of a 55-minute grant, 10
    /// seconds before the end of a 30-second one), at least a second after the grant; or at
    /// once after a reauthorization request.
    pub fn renew_at(&self) -> Millis {
        match self.health {
            Health::ReauthPending => Millis::MIN,
            Health::Healthy | Health::Unhealthy => {
                let lifetime = self.expires_at.saturating_sub(self.granted_at).max(0);
                let margin = millis(RENEW_BEFORE).min(lifetime / 3);
                self.expires_at
                    .saturating_sub(margin)
                    .max(self.granted_at.saturating_add(1_000))
            }
        }
    }

    /// When Graph is asked whether it still exists ([`CHECK_EVERY`] after it last showed).
    pub fn check_at(&self) -> Millis {
        self.checked_at.saturating_add(millis(CHECK_EVERY))
    }

    /// Graph granted it until `expires_at`, asked at `asked_at`, answered at `now`.
    pub fn grant(&mut self, expires_at: Millis, asked_at: Millis, now: Millis) {
        self.expires_at = expires_at;
        self.granted_at = asked_at;
        self.checked_at = now;
    }

    /// Its row in the state database.
    pub fn record(&self, account: &str) -> Record {
        Record {
            id: self.id.clone(),
            account: account.to_owned(),
            client_state: self.client_state.clone(),
            expires_at: self.expires_at,
            users: self.ids.len(),
            rich: self.rich,
        }
    }
}

/// The same users, in any order.
pub fn same_ids(a: &[Arc<str>], b: &[Arc<str>]) -> bool {
    a.len() == b.len() && {
        let set: HashSet<&Arc<str>> = a.iter().collect();
        b.iter().all(|id| set.contains(id))
    }
}
