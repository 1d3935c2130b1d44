//! What goes into and comes out of the engine: its settings, the directory entries, what the
//! store restores after a restart, and what an event did. Re-exported by `engine`, whose paths
//! (`crate::sync::engine::EngineSettings`, ...) are the public ones.

use std::sync::Arc;
use std::time::Duration;

use super::types::{CallState, Command, Direction, DndToTeams, Extension, TeamsPresence};

/// Settings of the core, from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// setPresence `expirationDuration` (5 min .. 4 h:
    /// <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>).
    pub in_call_expiration: Duration,
    /// After a crash, how long a recorded session waits for the PBX to report a call before it
    /// is cleared.
    pub recovery_grace: Duration,
    /// Whether the phone's DND goes to Teams, and how.
    pub dnd_to_teams: DndToTeams,
}

/// One directory entry as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    /// Shared with the directory, as is the e-mail.
    pub extension: Arc<str>,
    pub email: Arc<str>,
    /// The matched Teams user id; `None` while unmatched. Shared, not copied: the id of each of
    /// 50,000 users would otherwise be held four times over.
    pub teams_id: Option<Arc<str>>,
    pub direction: Direction,
}

/// What the store remembered of a user from before a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The last presence delivered to the PBX.
    pub pushed: Option<TeamsPresence>,
    /// The last Teams presence seen.
    pub teams: Option<TeamsPresence>,
}

/// What a PBX event did, for the service's log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PbxOutcome {
    /// `None` when the extension is not in the directory (the event is ignored).
    pub previous: Option<CallState>,
    /// The phone's DND, when the event changed it (`Some(true)`: DND turned on).
    pub dnd_changed: Option<bool>,
    pub known: bool,
    pub commands: Vec<Command>,
}

/// What a Teams presence report did, for the service's log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TeamsOutcome {
    /// Extensions whose Teams presence changed (with the previous value).
    pub changed: Vec<(Extension, Option<TeamsPresence>)>,
    /// True when the change is the echo of our own "In a call" session (not pushed).
    pub echo: bool,
    pub commands: Vec<Command>,
}

/// How long after a setPresence the session is written again. Never later than 4 minutes:
/// expirationDuration has been reported ignored (always 5 min:
/// <https://learn.microsoft.com/en-us/answers/questions/1462160>), so a longer configured
/// expiration must not be trusted; and one minute before the expiry otherwise.
pub fn refresh_after(expiration: Duration) -> Duration {
    let five_min = Duration::from_secs(300);
    let margin = Duration::from_secs(60);
    expiration
        .min(five_min)
        .saturating_sub(margin)
        .max(Duration::from_secs(1))
}
