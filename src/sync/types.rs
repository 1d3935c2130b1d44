//! The vocabulary of the sync core: what comes in (PBX events, Teams presence) and what goes
//! out (commands for the adapters). Plain data, no I/O.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::mapping::{KNOWN_ACTIVITIES, KNOWN_AVAILABILITIES};

/// Wall-clock time in milliseconds since the Unix epoch. The core never reads a clock: the
/// service passes `now` in, tests pass whatever they like.
pub type Millis = i64;

/// A duration in [`Millis`], saturating (a nonsense config value cannot overflow the clock).
pub fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// A PBX extension, as written in the users file ("1001").
pub type Extension = String;

/// Call state of one PBX user, as the connector reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallState {
    Idle,
    Ringing,
    Speaking,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            CallState::Idle => "idle",
            CallState::Ringing => "ringing",
            CallState::Speaking => "speaking",
        }
    }

    pub fn parse(s: &str) -> Option<CallState> {
        match s {
            "idle" => Some(CallState::Idle),
            "ringing" => Some(CallState::Ringing),
            "speaking" => Some(CallState::Speaking),
            _ => None,
        }
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state report from a PBX connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxEvent {
    pub extension: Extension,
    pub state: CallState,
    /// Do-not-disturb on the PBX side, when the connector knows it.
    pub dnd: Option<bool>,
}

/// A Teams presence as Graph reports it (PascalCase values, e.g. `Busy` / `InACall`).
///
/// Documented values are kept as `&'static str` (no allocation: the daemon holds two presences
/// per user, for 50,000 users); anything else Graph may invent is kept as an owned string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TeamsPresence {
    pub availability: Cow<'static, str>,
    pub activity: Cow<'static, str>,
}

impl TeamsPresence {
    pub fn new(availability: &str, activity: &str) -> TeamsPresence {
        TeamsPresence {
            availability: intern(availability, KNOWN_AVAILABILITIES),
            activity: intern(activity, KNOWN_ACTIVITIES),
        }
    }
}

fn intern(value: &str, known: &'static [&'static str]) -> Cow<'static, str> {
    match known.iter().find(|k| **k == value) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(value.to_owned()),
    }
}

impl fmt::Display for TeamsPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.availability, self.activity)
    }
}

/// Which directions of sync apply to a user (users file, third column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Both,
    TeamsToPbx,
    PbxToTeams,
    Off,
}

impl Direction {
    pub fn teams_to_pbx(self) -> bool {
        matches!(self, Direction::Both | Direction::TeamsToPbx)
    }
    pub fn pbx_to_teams(self) -> bool {
        matches!(self, Direction::Both | Direction::PbxToTeams)
    }
}

/// What the app's presence session of a user says, written with setPresence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionPresence {
    /// The PBX reports the user speaking.
    InCall,
    /// The phone is in Do Not Disturb (`sync.pbx_dnd_to_teams = "session"`).
    Dnd,
}

impl SessionPresence {
    /// The (availability, activity) pair written: both are pairs setPresence accepts
    /// (<https://learn.microsoft.com/en-us/graph/api/presence-setpresence>), and the only one
    /// with DoNotDisturb is DoNotDisturb/Presenting. Busy/InACall is Teams' "In a call" in the
    /// state table of
    /// <https://learn.microsoft.com/en-us/graph/cloud-communications-manage-presence-state>.
    pub fn pair(self) -> (&'static str, &'static str) {
        match self {
            SessionPresence::InCall => ("Busy", "InACall"),
            SessionPresence::Dnd => ("DoNotDisturb", "Presenting"),
        }
    }

    /// As the journal says it.
    pub fn shown(self) -> &'static str {
        match self {
            SessionPresence::InCall => "In a call",
            SessionPresence::Dnd => "Do not disturb",
        }
    }

    /// Whether Teams reporting `presence` can be this session showing through: its own pair,
    /// or the same availability with the plain activity (our "In a call" comes back as
    /// Busy/Busy too, reported in <https://learn.microsoft.com/en-us/answers/questions/2237086>).
    pub fn is_echo(self, presence: &TeamsPresence) -> bool {
        let (availability, activity) = self.pair();
        presence.availability == availability
            && (presence.activity == activity || presence.activity == availability)
    }
}

/// `sync.pbx_dnd_to_teams`: whether and how the phone's Do Not Disturb shows in Teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DndToTeams {
    /// Not at all (the default).
    #[default]
    Off,
    /// The app's own presence session says DoNotDisturb/Presenting.
    Session,
    /// setUserPreferredPresence DoNotDisturb: a real "Do not disturb" in Teams.
    Preferred,
}

impl DndToTeams {
    pub fn as_str(self) -> &'static str {
        match self {
            DndToTeams::Off => "off",
            DndToTeams::Session => "session",
            DndToTeams::Preferred => "preferred",
        }
    }

    pub fn parse(s: &str) -> Option<DndToTeams> {
        [DndToTeams::Off, DndToTeams::Session, DndToTeams::Preferred]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// What the core asks the adapters to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Write the app's presence session (on behalf of `extension`), valid for `expiration`.
    SetSession {
        extension: Extension,
        teams_id: String,
        presence: SessionPresence,
        expiration: Duration,
    },
    /// Remove the app's session (the user goes back to whatever Teams says).
    ClearSession {
        extension: Extension,
        teams_id: String,
        /// What the session said (for the journal).
        presence: SessionPresence,
    },
    /// Set the user's preferred presence to DoNotDisturb for `expiration`; `checked`: only if
    /// Teams still shows DoNotDisturb (a refresh, or one a crash left: the user may have
    /// changed it since).
    SetPreferredDnd {
        extension: Extension,
        teams_id: String,
        expiration: Duration,
        checked: bool,
    },
    /// Clear the preferred DND we set, if Teams still shows DoNotDisturb.
    ClearPreferredDnd {
        extension: Extension,
        teams_id: String,
    },
    /// Tell the PBX about a Teams presence change.
    PushToPbx {
        extension: Extension,
        email: String,
        presence: TeamsPresence,
        state: String,
    },
}

/// Whether an e-mail of the users file was found in Teams (shown by `status`, kept by the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    /// One Teams user has this mail, UPN or proxy address.
    Matched,
    /// No Teams user has it.
    NotFound,
    /// Several Teams users share it.
    Duplicate,
    /// The lookup failed for this address (e.g. Graph refused a proxyAddresses filter).
    Error,
}

impl MatchStatus {
    /// The name `status` shows and the store keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchStatus::Matched => "matched",
            MatchStatus::NotFound => "not_found",
            MatchStatus::Duplicate => "duplicate",
            MatchStatus::Error => "error",
        }
    }

    /// Read back a stored name; anything unknown is an `Error` (looked up again).
    pub fn parse(s: &str) -> MatchStatus {
        match s {
            "matched" => MatchStatus::Matched,
            "not_found" => MatchStatus::NotFound,
            "duplicate" => MatchStatus::Duplicate,
            _ => MatchStatus::Error,
        }
    }
}

impl std::fmt::Display for MatchStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
