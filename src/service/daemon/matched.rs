//! Matching users to Teams: starting lookup rounds (the resolver task does them), taking
//! their answers, and recording the directory with its matches in the store.

use std::collections::HashMap;
use std::sync::Arc;

use super::Daemon;
use crate::config::Config;
use crate::metrics::UserCounts;
use crate::service::build::direction_name;
use crate::service::matching::{self, MatchInfo};
use crate::service::resolver::Matched;
use crate::store::{MetaKey, Snapshot, UserRow, Write};
use crate::sync::types::{MatchStatus, Millis};

impl Daemon {
    /// Start the next lookup round if none runs and one is due or asked for.
    pub(super) fn start_lookup(&mut self) {
        let now = self.clock.now();
        let every = self.config.sync.resolve_interval;
        if let Some(lookup) = self.matching.next_round(&self.directory, now, every) {
            self.parts.resolver.send(lookup);
        }
    }

    pub(super) fn on_matched(&mut self, matched: Matched) {
        match matched {
            Matched::Chunk {
                generation,
                results,
            } => {
                // Remembered; said and saved when the round is done, in one pass over the
                // directory (a pass per chunk costs O(users) for every 300 e-mails).
                self.matching.on_chunk(generation, results);
            }
            Matched::Done { generation, result } => {
                let now = self.clock.now();
                let end = self.matching.on_done(generation, &result, now);
                if let (Err(e), Some(wait)) = (&result, end.retry) {
                    tracing::warn!(error = %e, retry_in = ?wait,
                        "matching users to Teams failed ({e}); keeping the cached matches, next try in {}",
                        humantime::format_duration(wait));
                    self.out.error("match", None, e.to_string(), now);
                }
                if !end.changed.is_empty() {
                    self.apply_matches(now);
                    let changed =
                        |email: &str| end.changed.binary_search_by(|c| (**c).cmp(email)).is_ok();
                    self.save_matches(changed, Say::Changes);
                }
                if end.full {
                    // After the matches it vouches for (same outbox, in order).
                    self.out
                        .meta(MetaKey::LookedUpIn, looked_up_in(&self.config));
                    self.out.meta(MetaKey::LookedUpAt, now.to_string());
                }
                self.start_lookup();
            }
        }
    }

    /// The engine and the poll list follow the matches.
    pub(super) fn apply_matches(&mut self, now: Millis) {
        let specs = matching::user_specs(&self.directory, &self.matching.matches);
        let commands = self.engine.set_users(specs, now);
        self.execute(commands);
        let ids = Arc::new(self.engine.poll_ids());
        self.parts.feeds.ids.send_replace(ids);
        self.count_users();
    }

    /// `users{match}`: every directory entry by the state of its match.
    pub(super) fn count_users(&self) {
        let mut counts = UserCounts::default();
        for e in &self.directory.entries {
            counts.add(self.matching.matches.get(&e.email).map(|m| m.status));
        }
        self.metrics.set_users(&counts);
    }

    /// Write the directory and its matches to the store (for `status` and restarts).
    pub(super) fn save_directory(&mut self) {
        for e in &self.directory.entries {
            self.out.write(Write::UpsertUser {
                extension: e.extension.clone(),
                email: e.email.clone(),
                direction: direction_name(e.direction).into(),
            });
        }
        self.save_matches(|_| true, Say::Nothing);
    }

    /// At start: write only the entries the store does not already hold as they are (a restart
    /// of 50,000 unchanged users writes nothing).
    pub(super) fn save_directory_since(&mut self, snapshot: &Snapshot) {
        let stored: HashMap<&str, &UserRow> = snapshot
            .users
            .iter()
            .map(|u| (u.extension.as_str(), u))
            .collect();
        let now = self.clock.now();
        for e in &self.directory.entries {
            let direction = direction_name(e.direction);
            let m = self.matching.matches.get(&e.email);
            let same = stored.get(&*e.extension).is_some_and(|row| {
                row.email == *e.email
                    && row.direction == direction
                    && row.teams_id.as_deref() == m.and_then(|m| m.teams_id.as_deref())
                    && row.match_status == m.map(|m| m.status)
            });
            if same {
                continue;
            }
            self.out.write(Write::UpsertUser {
                extension: e.extension.clone(),
                email: e.email.clone(),
                direction: direction.into(),
            });
            if let Some(m) = m {
                self.out.write(set_match(&e.extension, m, now));
            }
        }
    }

    /// Write the matches of the directory entries whose e-mail passes `which`; with
    /// [`Say::Changes`] each is also logged, one line per extension, in file order.
    fn save_matches(&mut self, which: impl Fn(&str) -> bool, say: Say) {
        let now = self.clock.now();
        for e in self.directory.entries.iter().filter(|e| which(&e.email)) {
            if let Some(m) = self.matching.matches.get(&e.email) {
                if say == Say::Changes {
                    log_match(&e.extension, &e.email, m);
                }
                self.out.write(set_match(&e.extension, m, now));
            }
        }
    }
}

/// Whether [`Daemon::save_matches`] logs what it saves: changes found by a lookup round are
/// said once; the directory written again (start, reload) is not news.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Say {
    Changes,
    Nothing,
}

fn log_match(extension: &str, email: &str, info: &MatchInfo) {
    match info.status {
        MatchStatus::Matched => {
            let teams_user = info.teams_id.as_deref().unwrap_or("-");
            tracing::info!(
                extension,
                email,
                teams_user,
                "{extension} {email}: matched to Teams user {teams_user}"
            );
        }
        status => {
            let detail = info.detail.as_deref().unwrap_or("");
            tracing::warn!(extension, email, %status, detail,
                "{extension} {email}: no Teams user ({status}{}{detail}); fix the users file or the Entra account",
                if detail.is_empty() { "" } else { ": " });
        }
    }
}

/// The store's record of one extension's match.
fn set_match(extension: &Arc<str>, m: &MatchInfo, at: Millis) -> Write {
    Write::SetMatch {
        extension: Arc::clone(extension),
        teams_id: m.teams_id.clone(),
        status: m.status,
        detail: m.detail.clone(),
        at,
    }
}

/// The directory a lookup round reads, as [`MetaKey::LookedUpIn`] records it.
pub(super) fn looked_up_in(config: &Config) -> String {
    format!("{} at {}", config.azure.tenant_id, config.azure.graph_url)
}
