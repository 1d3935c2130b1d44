//! The phone's DND as the user's preferred presence (`sync.pbx_dnd_to_teams = "preferred"`):
//! setUserPreferredPresence DoNotDisturb, a real "Do not disturb" in Teams, for a short
//! expiration refreshed while the phone stays in DND. A preferred presence is the user's own
//! status too, so the daemon only refreshes or clears one Teams still shows as DoNotDisturb:
//! if the user picked another status meanwhile, it is left as it is (the writer checks, and
//! reports it back through [`Engine::preferred_left`]).

use super::Engine;
use crate::sync::engine_types::refresh_after;
use crate::sync::types::{Command, DndToTeams, Extension, Millis, TeamsPresence, millis};

/// A preferred DND the engine answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Preferred {
    /// Set by us; refreshed at `refresh_at` while the phone is in DND.
    Ours { refresh_at: Millis },
    /// Found in the store after a restart; cleared at `clear_at` unless the phone is reported
    /// in DND.
    Recovered { clear_at: Millis },
}

/// The pair written: DoNotDisturb/DoNotDisturb is one setUserPreferredPresence accepts
/// (<https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>).
pub const PREFERRED_DND: (&str, &str) = ("DoNotDisturb", "DoNotDisturb");

impl Engine {
    /// A preferred DND recorded before a restart (see [`Engine::restore_session`]).
    pub fn restore_preferred(&mut self, teams_id: &str, now: Millis) {
        let clear_at = now + millis(self.settings.recovery_grace);
        self.preferred
            .insert(teams_id.to_owned(), Preferred::Recovered { clear_at });
    }

    /// The writer found the user's status changed since we set DND: it is theirs now, neither
    /// refreshed nor cleared by us.
    pub fn preferred_left(&mut self, teams_id: &str) {
        self.preferred.remove(teams_id);
    }

    /// Whether we answer for a preferred DND of this Teams user.
    pub fn has_preferred(&self, teams_id: &str) -> bool {
        self.preferred.contains_key(teams_id)
    }

    /// Whether `presence` is our preferred DND showing through.
    pub(super) fn preferred_echo(&self, teams_id: &str, presence: &TeamsPresence) -> bool {
        self.preferred.contains_key(teams_id)
            && presence.availability == PREFERRED_DND.0
            && presence.activity == PREFERRED_DND.1
    }

    /// Set, refresh or clear the preferred DND of `teams_id` to match its phones.
    pub(super) fn reconcile_preferred(
        &mut self,
        teams_id: &str,
        hint: Option<Extension>,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let held = self.preferred.get(teams_id).copied();
        match (self.dnd_extension(teams_id), held) {
            (Some(ext), None) => self.set_preferred(teams_id, ext, false, now, out),
            // Ours before the crash, unless the user changed it since: checked.
            (Some(ext), Some(Preferred::Recovered { .. })) => {
                self.set_preferred(teams_id, ext, true, now, out)
            }
            (None, Some(Preferred::Ours { .. })) => self.clear_preferred(teams_id, hint, out),
            (None, Some(Preferred::Recovered { .. })) if self.all_reported(teams_id) => {
                self.clear_preferred(teams_id, hint, out)
            }
            _ => {}
        }
    }

    /// Preferred DNDs due at `now`: refreshed (checked) while wanted, else cleared.
    pub(super) fn preferred_tick(&mut self, now: Millis, out: &mut Vec<Command>) {
        let due: Vec<String> = self
            .preferred
            .iter()
            .filter(|(_, p)| preferred_deadline(p) <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for teams_id in due {
            match self.dnd_extension(&teams_id) {
                Some(ext) => self.set_preferred(&teams_id, ext, true, now, out),
                None => self.clear_preferred(&teams_id, None, out),
            }
        }
    }

    /// When [`Engine::preferred_tick`] next has work.
    pub(super) fn preferred_deadline(&self) -> Option<Millis> {
        self.preferred.values().map(preferred_deadline).min()
    }

    /// Every preferred DND we answer for, cleared (shutdown: nobody would refresh it).
    pub(super) fn clear_all_preferred(&mut self, out: &mut Vec<Command>) {
        let ids: Vec<String> = self.preferred.keys().cloned().collect();
        for teams_id in ids {
            self.clear_preferred(&teams_id, None, out);
        }
    }

    /// An extension of `teams_id` in DND that writes to Teams, in `preferred` mode.
    fn dnd_extension(&self, teams_id: &str) -> Option<Extension> {
        if self.settings.dnd_to_teams != DndToTeams::Preferred {
            return None;
        }
        self.writing_extension(teams_id, |u| u.dnd == Some(true))
    }

    fn set_preferred(
        &mut self,
        teams_id: &str,
        extension: Extension,
        checked: bool,
        now: Millis,
        out: &mut Vec<Command>,
    ) {
        let refresh_at = now + millis(refresh_after(self.settings.in_call_expiration));
        self.preferred
            .insert(teams_id.to_owned(), Preferred::Ours { refresh_at });
        out.push(Command::SetPreferredDnd {
            extension,
            teams_id: teams_id.to_owned(),
            expiration: self.settings.in_call_expiration,
            checked,
        });
    }

    fn clear_preferred(&mut self, teams_id: &str, hint: Option<Extension>, out: &mut Vec<Command>) {
        if self.preferred.remove(teams_id).is_none() {
            return;
        }
        let extension = hint.unwrap_or_else(|| self.first_owner(teams_id));
        out.push(Command::ClearPreferredDnd {
            extension,
            teams_id: teams_id.to_owned(),
        });
    }
}

fn preferred_deadline(p: &Preferred) -> Millis {
    match p {
        Preferred::Ours { refresh_at } => *refresh_at,
        Preferred::Recovered { clear_at } => *clear_at,
    }
}
