//! Lifetimes: the expiry Graph grants drives renewal, look-ups notice a subscription deleted
//! at Graph, lifecycle events, and a restart adopting what the last run recorded.

use super::*;
use crate::sync::types::millis;

fn is_renew(c: &Command) -> bool {
    matches!(c, Command::Renew { .. })
}

fn lifecycle(subscription: &str, event: &str) -> Input {
    Input::Lifecycle {
        subscription: subscription.into(),
        event: event.into(),
    }
}

/// Let time pass the way the adapter does (it wakes at each deadline) until `end`; every
/// command on the way, with the time it came at.
fn pass(w: &mut World, end: Millis) -> Vec<(Millis, Command)> {
    let mut seen = Vec::new();
    while let Some(t) = w.p.next_deadline(w.now).filter(|t| *t <= end) {
        seen.extend(w.at(t).into_iter().map(|c| (t, c)));
    }
    w.now = end;
    seen
}

fn commands(timed: &[(Millis, Command)]) -> Vec<Command> {
    timed.iter().map(|(_, c)| c.clone()).collect()
}

#[test]
fn the_expiry_graph_grants_sets_the_renewal_not_the_one_asked_for() {
    let mut w = world(&[A], Vec::new(), false);
    w.grant = Some(30 * SEC);
    w.feed(Input::Users(ids(0..3)));
    w.feed(Input::Tick);
    assert_eq!(
        w.sub(A).unwrap().expires_at,
        T0 + 30 * SEC,
        "granted, not the 55 minutes asked"
    );
    assert!(
        w.seen
            .iter()
            .any(|c| matches!(c, Command::Save(r) if r.expires_at == T0 + 30 * SEC)),
        "the store keeps what Graph returned"
    );
    // A third of the 30 s is left at 20 s.
    assert_eq!(w.p.next_deadline(w.now), Some(T0 + 20 * SEC));
    assert_eq!(count(&w.at(T0 + 20 * SEC - 1), is_renew), 0);
    assert_eq!(count(&w.at(T0 + 20 * SEC), is_renew), 1);
    assert_eq!(w.sub(A).unwrap().expires_at, T0 + 50 * SEC);
    // An hour of 30-second grants: renewed before each lapses, coverage never drops.
    let hour = commands(&pass(&mut w, T0 + 60 * MIN));
    assert!(count(&hour, is_renew) >= 170, "about every 20 s");
    assert!(creates(&hour).is_empty(), "never lapsed, never made again");
    assert!(published(&hour).is_empty(), "coverage never changed");
    assert_eq!(w.sub(A).unwrap().id, "sub-1");
    assert_eq!(w.covered(), 3);
}

#[test]
fn renewal_comes_when_the_lesser_of_15_minutes_and_a_third_of_the_grant_is_left() {
    for (grant, renew_after) in [
        (30 * SEC, 20 * SEC),
        (5 * MIN, 200 * SEC),
        (55 * MIN, 40 * MIN),
    ] {
        let mut w = world(&[A], Vec::new(), false);
        w.grant = Some(grant);
        w.feed(Input::Users(ids(0..3)));
        w.feed(Input::Tick);
        assert_eq!(
            w.sub(A).unwrap().renew_at(),
            T0 + renew_after,
            "grant {grant} ms"
        );
    }
}

#[test]
fn the_granted_lifetime_counts_from_the_request_not_from_a_late_answer() {
    let mut w = running(&[A], 3);
    let asked = w.p.handle(Input::Tick, T0 + 40 * MIN);
    assert!(asked.iter().any(|c| matches!(c,
        Command::Renew { expires_at, .. } if *expires_at == T0 + 95 * MIN)));
    // The answer comes 45 minutes late (a clock jump, a hung connection): 55 minutes were
    // granted at minute 40, so the renewal is due at minute 80, i.e. now.
    w.now = T0 + 85 * MIN;
    let late = w.feed(Input::Renewed {
        account: A.into(),
        result: Ok(Some(T0 + 95 * MIN)),
    });
    let saved = late.iter().find_map(|c| match c {
        Command::Save(r) => Some(r.expires_at),
        _ => None,
    });
    assert_eq!(saved, Some(T0 + 95 * MIN));
    assert_eq!(count(&late, is_renew), 1, "due at once: {late:?}");
}

#[test]
fn a_grant_that_has_already_passed_counts_as_a_failed_create() {
    let mut w = world(&[A], Vec::new(), false);
    w.grant = Some(0);
    w.feed(Input::Users(ids(0..3)));
    let round = w.feed(Input::Tick);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::CreateFailed { .. })))
    );
    assert_eq!(w.sub(A), None);
    assert_eq!(w.covered(), 0);
    let backoff =
        w.p.state(A)
            .and_then(AccountState::session)
            .unwrap()
            .backoff;
    assert!(backoff.is_some(), "paused, not made again in a loop");
}

#[test]
fn a_subscription_deleted_at_graph_is_made_again_within_the_renewal_margin() {
    let mut w = running(&[A], 3);
    w.now = T0 + MIN;
    w.graph.remove("sub-1");
    let timed = pass(&mut w, T0 + MIN + millis(RENEW_BEFORE));
    let made = timed
        .iter()
        .find(|(_, c)| matches!(c, Command::Create { .. }))
        .map(|(t, _)| *t);
    assert_eq!(made, Some(T0 + millis(CHECK_EVERY)), "at the first look-up");
    let seen = commands(&timed);
    assert!(
        seen.iter()
            .any(|c| matches!(c, Command::Check { id, .. } if id == "sub-1"))
    );
    assert!(seen.iter().any(|c| matches!(c,
        Command::Report(Fact::Gone { subscription, .. }) if subscription == "sub-1")));
    assert!(
        seen.iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "sub-1"))
    );
    assert_eq!(w.sub(A).unwrap().id, "sub-2");
    assert_eq!(w.covered(), 3);
}

#[test]
fn a_look_up_that_finds_a_sooner_expiry_brings_the_renewal_forward() {
    let mut w = running(&[A], 3);
    assert_eq!(w.p.next_deadline(w.now), Some(T0 + 10 * MIN), "a look-up");
    w.graph.insert("sub-1".into(), T0 + 12 * MIN);
    let round = w.at(T0 + 10 * MIN);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Save(r) if r.expires_at == T0 + 12 * MIN))
    );
    // Two minutes left: renewed when a third of them is left.
    assert_eq!(w.p.next_deadline(w.now), Some(T0 + 12 * MIN - 40 * SEC));
    assert_eq!(count(&w.at(T0 + 12 * MIN - 40 * SEC), is_renew), 1);
    assert_eq!(w.sub(A).unwrap().id, "sub-1");
}

#[test]
fn subscription_removed_makes_the_subscription_again_at_once() {
    let mut w = running(&[A], 3);
    w.graph.remove("sub-1");
    let round = w.feed(lifecycle("sub-1", "subscriptionRemoved"));
    assert!(matches!(&round[0],
        Command::Report(Fact::Lifecycle { account: Some(a), subscription, .. })
            if a == A && subscription == "sub-1"));
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "sub-1"))
    );
    assert_eq!(
        count(&round, |c| matches!(c, Command::Delete { .. })),
        0,
        "Graph removed it already"
    );
    assert_eq!(
        count(&round, is_renew),
        0,
        "not renewed first: Graph said it is gone"
    );
    assert_eq!(creates(&round), vec![(A.to_owned(), 3)]);
    assert_eq!(w.sub(A).unwrap().id, "sub-2");
    assert_eq!(w.covered(), 3);
}

#[test]
fn missed_reads_the_users_of_that_subscription_at_once() {
    let mut w = running(&[A, B], 700);
    let of_b = w.sub(B).unwrap();
    let round = w.feed(lifecycle(&of_b.id, "missed"));
    let reads: Vec<&Vec<Arc<str>>> = round
        .iter()
        .filter_map(|c| match c {
            Command::Read { ids } => Some(ids),
            _ => None,
        })
        .collect();
    assert_eq!(reads, vec![&of_b.ids], "B's 50 users, not A's");
    assert_eq!(reads[0].len(), 50);
    assert!(creates(&round).is_empty());
    assert_eq!(count(&round, is_renew), 0);
    assert_eq!(w.covered(), 700, "still covered");
}

#[test]
fn a_lifecycle_event_for_a_subscription_not_ours_is_only_said() {
    let mut w = running(&[A], 3);
    for event in ["subscriptionRemoved", "missed", "reauthorizationRequired"] {
        let round = w.feed(lifecycle("stranger", event));
        assert_eq!(round.len(), 1, "{event}: {round:?}");
        assert!(matches!(
            &round[0],
            Command::Report(Fact::Lifecycle { account: None, .. })
        ));
    }
    assert_eq!(w.sub(A).unwrap().id, "sub-1");
    assert_eq!(w.covered(), 3);
}

#[test]
fn a_restart_adopts_a_recorded_live_subscription_and_renews_it_by_the_lifetime_left() {
    // The last run recorded the expiry Graph returned: 30 s are left at this start.
    let mut kept = record("kept", A, false);
    kept.expires_at = T0 + 30 * SEC;
    let mut w = world(&[A], vec![kept, record("lost", A, false)], false);
    w.grant = Some(30 * SEC);
    let users = ids(0..3);
    w.graph.insert("kept".into(), T0 + 30 * SEC);
    w.listing
        .insert(A.into(), vec![listed("kept", &users, T0 + 30 * SEC)]);
    w.feed(Input::Users(users));
    let round = w.feed(Input::Tick);
    assert!(round.iter().any(|c| matches!(c,
        Command::Report(Fact::Kept { subscription, .. }) if subscription == "kept")));
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "lost")),
        "Graph no longer has it"
    );
    assert!(creates(&round).is_empty(), "reused, not made again");
    assert_eq!(w.p.next_deadline(w.now), Some(T0 + 20 * SEC));
    let later = commands(&pass(&mut w, T0 + 10 * MIN));
    assert!(count(&later, is_renew) >= 25);
    assert!(creates(&later).is_empty());
    assert_eq!(w.sub(A).unwrap().id, "kept");
}

#[test]
fn a_restart_uses_the_recorded_expiry_when_graphs_cannot_be_read() {
    let unreadable = |id: &str, users: &Arc<Vec<Arc<str>>>| Listed {
        id: id.into(),
        ids: users.to_vec(),
        expires_at: None,
        elsewhere: None,
    };
    let users = ids(0..3);
    // Recorded as good for 30 more minutes: kept.
    let mut w = world(&[A], vec![record("kept", A, false)], false);
    w.listing.insert(A.into(), vec![unreadable("kept", &users)]);
    w.feed(Input::Users(users.clone()));
    let round = w.feed(Input::Tick);
    assert!(creates(&round).is_empty());
    assert_eq!(w.sub(A).unwrap().expires_at, T0 + 30 * MIN);
    // Recorded as expired: deleted and made again.
    let mut old = record("old", A, false);
    old.expires_at = T0 - 1;
    let mut w = world(&[A], vec![old], false);
    w.listing.insert(A.into(), vec![unreadable("old", &users)]);
    w.feed(Input::Users(users));
    let round = w.feed(Input::Tick);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Delete { id, .. } if id == "old"))
    );
    assert_eq!(creates(&round).len(), 1);
}

#[test]
fn a_recorded_subscription_notifying_another_url_is_replaced_not_adopted() {
    // Under [ha] the last leader recorded it with its own public URL (or the key changed).
    let mut w = world(&[A], vec![record("theirs", A, false)], false);
    let users = ids(0..3);
    w.graph.insert("theirs".into(), T0 + 30 * MIN);
    let mut theirs = listed("theirs", &users, T0 + 30 * MIN);
    theirs.elsewhere = Some("https://pbx1.example/graph/notify".into());
    w.listing.insert(A.into(), vec![theirs]);
    w.feed(Input::Users(users));
    let round = w.feed(Input::Tick);
    assert!(round.iter().any(|c| matches!(c,
        Command::Report(Fact::ElsewhereDeleted { subscription, url, .. })
            if subscription == "theirs" && url == "https://pbx1.example/graph/notify")));
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Delete { id, .. } if id == "theirs"))
    );
    assert!(
        !round
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::Kept { .. })))
    );
    assert_eq!(creates(&round), vec![(A.to_owned(), 3)]);
    assert_ne!(w.sub(A).map(|s| s.id.clone()).as_deref(), Some("theirs"));
}
