//! E-mail address -> Entra user id: `$filter` queries of up to 15 values, packed into
//! `$batch` requests of up to 20. Sources:
//! - JSON batching: <https://learn.microsoft.com/en-us/graph/json-batching>
//! - List users: <https://learn.microsoft.com/en-us/graph/api/user-list>
//! - `$filter`: <https://learn.microsoft.com/en-us/graph/filter-query-parameter>

use std::collections::HashMap;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::budget::parse_retry_after;
use super::error::ErrorBody;
use super::http::Request;
use super::{Counters, GraphClient, GraphError, join};

/// Values per `in (...)` clause.
pub(crate) const FILTER_CHUNK: usize = super::limits::FILTER_IN_MAX_VALUES;
/// Requests per `$batch`.
pub(crate) const BATCH_MAX: usize = super::limits::BATCH_MAX_REQUESTS;
/// The properties the decision needs.
const SELECT: &str = "id,mail,userPrincipalName,proxyAddresses";
/// Everything but RFC 3986 unreserved characters is encoded in query values ('+' included,
/// which would otherwise read as a space).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
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

#[derive(Deserialize)]
struct UserPage {
    #[serde(default)]
    value: Vec<DirUser>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    responses: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    status: u16,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    body: Value,
}

impl BatchItem {
    fn retry_after(&self) -> Option<Duration> {
        let (_, value) = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?;
        match value {
            Value::String(s) => parse_retry_after(s),
            Value::Number(n) => parse_retry_after(&n.to_string()),
            _ => None,
        }
    }
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

/// One `$batch` round, sorted out.
#[derive(Default)]
struct Round {
    pages: Vec<UserPage>,
    /// Indexes (into the URL list) to send again.
    retry: Vec<usize>,
    /// Indexes whose lookup was refused (tolerant mode only).
    rejected: Vec<usize>,
    wait: Duration,
    throttled: u64,
    last_status: u16,
}

impl GraphClient {
    /// The Entra user for each address in `emails` (trimmed and lowercased, one entry per
    /// input, in order): `mail` and `userPrincipalName` first, then `proxyAddresses` for the
    /// rest (List users and `$filter` pages).
    pub async fn resolve_users(
        &self,
        emails: &[String],
    ) -> Result<Vec<(String, UserMatch)>, GraphError> {
        let wanted: Vec<String> = emails.iter().map(|e| e.trim().to_lowercase()).collect();
        let mut unique: Vec<String> = wanted.iter().filter(|e| !e.is_empty()).cloned().collect();
        unique.sort();
        unique.dedup();
        let mut index = Index::for_addresses(&unique);
        let mut urls = Vec::new();
        for chunk in unique.chunks(FILTER_CHUNK) {
            urls.push(users_url(&in_filter("mail", chunk)));
            urls.push(users_url(&in_filter("userPrincipalName", chunk)));
        }
        self.query_all(&urls, false, &mut index).await?;
        let unmatched: Vec<&String> = unique
            .iter()
            .filter(|e| index.decide(e) == UserMatch::NotFound)
            .collect();
        let proxies: Vec<String> = unmatched
            .iter()
            .map(|e| users_url(&proxy_filter(e)))
            .collect();
        // Whether Graph accepts this filter without advanced-query headers is UNVERIFIED:
        // a 400 makes those addresses Unchecked instead of failing the whole lookup.
        let rejected = self.query_all(&proxies, true, &mut index).await?;
        let unchecked: std::collections::HashSet<&str> = rejected
            .iter()
            .filter_map(|&i| unmatched.get(i).map(|e| e.as_str()))
            .collect();
        let result: Vec<(String, UserMatch)> = wanted
            .into_iter()
            .map(|e| {
                let m = match index.decide(&e) {
                    UserMatch::NotFound if unchecked.contains(e.as_str()) => UserMatch::Unchecked,
                    m => m,
                };
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

    /// Runs the relative GET `urls` in `$batch`es of 20 and indexes the users found, one batch
    /// at a time (nothing of a batch is kept once indexed).
    async fn query_all(
        &self,
        urls: &[String],
        tolerant: bool,
        index: &mut Index,
    ) -> Result<Vec<usize>, GraphError> {
        let mut rejected = Vec::new();
        for (n, chunk) in urls.chunks(BATCH_MAX).enumerate() {
            let (users, refused) = self.run_batch(chunk, tolerant).await?;
            for user in users {
                index.add(&user);
            }
            rejected.extend(refused.into_iter().map(|i| n * BATCH_MAX + i));
        }
        Ok(rejected)
    }

    /// One `$batch` of up to 20 GETs; inner 429/5xx are sent again after Retry-After (JSON
    /// batching page).
    async fn run_batch(
        &self,
        urls: &[String],
        tolerant: bool,
    ) -> Result<(Vec<DirUser>, Vec<usize>), GraphError> {
        let inner = &self.inner;
        let batch_url = join(&inner.api_root, &["$batch"])?;
        let mut pending: Vec<usize> = (0..urls.len()).collect();
        let mut users = Vec::new();
        let mut rejected = Vec::new();
        let mut round_no = 1;
        while !pending.is_empty() {
            let requests: Vec<Value> = pending
                .iter()
                .map(|&i| json!({"id": i.to_string(), "method": "GET", "url": urls[i]}))
                .collect();
            let body = json!({ "requests": requests });
            let request = Request {
                op: "batch",
                method: Method::POST,
                url: batch_url.clone(),
                body: Some(&body),
                presence: false,
                user: None,
                token: None,
            };
            let bytes = inner.send(&request).await?;
            let answer: BatchAnswer = serde_json::from_slice(&bytes)
                .map_err(|e| GraphError::InvalidResponse(format!("$batch: {e}")))?;
            let round = self.sort_round(answer, &pending, round_no, tolerant)?;
            Counters::bump(&inner.counters.throttled, round.throttled);
            inner.metrics.graph_throttled(round.throttled);
            rejected.extend(&round.rejected);
            for page in round.pages {
                users.extend(page.value);
                if let Some(link) = page.next_link {
                    users.extend(self.follow(&link).await?);
                }
            }
            if !round.retry.is_empty() {
                if round_no >= inner.max_attempts {
                    Counters::bump(&inner.counters.errors, 1);
                    return Err(match round.throttled {
                        0 => GraphError::Unavailable {
                            status: round.last_status,
                        },
                        _ => GraphError::Throttled {
                            retry_after: round.wait,
                        },
                    });
                }
                tracing::debug!(
                    count = round.retry.len(),
                    wait_ms = round.wait.as_millis(),
                    "retrying inner $batch requests"
                );
                Counters::bump(&inner.counters.retries, round.retry.len() as u64);
                tokio::time::sleep(round.wait).await;
                round_no += 1;
            }
            pending = round.retry;
        }
        Ok((users, rejected))
    }

    /// Sorts one batch answer into pages, requests to retry, and errors.
    fn sort_round(
        &self,
        answer: BatchAnswer,
        pending: &[usize],
        round_no: u32,
        tolerant: bool,
    ) -> Result<Round, GraphError> {
        let mut round = Round::default();
        let mut seen = 0;
        for item in answer.responses {
            let Some(index) = item.id.parse().ok().filter(|i| pending.contains(i)) else {
                continue;
            };
            seen += 1;
            match item.status {
                200..=299 => round.pages.push(
                    serde_json::from_value(item.body)
                        .map_err(|e| GraphError::InvalidResponse(format!("users page: {e}")))?,
                ),
                status @ (429 | 500..=599) if status != 501 => {
                    let wait = item
                        .retry_after()
                        .unwrap_or_else(|| self.inner.backoff.delay(round_no));
                    round.wait = round.wait.max(wait);
                    round.throttled += u64::from(status == 429);
                    round.last_status = status;
                    round.retry.push(index);
                }
                400 if tolerant => {
                    let error = ErrorBody::from_value(&item.body);
                    tracing::warn!(code = %error.code, graph_message = %error.message,
                        "proxyAddresses lookup rejected ({}: {}); skipping it", error.code, error.message);
                    round.rejected.push(index);
                }
                status => {
                    Counters::bump(&self.inner.counters.errors, 1);
                    return Err(ErrorBody::from_value(&item.body).into_error(status));
                }
            }
        }
        if seen != pending.len() {
            return Err(GraphError::InvalidResponse(format!(
                "$batch answered {seen} of {} requests",
                pending.len()
            )));
        }
        Ok(round)
    }

    /// Follows `@odata.nextLink` pages (List users page); only on the Graph host, so the token
    /// stays there.
    async fn follow(&self, first: &str) -> Result<Vec<DirUser>, GraphError> {
        let mut users = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(link) = next {
            let url = Url::parse(&link)
                .ok()
                .filter(|u| u.origin() == self.inner.graph_origin)
                .ok_or_else(|| {
                    GraphError::InvalidResponse(format!("nextLink off the Graph host: {link}"))
                })?;
            let request = Request::get("users", url);
            let page: UserPage = serde_json::from_slice(&self.inner.send(&request).await?)
                .map_err(|e| GraphError::InvalidResponse(format!("users page: {e}")))?;
            users.extend(page.value);
            next = page.next_link;
        }
        Ok(users)
    }
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
