//! The main loop's routing: PBX events, Teams presences, write results, deliveries and link
//! changes go to the engine with `now`; its commands go to the writers and the PBX.

use tokio::time::Instant;

use super::Daemon;
use super::lines::{self, Told, Who};
use crate::clock;
use crate::graph::Presence;
use crate::pbx::{LinkState, PbxUpdate};
use crate::service::poller::Polled;
use crate::service::systemd;
use crate::service::writer::Wanted;
use crate::store::{MetaKey, Write};
use crate::sync::types::{Command, Millis, PbxEvent, TeamsPresence, millis};

impl Daemon {
    /// A batch of PBX events, already validated by the connector.
    pub(super) fn on_pbx_events(&mut self, batch: Vec<PbxEvent>) {
        let now = self.clock.now();
        let taken = Origin::Pbx(clock::monotonic());
        for event in batch {
            let outcome = self.engine.on_pbx_event(&event, now);
            let Some(previous) = outcome.previous else {
                continue;
            };
            self.metrics.pbx_event(event.state);
            if previous != event.state {
                lines::pbx_changed(self.who(&event.extension), previous, event.state);
            }
            if let Some(on) = outcome.dnd_changed {
                lines::dnd_changed(self.who(&event.extension), on);
            }
            self.out.write(Write::SetPbx {
                extension: event.extension.clone(),
                state: event.state.as_str().to_owned(),
                dnd: event.dnd,
                at: now,
            });
            self.execute_from(outcome.commands, taken);
        }
        self.out.count("pbx_events", 1);
    }

    /// Presences read by a poll (`notified` false) or announced by a notification. A covered
    /// user's change that only a poll saw is reported to the notification manager.
    fn on_presences(&mut self, presences: Vec<Presence>, notified: bool, now: Millis) {
        let read = Origin::Teams(clock::monotonic());
        let covered = self.parts.feeds.covered.borrow().clone();
        for p in presences {
            let presence = TeamsPresence::new(&p.availability, &p.activity);
            let outcome = self.engine.on_teams_presence(&p.id, &presence, now);
            for (extension, previous) in &outcome.changed {
                let via = if notified { "notification" } else { "poll" };
                let kept = self.engine.mapping().keeps(&presence);
                let told = told(extension, outcome.echo, kept, &outcome.commands);
                let who = self.who(extension);
                lines::teams_changed(who, &p.id, previous.as_ref(), &presence, via, &told);
                self.out.write(Write::SetTeams {
                    extension: extension.clone(),
                    availability: presence.availability.clone(),
                    activity: presence.activity.clone(),
                    at: now,
                });
            }
            // Only a change from a known presence can have been missed (the first reading
            // of a user is no change a subscription owed us).
            let missed = !notified
                && !outcome.echo
                && outcome
                    .changed
                    .iter()
                    .any(|(_, previous)| previous.is_some());
            if missed
                && let (Some(tx), Some(id)) = (&self.parts.suspects, covered.get(p.id.as_str()))
                && tx.try_send(id.clone()).is_err()
            {
                tracing::debug!(user = %p.id, "notification manager busy; suspect not reported");
            }
            self.execute_from(outcome.commands, read);
        }
    }

    pub(super) fn on_polled(&mut self, polled: Polled) {
        let now = self.clock.now();
        match polled {
            Polled::Chunk(presences) => self.on_presences(presences, false, now),
            Polled::Notified(presences) => {
                self.out.count("notified_presences", presences.len());
                self.on_presences(presences, true, now);
            }
            Polled::Done {
                users,
                requests,
                elapsed,
                interval,
                budget_used,
            } => {
                if self.health.poll_failures > 0 {
                    tracing::info!(
                        failed_cycles = self.health.poll_failures,
                        "polling works again"
                    );
                    self.health.poll_failures = 0;
                }
                tracing::debug!(users, requests, ?elapsed, "poll cycle done");
                self.out.count("polls", 1);
                self.out.meta(MetaKey::LastPollAt, now.to_string());
                self.out.meta(MetaKey::LastPollUsers, users.to_string());
                self.out
                    .meta(MetaKey::LastPollRequests, requests.to_string());
                self.out
                    .meta(MetaKey::LastPollMs, elapsed.as_millis().to_string());
                self.out
                    .meta(MetaKey::PollIntervalMs, interval.as_millis().to_string());
                let pct = format!("{:.1}", budget_used * 100.0);
                self.out.meta(MetaKey::PollBudgetUsedPct, pct);
                self.maybe_ready(users);
            }
            Polled::Failed(why) => {
                // One WARN when polling starts failing, one INFO when it works again.
                if self.health.poll_failures == 0 {
                    tracing::warn!(error = %why, "poll cycle failed; retrying at every interval");
                    self.out.error("poll", None, why.to_string(), now);
                }
                self.health.poll_failures += 1;
                self.out.count("poll_failures", 1);
            }
        }
    }

    /// READY=1 once a poll went through after the users were matched.
    fn maybe_ready(&mut self, polled: usize) {
        if self.health.ready || !self.matching.matched_once || self.matching.busy() {
            return;
        }
        self.health.ready = true;
        tracing::info!(
            users = self.directory.entries.len(),
            polled,
            "first sync done, ready"
        );
        systemd::ready(&format!("in sync: {polled} Teams users polled"));
    }

    pub(super) fn on_delivered(&mut self, batch: Vec<PbxUpdate>) {
        let now = self.clock.now();
        self.out.count("pushes_delivered", batch.len());
        for u in batch {
            self.out.write(Write::SetPushed {
                extension: u.extension,
                state: u.state,
                availability: u.availability,
                activity: u.activity,
                at: now,
            });
        }
    }

    /// The connector's link to the PBX came or went. After a (re)connect the PBX may have lost
    /// what it was told (Asterisk restarted): tell it again.
    pub(super) fn on_link(&mut self, link: LinkState) {
        let now = self.clock.now();
        let value = match &link {
            LinkState::Connected => "connected".to_owned(),
            LinkState::Disconnected(why) => format!("disconnected: {why}"),
        };
        self.out.meta(MetaKey::PbxLink, value);
        self.out.meta(MetaKey::PbxLinkSince, now.to_string());
        self.metrics
            .set_pbx_connected(matches!(link, LinkState::Connected));
        match link {
            LinkState::Connected => {
                let commands = self.engine.repush_all();
                tracing::debug!(
                    users = commands.len(),
                    "PBX connected: Teams states written again"
                );
                self.execute(commands);
            }
            LinkState::Disconnected(why) => self.out.error("pbx", None, why.to_string(), now),
        }
    }

    pub(super) fn on_tick(&mut self) {
        let now = self.clock.now();
        let commands = self.engine.on_tick(now);
        self.execute(commands);
        self.start_lookup();
    }

    /// Carry out the core's commands.
    pub(super) fn execute(&mut self, commands: Vec<Command>) {
        self.execute_from(commands, Origin::Step);
    }

    /// Carry out the core's commands, caused by `origin` (for the latency histograms).
    fn execute_from(&mut self, commands: Vec<Command>, origin: Origin) {
        let now = self.clock.now();
        for command in commands {
            match command {
                Command::SetSession {
                    extension,
                    teams_id,
                    presence,
                    expiration,
                } => {
                    // Queued for the store before the write to Teams goes out (end of the
                    // step): after a crash the session is found and cleared.
                    self.out.write(Write::OpenSession {
                        extension: extension.clone(),
                        teams_id: teams_id.clone(),
                        expires_at: now + millis(expiration),
                    });
                    let wanted = Wanted::Session {
                        extension,
                        presence,
                        expiration,
                        since: origin.pbx(),
                    };
                    self.parts.writers.want(&teams_id, wanted);
                }
                Command::ClearSession {
                    extension,
                    teams_id,
                    presence,
                } => self.parts.writers.want(
                    &teams_id,
                    Wanted::Clear {
                        extension,
                        presence,
                    },
                ),
                Command::SetPreferredDnd {
                    extension,
                    teams_id,
                    expiration,
                    checked,
                } => {
                    // Like a session: on its way to the store before it is written.
                    self.out.write(Write::OpenPreferred {
                        extension: extension.clone(),
                        teams_id: teams_id.clone(),
                        expires_at: now + millis(expiration),
                    });
                    let wanted = Wanted::PreferredDnd {
                        extension,
                        expiration,
                        checked,
                    };
                    self.parts.writers.want(&teams_id, wanted);
                }
                Command::ClearPreferredDnd {
                    extension,
                    teams_id,
                } => self
                    .parts
                    .writers
                    .want(&teams_id, Wanted::ClearPreferred { extension }),
                Command::PushToPbx {
                    extension,
                    email,
                    presence,
                    state,
                } => self.parts.pbx.push(PbxUpdate {
                    extension,
                    email,
                    availability: presence.availability,
                    activity: presence.activity,
                    state,
                    read_at: origin.teams(),
                }),
            }
        }
    }
}

impl Daemon {
    /// Who an extension is, for the journal: with its Teams account's e-mail when known.
    pub(super) fn who<'a>(&'a self, extension: &'a str) -> Who<'a> {
        Who {
            extension,
            email: self.engine.email(extension),
        }
    }
}

/// What the PBX is told about one extension's Teams change, read off the engine's commands.
fn told<'a>(extension: &str, echo: bool, kept: bool, commands: &'a [Command]) -> Told<'a> {
    let pushed = commands.iter().find_map(|c| match c {
        Command::PushToPbx {
            extension: e,
            state,
            ..
        } if e.as_str() == extension => Some(state.as_str()),
        _ => None,
    });
    match pushed {
        Some(state) => Told::State(state),
        None if echo => Told::OwnCall,
        None if kept => Told::Kept,
        None => Told::Nothing,
    }
}

/// What caused a step's commands: the latency histograms measure from it.
#[derive(Debug, Clone, Copy)]
enum Origin {
    /// A PBX event, taken by the main loop then.
    Pbx(Instant),
    /// A Teams presence (poll or notification), read by the main loop then.
    Teams(Instant),
    /// A tick, a reload, a new link, a match: nothing to measure from.
    Step,
}

impl Origin {
    fn pbx(self) -> Option<Instant> {
        match self {
            Origin::Pbx(at) => Some(at),
            _ => None,
        }
    }

    fn teams(self) -> Option<Instant> {
        match self {
            Origin::Teams(at) => Some(at),
            _ => None,
        }
    }
}
