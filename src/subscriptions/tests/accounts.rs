//! Accounts: tokens, sign-in and sign-out, adoption of what the last run left, backoff,
//! the final delete.

use super::*;

#[test]
fn an_account_is_listed_before_it_subscribes_and_its_token_comes_first() {
    let w = running(&[A], 3);
    let kinds: Vec<&str> = w
        .seen
        .iter()
        .filter_map(|c| match c {
            Command::ReadTokens => Some("read"),
            Command::RefreshToken { .. } => Some("refresh"),
            Command::List { .. } => Some("list"),
            Command::Create { .. } => Some("create"),
            Command::Save(_) => Some("save"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["read", "refresh", "list", "create", "save"]);
    let known = w.seen.iter().find_map(|c| match c {
        Command::Known(k) => Some(k.clone()),
        _ => None,
    });
    assert_eq!(known.unwrap()["sub-1"], "secret-1");
}

#[test]
fn a_refused_token_signs_the_account_out_and_its_users_are_polled() {
    let mut w = running(&[A], 3);
    w.refresh = Refresh::Refused;
    w.stored.clear();
    // The access token is refreshed 5 minutes before its hour is over.
    let round = w.at(T0 + 55 * MIN);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::RefreshToken { .. }))
    );
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::SignedOut { .. })))
    );
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::ForgetToken { account } if account == A))
    );
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "sub-1"))
    );
    assert_eq!(
        count(&round, |c| matches!(c, Command::Delete { .. })),
        0,
        "no token"
    );
    assert_eq!(published(&round)[0].covered.len(), 0);
    assert_eq!(w.p.state(A), Some(&AccountState::SignedOut));
    // Looked for a new login at each tick; "not signed in" is not said again.
    let next = w.at(T0 + 56 * MIN);
    assert!(next.iter().any(|c| matches!(c, Command::ReadTokens)));
    assert_eq!(count(&next, |c| matches!(c, Command::Report(_))), 0);
}

#[test]
fn a_signed_out_accounts_users_move_to_an_account_with_room() {
    let mut w = running(&[A, B], 10);
    assert_eq!(creates(&w.seen), vec![(A.to_owned(), 10)]);
    let round = w.feed(Input::TokenRefused {
        account: A.into(),
        error: "revoked".into(),
    });
    assert_eq!(creates(&round), vec![(B.to_owned(), 10)]);
}

#[test]
fn failures_back_off_from_10_s_doubling_to_5_minutes() {
    let mut b = None;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let next = Backoff::after(b, T0);
        waits.push((next.until - T0) / SEC);
        b = Some(next);
    }
    assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
}

#[test]
fn a_failed_create_is_said_once_retried_after_the_pause_and_listed_again() {
    let mut w = world(&[A], Vec::new(), false);
    w.create_fails
        .push_back(Failure::Other("409 Conflict".into()));
    w.create_fails
        .push_back(Failure::Other("409 Conflict".into()));
    w.feed(Input::Users(ids(0..3)));
    let first = w.feed(Input::Tick);
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::CreateFailed { first: true, .. })))
    );
    assert!(creates(&w.at(T0 + 10 * SEC - 1)).is_empty(), "paused");
    let second = w.at(T0 + 10 * SEC);
    let kinds: Vec<bool> = second
        .iter()
        .filter_map(|c| match c {
            Command::List { .. } => Some(true),
            Command::Create { .. } => Some(false),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [true, false], "listed again, then made: {second:?}");
    assert!(
        second
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::CreateFailed { first: false, .. })))
    );
    match w.p.state(A) {
        Some(AccountState::SignedIn(s)) => assert_eq!(s.backoff.unwrap().failures.get(), 2),
        other => panic!("{other:?}"),
    }
    let third = w.at(T0 + 40 * SEC);
    assert_eq!(creates(&third).len(), 1);
    assert_eq!(w.covered(), 3);
    match w.p.state(A) {
        Some(AccountState::SignedIn(s)) => assert_eq!(s.backoff, None, "reset by success"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn adoption_keeps_the_recorded_subscription_and_deletes_unknown_ones() {
    let recorded = vec![record("kept", A, false), record("gone-at-graph", A, false)];
    let mut w = world(&[A], recorded, false);
    let users = ids(0..3);
    w.listing.insert(
        A.into(),
        vec![
            listed("kept", &users, T0 + 30 * MIN),
            listed("stranger", &users, T0 + 30 * MIN),
        ],
    );
    w.feed(Input::Users(users));
    let round = w.feed(Input::Tick);
    assert!(round.iter().any(|c| matches!(c, Command::Report(Fact::Kept { subscription, users: 3, .. }) if subscription == "kept")));
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Delete { id, .. } if id == "stranger"))
    );
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "stranger"))
    );
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Drop { id } if id == "gone-at-graph"))
    );
    assert!(creates(&round).is_empty(), "kept, not made again");
    let sub = w.sub(A).unwrap();
    assert_eq!(
        (sub.id.as_str(), sub.client_state.as_str()),
        ("kept", "secret-of-kept")
    );
    assert_eq!(w.covered(), 3);
}

#[test]
fn adoption_does_not_keep_an_expired_or_foreign_subscription() {
    let recorded = vec![record("old", A, false), record("of-b", B, false)];
    let mut w = world(&[A], recorded, false);
    let users = ids(0..3);
    w.listing.insert(
        A.into(),
        vec![
            listed("old", &users, T0 - 1),
            listed("of-b", &users, T0 + MIN),
        ],
    );
    w.feed(Input::Users(users));
    let round = w.feed(Input::Tick);
    assert_eq!(count(&round, |c| matches!(c, Command::Delete { .. })), 2);
    assert_eq!(creates(&round).len(), 1);
}

#[test]
fn rich_subscriptions_of_the_last_run_are_made_again_with_a_new_certificate() {
    let settings = Settings {
        accounts: vec![A.into()],
        capacity: 650,
        rich: true,
        new_certificate: true,
    };
    let mut w = world(&[A], Vec::new(), true);
    w.p = Planner::new(settings, vec![record("rich-old", A, true)]);
    let users = ids(0..3);
    w.listing
        .insert(A.into(), vec![listed("rich-old", &users, T0 + 30 * MIN)]);
    w.feed(Input::Users(users));
    let round = w.feed(Input::Tick);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Delete { id, .. } if id == "rich-old"))
    );
    assert_eq!(creates(&round).len(), 1);
    assert!(w.sub(A).unwrap().rich);
}

#[test]
fn not_signed_in_is_said_once_and_a_later_login_is_picked_up() {
    let mut w = world(&[A], Vec::new(), false);
    w.stored.clear();
    w.feed(Input::Users(ids(0..3)));
    let first = w.feed(Input::Tick);
    assert_eq!(
        count(&first, |c| matches!(
            c,
            Command::Report(Fact::NotSignedIn { .. })
        )),
        1
    );
    let second = w.at(T0 + 30 * SEC);
    assert_eq!(count(&second, |c| matches!(c, Command::Report(_))), 0);
    assert_eq!(w.p.state(A), Some(&AccountState::NoToken { told: true }));
    w.stored.push(A.into());
    let third = w.at(T0 + MIN);
    assert!(
        third
            .iter()
            .any(|c| matches!(c, Command::UseToken { account } if account == A))
    );
    assert_eq!(creates(&third).len(), 1);
}

#[test]
fn a_passing_token_failure_pauses_and_keeps_the_subscription() {
    let mut w = running(&[A], 3);
    w.refresh = Refresh::Fails;
    let round = w.at(T0 + 55 * MIN);
    assert!(
        round
            .iter()
            .any(|c| matches!(c, Command::Report(Fact::TokenNotRefreshed { .. })))
    );
    assert_eq!(w.sub(A).unwrap().id, "sub-1");
    assert_eq!(w.p.next_deadline(w.now), Some(w.now + 10 * SEC));
}

#[test]
fn delete_all_deletes_every_subscription_and_plans_nothing_more() {
    let mut w = running(&[A, B], 700);
    let round = w.feed(Input::DeleteAll);
    assert_eq!(count(&round, |c| matches!(c, Command::Delete { .. })), 2);
    assert_eq!(count(&round, |c| matches!(c, Command::Drop { .. })), 2);
    assert!(creates(&round).is_empty());
    assert!(creates(&w.at(T0 + MIN)).is_empty());
}
