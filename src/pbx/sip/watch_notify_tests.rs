//! What NOTIFYs do to the dialogs and the call state, with plain calls and fake time; the
//! bodies are real samples (tests/fuzz/corpus/dialog_info/) or small documents, parsed by
//! `dialog_info`.

use super::tests::*;
use super::*;
#[test]
fn call_state_follows_the_dialogs_and_is_reported_on_change_only() {
    let (mut w, id) = granted();
    assert_eq!(
        w.notify(id, sample("asterisk_idle.xml")),
        [CallState::Idle],
        "first state known"
    );
    assert_eq!(
        w.notify(id, sample("asterisk_ringing.xml")),
        [CallState::Ringing]
    );
    assert_eq!(
        w.notify(id, sample("asterisk_inuse.xml")),
        [CallState::Speaking]
    );
    assert!(
        w.notify(id, sample("asterisk_onhold.xml")).is_empty(),
        "held is still a call"
    );
    assert_eq!(
        w.notify(id, body(4, true, &[("1001", "terminated")])),
        [CallState::Idle]
    );
}

#[test]
fn several_dialogs_full_and_partial_states() {
    let (mut w, id) = granted();
    let both = body(1, true, &[("a", "confirmed"), ("b", "early")]);
    assert_eq!(w.notify(id, both), [CallState::Speaking]);
    assert_eq!(
        w.notify(id, body(2, false, &[("a", "terminated")])),
        [CallState::Ringing]
    );
    assert_eq!(
        w.notify(id, body(3, false, &[("b", "confirmed")])),
        [CallState::Speaking]
    );
    assert_eq!(w.w.user("1000").unwrap().dialogs.len(), 1);
    // A full state replaces everything: dialogs it does not list are gone.
    assert_eq!(
        w.notify(id, body(4, true, &[("c", "trying")])),
        [CallState::Ringing]
    );
    assert_eq!(w.notify(id, body(5, true, &[])), [CallState::Idle]);
    // FreeSWITCH sends a held call as early with rendering off: a call.
    assert_eq!(
        w.notify(id, sample("freeswitch_hold.xml")),
        [CallState::Speaking]
    );
}

#[test]
fn old_or_repeated_versions_of_partial_states_are_ignored_and_a_new_subscription_resets_them() {
    let (mut w, id) = granted();
    assert_eq!(
        w.notify(id, body(5, true, &[("a", "confirmed")])),
        [CallState::Speaking]
    );
    assert!(
        w.notify(id, body(5, false, &[("a", "terminated")]))
            .is_empty(),
        "same version"
    );
    assert!(
        w.notify(id, body(4, false, &[("a", "terminated")]))
            .is_empty(),
        "older version"
    );
    assert_eq!(w.w.user("1000").unwrap().version, Some(5));
    // The PBX ends it; the new subscription counts from 0 again.
    w.feed(Input::Failed {
        id,
        failure: Failure::Status(481),
    });
    let id = subscribed(&w.at(w.w.next_deadline(w.now).unwrap()))[0];
    assert!(
        w.notify(id, body(0, true, &[("a", "confirmed")]))
            .is_empty(),
        "applied, unchanged"
    );
    assert_eq!(w.w.user("1000").unwrap().version, Some(0));
}

#[test]
fn a_partial_state_before_the_first_full_one_is_ignored() {
    let (mut w, id) = granted();
    assert!(w.notify(id, sample("chan_sip_partial.xml")).is_empty());
    assert_eq!(w.w.user("1000").unwrap().reported, None);
    assert_eq!(
        w.notify(id, sample("kamailio_two_dialogs.xml")),
        [CallState::Speaking]
    );
}

#[test]
fn a_notify_without_body_is_no_dialogs_when_active_and_nothing_when_pending() {
    let (mut w, id) = granted();
    let empty = |state| Input::Notified {
        id,
        state,
        body: None,
    };
    assert!(states(&w.feed(empty(SubState::Pending))).is_empty());
    assert_eq!(states(&w.feed(empty(active()))), [CallState::Idle]);
}

#[test]
fn after_a_pbx_restart_the_first_full_state_settles_the_user() {
    let (mut w, id) = granted();
    assert_eq!(
        w.notify(id, sample("asterisk_inuse.xml")),
        [CallState::Speaking]
    );
    let out = w.feed(Input::PbxRestarted);
    assert_eq!(out, vec![Command::Forget { id }]);
    assert_eq!(
        w.w.user("1000").unwrap().call_state(),
        CallState::Speaking,
        "no flapping meanwhile"
    );
    let new = w.run_until(w.now + 2 * SEC);
    let Some((_, Command::Subscribe { id: new, .. })) = new.first() else {
        panic!("{new:?}")
    };
    // The call was cut while the subscription was away: the first full state has no dialog.
    assert_eq!(
        w.notify(*new, sample("asterisk_idle.xml")),
        [CallState::Idle]
    );
    // A late NOTIFY of the old subscription changes nothing.
    assert!(
        w.notify(id, body(9, true, &[("x", "confirmed")]))
            .is_empty()
    );
}

/// FreeSWITCH writes `version=""` when its event has no count: such full states are taken as
/// they come (nothing to order them by), partial ones cannot be and are ignored.
#[test]
fn unversioned_full_states_are_taken_and_unversioned_partial_ones_ignored() {
    let doc = |state: &str, dialog: &str| {
        let text = format!(
            r#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="" state="{state}" entity="sip:1000@pbx"><dialog id="a"><state>{dialog}</state></dialog></dialog-info>"#
        );
        crate::pbx::sip::dialog_info::parse(text.as_bytes()).unwrap()
    };
    let (mut w, id) = granted();
    assert_eq!(
        w.notify(id, doc("full", "confirmed")),
        [CallState::Speaking]
    );
    assert!(w.notify(id, doc("partial", "terminated")).is_empty());
    assert_eq!(w.notify(id, doc("full", "terminated")), [CallState::Idle]);
    assert_eq!(w.notify(id, doc("full", "early")), [CallState::Ringing]);
}

/// Asterisk killed mid-call and started again sends the call's end in the same dialog with a
/// version equal to or lower than the last one (tests/pbx/README.md): a full state is the
/// whole truth and is taken whatever its version, so the call ends.
#[test]
fn a_full_state_is_taken_whatever_its_version() {
    let (mut w, id) = granted();
    assert_eq!(
        w.notify(id, body(2, true, &[("1001", "confirmed")])),
        [CallState::Speaking]
    );
    assert_eq!(
        w.notify(id, body(2, true, &[("1001", "terminated")])),
        [CallState::Idle],
        "same version, after a hard restart"
    );
    assert_eq!(
        w.notify(id, body(3, true, &[("1001", "confirmed")])),
        [CallState::Speaking]
    );
    assert_eq!(
        w.notify(id, body(1, true, &[("1001", "terminated")])),
        [CallState::Idle],
        "lower version, after a hard restart"
    );
    assert_eq!(
        w.w.user("1000").unwrap().version,
        Some(1),
        "numbering starts over"
    );
    assert!(
        w.notify(id, body(1, false, &[("1001", "confirmed")]))
            .is_empty()
    );
}

#[test]
fn a_granted_subscription_without_notify_is_made_again_after_32_s() {
    let (mut w, out) = world(1, settings());
    let id = subscribed(&out)[0];
    let granted = Input::Accepted {
        id,
        expires: secs(600),
    };
    assert!(w.feed(granted).is_empty());
    assert_eq!(
        w.w.next_deadline(w.now),
        Some(T0 + 32 * SEC),
        "not at 480 s"
    );
    let out = w.at(T0 + 32 * SEC);
    let unheard = Fact::Unheard {
        extension: "1000".into(),
        uri: "sip:1000@pbx.example.com".into(),
    };
    assert_eq!(
        out,
        vec![Command::Fact(unheard), Command::Unsubscribe { id }],
        "said, and ended on the PBX's side too"
    );
    assert_eq!(w.sub(), Sub::Idle);
    // Again after the backoff; unheard a second time: made again, not said again.
    let again = w.run_until(T0 + 35 * SEC);
    let [(_, Command::Subscribe { id: second, .. })] = again.as_slice() else {
        panic!("{again:?}")
    };
    let second = *second;
    w.feed(Input::Accepted {
        id: second,
        expires: secs(600),
    });
    let out = w.run_until(w.now + 32 * SEC);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].1, Command::Unsubscribe { id: second });
    // A subscription heard from is refreshed as usual, and the next silence is said again.
    let third = subscribed(
        &w.run_until(w.now + 10 * SEC)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>(),
    )[0];
    w.feed(Input::Accepted {
        id: third,
        expires: secs(600),
    });
    assert_eq!(
        w.notify(third, sample("asterisk_idle.xml")),
        [CallState::Idle]
    );
    assert_eq!(w.w.next_deadline(w.now), Some(w.now + 480 * SEC));
    assert_eq!(
        w.w.user("1000").unwrap().failures,
        0,
        "heard: the backoff starts over"
    );
}

#[test]
fn a_notify_before_the_2xx_counts_as_heard() {
    let (mut w, out) = world(1, settings());
    let id = subscribed(&out)[0];
    assert_eq!(w.notify(id, sample("asterisk_idle.xml")), [CallState::Idle]);
    w.feed(Input::Accepted {
        id,
        expires: secs(600),
    });
    assert_eq!(w.w.next_deadline(w.now), Some(T0 + 480 * SEC));
    assert!(w.run_until(T0 + 479 * SEC).is_empty());
}
