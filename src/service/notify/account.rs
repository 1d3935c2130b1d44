//! One subscription account: its refresh token, a cached access token, and the one
//! subscription it holds.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Secret;
use crate::graph::delegated::Delegated;
use crate::graph::{Bearer, GraphError};

/// A subscription held by an account.
#[derive(Debug, Clone)]
pub struct Sub {
    pub id: String,
    pub client_state: String,
    pub expires: SystemTime,
    pub ids: Vec<Arc<str>>,
    /// False once it missed a change or failed to renew: its users are polled at full speed
    /// and it is made again.
    pub healthy: bool,
    /// Graph asked for reauthorization [D17]: renew at once.
    pub reauth: bool,
    pub rich: bool,
}

impl Sub {
    /// Whether its users count as covered at `now`: healthy, not waiting for reauthorization,
    /// not expired.
    pub fn covers(&self, now: SystemTime) -> bool {
        self.healthy && !self.reauth && self.expires > now
    }
}

pub struct Account {
    pub name: String,
    pub refresh: Option<Secret>,
    access: Option<(Bearer, Instant)>,
    pub sub: Option<Sub>,
    /// The token was refused (revoked or expired): nothing is tried until `login` writes a
    /// new one.
    pub signed_out: bool,
    /// Failures in a row making or renewing its subscription, and when to try again.
    pub failures: u32,
    pub retry_at: Option<Instant>,
    /// Whether the subscriptions Graph holds were compared with ours since the token came.
    pub adopted: bool,
    /// "Not signed in" was logged (once, until it is).
    pub told_no_token: bool,
}

/// What a token refresh ended with.
pub enum TokenOutcome {
    Ok(Bearer),
    /// The refresh token no longer works: the account must sign in again.
    SignedOut(GraphError),
    /// Try again later (network, Entra unavailable).
    Later(GraphError),
}

impl Account {
    pub fn new(name: String) -> Account {
        Account {
            name,
            refresh: None,
            access: None,
            sub: None,
            signed_out: false,
            failures: 0,
            retry_at: None,
            adopted: false,
            told_no_token: false,
        }
    }

    /// Whether it can hold a subscription (it is signed in). One in a retry pause keeps its
    /// users; they are covered only while its subscription is healthy.
    pub fn can_hold(&self) -> bool {
        self.refresh.is_some() && !self.signed_out
    }

    /// Whether Graph may be asked now (not in a retry pause).
    pub fn usable(&self, now: Instant) -> bool {
        self.can_hold() && self.retry_at.is_none_or(|t| now >= t)
    }

    /// A token `login` (or a rotation) stored; a different one revives a signed-out account.
    pub fn set_refresh(&mut self, token: Secret) {
        if self.refresh.as_ref() != Some(&token) {
            self.refresh = Some(token);
            self.access = None;
            self.signed_out = false;
            self.failures = 0;
            self.retry_at = None;
            self.adopted = false;
            self.told_no_token = false;
        }
    }

    /// An access token, refreshed when near expiry. A rotated refresh token is returned so the
    /// caller can store it.
    pub async fn token(&mut self, delegated: &Delegated) -> (TokenOutcome, Option<Secret>) {
        let now = Instant::now();
        if let Some((t, until)) = &self.access
            && now + Duration::from_secs(300) < *until
        {
            return (TokenOutcome::Ok(t.clone()), None);
        }
        let Some(refresh) = self.refresh.clone() else {
            return (
                TokenOutcome::Later(GraphError::InvalidSettings("no refresh token".into())),
                None,
            );
        };
        match delegated.refresh(refresh.expose()).await {
            Ok(grant) => {
                let until = now + grant.expires_in;
                self.access = Some((grant.access_token.clone(), until));
                let rotated = grant
                    .refresh_token
                    .map(Secret::new)
                    .filter(|r| r != &refresh);
                if let Some(r) = &rotated {
                    self.refresh = Some(r.clone());
                }
                (TokenOutcome::Ok(grant.access_token), rotated)
            }
            Err(e @ GraphError::Credentials { .. }) => {
                self.signed_out = true;
                self.access = None;
                (TokenOutcome::SignedOut(e), None)
            }
            Err(e) => (TokenOutcome::Later(e), None),
        }
    }

    /// A failure making or renewing the subscription: back off (5 s doubling to 5 min).
    pub fn failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        let wait = Duration::from_secs(5)
            .saturating_mul(1 << self.failures.min(6))
            .min(Duration::from_secs(300));
        self.retry_at = Some(now + wait);
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// Forget the access token (Graph refused it).
    pub fn drop_access(&mut self) {
        self.access = None;
    }
}

/// The ids named by a presence subscription's resource, `…id in ('a','b')` [D3].
pub fn ids_of_resource(resource: &str) -> Vec<Arc<str>> {
    let Some((_, list)) = resource.split_once(" in (") else {
        return resource
            .rsplit_once('/')
            .map(|(_, id)| vec![Arc::from(id)])
            .unwrap_or_default();
    };
    list.trim_end_matches(')')
        .split(',')
        .map(|q| q.trim().trim_matches('\''))
        .filter(|id| !id.is_empty())
        .map(Arc::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_filters_give_back_their_ids() {
        let ids = ids_of_resource("/communications/presences?$filter=id in ('a-1','b-2')");
        assert_eq!(ids, vec![Arc::from("a-1"), Arc::from("b-2")]);
        assert_eq!(
            ids_of_resource("communications/presences/c-3"),
            vec![Arc::<str>::from("c-3")]
        );
    }
}
