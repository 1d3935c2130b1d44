//! Subscriptions: assignment, renewal, reauthorization, health, coverage.

use std::sync::Arc;

use super::*;

#[test]
fn users_fill_the_accounts_in_order_and_the_rest_is_polled() {
    let w = running(&[A, B], 1400);
    assert_eq!(
        creates(&w.seen),
        vec![(A.to_owned(), 650), (B.to_owned(), 650)]
    );
    let last = *published(&w.seen).last().unwrap();
    assert_eq!(last.accounts[0].1.len(), 650);
    assert_eq!(last.accounts[1].1.len(), 650);
    assert_eq!(last.covered.len(), 1300);
    assert_eq!(last.polled, 100);
    assert_eq!(w.covered(), 1300);
}

#[test]
fn a_renewal_is_due_fifteen_minutes_before_expiry_and_not_before() {
    let mut w = running(&[A], 3);
    assert_eq!(w.sub(A).unwrap().expires_at, T0 + 55 * MIN);
    let early = w.at(T0 + 40 * MIN - 1);
    assert_eq!(count(&early, |c| matches!(c, Command::Renew { .. })), 0);
    assert_eq!(w.p.next_deadline(w.now), Some(T0 + 40 * MIN));
    let due = w.at(T0 + 40 * MIN);
    let renew = due.iter().find_map(|c| match c {
        Command::Renew { id, expires_at, .. } => Some((id.clone(), *expires_at)),
        _ => None,
    });
    assert_eq!(renew, Some(("sub-1".into(), T0 + 95 * MIN)));
    assert!(
        due.iter()
            .any(|c| matches!(c, Command::Save(r) if r.expires_at == T0 + 95 * MIN))
    );
    assert_eq!(w.sub(A).unwrap().expires_at, T0 + 95 * MIN);
    assert_eq!(w.covered(), 3);
}

#[test]
fn a_renewal_answered_404_makes_a_new_subscription() {
    let mut w = running(&[A], 3);
    w.renew_fails.push_back(Failure::Gone("expired".into()));
    let round = w.at(T0 + 41 * MIN);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "sub-1"))
    );
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::Gone { .. })))
    );
    assert_eq!(creates(&round), vec![(A.to_owned(), 3)]);
    assert_eq!(w.sub(A).unwrap().id, "sub-2");
    assert_eq!(w.covered(), 3);
}

#[test]
fn reauthorization_is_answered_by_a_renewal_at_once_and_uncovers_meanwhile() {
    let mut w = running(&[A], 3);
    let first = w.p.handle(
        Input::Lifecycle {
            subscription: "sub-1".into(),
            event: "reauthorizationRequired".into(),
        },
        w.now,
    );
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::Renew { id, .. } if id == "sub-1"))
    );
    assert_eq!(published(&first)[0].covered.len(), 0, "polled meanwhile");
    assert_eq!(w.covered(), 0);
    let after = w.feed(Input::Renewed {
        account: A.into(),
        result: Ok(Some(T0 + 55 * MIN)),
    });
    assert_eq!(published(&after)[0].covered.len(), 3);
    assert_eq!(w.sub(A).unwrap().health, Health::Healthy);
}

#[test]
fn a_change_never_notified_within_90_s_makes_the_subscription_again() {
    let mut w = running(&[A], 3);
    w.feed(Input::Suspect(Arc::from("u0001")));
    assert_eq!(w.p.next_deadline(w.now), Some(T0 + 90 * SEC));
    let early = w.at(T0 + 90 * SEC - 1);
    assert!(creates(&early).is_empty());
    let late = w.at(T0 + 90 * SEC);
    assert!(late.iter().any(|c| matches!(c,
        Command::Report(Fact::Unhealthy { subscription, user, .. })
            if subscription == "sub-1" && &**user == "u0001")));
    let delete = late
        .iter()
        .position(|c| matches!(c, Command::Delete { id, .. } if id == "sub-1"));
    let create = late
        .iter()
        .position(|c| matches!(c, Command::Create { .. }));
    assert!(delete < create, "the old one goes first: {late:?}");
    assert_eq!(w.sub(A).unwrap().id, "sub-2");
}

#[test]
fn a_notification_within_90_s_clears_the_suspect() {
    let mut w = running(&[A], 3);
    w.feed(Input::Suspect(Arc::from("u0001")));
    w.now += 30 * SEC;
    assert!(w.feed(Input::Notified("u0001".into())).is_empty());
    let later = w.at(T0 + 5 * MIN);
    assert!(creates(&later).is_empty());
    assert_eq!(w.sub(A).unwrap().id, "sub-1");
}

#[test]
fn a_changed_shard_replaces_the_subscription() {
    let mut w = running(&[A], 3);
    let round = w.feed(Input::Users(ids(0..4)));
    let delete = round
        .iter()
        .position(|c| matches!(c, Command::Delete { id, .. } if id == "sub-1"));
    assert!(delete.is_some());
    assert_eq!(creates(&round), vec![(A.to_owned(), 4)]);
    assert!(
        delete
            < round
                .iter()
                .position(|c| matches!(c, Command::Create { .. }))
    );
    // No users left: dropped, nothing made.
    let empty = w.feed(Input::Users(ids(0..0)));
    assert!(
        empty
            .iter()
            .any(|c| matches!(c, Command::Delete { id, .. } if id == "sub-2"))
    );
    assert!(creates(&empty).is_empty());
    assert_eq!(w.sub(A), None);
}

#[test]
fn an_expired_subscription_covers_nobody() {
    let mut w = running(&[A], 3);
    w.refresh = Refresh::Fails;
    w.renew_fails
        .extend((0..20).map(|_| Failure::Other("503".into())));
    // Renewals fail from minute 40 on (each failure pauses); at expiry the users are polled.
    w.at(T0 + 40 * MIN);
    assert_eq!(w.covered(), 3, "still counted healthy while retrying");
    let round = w.at(T0 + 55 * MIN);
    assert_eq!(w.covered(), 0);
    assert_eq!(published(&round)[0].covered.len(), 0);
    assert!(!w.sub(A).unwrap().covers(w.now));
}

#[test]
fn coverage_and_known_subscriptions_are_published_only_when_they_change() {
    let mut w = running(&[A], 3);
    assert_eq!(published(&w.seen).len(), 1);
    for minute in 1..10 {
        let round = w.at(T0 + minute * MIN);
        assert!(published(&round).is_empty());
        assert_eq!(count(&round, |c| matches!(c, Command::Known(_))), 0);
    }
    w.feed(Input::Suspect(Arc::from("u0002")));
    w.at(T0 + 12 * MIN);
    // Unhealthy, then a new one: published as polled, then covered by the new one.
    let last = *published(&w.seen).last().unwrap();
    assert_eq!(last.covered.len(), 3);
    assert_eq!(count(&w.seen, |c| matches!(c, Command::Known(_))), 3);
}

#[test]
fn certificate_rotation_makes_every_subscription_again() {
    let mut w = running(&[A, B], 700);
    let round = w.feed(Input::CertificateRotated);
    assert_eq!(count(&round, |c| matches!(c, Command::Delete { .. })), 2);
    assert_eq!(
        creates(&round),
        vec![(A.to_owned(), 650), (B.to_owned(), 50)]
    );
    assert_eq!(w.covered(), 700);
}

#[test]
fn an_answer_nobody_waits_for_changes_nothing() {
    let mut w = running(&[A], 3);
    let stray = w.feed(Input::Created {
        account: A.into(),
        result: Ok(Made {
            id: "stray".into(),
            client_state: "x".into(),
            expires_at: Some(T0 + 55 * MIN),
        }),
    });
    assert!(stray.is_empty());
    assert_eq!(w.sub(A).unwrap().id, "sub-1");
}
