//! The directory as the core sees it: users file entries joined with their Teams matches.

use std::collections::HashMap;

use crate::config::Directory;
use crate::graph::UserMatch;
use crate::sync::engine::UserSpec;

/// What we know of one e-mail address in Teams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchInfo {
    pub teams_id: Option<String>,
    /// "matched", "not_found", "duplicate" or "error".
    pub status: String,
    pub detail: Option<String>,
}

impl MatchInfo {
    pub fn from_graph(m: &UserMatch) -> MatchInfo {
        match m {
            UserMatch::Matched { id, upn, via } => MatchInfo {
                teams_id: Some(id.clone()),
                status: "matched".into(),
                detail: Some(format!("{upn} (by {via:?})")),
            },
            UserMatch::NotFound => MatchInfo {
                teams_id: None,
                status: "not_found".into(),
                detail: Some("no Teams user has this mail, UPN or proxy address".into()),
            },
            UserMatch::Duplicate { ids } => MatchInfo {
                teams_id: None,
                status: "duplicate".into(),
                detail: Some(format!(
                    "{} Teams users share this address: {}",
                    ids.len(),
                    ids.join(", ")
                )),
            },
        }
    }
}

/// E-mail (lowercase) -> match.
pub type Matches = HashMap<String, MatchInfo>;

/// The core's view of the directory.
pub fn user_specs(directory: &Directory, matches: &Matches) -> Vec<UserSpec> {
    directory
        .entries
        .iter()
        .map(|e| UserSpec {
            extension: e.extension.clone(),
            email: e.email.clone(),
            teams_id: matches.get(&e.email).and_then(|m| m.teams_id.clone()),
            direction: e.direction,
        })
        .collect()
}

/// The e-mails of the directory that have no match yet.
pub fn unresolved(directory: &Directory, matches: &Matches) -> Vec<String> {
    let mut emails: Vec<String> = directory
        .entries
        .iter()
        .filter(|e| !matches.contains_key(&e.email))
        .map(|e| e.email.clone())
        .collect();
    emails.sort();
    emails.dedup();
    emails
}

/// Every distinct e-mail of the directory.
pub fn all_emails(directory: &Directory) -> Vec<String> {
    let mut emails: Vec<String> = directory.entries.iter().map(|e| e.email.clone()).collect();
    emails.sort();
    emails.dedup();
    emails
}
