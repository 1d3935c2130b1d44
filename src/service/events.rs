//! The main loop's reactions: PBX events, poll results, write results, deliveries, ticks, and
//! carrying out the core's commands.

use super::build::millis;
use super::daemon::Daemon;
use super::matching;
use super::poller::Polled;
use super::systemd;
use super::writer::{Wanted, Written};
use crate::graph::Presence;
use crate::pbx::{LinkState, PbxUpdate};
use crate::store::Write;
use crate::sync::types::{Command, Millis, PbxEvent, TeamsPresence};

impl Daemon {
    pub(super) fn on_pbx_events(&mut self, batch: Vec<PbxEvent>) {
        let now = self.options.clock.now();
        for event in batch {
            let outcome = self.engine.on_pbx_event(&event, now);
            let Some(previous) = outcome.previous else {
                continue;
            };
            if previous != event.state {
                tracing::info!(extension = %event.extension, from = %previous, to = %event.state,
                    "PBX call state changed");
            }
            self.store.write(Write::SetPbx {
                extension: event.extension.clone(),
                state: event.state.as_str().to_owned(),
                dnd: event.dnd,
                at: now,
            });
            self.execute(outcome.commands);
        }
        self.count("pbx_events", 1);
    }

    /// Presences read by a poll (`notified` false) or announced by a notification. A covered
    /// user's change that only a poll saw is reported to the notification manager.
    fn on_presences(&mut self, presences: Vec<Presence>, notified: bool, now: Millis) {
        let covered = self.covered.borrow().clone();
        for p in presences {
            let presence = TeamsPresence::new(&p.availability, &p.activity);
            let outcome = self.engine.on_teams_presence(&p.id, &presence, now);
            for (extension, previous) in &outcome.changed {
                let from = previous
                    .as_ref()
                    .map_or("-".to_owned(), ToString::to_string);
                let via = if notified { "notification" } else { "poll" };
                tracing::info!(%extension, user = %p.id, %from, to = %presence,
                    own_call = outcome.echo, via, "Teams presence changed");
                self.store.write(Write::SetTeams {
                    extension: extension.clone(),
                    availability: presence.availability.clone(),
                    activity: presence.activity.clone(),
                    at: now,
                });
            }
            // Only a change from a known presence can have been missed (the first reading
            // of a user is no change a subscription owed us).
            if !notified
                && outcome
                    .changed
                    .iter()
                    .any(|(_, previous)| previous.is_some())
                && !outcome.echo
                && let (Some(tx), Some(id)) = (&self.suspects, covered.get(p.id.as_str()))
            {
                // A hint only: dropped when the manager is behind.
                let _ = tx.try_send(id.clone());
            }
            self.execute(outcome.commands);
        }
    }

    pub(super) fn on_polled(&mut self, polled: Polled) {
        let now = self.options.clock.now();
        match polled {
            Polled::Chunk(presences) => self.on_presences(presences, false, now),
            Polled::Notified(presences) => {
                self.count(
                    "notified_presences",
                    i64::try_from(presences.len()).unwrap_or(0),
                );
                self.on_presences(presences, true, now);
            }
            Polled::Done {
                users,
                requests,
                elapsed,
            } => {
                if self.poll_failures > 0 {
                    tracing::info!(failed_cycles = self.poll_failures, "polling works again");
                    self.poll_failures = 0;
                }
                tracing::debug!(users, requests, ?elapsed, "poll cycle done");
                self.count("polls", 1);
                let meta = [
                    ("last_poll_at", now.to_string()),
                    ("last_poll_users", users.to_string()),
                    ("last_poll_requests", requests.to_string()),
                    ("last_poll_ms", elapsed.as_millis().to_string()),
                ];
                for (key, value) in meta {
                    self.store.write(Write::SetMeta {
                        key: key.into(),
                        value,
                    });
                }
                if !self.ready && self.matched_once && self.resolving.is_empty() {
                    self.ready = true;
                    tracing::info!(
                        users = self.directory.entries.len(),
                        polled = users,
                        "first sync done, ready"
                    );
                    systemd::ready(&format!("in sync: {users} Teams users polled"));
                }
            }
            Polled::Failed(why) => {
                // One WARN when polling starts failing, one INFO when it works again.
                if self.poll_failures == 0 {
                    tracing::warn!(error = %why, "poll cycle failed; retrying at every interval");
                    self.error("poll", None, &why);
                }
                self.poll_failures += 1;
                self.count("poll_failures", 1);
            }
        }
    }

    pub(super) fn on_written(&mut self, w: Written) {
        let (extension, what) = match &w.wanted {
            Wanted::InCall { extension, .. } => (extension, "In a call written to Teams"),
            Wanted::Clear { extension } => (extension, "In a call cleared in Teams"),
        };
        match &w.result {
            Ok(()) => {
                tracing::info!(%extension, user = %w.teams_id, "{what}");
                if matches!(w.wanted, Wanted::Clear { .. }) && !self.engine.has_session(&w.teams_id)
                {
                    self.store.write(Write::CloseSession {
                        teams_id: w.teams_id.clone(),
                    });
                }
                self.count(
                    if matches!(w.wanted, Wanted::Clear { .. }) {
                        "clear_presence"
                    } else {
                        "set_presence"
                    },
                    1,
                );
            }
            Err(why) => {
                tracing::warn!(%extension, user = %w.teams_id, error = %why, "presence write failed");
                self.error("graph", Some(extension), why);
                self.count("write_errors", 1);
            }
        }
    }

    pub(super) fn on_delivered(&mut self, batch: Vec<PbxUpdate>) {
        let now = self.options.clock.now();
        for u in &batch {
            self.store.write(Write::SetPushed {
                extension: u.extension.clone(),
                state: u.state.clone(),
                availability: u.availability.clone(),
                activity: u.activity.clone(),
                at: now,
            });
        }
        self.count(
            "pushes_delivered",
            i64::try_from(batch.len()).unwrap_or(i64::MAX),
        );
    }

    /// The connector's link to the PBX came or went. After a (re)connect the PBX may have lost
    /// what it was told (Asterisk restarted): tell it again.
    pub(super) fn on_link(&mut self, link: LinkState) {
        let value = match &link {
            LinkState::Connected => "connected".to_owned(),
            LinkState::Disconnected(why) => format!("disconnected: {why}"),
        };
        self.store.write(Write::SetMeta {
            key: "pbx_link".into(),
            value,
        });
        self.store.write(Write::SetMeta {
            key: "pbx_link_since".into(),
            value: self.options.clock.now().to_string(),
        });
        match link {
            LinkState::Connected => {
                let commands = self.engine.repush_all();
                tracing::debug!(
                    users = commands.len(),
                    "PBX connected: Teams states written again"
                );
                self.execute(commands);
            }
            LinkState::Disconnected(why) => self.error("pbx", None, &why),
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = self.options.clock.now();
        let commands = self.engine.on_tick(now);
        self.execute(commands);
        if now >= self.next_resolve_at && self.resolving.is_empty() {
            self.next_resolve_at = now + millis(self.config.sync.resolve_interval);
            self.resolve(matching::all_emails(&self.directory));
        }
    }

    /// Carry out the core's commands.
    pub(super) fn execute(&mut self, commands: Vec<Command>) {
        let now = self.options.clock.now();
        for command in commands {
            match command {
                Command::SetInCall {
                    extension,
                    teams_id,
                    expiration,
                } => {
                    // Recorded before the write: after a crash the session is found and cleared.
                    let expires_at = now + millis(expiration);
                    self.store.write(Write::OpenSession {
                        extension: extension.clone(),
                        teams_id: teams_id.clone(),
                        expires_at,
                    });
                    self.writers.want(
                        &teams_id,
                        Wanted::InCall {
                            extension,
                            expiration,
                        },
                    );
                }
                Command::ClearInCall {
                    extension,
                    teams_id,
                } => {
                    self.writers.want(&teams_id, Wanted::Clear { extension });
                }
                Command::PushToPbx {
                    extension,
                    email,
                    presence,
                    state,
                } => {
                    if let Some(pusher) = &self.connector.pusher {
                        tracing::debug!(%extension, %state, "push queued");
                        pusher.push(PbxUpdate {
                            extension,
                            email,
                            availability: presence.availability,
                            activity: presence.activity,
                            state,
                        });
                    }
                }
            }
        }
    }
}
