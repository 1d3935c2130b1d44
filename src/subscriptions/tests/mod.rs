//! The planner with plain calls and fake time: a small fake adapter ([`World`]) answers every
//! command the way a working Graph would, unless a test says otherwise.

mod accounts;
mod lifetimes;
mod subscriptions;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::*;
use crate::sync::types::Millis;

const SEC: Millis = 1_000;
const MIN: Millis = 60 * SEC;
const T0: Millis = 1_800_000_000_000;
const A: &str = "sync1@contoso.com";
const B: &str = "sync2@contoso.com";

/// How the fake answers a token refresh.
#[derive(Clone, Copy, PartialEq)]
enum Refresh {
    Works,
    Refused,
    Fails,
}

struct World {
    p: Planner,
    now: Millis,
    /// Accounts whose refresh token is in the store.
    stored: Vec<String>,
    /// What Graph lists per account (taken by the first listing).
    listing: HashMap<String, Vec<Listed>>,
    refresh: Refresh,
    /// The answers to the next creates and renewals (then success).
    create_fails: VecDeque<Failure>,
    renew_fails: VecDeque<Failure>,
    /// The longest lifetime Graph grants at a create or a renewal (`None`: what is asked).
    grant: Option<Millis>,
    /// What Graph holds: subscription id -> expiry. Renewals and checks of one not here (or
    /// expired) answer 404.
    graph: HashMap<String, Millis>,
    made: u32,
    /// Every command so far, in order.
    seen: Vec<Command>,
}

fn ids(range: std::ops::Range<usize>) -> Arc<Vec<Arc<str>>> {
    Arc::new(range.map(|i| Arc::from(format!("u{i:04}"))).collect())
}

fn world(accounts: &[&str], recorded: Vec<Record>, rich: bool) -> World {
    let settings = Settings {
        accounts: accounts.iter().map(|a| (*a).to_owned()).collect(),
        capacity: 650,
        rich,
        new_certificate: false,
    };
    World {
        p: Planner::new(settings, recorded),
        now: T0,
        stored: accounts.iter().map(|a| (*a).to_owned()).collect(),
        listing: HashMap::new(),
        refresh: Refresh::Works,
        create_fails: VecDeque::new(),
        renew_fails: VecDeque::new(),
        grant: None,
        graph: HashMap::new(),
        made: 0,
        seen: Vec::new(),
    }
}

/// Accounts signed in, `users` matched, one tick: every account subscribed.
fn running(accounts: &[&str], users: usize) -> World {
    let mut w = world(accounts, Vec::new(), false);
    w.feed(Input::Users(ids(0..users)));
    w.feed(Input::Tick);
    w
}

impl World {
    /// Feed an input, carry out what comes back (answering what needs an answer) until
    /// nothing is left; returns the commands of this round.
    fn feed(&mut self, input: Input) -> Vec<Command> {
        let mut queue = VecDeque::from(self.p.handle(input, self.now));
        let mut round = Vec::new();
        while let Some(c) = queue.pop_front() {
            if let Some(answer) = self.answer(&c) {
                queue.extend(self.p.handle(answer, self.now));
            }
            round.push(c);
        }
        self.seen.extend(round.iter().cloned());
        round
    }

    fn answer(&mut self, c: &Command) -> Option<Input> {
        let now = self.now;
        Some(match c.clone() {
            Command::ReadTokens => Input::TokensRead(self.stored.clone()),
            Command::RefreshToken { account } => match self.refresh {
                Refresh::Works => Input::TokenRefreshed {
                    account,
                    valid_until: now + 60 * MIN,
                },
                Refresh::Refused => Input::TokenRefused {
                    account,
                    error: "AADSTS700082".into(),
                },
                Refresh::Fails => Input::TokenFailed {
                    account,
                    error: "timed out".into(),
                },
            },
            Command::List { account } => {
                let result = Ok(self.listing.remove(&account).unwrap_or_default());
                Input::Listed { account, result }
            }
            Command::Create {
                account,
                expires_at,
                ..
            } => Input::Created {
                account,
                result: self.create(expires_at),
            },
            Command::Renew {
                account,
                id,
                expires_at,
            } => Input::Renewed {
                account,
                result: self.renew(id, expires_at),
            },
            Command::Check { account, id } => Input::Checked {
                account,
                result: self.held(&id).map(Some),
            },
            Command::Delete { id, .. } => {
                self.graph.remove(&id);
                return None;
            }
            _ => return None,
        })
    }

    fn create(&mut self, asked: Millis) -> Result<Made, Failure> {
        self.made += 1;
        if let Some(f) = self.create_fails.pop_front() {
            return Err(f);
        }
        let id = format!("sub-{}", self.made);
        let granted = self.granted(asked);
        self.graph.insert(id.clone(), granted);
        Ok(Made {
            id,
            client_state: format!("secret-{}", self.made),
            expires_at: Some(granted),
        })
    }

    fn renew(&mut self, id: String, asked: Millis) -> Result<Option<Millis>, Failure> {
        if let Some(f) = self.renew_fails.pop_front() {
            return Err(f);
        }
        self.held(&id)?;
        let granted = self.granted(asked);
        self.graph.insert(id, granted);
        Ok(Some(granted))
    }

    /// The expiry Graph grants when `asked` is asked for now.
    fn granted(&self, asked: Millis) -> Millis {
        self.grant.map_or(asked, |g| asked.min(self.now + g))
    }

    /// The expiry of a subscription Graph holds; 404 when it does not (or it expired).
    fn held(&self, id: &str) -> Result<Millis, Failure> {
        let live = self.graph.get(id).filter(|t| **t > self.now);
        live.copied()
            .ok_or_else(|| Failure::Gone("not found".into()))
    }

    fn at(&mut self, t: Millis) -> Vec<Command> {
        self.now = t;
        self.feed(Input::Tick)
    }

    fn sub(&self, account: &str) -> Option<Sub> {
        self.p.state(account).and_then(AccountState::sub).cloned()
    }

    fn covered(&self) -> usize {
        self.p.covered(self.now).len()
    }
}

fn creates(cmds: &[Command]) -> Vec<(String, usize)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Create { account, ids, .. } => Some((account.clone(), ids.len())),
            _ => None,
        })
        .collect()
}

fn count(cmds: &[Command], f: impl Fn(&Command) -> bool) -> usize {
    cmds.iter().filter(|c| f(c)).count()
}

fn published(cmds: &[Command]) -> Vec<&Coverage> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Publish(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn listed(id: &str, users: &Arc<Vec<Arc<str>>>, expires_at: Millis) -> Listed {
    Listed {
        id: id.into(),
        ids: users.to_vec(),
        expires_at: Some(expires_at),
        elsewhere: None,
    }
}

fn record(id: &str, account: &str, rich: bool) -> Record {
    Record {
        id: id.into(),
        account: account.into(),
        client_state: format!("secret-of-{id}"),
        expires_at: T0 + 30 * MIN,
        users: 3,
        rich,
    }
}
