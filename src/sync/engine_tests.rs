//! The behaviour of the core, told as scenarios with fake time.

use std::time::Duration;

use super::*;
use crate::sync::types::DndToTeams;

#[path = "behaviour_tests.rs"]
mod behaviour;

const MIN: Millis = 60_000;

fn engine() -> Engine {
    let settings = EngineSettings {
        in_call_expiration: Duration::from_secs(300),
        recovery_grace: Duration::from_secs(15),
        dnd_to_teams: DndToTeams::Off,
    };
    let mut e = Engine::new(settings, Mapping::default());
    let cmds = e.set_users(
        vec![
            spec(
                "1001",
                "alice@contoso.com",
                Some("id-alice"),
                Direction::Both,
            ),
            spec("1002", "bob@contoso.com", Some("id-bob"), Direction::Both),
            spec("1003", "carol@contoso.com", None, Direction::Both),
            spec(
                "1011",
                "alice@contoso.com",
                Some("id-alice"),
                Direction::Both,
            ),
            spec(
                "1004",
                "dave@contoso.com",
                Some("id-dave"),
                Direction::TeamsToPbx,
            ),
        ],
        0,
    );
    assert!(cmds.is_empty());
    e
}

fn spec(ext: &str, email: &str, id: Option<&str>, direction: Direction) -> UserSpec {
    UserSpec {
        extension: ext.into(),
        email: email.into(),
        teams_id: id.map(Into::into),
        direction,
    }
}

fn ev(ext: &str, state: CallState) -> PbxEvent {
    PbxEvent {
        extension: ext.into(),
        state,
        dnd: None,
    }
}

fn set(ext: &str, id: &str) -> Command {
    set_as(ext, id, SessionPresence::InCall)
}

fn set_as(ext: &str, id: &str, presence: SessionPresence) -> Command {
    Command::SetSession {
        extension: ext.into(),
        teams_id: id.into(),
        presence,
        expiration: Duration::from_secs(300),
    }
}

fn clear(ext: &str, id: &str) -> Command {
    clear_as(ext, id, SessionPresence::InCall)
}

fn clear_as(ext: &str, id: &str, presence: SessionPresence) -> Command {
    Command::ClearSession {
        extension: ext.into(),
        teams_id: id.into(),
        presence,
    }
}

fn p(a: &str, b: &str) -> TeamsPresence {
    TeamsPresence::new(a, b)
}

#[test]
fn speaking_writes_in_a_call_and_idle_clears_it() {
    let mut e = engine();
    let out = e.on_pbx_event(&ev("1002", CallState::Speaking), 1000);
    assert_eq!(out.previous, Some(CallState::Idle));
    assert_eq!(out.commands, vec![set("1002", "id-bob")]);
    assert!(e.has_session("id-bob"));
    let out = e.on_pbx_event(&ev("1002", CallState::Idle), 2000);
    assert_eq!(out.commands, vec![clear("1002", "id-bob")]);
    assert!(!e.has_session("id-bob"));
}

#[test]
fn ringing_alone_writes_nothing() {
    let mut e = engine();
    assert!(
        e.on_pbx_event(&ev("1002", CallState::Ringing), 0)
            .commands
            .is_empty()
    );
    assert!(
        e.on_pbx_event(&ev("1002", CallState::Idle), 1)
            .commands
            .is_empty()
    );
}

#[test]
fn repeated_speaking_does_not_write_twice() {
    let mut e = engine();
    assert_eq!(
        e.on_pbx_event(&ev("1002", CallState::Speaking), 0)
            .commands
            .len(),
        1
    );
    assert!(
        e.on_pbx_event(&ev("1002", CallState::Speaking), 10)
            .commands
            .is_empty()
    );
}

#[test]
fn unknown_and_unmatched_extensions_write_nothing() {
    let mut e = engine();
    let out = e.on_pbx_event(&ev("9999", CallState::Speaking), 0);
    assert!(!out.known && out.commands.is_empty());
    let out = e.on_pbx_event(&ev("1003", CallState::Speaking), 0);
    assert!(out.known && out.commands.is_empty());
}

#[test]
fn opted_out_direction_writes_nothing_to_teams() {
    let mut e = engine();
    assert!(
        e.on_pbx_event(&ev("1004", CallState::Speaking), 0)
            .commands
            .is_empty()
    );
}

#[test]
fn long_call_is_refreshed_before_expiry() {
    let mut e = engine();
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    assert_eq!(e.next_deadline(), Some(4 * MIN));
    assert!(e.on_tick(4 * MIN - 1).is_empty());
    assert_eq!(e.on_tick(4 * MIN), vec![set("1002", "id-bob")]);
    assert_eq!(e.next_deadline(), Some(8 * MIN));
    assert_eq!(e.on_tick(8 * MIN + 5), vec![set("1002", "id-bob")]);
}

#[test]
fn refresh_is_capped_by_the_reported_five_minute_expiry() {
    assert_eq!(
        refresh_after(Duration::from_secs(300)),
        Duration::from_secs(240)
    );
    assert_eq!(
        refresh_after(Duration::from_secs(4 * 3600)),
        Duration::from_secs(240)
    );
}

#[test]
fn two_extensions_of_one_user_share_one_session() {
    let mut e = engine();
    assert_eq!(
        e.on_pbx_event(&ev("1001", CallState::Speaking), 0).commands,
        vec![set("1001", "id-alice")]
    );
    assert!(
        e.on_pbx_event(&ev("1011", CallState::Speaking), 1)
            .commands
            .is_empty()
    );
    assert!(
        e.on_pbx_event(&ev("1001", CallState::Idle), 2)
            .commands
            .is_empty()
    );
    assert_eq!(
        e.on_pbx_event(&ev("1011", CallState::Idle), 3).commands,
        vec![clear("1011", "id-alice")]
    );
}

#[test]
fn teams_change_is_pushed_once() {
    let mut e = engine();
    let out = e.on_teams_presence("id-bob", &p("Busy", "InAMeeting"), 0);
    assert_eq!(out.changed.len(), 1);
    assert_eq!(
        out.commands,
        vec![Command::PushToPbx {
            extension: "1002".into(),
            email: "bob@contoso.com".into(),
            presence: p("Busy", "InAMeeting"),
            state: "in_meeting".into(),
        }]
    );
    let again = e.on_teams_presence("id-bob", &p("Busy", "InAMeeting"), 0);
    assert!(again.changed.is_empty() && again.commands.is_empty());
}

#[test]
fn teams_change_reaches_every_extension_of_the_user() {
    let mut e = engine();
    let out = e.on_teams_presence("id-alice", &p("Away", "Away"), 0);
    assert_eq!(out.commands.len(), 2);
}

#[test]
fn our_own_in_a_call_echo_is_not_pushed_back() {
    let mut e = engine();
    e.on_teams_presence("id-bob", &p("Available", "Available"), 0);
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    let out = e.on_teams_presence("id-bob", &p("Busy", "InACall"), 0);
    assert!(out.echo);
    assert!(out.commands.is_empty());
    let out = e.on_teams_presence("id-bob", &p("Busy", "Busy"), 0);
    assert!(out.commands.is_empty(), "Busy/Busy is an echo too");
    e.on_pbx_event(&ev("1002", CallState::Idle), 1);
    let out = e.on_teams_presence("id-bob", &p("Available", "Available"), 0);
    assert!(out.commands.is_empty(), "back to what the PBX already has");
}

#[test]
fn a_real_teams_state_during_our_session_is_pushed() {
    let mut e = engine();
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    let out = e.on_teams_presence("id-bob", &p("DoNotDisturb", "Presenting"), 0);
    assert_eq!(out.commands.len(), 1);
}

#[test]
fn teams_to_pbx_opt_out_is_not_pushed_or_polled() {
    let mut e = engine();
    e.set_users(
        vec![spec(
            "1002",
            "bob@contoso.com",
            Some("id-bob"),
            Direction::PbxToTeams,
        )],
        0,
    );
    assert!(
        e.on_teams_presence("id-bob", &p("Away", "Away"), 0)
            .commands
            .is_empty()
    );
    assert!(e.poll_ids().is_empty());
}

#[test]
fn poll_ids_are_matched_users_once_each() {
    let e = engine();
    let mut ids = e.poll_ids();
    ids.sort();
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    assert_eq!(ids, vec!["id-alice", "id-bob", "id-dave"]);
}

#[test]
fn shutdown_clears_every_session() {
    let mut e = engine();
    e.on_pbx_event(&ev("1001", CallState::Speaking), 0);
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    let mut cmds = e.shutdown(0);
    cmds.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        cmds,
        vec![clear("1001", "id-alice"), clear("1002", "id-bob")]
    );
    assert!(e.shutdown(0).is_empty());
}

#[test]
fn recovered_session_is_cleared_after_the_grace() {
    let mut e = engine();
    e.restore_session("id-bob", 0);
    assert_eq!(e.next_deadline(), Some(15_000));
    assert!(e.on_tick(14_999).is_empty());
    assert_eq!(e.on_tick(15_000), vec![clear("1002", "id-bob")]);
}

#[test]
fn recovered_session_is_kept_when_the_pbx_says_still_speaking() {
    let mut e = engine();
    e.restore_session("id-bob", 0);
    let out = e.on_pbx_event(&ev("1002", CallState::Speaking), 1000);
    assert_eq!(out.commands, vec![set("1002", "id-bob")]);
    assert!(e.on_tick(15_000).is_empty());
}

#[test]
fn recovered_session_is_cleared_when_the_pbx_reports_idle() {
    let mut e = engine();
    e.restore_session("id-bob", 0);
    let out = e.on_pbx_event(&ev("1002", CallState::Idle), 1000);
    assert_eq!(out.commands, vec![clear("1002", "id-bob")]);
    assert_eq!(e.next_deadline(), None);
    assert!(e.on_tick(15_000).is_empty());
}

#[test]
fn recovered_session_waits_until_every_extension_of_the_user_is_idle() {
    let mut e = engine();
    e.restore_session("id-alice", 0);
    let out = e.on_pbx_event(&ev("1001", CallState::Idle), 1000);
    assert!(out.commands.is_empty(), "1011 not heard from yet");
    let out = e.on_pbx_event(&ev("1011", CallState::Ringing), 2000);
    assert_eq!(out.commands, vec![clear("1011", "id-alice")]);
}

#[test]
fn recovered_session_is_cleared_on_shutdown_too() {
    let mut e = engine();
    e.restore_session("id-bob", 0);
    assert_eq!(e.shutdown(0), vec![clear("1002", "id-bob")]);
}

#[test]
fn removing_a_user_clears_their_session() {
    let mut e = engine();
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    let cmds = e.set_users(
        vec![spec(
            "1001",
            "alice@contoso.com",
            Some("id-alice"),
            Direction::Both,
        )],
        5,
    );
    assert_eq!(cmds, vec![clear("1002", "id-bob")]);
}

#[test]
fn rematching_a_speaking_user_moves_the_session() {
    let mut e = engine();
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    let mut cmds = e.set_users(
        vec![spec(
            "1002",
            "bob@contoso.com",
            Some("id-bob2"),
            Direction::Both,
        )],
        5,
    );
    cmds.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(cmds, vec![clear("1002", "id-bob"), set("1002", "id-bob2")]);
}

#[test]
fn mapping_change_repushes_users_whose_state_name_changed() {
    let mut e = engine();
    e.on_teams_presence("id-bob", &p("Busy", "InAMeeting"), 0);
    e.on_teams_presence("id-dave", &p("Away", "Away"), 0);
    let act = std::collections::BTreeMap::from([("InAMeeting".to_owned(), "busy".to_owned())]);
    let cmds = e.set_mapping(Mapping::with_overrides(&act, &Default::default()));
    assert_eq!(cmds.len(), 1);
    assert!(matches!(&cmds[0], Command::PushToPbx { state, .. } if state == "busy"));
}

#[test]
fn restored_pushed_state_prevents_a_repush_after_restart() {
    let mut e = engine();
    e.restore(
        "1002",
        Restored {
            pushed: Some(p("Away", "Away")),
            teams: Some(p("Away", "Away")),
        },
    );
    assert!(
        e.on_teams_presence("id-bob", &p("Away", "Away"), 0)
            .commands
            .is_empty()
    );
    assert_eq!(
        e.on_teams_presence("id-bob", &p("Available", "Available"), 0)
            .commands
            .len(),
        1
    );
}

#[test]
fn a_stale_echo_right_after_the_call_is_not_pushed() {
    let mut e = engine();
    e.on_teams_presence("id-bob", &p("Available", "Available"), 0);
    e.on_pbx_event(&ev("1002", CallState::Speaking), 0);
    e.on_pbx_event(&ev("1002", CallState::Idle), 60_000);
    // A poll sent before the clear landed still sees our In a call.
    let out = e.on_teams_presence("id-bob", &p("Busy", "InACall"), 61_000);
    assert!(out.echo && out.commands.is_empty());
    // Later, Busy/InACall is a real Teams call and is pushed.
    e.on_tick(80_000);
    e.on_teams_presence("id-bob", &p("Available", "Available"), 80_000);
    let out = e.on_teams_presence("id-bob", &p("Busy", "InACall"), 90_000);
    assert_eq!(out.commands.len(), 1);
}

#[test]
fn undocumented_presence_values_are_kept_and_compared_exactly() {
    let mut e = engine();
    let odd = p("Busy", "InAHackathon");
    let out = e.on_teams_presence("id-bob", &odd, 0);
    assert_eq!(out.commands.len(), 1);
    assert!(
        matches!(&out.commands[0], Command::PushToPbx { presence, state, .. }
        if presence.activity == "InAHackathon" && state == "busy")
    );
    assert!(e.on_teams_presence("id-bob", &odd, 1).commands.is_empty());
    let out = e.on_teams_presence("id-bob", &p("Busy", "InAMeeting"), 2);
    assert_eq!(out.changed[0].1, Some(odd));
}

#[test]
fn repush_all_repeats_what_the_pbx_was_told_never_our_echo() {
    let mut e = engine();
    assert!(
        e.repush_all().is_empty(),
        "nothing told yet, nothing to repeat"
    );
    e.on_teams_presence("id-bob", &p("Busy", "InAMeeting"), 0);
    e.on_teams_presence("id-dave", &p("Away", "Away"), 0);
    // Bob's own call: Teams shows our In a call, the PBX keeps the meeting state.
    e.on_pbx_event(&ev("1002", CallState::Speaking), 1);
    e.on_teams_presence("id-bob", &p("Busy", "InACall"), 2);
    let mut told: Vec<(String, String)> = e
        .repush_all()
        .into_iter()
        .map(|c| match c {
            Command::PushToPbx {
                extension, state, ..
            } => (extension, state),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    told.sort();
    assert_eq!(
        told,
        [
            ("1002".into(), "in_meeting".into()),
            ("1004".into(), "away".into())
        ]
    );
}
