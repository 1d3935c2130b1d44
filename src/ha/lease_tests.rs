//! The lease core with plain calls and made-up instants.

use std::time::Duration;

use tokio::time::Instant;

use super::lease::{Answer, Ask, Command, Elector, Holder, LeaseSettings, Previous, Role, Why};

const LEASE: Duration = Duration::from_secs(10);

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn elector() -> (Elector, Instant) {
    let t0 = crate::clock::monotonic();
    (Elector::new(LeaseSettings::for_lease(LEASE), t0), t0)
}

fn other(epoch: i64, expires_in: f64) -> Holder {
    Holder {
        node: "pbx2".into(),
        epoch,
        expires_in: s(expires_in),
    }
}

/// Ask, then answer at once; returns what the answer produced.
fn round(e: &mut Elector, now: Instant, answer: Answer) -> Vec<Command> {
    let asked = e.tick(now);
    assert!(
        matches!(asked.last(), Some(Command::Ask(_))),
        "no question at {:?}: {asked:?}",
        now.elapsed()
    );
    e.answered(now, answer, now)
}

fn lead(e: &mut Elector, now: Instant, epoch: i64) {
    let got = round(
        e,
        now,
        Answer::Held {
            epoch,
            previous: None,
        },
    );
    assert_eq!(
        got,
        vec![Command::Lead {
            epoch,
            previous: None
        }]
    );
}

#[test]
fn a_standby_asks_at_once_and_leads_when_granted() {
    let (mut e, t0) = elector();
    assert_eq!(e.tick(t0), vec![Command::Ask(Ask::Acquire)]);
    let previous = Previous {
        node: "pbx2".into(),
        epoch: 6,
        expired_for: s(0.4),
        released: false,
    };
    let got = e.answered(
        t0,
        Answer::Held {
            epoch: 7,
            previous: Some(previous.clone()),
        },
        t0 + s(0.01),
    );
    assert_eq!(
        got,
        vec![Command::Lead {
            epoch: 7,
            previous: Some(previous)
        }]
    );
    assert_eq!(e.role(), Role::Leader { epoch: 7 });
    // The fence counts from when the question was sent: lease minus margin (10 - 2 s).
    assert_eq!(e.valid_until(), Some(t0 + s(8.0)));
}

#[test]
fn the_leader_renews_its_epoch_every_fifth_of_the_lease() {
    let (mut e, t0) = elector();
    lead(&mut e, t0, 3);
    assert!(e.tick(t0 + s(1.9)).is_empty(), "too early to renew");
    assert_eq!(e.next_deadline(), t0 + s(2.0));
    assert_eq!(
        e.tick(t0 + s(2.0)),
        vec![Command::Ask(Ask::Renew { epoch: 3 })]
    );
    let renewed = Answer::Held {
        epoch: 3,
        previous: None,
    };
    assert!(e.answered(t0 + s(2.0), renewed, t0 + s(2.1)).is_empty());
    assert_eq!(e.valid_until(), Some(t0 + s(10.0)));
}

#[test]
fn a_leader_that_cannot_renew_stops_a_margin_before_the_lease_runs_out() {
    let (mut e, t0) = elector();
    lead(&mut e, t0, 1);
    let mut now = t0 + s(2.0);
    // Every renewal fails (the database is unreachable); the leader keeps trying.
    while now < t0 + s(8.0) {
        for c in e.tick(now) {
            assert_eq!(c, Command::Ask(Ask::Renew { epoch: 1 }));
            assert!(
                e.answered(now, Answer::Failed("connection refused".into()), now)
                    .is_empty()
            );
        }
        assert_eq!(e.role(), Role::Leader { epoch: 1 });
        now += s(0.1);
    }
    let got = e.tick(t0 + s(8.0));
    assert_eq!(
        got.first(),
        Some(&Command::StepDown {
            epoch: 1,
            why: Why::Unconfirmed {
                last_error: Some("connection refused".into())
            }
        })
    );
    assert_eq!(e.role(), Role::Standby);
    assert_eq!(e.valid_until(), None);
}

#[test]
fn a_frozen_leader_steps_down_before_it_asks_anything() {
    let (mut e, t0) = elector();
    lead(&mut e, t0, 4);
    // SIGSTOP for 30 s: the first thing it does when it runs again is to stop leading.
    let got = e.tick(t0 + s(30.0));
    assert_eq!(
        got,
        vec![
            Command::StepDown {
                epoch: 4,
                why: Why::Unconfirmed { last_error: None }
            },
            Command::Ask(Ask::Acquire),
        ]
    );
}

#[test]
fn another_holder_deposes_the_leader_and_is_remembered() {
    let (mut e, t0) = elector();
    lead(&mut e, t0, 2);
    let got = round(&mut e, t0 + s(2.0), Answer::Taken(other(3, 9.5)));
    assert_eq!(
        got,
        vec![Command::StepDown {
            epoch: 2,
            why: Why::Taken(other(3, 9.5))
        }]
    );
    assert_eq!(e.seen(), Some(&other(3, 9.5)));
    // As a standby it asks again every tenth of the lease.
    assert_eq!(e.next_deadline(), t0 + s(3.0));
}

#[test]
fn a_standby_keeps_asking_until_the_lease_is_free() {
    let (mut e, t0) = elector();
    let mut now = t0;
    for expires_in in [9.0, 8.0, 7.0] {
        assert!(round(&mut e, now, Answer::Taken(other(5, expires_in))).is_empty());
        now = e.next_deadline();
    }
    assert_eq!(now, t0 + s(3.0));
    lead(&mut e, now, 6);
}

#[test]
fn an_answer_to_a_question_given_up_on_is_ignored() {
    let (mut e, t0) = elector();
    assert_eq!(e.tick(t0), vec![Command::Ask(Ask::Acquire)]);
    // No answer for a whole lease: the question is dropped and asked again.
    assert_eq!(e.next_deadline(), t0 + LEASE);
    assert_eq!(e.tick(t0 + LEASE), vec![Command::Ask(Ask::Acquire)]);
    let late = Answer::Held {
        epoch: 9,
        previous: None,
    };
    assert!(e.answered(t0, late, t0 + LEASE).is_empty());
    assert_eq!(e.role(), Role::Standby);
}

#[test]
fn a_grant_that_arrives_too_late_to_act_on_is_not_taken_up() {
    let (mut e, t0) = elector();
    assert_eq!(e.tick(t0), vec![Command::Ask(Ask::Acquire)]);
    let grant = Answer::Held {
        epoch: 2,
        previous: None,
    };
    // The answer took longer than lease minus margin: acting on it could overlap the next
    // holder. It asks again at once instead (and gets a fresh term).
    assert!(e.answered(t0, grant, t0 + s(8.5)).is_empty());
    assert_eq!(e.role(), Role::Standby);
    assert_eq!(e.tick(t0 + s(8.5)), vec![Command::Ask(Ask::Acquire)]);
}

#[test]
fn a_renewal_confirmed_after_stepping_down_starts_no_term() {
    let (mut e, t0) = elector();
    lead(&mut e, t0, 1);
    assert_eq!(
        e.tick(t0 + s(2.0)),
        vec![Command::Ask(Ask::Renew { epoch: 1 })]
    );
    // The renewal hangs; the fence of the first grant runs out at 8 s.
    let down = e.tick(t0 + s(8.0));
    assert!(matches!(down[0], Command::StepDown { epoch: 1, .. }));
    let confirmed = Answer::Held {
        epoch: 1,
        previous: None,
    };
    assert!(e.answered(t0 + s(2.0), confirmed, t0 + s(8.1)).is_empty());
    assert_eq!(e.role(), Role::Standby);
    // The next question is an acquisition: a new term, a new epoch.
    assert_eq!(e.tick(t0 + s(8.1)), vec![Command::Ask(Ask::Acquire)]);
}
