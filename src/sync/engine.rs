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

use super::mapping::{KEEP, Mapping};
use super::packed::{Owners, Packed};
use super::table::Table;
use super::types::{
    CallState, Command, Direction, Millis, PbxEvent, SessionPresence, TeamsPresence,
};

pub use super::engine_types::{
    EngineSettings, PbxOutcome, Restored, TeamsOutcome, UserSpec, refresh_after,
};
pub use sessions::ECHO_GRACE;
use sessions::Session;

#[path = "preferred.rs"]
mod preferred;
#[path = "sessions.rs"]
mod sessions;
pub use preferred::PREFERRED_DND;
use preferred::Preferred;

/// A directory entry as the engine keeps it: the extension is the map key, not repeated here
/// (50,000 users: every byte per user counts).
#[derive(Debug, Clone)]
struct User {
    email: Arc<str>,
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
    /// Preferred DNDs we answer for (`pbx_dnd_to_teams = "preferred"`), by Teams id.
    preferred: HashMap<String, Preferred>,
    /// When recent sessions ended (or changed) and what they said: a poll that was already in
    /// flight, or Graph lagging behind the clear, still reports it for a moment; that echo is
    /// not a Teams state of the user.
    ended: HashMap<String, (Millis, SessionPresence)>,
    /// The current mark of [`Engine::set_users`].
    mark: bool,
}

impl Engine {
    pub fn new(settings: EngineSettings, mapping: Mapping) -> Engine {
        Engine {
            settings,
            mapping,
            users: Table::default(),
            by_teams_id: Table::default(),
            sessions: HashMap::new(),
            preferred: HashMap::new(),
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

    /// Replace the mapping (hot reload) and push every user whose PBX state name changed,
    /// and every user whose Teams state was kept from the PBX and no longer is.
    pub fn set_mapping(&mut self, mapping: Mapping) -> Vec<Command> {
        let old = std::mem::replace(&mut self.mapping, mapping);
        let mut commands = Vec::new();
        for (ext, user) in self.users.iter_mut() {
            let teams = user.teams.as_ref().map(Packed::unpack);
            // Not for what may be our own "In a call" (the next read tells it apart).
            if let Some(teams) = teams.filter(|t| old.keeps(t) && !self.mapping.keeps(t))
                && user.direction.teams_to_pbx()
                && !SessionPresence::InCall.is_echo(&teams)
            {
                user.pushed = Some(Packed::pack(&teams));
                commands.push(push_command(&self.mapping, ext, user, teams));
                continue;
            }
            let Some(pushed) = user.pushed.as_ref().map(Packed::unpack) else {
                continue;
            };
            let state = self.mapping.state_for(&pushed);
            if old.state_for(&pushed) != state && state != KEEP {
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
                    new.push((spec.extension, user));
                }
            }
        }
        self.users.extend(new);
        let mark = self.mark;
        self.users.retain(|u| u.mark == mark);
        self.reindex();
        let mut commands = Vec::new();
        for (teams_id, extension) in before {
            self.reconcile(&teams_id, Some(extension), now, &mut commands);
        }
        // Only users on a call or in DND can need a new session.
        let speaking: Vec<Arc<str>> = self
            .users
            .values()
            .filter(|u| u.call == CallState::Speaking || u.dnd == Some(true))
            .filter_map(|u| u.teams_id.clone())
            .collect();
        for teams_id in speaking {
            self.reconcile(&teams_id, None, now, &mut commands);
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

    /// A call state reported by the PBX.
    pub fn on_pbx_event(&mut self, event: &PbxEvent, now: Millis) -> PbxOutcome {
        let Some(user) = self.users.get_mut(&event.extension) else {
            return PbxOutcome::default();
        };
        let previous = user.call;
        user.call = event.state;
        user.reported = true;
        // The first report of a phone not in DND is no change worth a line.
        let dnd_changed = event
            .dnd
            .filter(|&on| user.dnd != Some(on) && (on || user.dnd.is_some()));
        if event.dnd.is_some() {
            user.dnd = event.dnd;
        }
        let mut commands = Vec::new();
        if let Some(teams_id) = user.teams_id.clone() {
            let ext = event.extension.clone();
            self.reconcile(&teams_id, Some(ext), now, &mut commands);
        }
        PbxOutcome {
            previous: Some(previous),
            dnd_changed,
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
        let echo =
            self.own_echo(teams_id, presence, now) || self.preferred_echo(teams_id, presence);
        for ext in extensions.iter() {
            let Some(user) = self.users.get_mut(ext) else {
                continue;
            };
            let packed = Packed::pack(presence);
            if user.teams.as_ref() != Some(&packed) {
                let previous = user.teams.replace(packed.clone()).map(|p| p.unpack());
                outcome.changed.push((ext.to_string(), previous));
            }
            if echo
                || !user.direction.teams_to_pbx()
                || user.pushed.as_ref() == Some(&packed)
                || self.mapping.keeps(presence)
            {
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

    /// The PBX state of an extension, if it is in the directory.
    pub fn call_state(&self, extension: &str) -> Option<CallState> {
        self.users.get(extension).map(|u| u.call)
    }

    /// The e-mail of the Teams account an extension belongs to, if it is in the directory.
    pub fn email(&self, extension: &str) -> Option<&str> {
        self.users.get(extension).map(|u| &*u.email)
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
}

fn push_command(
    mapping: &Mapping,
    extension: &str,
    user: &User,
    presence: TeamsPresence,
) -> Command {
    Command::PushToPbx {
        extension: extension.to_owned(),
        email: user.email.to_string(),
        state: mapping.state_for(&presence).to_owned(),
        presence,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
