//! The per-user state machine. Events and `now` in, [`Command`]s out.
//!
//! Sessions ("In a call" written with setPresence) are keyed by Teams user id, because two
//! extensions may belong to one Teams user (desk phone and softphone): the session lasts while
//! any of them is speaking.
//!
//! The types going in and out are in `engine_types` (re-exported here); the compact per-user
//! storage (`Packed` presences, the `Owners` of a Teams id) is in `packed`, the sorted
//! [`Table`] that holds the users and the Teams ids in `table`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::mapping::Mapping;
use super::packed::{Owners, Packed};
use super::table::Table;
use super::types::{
    CallState, Command, Direction, Extension, Millis, PbxEvent, TeamsPresence, millis,
};

pub use super::engine_types::{
    EngineSettings, PbxOutcome, Restored, TeamsOutcome, UserSpec, refresh_after,
};

/// A directory entry as the engine keeps it: the extension is the map key, not repeated here
/// (50,000 users: every byte per user counts).
#[derive(Debug, Clone)]
struct User {
    email: String,
    teams_id: Option<Arc<str>>,
    direction: Direction,
    call: CallState,
    dnd: Option<bool>,
    /// The PBX has reported this extension's call state since the start (a recovered session
    /// can only end early once every extension of its user has been heard from).
    reported: bool,
    teams: Option<Packed>,
    pushed: Option<Packed>,
    /// Flipped by [`Engine::set_users`] to find entries that left the directory.
    mark: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Written by us; refreshed at `refresh_at` while the call lasts.
    Active { refresh_at: Millis },
    /// Found in the store after a restart; cleared at `clear_at` unless a call is reported.
    Recovered { clear_at: Millis },
}

/// The sync core. Owns the state of every user; the service feeds it and executes commands.
#[derive(Debug)]
pub struct Engine {
    settings: EngineSettings,
    mapping: Mapping,
    /// Extension -> user.
    users: Table<User>,
    /// Teams id -> extensions that map to it (the `users` keys, shared).
    by_teams_id: Table<Owners>,
    sessions: HashMap<String, Session>,
    /// When recent sessions ended: a poll that was already in flight, or Graph lagging behind
    /// the clear, still reports our "In a call" for a moment; that echo is not a Teams call.
    ended: HashMap<String, Millis>,
    /// The current mark of [`Engine::set_users`].
    mark: bool,
}

/// How long after one of our sessions ended a Busy/InACall from Teams is still taken as its
/// echo: a poll sent before the clear landed answers with the old state, and Graph itself
/// can lag. A real Teams call is pushed at the first poll after this.
pub const ECHO_GRACE: Duration = Duration::from_secs(10);

/// The pair written for "In a call": a pair setPresence accepts
/// (<https://learn.microsoft.com/en-us/graph/api/presence-setpresence>), and Teams' "In a call" in
/// the state table of
/// <https://learn.microsoft.com/en-us/graph/cloud-communications-manage-presence-state>.
pub const IN_CALL: (&str, &str) = ("Busy", "InACall");

impl Engine {
    pub fn new(settings: EngineSettings, mapping: Mapping) -> Engine {
        Engine {
            settings,
            mapping,
            users: Table::default(),
            by_teams_id: Table::default(),
            sessions: HashMap::new(),
            ended: HashMap::new(),
            mark: false,
        }
    }

    /// The effective mapping (for status and pushes).
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// Replace the settings (hot reload). Running sessions keep their refresh time.
    pub fn set_settings(&mut self, settings: EngineSettings) {
        self.settings = settings;
    }

    /// Replace the mapping (hot reload) and push every user whose PBX state name changed.
    pub fn set_mapping(&mut self, mapping: Mapping) -> Vec<Command> {
        let old = std::mem::replace(&mut self.mapping, mapping);
        let mut commands = Vec::new();
        for (ext, user) in self.users.iter() {
            let Some(pushed) = user.pushed.as_ref().map(Packed::unpack) else {
                continue;
            };
            if old.state_for(&pushed) != self.mapping.state_for(&pushed) {
                commands.push(push_command(&self.mapping, ext, user, pushed));
            }
        }
        commands
    }

    /// Replace the directory. Users that are gone, or whose Teams id changed, lose their
    /// session (cleared); users that are new start idle with nothing known.
    pub fn set_users(
        &mut self,
        specs: impl IntoIterator<Item = UserSpec>,
        now: Millis,
    ) -> Vec<Command> {
        let before = self.session_owners();
        // Updated in place (no second map of 50,000 users): entries touched by this call get
        // the new mark, the others are gone from the directory. New users are added at the
        // end, in one go.
        self.mark = !self.mark;
        let mut new = Vec::new();
        for spec in specs {
            match self.users.get_mut(&spec.extension) {
                Some(old) => {
                    if old.teams_id != spec.teams_id {
                        old.teams = None;
                        old.pushed = None;
                    }
                    old.email = spec.email;
                    old.teams_id = spec.teams_id;
                    old.direction = spec.direction;
                    old.mark = self.mark;
                }
                None => {
                    let user = User {
                        email: spec.email,
                        teams_id: spec.teams_id,
                        direction: spec.direction,
                        call: CallState::Idle,
                        dnd: None,
                        reported: false,
                        teams: None,
                        pushed: None,
                        mark: self.mark,
                    };
                    new.push((Arc::from(spec.extension), user));
                }
            }
        }
        self.users.extend(new);
        let mark = self.mark;
        self.users.retain(|u| u.mark == mark);
        self.reindex();
        let mut commands = Vec::new();
        for (teams_id, extension) in before {
            self.reconcile_session(&teams_id, Some(extension), now, &mut commands);
        }
        // Only users on a call can need a new session.
        let speaking: Vec<Arc<str>> = self
            .users
            .values()
            .filter(|u| u.call == CallState::Speaking)
            .filter_map(|u| u.teams_id.clone())
            .collect();
        for teams_id in speaking {
            self.reconcile_session(&teams_id, None, now, &mut commands);
        }
        commands
    }

    /// Forget what the PBX was told (a new connector): the next presence report of every user
    /// is pushed again.
    pub fn forget_pushed(&mut self) {
        for user in self.users.values_mut() {
            user.pushed = None;
        }
    }

    /// The PBX lost what it was told (it restarted, or the connection to it was down): tell
    /// it again, for every user, the Teams state it was last told. Nothing new is decided.
    pub fn repush_all(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        for (ext, user) in self.users.iter() {
            if let Some(p) = &user.pushed
                && user.direction.teams_to_pbx()
            {
                commands.push(push_command(&self.mapping, ext, user, p.unpack()));
            }
        }
        commands
    }

    /// Bring back what the store knew before a restart (after [`Engine::set_users`]).
    pub fn restore(&mut self, extension: &str, restored: Restored) {
        if let Some(user) = self.users.get_mut(extension) {
            user.pushed = restored.pushed.as_ref().map(Packed::pack);
            user.teams = restored.teams.as_ref().map(Packed::pack);
        }
    }

    /// A session recorded before a restart: it is cleared as soon as the PBX has reported every
    /// extension of the user not speaking, kept (re-written) when one is reported speaking, and
    /// cleared after the recovery grace when the PBX says nothing.
    pub fn restore_session(&mut self, teams_id: &str, now: Millis) {
        let clear_at = now + millis(self.settings.recovery_grace);
        self.sessions
            .insert(teams_id.to_owned(), Session::Recovered { clear_at });
    }

    /// A call state reported by the PBX.
    pub fn on_pbx_event(&mut self, event: &PbxEvent, now: Millis) -> PbxOutcome {
        let Some(user) = self.users.get_mut(&event.extension) else {
            return PbxOutcome::default();
        };
        let previous = user.call;
        user.call = event.state;
        user.reported = true;
        if event.dnd.is_some() {
            user.dnd = event.dnd;
        }
        let mut commands = Vec::new();
        if let Some(teams_id) = user.teams_id.clone() {
            let ext = event.extension.clone();
            self.reconcile_session(&teams_id, Some(ext), now, &mut commands);
        }
        PbxOutcome {
            previous: Some(previous),
            known: true,
            commands,
        }
    }

    /// A Teams presence read from Graph (poll or notification).
    pub fn on_teams_presence(
        &mut self,
        teams_id: &str,
        presence: &TeamsPresence,
        now: Millis,
    ) -> TeamsOutcome {
        let mut outcome = TeamsOutcome::default();
        let Some(extensions) = self.by_teams_id.get(teams_id) else {
            return outcome;
        };
        let ours = self.sessions.contains_key(teams_id)
            || self
                .ended
                .get(teams_id)
                .is_some_and(|t| now - t < millis(ECHO_GRACE));
        let echo = ours && is_in_call_echo(presence);
        for ext in extensions.iter() {
            let Some(user) = self.users.get_mut(ext) else {
                continue;
            };
            let packed = Packed::pack(presence);
            if user.teams.as_ref() != Some(&packed) {
                let previous = user.teams.replace(packed.clone()).map(|p| p.unpack());
                outcome.changed.push((ext.to_string(), previous));
            }
            if echo || !user.direction.teams_to_pbx() || user.pushed.as_ref() == Some(&packed) {
                continue;
            }
            user.pushed = Some(packed);
            outcome
                .commands
                .push(push_command(&self.mapping, ext, user, presence.clone()));
        }
        outcome.echo = echo && !outcome.changed.is_empty();
        outcome
    }

    /// Time passes: refresh running sessions, clear recovered ones nobody claimed.
    pub fn on_tick(&mut self, now: Millis) -> Vec<Command> {
        self.ended.retain(|_, t| now - *t < millis(ECHO_GRACE));
        let due: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| match s {
                Session::Active { refresh_at } => *refresh_at <= now,
                Session::Recovered { clear_at } => *clear_at <= now,
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut commands = Vec::new();
        for teams_id in due {
            if let Some(ext) = self.speaking_extension(&teams_id) {
                self.start_session(&teams_id, ext, now, &mut commands);
            } else {
                self.end_session(&teams_id, now, &mut commands);
            }
        }
        commands
    }

    /// When [`Engine::on_tick`] next has work, if ever.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.sessions
            .values()
            .map(|s| match s {
                Session::Active { refresh_at } => *refresh_at,
                Session::Recovered { clear_at } => *clear_at,
            })
            .min()
    }

    /// Shutting down: clear every session so nobody is left "In a call".
    pub fn shutdown(&mut self, now: Millis) -> Vec<Command> {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        let mut commands = Vec::new();
        for teams_id in ids {
            self.end_session(&teams_id, now, &mut commands);
        }
        commands
    }

    /// The Teams ids to poll: matched users that want Teams -> PBX.
    pub fn poll_ids(&self) -> Vec<Arc<str>> {
        self.by_teams_id
            .iter()
            .filter(|(_, exts)| {
                exts.iter().any(|e| {
                    self.users
                        .get(e)
                        .is_some_and(|u| u.direction.teams_to_pbx())
                })
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// "In a call" sessions held (written, or left by a crash and not yet cleared).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether the Teams user has an "In a call" session written by us.
    pub fn has_session(&self, teams_id: &str) -> bool {
        self.sessions.contains_key(teams_id)
    }

    /// The PBX state of an extension, if it is in the directory.
    pub fn call_state(&self, extension: &str) -> Option<CallState> {
        self.users.get(extension).map(|u| u.call)
    }

    /// The e-mail of the Teams account an extension belongs to, if it is in the directory.
    pub fn email(&self, extension: &str) -> Option<&str> {
        self.users.get(extension).map(|u| u.email.as_str())
    }

    /// True when the extension is in the directory.
    pub fn knows(&self, extension: &str) -> bool {
        self.users.contains_key(extension)
    }

    fn reindex(&mut self) {
        self.by_teams_id.clear();
        let mut pairs: Vec<(Arc<str>, Owners)> = self
            .users
            .iter()
            .filter_map(|(ext, u)| Some((u.teams_id.clone()?, Owners::One(Arc::clone(ext)))))
            .collect();
        // By Teams id, then by extension: a shared id's owners are pushed in order.
        pairs.sort_unstable_by(|a, b| (&a.0, a.1.first()).cmp(&(&b.0, b.1.first())));
        pairs.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same && let Some(ext) = later.1.first() {
                kept.1.push(Arc::clone(ext));
            }
            same
        });
        self.by_teams_id = Table::from_sorted(pairs);
    }

    /// Sessions and an extension of theirs, taken before the directory changes.
    fn session_owners(&self) -> Vec<(String, Extension)> {
        let owner = |id: &String| {
            self.by_teams_id
                .get(id.as_str())
                .and_then(|e| e.first().map(|ext| ext.to_string()))
                .unwrap_or_default()
        };
        self.sessions
            .keys()
            .map(|id| (id.clone(), owner(id)))
            .collect()
    }

    /// Start or end the session of `teams_id` so that it matches the PBX call states.
    fn reconcile_session(
        &mut self,
        teams_id: &str,
        hint: Option<Extension>,
        now: Millis,
        commands: &mut Vec<Command>,
    ) {
        let session = self.sessions.get(teams_id).copied();
        match (self.speaking_extension(teams_id), session) {
            (Some(ext), None | Some(Session::Recovered { .. })) => {
                self.start_session(teams_id, ext, now, commands)
            }
            (None, Some(Session::Active { .. })) => {
                self.end_session_for(teams_id, hint.unwrap_or_default(), now, commands)
            }
            (None, Some(Session::Recovered { .. })) if self.all_reported(teams_id) => {
                self.end_session_for(teams_id, hint.unwrap_or_default(), now, commands)
            }
            _ => {}
        }
    }

    /// An extension of `teams_id` that is speaking and allowed to write to Teams.
    fn speaking_extension(&self, teams_id: &str) -> Option<Extension> {
        self.by_teams_id.get(teams_id)?.iter().find_map(|ext| {
            let user = self.users.get(ext)?;
            (user.call == CallState::Speaking && user.direction.pbx_to_teams())
                .then(|| ext.to_string())
        })
    }

    /// Whether the PBX has reported every extension of `teams_id` that writes to Teams.
    fn all_reported(&self, teams_id: &str) -> bool {
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
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let refresh_at = now + millis(refresh_after(self.settings.in_call_expiration));
        self.sessions
            .insert(teams_id.to_owned(), Session::Active { refresh_at });
        out.push(Command::SetInCall {
            extension: ext,
            teams_id: teams_id.to_owned(),
            expiration: self.settings.in_call_expiration,
        });
    }

    fn end_session(&mut self, teams_id: &str, now: Millis, out: &mut Vec<Command>) {
        let ext = self
            .by_teams_id
            .get(teams_id)
            .and_then(|e| e.first().map(|ext| ext.to_string()));
        self.end_session_for(teams_id, ext.unwrap_or_default(), now, out);
    }

    fn end_session_for(
        &mut self,
        teams_id: &str,
        extension: Extension,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        if self.sessions.remove(teams_id).is_some() {
            self.ended.insert(teams_id.to_owned(), now);
            out.push(Command::ClearInCall {
                extension,
                teams_id: teams_id.to_owned(),
            });
        }
    }
}

/// Our own "In a call" as Teams reports it back: Busy/InACall, and sometimes Busy/Busy
/// (reported in <https://learn.microsoft.com/en-us/answers/questions/2237086>).
fn is_in_call_echo(presence: &TeamsPresence) -> bool {
    presence.availability == IN_CALL.0
        && (presence.activity == IN_CALL.1 || presence.activity == "Busy")
}

fn push_command(
    mapping: &Mapping,
    extension: &str,
    user: &User,
    presence: TeamsPresence,
) -> Command {
    Command::PushToPbx {
        extension: extension.to_owned(),
        email: user.email.clone(),
        state: mapping.state_for(&presence).to_owned(),
        presence,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
