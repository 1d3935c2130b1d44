//! Per-account work: the refresh token `login` stored, the access token refreshed from it,
//! and the Graph calls made with it (list, create, renew, look up, delete). Each runs in a
//! span that names the account.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

use super::manager::Manager;
use crate::config::Secret;
use crate::graph::delegated::Grant;
use crate::graph::subscriptions::{NewSubscription, Subscription};
use crate::graph::{Bearer, GraphClient, GraphError};
use crate::store::Write;
use crate::subscriptions::{Command, Failure, Input, Listed, Made};
use crate::sync::types::{Millis, millis};

/// A signed-in account's tokens.
pub(super) struct Credentials {
    refresh: Secret,
    /// The last access token (the planner decides when it is refreshed).
    access: Option<Bearer>,
}

/// What a call with the account's token ended with: the answers of token refreshes on the
/// way and the call's result, or the failure of a refresh (which then is the answer).
type Called = Result<(Vec<Input>, Result<Reply, GraphError>), Input>;

/// A Graph request made with an account's token.
enum Call<'a> {
    List,
    Create(&'a NewSubscription<'a>),
    Renew(&'a str, SystemTime),
    Get(&'a str),
    Delete(&'a str),
}

/// Graph's answer to a [`Call`].
enum Reply {
    Listed(Vec<Subscription>),
    One(Subscription),
    Done,
}

impl Call<'_> {
    async fn send(&self, graph: &GraphClient, token: &Bearer) -> Result<Reply, GraphError> {
        Ok(match self {
            Call::List => Reply::Listed(graph.list_subscriptions(token).await?),
            Call::Create(new) => Reply::One(graph.create_subscription(token, new).await?),
            Call::Renew(id, until) => {
                Reply::One(graph.renew_subscription(token, id, *until).await?)
            }
            Call::Get(id) => Reply::One(graph.get_subscription(token, id).await?),
            Call::Delete(id) => {
                graph.delete_subscription(token, id).await?;
                Reply::Done
            }
        })
    }
}

impl Manager {
    /// The refresh tokens `login` stored; kept until the planner says which accounts take
    /// theirs.
    pub(super) async fn read_tokens(&mut self) -> Input {
        self.out.flush().await;
        match self.out.store().account_tokens().await {
            Ok(tokens) => {
                let names = tokens.iter().map(|(name, _)| name.clone()).collect();
                self.read = tokens.into_iter().collect();
                Input::TokensRead(names)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read subscription account tokens: {e}");
                Input::TokensRead(Vec::new())
            }
        }
    }

    pub(super) fn use_token(&mut self, account: String) {
        if let Some(refresh) = self.read.remove(&account) {
            let access = None;
            self.accounts
                .insert(account, Credentials { refresh, access });
        }
    }

    /// Entra refused it: gone here and from the store (`login` writes a new one).
    pub(super) fn forget_token(&mut self, account: String) {
        self.accounts.remove(&account);
        self.out.write(Write::RemoveAccountToken { account });
    }

    /// Carry out a command that calls Graph or Entra for its account.
    pub(super) async fn call(&mut self, command: Command) -> Vec<Input> {
        match command {
            Command::RefreshToken { account } => match self.refresh(&account).await {
                Ok((_, answer)) | Err(answer) => vec![answer],
            },
            Command::List { account } => {
                let called = self.with_token(&account, &Call::List).await;
                answers(called, |result| Input::Listed {
                    account,
                    result: result.map(|r| match r {
                        Reply::Listed(l) => {
                            let ours = &self.config.public_url;
                            l.into_iter().map(|s| listed(s, ours)).collect()
                        }
                        Reply::One(_) | Reply::Done => Vec::new(),
                    }),
                })
            }
            Command::Create {
                account,
                ids,
                expires_at,
            } => self.create(account, &ids, expires_at).await,
            Command::Renew {
                account,
                id,
                expires_at,
            } => {
                let called = self
                    .with_token(&account, &Call::Renew(&id, wall(expires_at)))
                    .await;
                answers(called, |result| Input::Renewed {
                    account,
                    result: result.map(granted),
                })
            }
            Command::Check { account, id } => {
                let called = self.with_token(&account, &Call::Get(&id)).await;
                answers(called, |result| Input::Checked {
                    account,
                    result: result.map(granted),
                })
            }
            Command::Delete { account, id } => {
                self.delete(&account, &id).await;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// A subscription for `ids`, with a new random secret and, for rich notifications, our
    /// certificate.
    async fn create(
        &mut self,
        account: String,
        ids: &[Arc<str>],
        expires_at: Millis,
    ) -> Vec<Input> {
        let client_state = random_hex(32);
        let id_refs: Vec<&str> = ids.iter().map(|s| &**s).collect();
        let lifecycle = self.config.lifecycle_url();
        let public_url = self.config.public_url.clone();
        let certificate = self.keys.as_ref().map(|k| {
            let c = k.current();
            (c.certificate_base64(), c.certificate_id().to_owned())
        });
        let new = NewSubscription {
            ids: &id_refs,
            notification_url: &public_url,
            lifecycle_url: &lifecycle,
            client_state: &client_state,
            expires: wall(expires_at),
            certificate: certificate.as_ref().map(|(c, i)| (c.as_str(), i.as_str())),
        };
        let called = self.with_token(&account, &Call::Create(&new)).await;
        answers(called, |result| Input::Created {
            account,
            result: result.and_then(|r| match r {
                Reply::One(s) => Ok(Made {
                    expires_at: expiry(&s),
                    id: s.id,
                    client_state: client_state.clone(),
                }),
                Reply::Listed(_) | Reply::Done => Err(Failure::Other("no subscription".into())),
            }),
        })
    }

    /// Delete at Graph; a failure is only logged (an unrenewed subscription ends at its
    /// expiry anyway).
    async fn delete(&mut self, account: &str, id: &str) {
        let called = self.with_token(account, &Call::Delete(id)).await;
        // A token problem here shows again, and is answered, at the account's next call.
        let error = match called {
            Ok((_, Ok(_))) => return,
            Ok((_, Err(e))) => e.to_string(),
            Err(Input::TokenRefused { error, .. } | Input::TokenFailed { error, .. }) => error,
            Err(_) => "no access token".to_owned(),
        };
        tracing::warn!(subscription = %id, %error, "cannot delete subscription {id}: {error}");
    }

    /// Make `call` with the account's access token; a 401 gets one more try with a fresh one.
    async fn with_token(&mut self, account: &str, call: &Call<'_>) -> Called {
        let graph = self.links.graph.borrow().clone();
        let held = self.accounts.get(account).and_then(|c| c.access.clone());
        let mut answers = Vec::new();
        let token = match held {
            Some(t) => t,
            None => {
                let (t, refreshed) = self.refresh(account).await?;
                answers.push(refreshed);
                t
            }
        };
        let mut result = call.send(&graph, &token).await;
        if matches!(result, Err(GraphError::Unauthorized { .. })) {
            self.drop_access(account);
            let (fresh, refreshed) = self.refresh(account).await?;
            answers.push(refreshed);
            result = call.send(&graph, &fresh).await;
            if matches!(result, Err(GraphError::Unauthorized { .. })) {
                self.drop_access(account);
            }
        }
        Ok((answers, result))
    }

    fn drop_access(&mut self, account: &str) {
        if let Some(c) = self.accounts.get_mut(account) {
            c.access = None;
        }
    }

    /// A new access token from the refresh token. `Err` is the answer for the planner when
    /// Entra refused or could not be reached.
    async fn refresh(&mut self, account: &str) -> Result<(Bearer, Input), Input> {
        let name = account.to_owned();
        let Some(refresh) = self.accounts.get(account).map(|c| c.refresh.clone()) else {
            let error = "no refresh token".to_owned();
            return Err(Input::TokenFailed {
                account: name,
                error,
            });
        };
        match self.delegated.refresh(refresh.expose()).await {
            Ok(grant) => Ok(self.granted(name, &refresh, grant)),
            Err(e @ GraphError::Credentials { .. }) => {
                self.drop_access(account);
                let error = refused(&e);
                Err(Input::TokenRefused {
                    account: name,
                    error,
                })
            }
            Err(e) => Err(Input::TokenFailed {
                account: name,
                error: e.to_string(),
            }),
        }
    }

    /// Keep the new access token, and store a rotated refresh token (the one used may stop
    /// working once it is issued).
    fn granted(&mut self, account: String, used: &Secret, grant: Grant) -> (Bearer, Input) {
        let now = self.clock.now();
        let rotated = grant.refresh_token.map(Secret::new).filter(|r| r != used);
        if let Some(creds) = self.accounts.get_mut(&account) {
            if let Some(r) = rotated {
                self.out.write(Write::SetAccountToken {
                    account: account.clone(),
                    refresh_token: r.clone(),
                    at: now,
                });
                creds.refresh = r;
            }
            creds.access = Some(grant.access_token.clone());
        }
        let valid_until = now.saturating_add(millis(grant.expires_in));
        let answer = Input::TokenRefreshed {
            account,
            valid_until,
        };
        (grant.access_token, answer)
    }
}

/// The planner's answers for one call: the refreshes on the way, then `last` of its result.
fn answers(called: Called, last: impl FnOnce(Result<Reply, Failure>) -> Input) -> Vec<Input> {
    match called {
        Ok((mut answers, result)) => {
            answers.push(last(result.map_err(|e| failure(&e))));
            answers
        }
        Err(answer) => vec![answer],
    }
}

fn failure(e: &GraphError) -> Failure {
    match e {
        GraphError::NotFound { .. } => Failure::Gone(e.to_string()),
        GraphError::Unauthorized { .. } => Failure::Unauthorized(e.to_string()),
        other => Failure::Other(other.to_string()),
    }
}

/// Entra's refusal of an account's refresh token, said as such: `GraphError` phrases it as
/// a refusal of the app's credentials.
fn refused(e: &GraphError) -> String {
    match e {
        GraphError::Credentials { aadsts, error, .. } => format!(
            "Entra refused the account's refresh token ({error}{})",
            aadsts.map_or(String::new(), |c| format!(", AADSTS{c}"))
        ),
        other => other.to_string(),
    }
}

/// A listed subscription, for the planner: `elsewhere` when it notifies a URL that is not
/// `ours` (compared as URLs; a subscription Graph lists without one is taken as ours).
fn listed(s: Subscription, ours: &url::Url) -> Listed {
    let expires_at = expiry(&s);
    let elsewhere = s
        .notification_url
        .filter(|u| url::Url::parse(u).ok().as_ref() != Some(ours));
    Listed {
        expires_at,
        ids: ids_of_resource(&s.resource),
        id: s.id,
        elsewhere,
    }
}

/// The expiry Graph answered a renewal or a look-up with.
fn granted(reply: Reply) -> Option<Millis> {
    match reply {
        Reply::One(s) => expiry(&s),
        Reply::Listed(_) | Reply::Done => None,
    }
}

/// A subscription's `expirationDateTime` on the service clock; `None` (and a warning) when it
/// cannot be read.
fn expiry(s: &Subscription) -> Option<Millis> {
    let at = s
        .expires()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(millis);
    if at.is_none() {
        let date: String = s.expiration_date_time.chars().take(64).collect();
        tracing::warn!(subscription = %s.id, %date,
            "subscription {}: Graph's expirationDateTime {date} cannot be read; the expiry asked for is assumed", s.id);
    }
    at
}

/// Service-clock milliseconds as wall time, for the dates sent to Graph.
fn wall(at: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap_or(0))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ids named by a presence subscription's resource, `…id in ('a','b')` or
/// `communications/presences/{id}`
/// (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>).
fn ids_of_resource(resource: &str) -> Vec<Arc<str>> {
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

    #[test]
    fn graph_errors_become_the_planners_failures() {
        let gone = GraphError::NotFound {
            code: "x".into(),
            message: "gone".into(),
        };
        assert!(matches!(failure(&gone), Failure::Gone(_)));
        assert_eq!(wall(1_000), UNIX_EPOCH + Duration::from_secs(1));
    }
}
