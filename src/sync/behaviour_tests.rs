//! Teams states mapped to `keep`, and the phone's Do Not Disturb in Teams
//! (`sync.pbx_dnd_to_teams`, both modes): scenarios on the engine of `engine_tests`, with fake
//! time.

use super::*;
use crate::sync::types::millis;

fn session_engine() -> Engine {
    let mut e = engine();
    let mut settings = e.settings.clone();
    settings.dnd_to_teams = DndToTeams::Session;
    e.set_settings(settings);
    e
}

fn dnd(ext: &str, state: CallState, on: bool) -> PbxEvent {
    PbxEvent {
        extension: ext.into(),
        state,
        dnd: Some(on),
    }
}

const DND: SessionPresence = SessionPresence::Dnd;
const CALL: SessionPresence = SessionPresence::InCall;

#[test]
fn dnd_wins_over_a_call_and_neither_clears_the_session() {
    let mut e = session_engine();
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 0);
    assert_eq!(out.commands, vec![set_as("1002", "id-bob", DND)]);
    assert_eq!(out.dnd_changed, Some(true));
    // A call while in DND: the session still says DND.
    let out = e.on_pbx_event(&dnd("1002", CallState::Speaking, true), 1);
    assert!(out.commands.is_empty() && out.dnd_changed.is_none());
    // DND off during the call: "In a call".
    let out = e.on_pbx_event(&dnd("1002", CallState::Speaking, false), 2);
    assert_eq!(out.commands, vec![set_as("1002", "id-bob", CALL)]);
    assert_eq!(out.dnd_changed, Some(false));
    // An event without the dnd field keeps what is known.
    let out = e.on_pbx_event(&ev("1002", CallState::Idle), 3);
    assert_eq!(out.commands, vec![clear_as("1002", "id-bob", CALL)]);
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 4);
    assert_eq!(out.commands, vec![set_as("1002", "id-bob", DND)]);
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, false), 5);
    assert_eq!(out.commands, vec![clear_as("1002", "id-bob", DND)]);
}

#[test]
fn off_records_dnd_but_writes_nothing() {
    let mut e = engine();
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 0);
    assert!(out.commands.is_empty());
    assert_eq!(out.dnd_changed, Some(true), "still said in the journal");
    let out = e.on_pbx_event(&dnd("1002", CallState::Speaking, true), 1);
    assert_eq!(out.commands, vec![set("1002", "id-bob")]);
}

#[test]
fn a_first_report_of_no_dnd_is_no_change() {
    let mut e = session_engine();
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, false), 0);
    assert!(out.commands.is_empty() && out.dnd_changed.is_none());
}

#[test]
fn either_extension_of_a_user_in_dnd_makes_the_session_dnd() {
    let mut e = session_engine();
    // Alice: 1001 (desk phone) and 1011 (softphone).
    let out = e.on_pbx_event(&ev("1011", CallState::Speaking), 0);
    assert_eq!(out.commands, vec![set("1011", "id-alice")]);
    let out = e.on_pbx_event(&dnd("1001", CallState::Idle, true), 1);
    assert_eq!(out.commands, vec![set_as("1001", "id-alice", DND)]);
    let out = e.on_pbx_event(&dnd("1001", CallState::Idle, false), 2);
    assert_eq!(out.commands, vec![set_as("1011", "id-alice", CALL)]);
}

#[test]
fn our_dnd_read_back_from_teams_is_not_pushed_but_a_users_own_dnd_is() {
    let mut e = session_engine();
    e.on_teams_presence("id-bob", &p("Available", "Available"), 0);
    e.on_pbx_event(&dnd("1002", CallState::Idle, true), 1);
    let out = e.on_teams_presence("id-bob", &p("DoNotDisturb", "Presenting"), 2);
    assert!(out.echo && out.commands.is_empty());
    e.on_pbx_event(&dnd("1002", CallState::Idle, false), 3);
    // Graph lagging behind the clear still shows it (here as DoNotDisturb/DoNotDisturb):
    // an echo too.
    let out = e.on_teams_presence("id-bob", &p("DoNotDisturb", "DoNotDisturb"), 4);
    assert!(out.echo && out.commands.is_empty());
    // Long after: the user's own DND in Teams goes to the PBX.
    let later = 4 + millis(ECHO_GRACE);
    e.on_tick(later);
    e.on_teams_presence("id-bob", &p("Available", "Available"), later);
    let out = e.on_teams_presence("id-bob", &p("DoNotDisturb", "DoNotDisturb"), later);
    assert!(!out.echo);
    assert!(matches!(&out.commands[..], [Command::PushToPbx { state, .. }] if state == "dnd"));
}

#[test]
fn the_session_is_refreshed_as_dnd_and_a_mode_change_clears_it() {
    let mut e = session_engine();
    e.on_pbx_event(&dnd("1002", CallState::Idle, true), 0);
    let due = e.next_deadline().unwrap();
    assert_eq!(e.on_tick(due), vec![set_as("1002", "id-bob", DND)]);
    let mut settings = e.settings.clone();
    settings.dnd_to_teams = DndToTeams::Off;
    e.set_settings(settings);
    assert_eq!(
        e.reconcile_all(due + 1),
        vec![clear_as("1002", "id-bob", DND)]
    );
    assert!(!e.has_session("id-bob"));
}

fn preferred_engine() -> Engine {
    let mut e = engine();
    let mut settings = e.settings.clone();
    settings.dnd_to_teams = DndToTeams::Preferred;
    e.set_settings(settings);
    e
}

fn set_preferred(ext: &str, id: &str, checked: bool) -> Command {
    Command::SetPreferredDnd {
        extension: ext.into(),
        teams_id: id.into(),
        expiration: Duration::from_secs(300),
        checked,
    }
}

fn clear_preferred(ext: &str, id: &str) -> Command {
    Command::ClearPreferredDnd {
        extension: ext.into(),
        teams_id: id.into(),
    }
}

#[test]
fn preferred_sets_dnd_refreshes_it_checked_and_clears_it_while_calls_stay_sessions() {
    let mut e = preferred_engine();
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 0);
    assert_eq!(out.commands, vec![set_preferred("1002", "id-bob", false)]);
    // A call under DND is still "In a call" in the app's session.
    let out = e.on_pbx_event(&dnd("1002", CallState::Speaking, true), 1);
    assert_eq!(out.commands, vec![set("1002", "id-bob")]);
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 2);
    assert_eq!(out.commands, vec![clear("1002", "id-bob")]);
    // Refreshed before it expires, only if Teams still shows it (checked).
    let due = e.next_deadline().unwrap();
    assert_eq!(e.on_tick(due), vec![set_preferred("1002", "id-bob", true)]);
    // Our DoNotDisturb read back from Teams is not the user's.
    let out = e.on_teams_presence("id-bob", &p("DoNotDisturb", "DoNotDisturb"), due);
    assert!(out.echo && out.commands.is_empty());
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, false), due + 1);
    assert_eq!(out.commands, vec![clear_preferred("1002", "id-bob")]);
    assert!(!e.has_preferred("id-bob") && e.next_deadline().is_none());
}

#[test]
fn a_preferred_dnd_the_user_replaced_is_left_alone() {
    let mut e = preferred_engine();
    e.on_pbx_event(&dnd("1002", CallState::Idle, true), 0);
    e.preferred_left("id-bob");
    assert!(e.next_deadline().is_none(), "no refresh");
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, false), 1);
    assert!(out.commands.is_empty(), "no clear");
    // DND again later: ours again.
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 2);
    assert_eq!(out.commands, vec![set_preferred("1002", "id-bob", false)]);
    assert_eq!(e.shutdown(3), vec![clear_preferred("1002", "id-bob")]);
}

#[test]
fn a_preferred_dnd_left_by_a_crash_is_kept_checked_or_cleared() {
    let mut e = preferred_engine();
    e.restore_preferred("id-bob", 0);
    e.restore_preferred("id-dave", 0);
    // Bob's phone is reported in DND: kept (checked, the user may have changed it since).
    let out = e.on_pbx_event(&dnd("1002", CallState::Idle, true), 1);
    assert_eq!(out.commands, vec![set_preferred("1002", "id-bob", true)]);
    // Dave (Teams -> PBX only) is never reported: cleared after the grace.
    let grace = millis(Duration::from_secs(15));
    assert_eq!(e.on_tick(grace), vec![clear_preferred("1004", "id-dave")]);
}

/// `Offline = "keep"` (the ovice behaviour): signing out of Teams pushes nothing, coming
/// back to the state the PBX still shows pushes nothing either, and a mapping that stops
/// keeping pushes the state that was kept.
#[test]
fn a_state_mapped_to_keep_pushes_nothing() {
    let mut e = engine();
    let keep_offline = || {
        let avail = std::collections::BTreeMap::from([("Offline".to_owned(), "keep".to_owned())]);
        let act = std::collections::BTreeMap::from([("OffWork".to_owned(), "keep".to_owned())]);
        Mapping::with_overrides(&act, &avail)
    };
    assert!(e.set_mapping(keep_offline()).is_empty());
    let pushed = |o: TeamsOutcome| o.commands.len();
    assert_eq!(
        pushed(e.on_teams_presence("id-bob", &p("Available", "Available"), 0)),
        1
    );
    let signed_out = e.on_teams_presence("id-bob", &p("Offline", "Inactive"), 1);
    assert_eq!(signed_out.changed.len(), 1, "the change is seen");
    assert!(signed_out.commands.is_empty(), "but nothing is pushed");
    assert!(
        e.on_teams_presence("id-bob", &p("Offline", "Inactive"), 2)
            .commands
            .is_empty()
    );
    assert_eq!(
        pushed(e.on_teams_presence("id-bob", &p("Available", "Available"), 3)),
        0
    );
    assert_eq!(
        pushed(e.on_teams_presence("id-bob", &p("Offline", "OffWork"), 4)),
        0
    );
    let cmds = e.set_mapping(Mapping::default());
    assert_eq!(cmds.len(), 1);
    assert!(matches!(&cmds[0], Command::PushToPbx { state, .. } if state == "offline"));
    assert_eq!(
        pushed(e.on_teams_presence("id-bob", &p("Offline", "OffWork"), 5)),
        0
    );
    // Mapping the pushed state to keep pushes nothing either.
    assert!(e.set_mapping(keep_offline()).is_empty());
}
