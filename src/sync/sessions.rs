//! The app's presence sessions: what the engine writes to Teams with setPresence, per Teams
//! user (two extensions of one user share one session). A session says "In a call" while an
//! extension of the user is speaking and, with `sync.pbx_dnd_to_teams = "session"`, "Do not
//! disturb" while the phone is in DND (DND wins over a call); it is cleared when neither holds.

use std::time::Duration;

use super::{Engine, User};
use crate::sync::engine_types::refresh_after;
use crate::sync::types::{
    CallState, Command, DndToTeams, Extension, Millis, SessionPresence, TeamsPresence, millis,
};

/// A session held by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Session {
    /// Written by us; refreshed at `refresh_at` while it is wanted.
    Active {
        refresh_at: Millis,
        presence: SessionPresence,
    },
    /// Found in the store after a restart; cleared at `clear_at` unless it is wanted.
    Recovered { clear_at: Millis },
}

/// How long after one of our sessions ended (or changed) Teams still reporting it is taken as
/// its echo: a poll sent before the clear landed answers with the old state, and Graph itself
/// can lag. A real Teams state is pushed at the first poll after this.
pub const ECHO_GRACE: Duration = Duration::from_secs(10);

impl Engine {
    /// A session recorded before a restart: it is cleared as soon as the PBX has reported every
    /// extension of the user with nothing to write, kept (re-written) when one is reported
    /// speaking (or in DND), and cleared after the recovery grace when the PBX says nothing.
    pub fn restore_session(&mut self, teams_id: &str, now: Millis) {
        let clear_at = now + millis(self.settings.recovery_grace);
        self.sessions
            .insert(teams_id.to_owned(), Session::Recovered { clear_at });
    }

    /// Time passes: refresh running sessions, clear recovered ones nobody claimed.
    pub fn on_tick(&mut self, now: Millis) -> Vec<Command> {
        self.ended.retain(|_, (t, _)| now - *t < millis(ECHO_GRACE));
        let due: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| deadline(s) <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let mut commands = Vec::new();
        for teams_id in due {
            match self.wanted_session(&teams_id) {
                Some((ext, presence)) => {
                    self.start_session(&teams_id, ext, presence, now, &mut commands)
                }
                None => self.end_session(&teams_id, now, &mut commands),
            }
        }
        self.preferred_tick(now, &mut commands);
        commands
    }

    /// When [`Engine::on_tick`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<Millis> {
        let sessions = self.sessions.values().map(deadline).min();
        sessions.into_iter().chain(self.preferred_deadline()).min()
    }

    /// Shutting down: clear every session so nobody is left "In a call" (or in DND), and
    /// every preferred DND we set (nobody would refresh it).
    pub fn shutdown(&mut self, now: Millis) -> Vec<Command> {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        let mut commands = Vec::new();
        for teams_id in ids {
            self.end_session(&teams_id, now, &mut commands);
        }
        self.clear_all_preferred(&mut commands);
        commands
    }

    /// Every session and preferred DND made to match the PBX states again (after a settings
    /// change).
    pub fn reconcile_all(&mut self, now: Millis) -> Vec<Command> {
        let mut ids: Vec<String> = self
            .by_teams_id
            .iter()
            .map(|(id, _)| id.to_string())
            .collect();
        ids.extend(self.preferred.keys().cloned());
        ids.sort_unstable();
        ids.dedup();
        let mut commands = Vec::new();
        for teams_id in ids {
            self.reconcile(&teams_id, None, now, &mut commands);
        }
        commands
    }

    /// The session and the preferred DND of `teams_id`, made to match its phones.
    pub(super) fn reconcile(
        &mut self,
        teams_id: &str,
        hint: Option<Extension>,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        self.reconcile_session(teams_id, hint.clone(), now, commands);
        self.reconcile_preferred(teams_id, hint, now, commands);
    }

    /// Sessions held (written, or left by a crash and not yet cleared).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the Teams user has a session written by us.
    pub fn has_session(&self, teams_id: &str) -> bool {
        self.sessions.contains_key(teams_id)
    }

    /// Whether `presence`, read from Teams for `teams_id`, is our own session showing through
    /// (or one that just ended or changed).
    pub(super) fn own_echo(&self, teams_id: &str, presence: &TeamsPresence, now: Millis) -> bool {
        let recent = self
            .ended
            .get(teams_id)
            .is_some_and(|(t, p)| now - t < millis(ECHO_GRACE) && p.is_echo(presence));
        recent
            || match self.sessions.get(teams_id) {
                Some(Session::Active { presence: p, .. }) => p.is_echo(presence),
                // What a crash left is unknown: either of what we write.
                Some(Session::Recovered { .. }) => {
                    SessionPresence::InCall.is_echo(presence)
                        || (self.settings.dnd_to_teams == DndToTeams::Session
                            && SessionPresence::Dnd.is_echo(presence))
                }
                None => false,
            }
    }

    /// Sessions and preferred DNDs, with an extension of theirs, taken before the directory
    /// changes.
    pub(super) fn session_owners(&self) -> Vec<(String, Extension)> {
        let mut ids: Vec<&String> = self.sessions.keys().chain(self.preferred.keys()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .map(|id| (id.clone(), self.first_owner(id)))
            .collect()
    }

    /// The first extension of `teams_id` ("" once none is left): the one a write is made on
    /// behalf of when no event names one.
    pub(super) fn first_owner(&self, teams_id: &str) -> Extension {
        self.by_teams_id
            .get(teams_id)
            .and_then(|e| e.first().map(|ext| ext.to_string()))
            .unwrap_or_default()
    }

    /// An extension of `teams_id` allowed to write to Teams whose user passes `test`.
    pub(super) fn writing_extension(
        &self,
        teams_id: &str,
        test: impl Fn(&User) -> bool,
    ) -> Option<Extension> {
        self.by_teams_id.get(teams_id)?.iter().find_map(|ext| {
            let user = self.users.get(ext)?;
            (user.direction.pbx_to_teams() && test(user)).then(|| ext.to_string())
        })
    }

    /// Start, change or end the session of `teams_id` so that it matches the PBX states.
    pub(super) fn reconcile_session(
        &mut self,
        teams_id: &str,
        hint: Option<Extension>,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let session = self.sessions.get(teams_id).copied();
        match (self.wanted_session(teams_id), session) {
            (Some((ext, p)), None | Some(Session::Recovered { .. })) => {
                self.start_session(teams_id, ext, p, now, commands)
            }
            (Some((ext, p)), Some(Session::Active { presence: q, .. })) if p != q => {
                self.ended.insert(teams_id.to_owned(), (now, q));
                self.start_session(teams_id, ext, p, now, commands)
            }
            (None, Some(Session::Active { .. })) => {
                let ext = hint.unwrap_or_else(|| self.first_owner(teams_id));
                self.end_session_for(teams_id, ext, now, commands)
            }
            (None, Some(Session::Recovered { .. })) if self.all_reported(teams_id) => {
                let ext = hint.unwrap_or_else(|| self.first_owner(teams_id));
                self.end_session_for(teams_id, ext, now, commands)
            }
            _ => {}
        }
    }

    /// What the session of `teams_id` should say, and for which extension: DND when one of
    /// its extensions is in DND (and DND goes to Teams as a session), else "In a call" when
    /// one is speaking. Only extensions allowed to write to Teams count.
    fn wanted_session(&self, teams_id: &str) -> Option<(Extension, SessionPresence)> {
        if self.settings.dnd_to_teams == DndToTeams::Session
            && let Some(ext) = self.writing_extension(teams_id, |u| u.dnd == Some(true))
        {
            return Some((ext, SessionPresence::Dnd));
        }
        self.writing_extension(teams_id, |u| u.call == CallState::Speaking)
            .map(|ext| (ext, SessionPresence::InCall))
    }

    /// Whether the PBX has reported every extension of `teams_id` that writes to Teams.
    pub(super) fn all_reported(&self, teams_id: &str) -> bool {
        self.by_teams_id.get(teams_id).is_some_and(|exts| {
            exts.iter().all(|ext| {
                self.users
                    .get(ext)
                    .is_none_or(|u| u.reported || !u.direction.pbx_to_teams())
            })
        })
    }

    fn start_session(
        &mut self,
        teams_id: &str,
        ext: Extension,
        presence: SessionPresence,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let refresh_at = now + millis(refresh_after(self.settings.in_call_expiration));
        let session = Session::Active {
            refresh_at,
            presence,
        };
        self.sessions.insert(teams_id.to_owned(), session);
        out.push(Command::SetSession {
            extension: ext,
            teams_id: teams_id.to_owned(),
            presence,
            expiration: self.settings.in_call_expiration,
        });
    }

    fn end_session(&mut self, teams_id: &str, now: Millis, out: &mut Vec<Command>) {
        let ext = self.first_owner(teams_id);
        self.end_session_for(teams_id, ext, now, out);
    }

    fn end_session_for(
        &mut self,
        teams_id: &str,
        extension: Extension,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        if let Some(session) = self.sessions.remove(teams_id) {
            let said = match session {
                Session::Active { presence, .. } => presence,
                Session::Recovered { .. } => SessionPresence::InCall,
            };
            self.ended.insert(teams_id.to_owned(), (now, said));
            out.push(Command::ClearSession {
                extension,
                teams_id: teams_id.to_owned(),
                presence: said,
            });
        }
    }
}

fn deadline(session: &Session) -> Millis {
    match session {
        Session::Active { refresh_at, .. } => *refresh_at,
        Session::Recovered { clear_at } => *clear_at,
    }
}
