//! The phone's Do Not Disturb in Teams (`sync.pbx_dnd_to_teams = "session"`): scenarios on
//! the engine of `engine_tests`, with fake time.

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
