//! Matching users to Teams in the background, and what the main loop does with the answers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::build::{direction_name, millis};
use super::daemon::{Daemon, RESOLVE_RETRY, Resolved};
use super::matching::{self, MatchInfo};
use crate::graph::UserMatch;
use crate::store::{Snapshot, UserRow, Write};
use crate::sync::types::Millis;

/// E-mails per lookup round: the Graph client's working set (its address index, the users
/// of each `$batch` answer) stays that of 1,500 users, whatever the size of the directory.
const RESOLVE_CHUNK: usize = 1500;

impl Daemon {
    /// Look `emails` up in the background; answers arrive chunk by chunk on `rx.resolved`.
    pub(super) fn resolve(&mut self, emails: Vec<String>) {
        if emails.is_empty() {
            return;
        }
        let graph = self.graph_tx.borrow().clone();
        let out = self.resolved_tx.clone();
        self.resolving.spawn(async move {
            for chunk in emails.chunks(RESOLVE_CHUNK) {
                let results = graph.resolve_users(chunk).await?;
                if out.send(results).is_err() {
                    break;
                }
            }
            Ok(())
        });
    }

    /// One chunk of answers: remember what changed, apply it when the round is over.
    pub(super) fn on_resolved_chunk(&mut self, results: Vec<(String, UserMatch)>) {
        for (email, m) in results {
            if m == UserMatch::Unchecked && self.matches.contains_key(&email) {
                // Nothing learnt: keep the match this address had (a user on a call stays
                // matched).
                continue;
            }
            let info = MatchInfo::from_graph(&m);
            if self.matches.get(&email) == Some(&info) {
                continue;
            }
            match info.status {
                "matched" => {
                    tracing::info!(%email, user = info.teams_id.as_deref().unwrap_or("-"), "matched to a Teams user")
                }
                _ => tracing::warn!(%email, status = %info.status, detail = ?info.detail,
                    "no Teams user for this e-mail; fix the users file or the Entra account"),
            }
            self.matches.insert(email.clone(), info);
            self.match_changes.insert(email);
        }
    }

    /// A lookup round ended (all chunks sent, or an error).
    pub(super) fn on_resolved(&mut self, resolved: Resolved) {
        let now = self.options.clock.now();
        // The round's last chunks may still be queued: take them first.
        while let Ok(chunk) = self.rx.resolved.try_recv() {
            self.on_resolved_chunk(chunk);
        }
        match resolved {
            Ok(()) => {
                self.matched_once = true;
                self.resolve_failures = 0;
            }
            Err(e) => {
                self.resolve_failures = self.resolve_failures.saturating_add(1);
                let wait = RESOLVE_RETRY
                    .delay(self.resolve_failures)
                    .max(Duration::from_secs(1));
                self.next_resolve_at = now + millis(wait);
                tracing::warn!(error = %e, retry_in = ?wait, "matching users to Teams failed; keeping the cached matches");
                self.error("match", None, &e.to_string());
            }
        }
        if self.match_changes.is_empty() {
            return;
        }
        let changed = std::mem::take(&mut self.match_changes);
        let commands = self
            .engine
            .set_users(matching::user_specs(&self.directory, &self.matches), now);
        self.execute(commands);
        self.ids_tx.send_replace(Arc::new(self.engine.poll_ids()));
        self.save_matches(|email| changed.contains(email));
    }

    /// Write the directory and its matches to the store (for `status` and restarts).
    pub(super) fn save_directory(&self) {
        for e in &self.directory.entries {
            self.store.write(Write::UpsertUser {
                extension: e.extension.clone(),
                email: e.email.clone(),
                direction: direction_name(e.direction).into(),
            });
        }
        self.save_matches(|_| true);
    }

    /// At start: write only the entries the store does not already hold as they are (a restart
    /// of 50,000 unchanged users writes nothing).
    pub(super) fn save_directory_since(&self, snapshot: &Snapshot) {
        let stored: HashMap<&str, &UserRow> = snapshot
            .users
            .iter()
            .map(|u| (u.extension.as_str(), u))
            .collect();
        let now = self.options.clock.now();
        for e in &self.directory.entries {
            let direction = direction_name(e.direction);
            let m = self.matches.get(&e.email);
            let same = stored.get(e.extension.as_str()).is_some_and(|row| {
                row.email == e.email
                    && row.direction == direction
                    && row.teams_id.as_deref() == m.and_then(|m| m.teams_id.as_deref())
                    && row.match_status.as_deref() == m.map(|m| m.status)
            });
            if same {
                continue;
            }
            self.store.write(Write::UpsertUser {
                extension: e.extension.clone(),
                email: e.email.clone(),
                direction: direction.into(),
            });
            if let Some(m) = m {
                self.store.write(set_match(&e.extension, m, now));
            }
        }
    }

    /// Write the matches of the directory entries whose e-mail passes `which`.
    fn save_matches(&self, which: impl Fn(&str) -> bool) {
        let now = self.options.clock.now();
        for e in self.directory.entries.iter().filter(|e| which(&e.email)) {
            if let Some(m) = self.matches.get(&e.email) {
                self.store.write(set_match(&e.extension, m, now));
            }
        }
    }
}

/// The store's record of one extension's match.
fn set_match(extension: &str, m: &MatchInfo, at: Millis) -> Write {
    Write::SetMatch {
        extension: extension.to_owned(),
        teams_id: m.teams_id.as_deref().map(str::to_owned),
        status: Cow::Borrowed(m.status),
        detail: m.detail.clone(),
        at,
    }
}
