//! The directory as the core sees it: users file entries joined with their Teams matches.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Directory;
use crate::graph::{MatchedBy, UserMatch};
use crate::sync::engine::UserSpec;

/// What we know of one e-mail address in Teams. Kept for every user (50,000 of them), so
/// the common case (matched) carries no text of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchInfo {
    /// Shared with the engine and the poll list (one allocation per user, not four).
    pub teams_id: Option<Arc<str>>,
    /// "matched", "not_found", "duplicate" or "error".
    pub status: &'static str,
    pub detail: Option<Cow<'static, str>>,
}

impl MatchInfo {
    pub fn from_graph(m: &UserMatch) -> MatchInfo {
        match m {
            UserMatch::Matched { id, via, .. } => MatchInfo {
                teams_id: Some(Arc::from(id.as_str())),
                status: "matched",
                detail: Some(Cow::Borrowed(match via {
                    MatchedBy::Mail => "by mail",
                    MatchedBy::Upn => "by userPrincipalName",
                    MatchedBy::ProxyAddress => "by proxy address",
                })),
            },
            UserMatch::NotFound => MatchInfo {
                teams_id: None,
                status: "not_found",
                detail: Some(Cow::Borrowed(
                    "no Teams user has this mail, UPN or proxy address",
                )),
            },
            UserMatch::Unchecked => MatchInfo {
                teams_id: None,
                status: "error",
                detail: Some(Cow::Borrowed(
                    "Graph refused the proxyAddresses lookup for this address",
                )),
            },
            UserMatch::Duplicate { ids } => MatchInfo {
                teams_id: None,
                status: "duplicate",
                detail: Some(Cow::Owned(format!(
                    "{} Teams users share this address: {}",
                    ids.len(),
                    ids.join(", ")
                ))),
            },
        }
    }

    /// A match remembered by the store.
    pub fn from_store(teams_id: Option<String>, status: &str, detail: Option<String>) -> MatchInfo {
        let status = match status {
            "matched" => "matched",
            "not_found" => "not_found",
            "duplicate" => "duplicate",
            _ => "error",
        };
        MatchInfo {
            teams_id: teams_id.map(Arc::from),
            status,
            detail: detail.map(Cow::Owned),
        }
    }
}

/// E-mail (lowercase) -> match.
pub type Matches = HashMap<String, MatchInfo>;

/// The core's view of the directory.
pub fn user_specs<'a>(
    directory: &'a Directory,
    matches: &'a Matches,
) -> impl Iterator<Item = UserSpec> + 'a {
    directory.entries.iter().map(|e| UserSpec {
        extension: e.extension.clone(),
        email: e.email.clone(),
        teams_id: matches.get(&e.email).and_then(|m| m.teams_id.clone()),
        direction: e.direction,
    })
}

/// The e-mails of the directory that have no match yet.
pub fn unresolved(directory: &Directory, matches: &Matches) -> Vec<String> {
    distinct(directory, |email| !matches.contains_key(email))
}

/// Every distinct e-mail of the directory.
pub fn all_emails(directory: &Directory) -> Vec<String> {
    distinct(directory, |_| true)
}

/// The directory's e-mails that pass `keep`, sorted, each once (one address may serve two
/// extensions).
fn distinct(directory: &Directory, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut emails: Vec<String> = directory
        .entries
        .iter()
        .filter(|e| keep(&e.email))
        .map(|e| e.email.clone())
        .collect();
    emails.sort();
    emails.dedup();
    emails
}
