//! The journal's story: one INFO line per state change, whose text says who and what
//! (`1001 alice@contoso.com: Teams Available -> Busy/InAMeeting (poll); PBX state in_meeting`)
//! so that `journalctl -u pbx-teams-presence` in its default short output needs nothing else.
//! The same facts are structured fields (`EXTENSION`, `EMAIL`, `TEAMS_USER`, `FROM`, `TO`,
//! ...) for `journalctl EXTENSION=1001`.

use std::borrow::Cow;
use std::fmt;

use crate::service::writer::Wanted;
use crate::sync::types::{CallState, SessionPresence, TeamsPresence};

/// Who a line is about: the extension, and the Teams account when known.
#[derive(Clone, Copy)]
pub(super) struct Who<'a> {
    pub extension: &'a str,
    pub email: Option<&'a str>,
}

impl fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.email {
            Some(email) => write!(f, "{} {email}", self.extension),
            None => f.write_str(self.extension),
        }
    }
}

/// A Teams presence as people read it: `Available`, `Busy/InAMeeting` (the activity only
/// when it says more than the availability).
pub(super) fn shown(p: &TeamsPresence) -> Cow<'_, str> {
    if p.availability == p.activity {
        Cow::Borrowed(&p.availability)
    } else {
        Cow::Owned(format!("{}/{}", p.availability, p.activity))
    }
}

/// What the PBX is told about a Teams change.
pub(super) enum Told<'a> {
    /// This PBX state is pushed.
    State(&'a str),
    /// The change is Teams showing our own "In a call": nothing is pushed.
    OwnCall,
    /// The mapping says `keep` for this Teams state: the PBX keeps what it shows.
    Kept,
    /// The user's direction is PBX -> Teams only, or the state is already there.
    Nothing,
}

/// `1001 alice@contoso.com: Teams Available -> Busy/InAMeeting (poll); PBX state in_meeting`
pub(super) fn teams_changed(
    who: Who<'_>,
    teams_user: &str,
    from: Option<&TeamsPresence>,
    to: &TeamsPresence,
    via: &str,
    told: &Told<'_>,
) {
    let from = from.map_or(Cow::Borrowed("(none)"), shown);
    let to = shown(to);
    let (pbx_state, then) = match told {
        Told::State(state) => (*state, Cow::Owned(format!("PBX state {state}"))),
        Told::OwnCall => (
            "",
            Cow::Borrowed("our own In a call, not pushed to the PBX"),
        ),
        Told::Kept => ("", Cow::Borrowed("mapped to keep, the PBX keeps its state")),
        Told::Nothing => ("", Cow::Borrowed("nothing new for the PBX")),
    };
    tracing::info!(
        extension = who.extension,
        email = who.email,
        teams_user,
        from = %from,
        to = %to,
        via,
        pbx_state,
        "{who}: Teams {from} -> {to} ({via}); {then}"
    );
}

/// `1001 alice@contoso.com: PBX idle -> speaking`
pub(super) fn pbx_changed(who: Who<'_>, from: CallState, to: CallState) {
    tracing::info!(extension = who.extension, email = who.email, from = %from, to = %to,
        "{who}: PBX {from} -> {to}");
}

/// `1001 alice@contoso.com: PBX DND on`
pub(super) fn dnd_changed(who: Who<'_>, on: bool) {
    let dnd = if on { "on" } else { "off" };
    tracing::info!(
        extension = who.extension,
        email = who.email,
        dnd,
        "{who}: PBX DND {dnd}"
    );
}

/// `1001 alice@contoso.com: speaking -> In a call written to Teams` (or `DND on -> Do not
/// disturb written to Teams`), or the clear. A refresh of a running session (`repeat`) is
/// DEBUG: one INFO line per change.
pub(super) fn session_written(
    who: Who<'_>,
    teams_user: &str,
    said: SessionPresence,
    cleared: bool,
    repeat: bool,
) {
    let shown = said.shown();
    if repeat {
        let again = if cleared {
            "cleared again"
        } else {
            "refreshed"
        };
        tracing::debug!(
            extension = who.extension,
            email = who.email,
            teams_user,
            "{who}: {shown} {again} (no change in Teams)"
        );
    } else if cleared {
        tracing::info!(
            extension = who.extension,
            email = who.email,
            teams_user,
            "{who}: {shown} cleared in Teams"
        );
    } else {
        let why = match said {
            SessionPresence::InCall => "speaking",
            SessionPresence::Dnd => "DND on",
        };
        tracing::info!(
            extension = who.extension,
            email = who.email,
            teams_user,
            "{who}: {why} -> {shown} written to Teams"
        );
    }
}

/// `1001 alice@contoso.com: writing In a call to Teams failed: <why>`, or the clear, or the
/// preferred DND's set or clear.
pub(super) fn write_failed(
    who: Who<'_>,
    teams_user: &str,
    wanted: &Wanted,
    why: &dyn fmt::Display,
) {
    let shown = wanted.presence().shown();
    let what = match wanted {
        Wanted::Session { .. } => format!("writing {shown} to Teams"),
        Wanted::Clear { .. } => format!("clearing {shown} in Teams"),
        Wanted::PreferredDnd { .. } => "setting Do not disturb as the Teams status".to_owned(),
        Wanted::ClearPreferred { .. } => "clearing the Do not disturb status in Teams".to_owned(),
    };
    tracing::warn!(extension = who.extension, email = who.email, teams_user, error = %why,
        "{who}: {what} failed: {why}");
}

/// `1002 bob@contoso.com: DND on -> Do not disturb set as the Teams status`, or its clear.
/// A refresh (a checked set) is DEBUG.
pub(super) fn preferred_written(who: Who<'_>, teams_user: &str, wanted: &Wanted) {
    match wanted {
        Wanted::PreferredDnd { checked: true, .. } => tracing::debug!(
            extension = who.extension,
            email = who.email,
            teams_user,
            "{who}: Do not disturb status refreshed in Teams"
        ),
        Wanted::ClearPreferred { .. } => tracing::info!(
            extension = who.extension,
            email = who.email,
            teams_user,
            "{who}: Do not disturb status cleared in Teams"
        ),
        _ => tracing::info!(
            extension = who.extension,
            email = who.email,
            teams_user,
            "{who}: DND on -> Do not disturb set as the Teams status"
        ),
    }
}

/// `1002 bob@contoso.com: the Teams status is no longer the Do not disturb we set ...`
pub(super) fn preferred_left(who: Who<'_>, teams_user: &str) {
    tracing::info!(
        extension = who.extension,
        email = who.email,
        teams_user,
        "{who}: the Teams status is no longer the Do not disturb we set (the user changed it); left as it is"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_is_shown_once_when_both_halves_agree() {
        let p = |a: &str, b: &str| TeamsPresence::new(a, b);
        assert_eq!(shown(&p("Available", "Available")), "Available");
        assert_eq!(shown(&p("Busy", "InAMeeting")), "Busy/InAMeeting");
    }

    #[test]
    fn who_names_the_extension_and_the_account_when_known() {
        let who = |email| Who {
            extension: "1001",
            email,
        };
        assert_eq!(
            who(Some("alice@contoso.com")).to_string(),
            "1001 alice@contoso.com"
        );
        assert_eq!(who(None).to_string(), "1001");
    }
}
