//! Matching users to Teams in the background, and what the main loop does with the answers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::build::{direction_name, millis};
use super::daemon::{Daemon, RESOLVE_RETRY, Resolved};
use super::matching::{self, MatchInfo};
use crate::store::Write;

impl Daemon {
    pub(super) fn resolve(&mut self, emails: Vec<String>) {
        if emails.is_empty() {
            return;
        }
        let graph = self.graph_tx.borrow().clone();
        self.resolving
            .spawn(async move { graph.resolve_users(&emails).await });
    }

    pub(super) fn on_resolved(&mut self, resolved: Resolved) {
        let now = self.options.clock.now();
        let results = match resolved {
            Ok(results) => results,
            Err(e) => {
                self.resolve_failures = self.resolve_failures.saturating_add(1);
                let wait = RESOLVE_RETRY
                    .delay(self.resolve_failures)
                    .max(Duration::from_secs(1));
                self.next_resolve_at = now + millis(wait);
                tracing::warn!(error = %e, retry_in = ?wait, "matching users to Teams failed; keeping the cached matches");
                self.error("match", None, &e.to_string());
                return;
            }
        };
        self.matched_once = true;
        self.resolve_failures = 0;
        let mut changed = HashSet::new();
        for (email, m) in results {
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
            changed.insert(email);
        }
        if changed.is_empty() {
            return;
        }
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

    /// Write the matches of the directory entries whose e-mail passes `which`.
    fn save_matches(&self, which: impl Fn(&str) -> bool) {
        let now = self.options.clock.now();
        for e in self.directory.entries.iter().filter(|e| which(&e.email)) {
            if let Some(m) = self.matches.get(&e.email) {
                self.store.write(Write::SetMatch {
                    extension: e.extension.clone(),
                    teams_id: m.teams_id.clone(),
                    status: m.status.to_owned(),
                    detail: m.detail.as_deref().map(str::to_owned),
                    at: now,
                });
            }
        }
    }
}
