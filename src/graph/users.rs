//! E-mail address -> Entra user id: `$filter` queries of up to 15 values, packed into
//! `$batch` requests of up to 20, in three stages: `mail` for every address, then
//! `userPrincipalName` for those no `mail` carries, then `proxyAddresses` for the rest. Most
//! directories match by `mail`, so N addresses cost about N/300 `$batch` requests; the later
//! stages are packed across calls ([`Stages`]), not per call. Sources:
//! - JSON batching: <https://learn.microsoft.com/en-us/graph/json-batching>
//! - List users: <https://learn.microsoft.com/en-us/graph/api/user-list>
//! - `$filter`: <https://learn.microsoft.com/en-us/graph/filter-query-parameter>

use std::collections::{HashMap, HashSet};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{GraphClient, GraphError};

/// Values per `in (...)` clause.
pub(crate) const FILTER_CHUNK: usize = super::limits::FILTER_IN_MAX_VALUES;
/// Requests per `$batch`.
pub(crate) const BATCH_MAX: usize = super::limits::BATCH_MAX_REQUESTS;
/// The properties the decision needs.
const SELECT: &str = "id,mail,userPrincipalName,proxyAddresses";
/// Everything but RFC 3986 unreserved characters is encoded in query values ('+' included,
/// which would otherwise read as a space).
pub(crate) const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Which property of the user carried the e-mail address. Ordered by preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchedBy {
    /// The `mail` property.
    Mail,
    /// The `userPrincipalName`.
    Upn,
    /// An `smtp:` entry in `proxyAddresses` (an alias).
    ProxyAddress,
}

/// The result of looking up one e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserMatch {
    /// Exactly one user carries the address.
    Matched {
        /// Entra object id, used for presence calls.
        id: String,
        /// The user's UPN, for logs and the status page.
        upn: String,
        /// Which property matched.
        via: MatchedBy,
    },
    /// No user carries the address.
    NotFound,
    /// The lookup for this address was refused (a `proxyAddresses` filter Graph would not
    /// take): nothing is known, so the caller keeps what it knew before.
    Unchecked,
    /// Several users carry it; the administrator must fix the directory or the users file.
    Duplicate {
        /// Their ids, sorted.
        ids: Vec<String>,
    },
}

/// A user as `$select` returns it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DirUser {
    pub id: String,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default, rename = "userPrincipalName")]
    pub upn: Option<String>,
    #[serde(default, rename = "proxyAddresses")]
    pub proxy_addresses: Vec<String>,
}

/// An OData string literal: quoted, with `'` doubled.
pub(crate) fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `property in ('a','b')`.
pub(crate) fn in_filter(property: &str, values: &[String]) -> String {
    let list: Vec<String> = values.iter().map(|v| odata_string(v)).collect();
    format!("{property} in ({})", list.join(","))
}

/// `proxyAddresses/any(x:x eq 'smtp:a@b')` (lambda syntax of the `$filter` page); Graph
/// compares case-insensitively.
pub(crate) fn proxy_filter(email: &str) -> String {
    format!(
        "proxyAddresses/any(x:x eq {})",
        odata_string(&format!("smtp:{email}"))
    )
}

/// The relative URL of a users query, for a `$batch` entry (JSON batching page).
pub(crate) fn users_url(filter: &str) -> String {
    format!(
        "/users?$filter={}&$select={SELECT}",
        utf8_percent_encode(filter, QUERY_VALUE)
    )
}

/// The wanted addresses (lowercased) and the users carrying them, with the best property per
/// user. Addresses nobody asked for are not kept: a directory of 50,000 users returns every
/// alias of every user, and only the asked-for ones matter.
#[derive(Debug, Default)]
pub(crate) struct Index(HashMap<String, Vec<Candidate>>);

/// One user carrying an address.
#[derive(Debug)]
struct Candidate {
    id: String,
    via: MatchedBy,
    upn: String,
}

impl Index {
    /// An index that keeps users for these (lowercased) addresses only.
    pub(crate) fn for_addresses<'a>(addresses: impl IntoIterator<Item = &'a String>) -> Index {
        Index(
            addresses
                .into_iter()
                .map(|a| (a.clone(), Vec::new()))
                .collect(),
        )
    }

    pub(crate) fn add(&mut self, user: &DirUser) {
        let upn = user.upn.as_deref().unwrap_or_default();
        if let Some(mail) = &user.mail {
            self.insert(mail, &user.id, MatchedBy::Mail, upn);
        }
        if let Some(u) = &user.upn {
            self.insert(u, &user.id, MatchedBy::Upn, upn);
        }
        for proxy in &user.proxy_addresses {
            // "SMTP:" is the primary address, "smtp:" an alias; other types (sip:, x500:) are skipped.
            if let Some((kind, address)) = proxy.split_once(':')
                && kind.eq_ignore_ascii_case("smtp")
            {
                self.insert(address, &user.id, MatchedBy::ProxyAddress, upn);
            }
        }
    }

    fn insert(&mut self, address: &str, id: &str, via: MatchedBy, upn: &str) {
        let Some(users) = self.0.get_mut(&address.trim().to_lowercase()) else {
            return;
        };
        match users.iter_mut().find(|c| c.id == id) {
            Some(c) => c.via = c.via.min(via),
            None => {
                // Almost every address has one user: no room for four (Vec's first growth).
                users.reserve_exact(1);
                users.push(Candidate {
                    id: id.to_owned(),
                    via,
                    upn: upn.to_owned(),
                });
            }
        }
    }

    /// The decision for one lowercased address.
    pub(crate) fn decide(&self, email: &str) -> UserMatch {
        match self.0.get(email).map(Vec::as_slice) {
            None | Some([]) => UserMatch::NotFound,
            Some([one]) => UserMatch::Matched {
                id: one.id.clone(),
                upn: one.upn.clone(),
                via: one.via,
            },
            Some(many) => {
                let mut ids: Vec<String> = many.iter().map(|c| c.id.clone()).collect();
                ids.sort();
                UserMatch::Duplicate { ids }
            }
        }
    }
}

/// The lookup stages, in order: an address goes to the next one only when the previous found
/// no user carrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Mail,
    Upn,
    ProxyAddress,
}

impl Stage {
    /// The relative URLs that look `addresses` up.
    fn urls(self, addresses: &[String]) -> Vec<String> {
        let by = |property| {
            addresses
                .chunks(FILTER_CHUNK)
                .map(|chunk| users_url(&in_filter(property, chunk)))
                .collect()
        };
        match self {
            Stage::Mail => by("mail"),
            Stage::Upn => by("userPrincipalName"),
            Stage::ProxyAddress => addresses
                .iter()
                .map(|a| users_url(&proxy_filter(a)))
                .collect(),
        }
    }

    /// Addresses per full `$batch`: a later stage waits for this many (or the last call).
    fn batch_size(self) -> usize {
        match self {
            Stage::Mail | Stage::Upn => FILTER_CHUNK * BATCH_MAX,
            Stage::ProxyAddress => BATCH_MAX,
        }
    }
}

/// Addresses waiting for the `userPrincipalName` and the `proxyAddresses` stages, carried
/// from one [`GraphClient::resolve_step`] to the next so that those stages send full
/// `$batch`es.
#[derive(Debug, Default)]
pub struct Stages {
    upn: Vec<String>,
    proxy: Vec<String>,
    /// Addresses `mail` matched to a user whose UPN is another address: another user may
    /// have this one as UPN (the ambiguity real directories have), so they go through the
    /// UPN stage too, their `mail` answer held here meanwhile. UPNs are unique: a user whose
    /// UPN is the address itself (the usual case) needs no such check.
    held: HashMap<String, UserMatch>,
}

impl Stages {
    /// Takes the addresses of `pending` that fill whole batches of `stage` (all of them when
    /// `last`).
    fn take(pending: &mut Vec<String>, stage: Stage, last: bool) -> Vec<String> {
        let n = if last {
            pending.len()
        } else {
            pending.len() - pending.len() % stage.batch_size()
        };
        pending.drain(..n).collect()
    }
}

impl GraphClient {
    /// The Entra user for each address in `emails` (trimmed and lowercased, one entry per
    /// input, in order), through the three stages (List users and `$filter` pages).
    pub async fn resolve_users<S: AsRef<str>>(
        &self,
        emails: &[S],
    ) -> Result<Vec<(String, UserMatch)>, GraphError> {
        let wanted: Vec<String> = emails
            .iter()
            .map(|e| e.as_ref().trim().to_lowercase())
            .collect();
        let answers: HashMap<String, UserMatch> = self
            .resolve_step(&mut Stages::default(), &wanted, true)
            .await?
            .into_iter()
            .collect();
        let result: Vec<(String, UserMatch)> = wanted
            .into_iter()
            .map(|e| {
                let m = answers.get(&e).cloned().unwrap_or(UserMatch::NotFound);
                (e, m)
            })
            .collect();
        let matched = result
            .iter()
            .filter(|(_, m)| matches!(m, UserMatch::Matched { .. }))
            .count();
        tracing::info!(
            emails = result.len(),
            matched,
            "resolved {} e-mail addresses to Entra users: {matched} matched",
            result.len()
        );
        Ok(result)
    }

    /// One step of a lookup round: `emails` by `mail`; those not found wait in `stages`
    /// until a later step fills a `$batch` of the next stage, or until the `last` step.
    /// Returns the addresses decided in this step (each address once per round, lowercased;
    /// empty ones are skipped).
    pub async fn resolve_step<S: AsRef<str>>(
        &self,
        stages: &mut Stages,
        emails: &[S],
        last: bool,
    ) -> Result<Vec<(String, UserMatch)>, GraphError> {
        let mut unique: Vec<String> = emails
            .iter()
            .map(|e| e.as_ref().trim().to_lowercase())
            .filter(|e| !e.is_empty())
            .collect();
        unique.sort_unstable();
        unique.dedup();
        let mut decided = Vec::new();
        for (address, m) in self.lookup(Stage::Mail, &unique).await? {
            match m {
                UserMatch::NotFound => stages.upn.push(address),
                UserMatch::Matched { ref upn, .. } if upn.to_lowercase() != address => {
                    stages.upn.push(address.clone());
                    stages.held.insert(address, m);
                }
                m => decided.push((address, m)),
            }
        }
        let upn = Stages::take(&mut stages.upn, Stage::Upn, last);
        for (address, m) in self.lookup(Stage::Upn, &upn).await? {
            match (stages.held.remove(&address), m) {
                (None, UserMatch::NotFound) => stages.proxy.push(address),
                (None, m) => decided.push((address, m)),
                (Some(held), m) => decided.push((address, both(held, m))),
            }
        }
        let proxy = Stages::take(&mut stages.proxy, Stage::ProxyAddress, last);
        decided.extend(self.lookup(Stage::ProxyAddress, &proxy).await?);
        Ok(decided)
    }

    /// One stage for `addresses` (lowercased, unique): the decision for each.
    async fn lookup(
        &self,
        stage: Stage,
        addresses: &[String],
    ) -> Result<Vec<(String, UserMatch)>, GraphError> {
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let mut index = Index::for_addresses(addresses);
        // Whether Graph accepts the proxyAddresses filter without advanced-query headers is
        // UNVERIFIED: a 400 makes those addresses Unchecked instead of failing the round.
        let tolerant = stage == Stage::ProxyAddress;
        let rejected = self
            .query_all(&stage.urls(addresses), tolerant, &mut index)
            .await?;
        let unchecked: HashSet<&str> = rejected
            .iter()
            .filter_map(|&i| addresses.get(i).map(String::as_str))
            .collect();
        Ok(addresses
            .iter()
            .map(|a| {
                let m = match index.decide(a) {
                    UserMatch::NotFound if unchecked.contains(a.as_str()) => UserMatch::Unchecked,
                    m => m,
                };
                (a.clone(), m)
            })
            .collect())
    }
}

/// The `mail` answer held for an address, with what the UPN stage found for it: the same
/// user, or nobody, leaves it as it was; another user makes the address ambiguous.
fn both(held: UserMatch, upn: UserMatch) -> UserMatch {
    let ids = |m: UserMatch| match m {
        UserMatch::Matched { id, .. } => vec![id],
        UserMatch::Duplicate { ids } => ids,
        UserMatch::NotFound | UserMatch::Unchecked => Vec::new(),
    };
    let mut all = ids(held.clone());
    all.extend(ids(upn));
    all.sort();
    all.dedup();
    if all.len() > 1 {
        UserMatch::Duplicate { ids: all }
    } else {
        held
    }
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
