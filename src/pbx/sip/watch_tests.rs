//! The dialog-subscription core with plain calls and fake time: the schedule (SUBSCRIBE
//! pacing, refreshes, backoff, refusals, users coming and going). What NOTIFYs do is in
//! `watch_notify_tests.rs`, with the helpers here.

use super::*;
use crate::pbx::sip::dialog_info::parse;

pub(super) const SEC: Millis = 1_000;
pub(super) const T0: Millis = 1_800_000_000_000;

pub(super) fn settings() -> Settings {
    Settings {
        rate: 10,
        burst: 5,
        seed: 7,
        ..Settings::default()
    }
}

pub(super) struct W {
    pub(super) w: Watch,
    pub(super) now: Millis,
}

pub(super) fn watched(n: usize) -> Vec<Watched> {
    (0..n)
        .map(|i| Watched {
            extension: Arc::from(format!("{}", 1000 + i)),
            uri: Arc::from(format!("sip:{}@pbx.example.com", 1000 + i)),
        })
        .collect()
}

pub(super) fn world(users: usize, settings: Settings) -> (W, Vec<Command>) {
    let mut w = W {
        w: Watch::new(settings, T0),
        now: T0,
    };
    let out = w.feed(Input::Users(watched(users)));
    (w, out)
}

/// One user "1000", subscribed, granted 600 s and heard from (a NOTIFY saying `pending`,
/// which changes no state); returns its subscription.
pub(super) fn granted() -> (W, SubId) {
    let (mut w, out) = world(1, settings());
    let id = subscribed(&out)[0];
    assert!(
        w.feed(Input::Accepted {
            id,
            expires: secs(600)
        })
        .is_empty()
    );
    assert!(w.feed(pending(id)).is_empty());
    (w, id)
}

/// A NOTIFY without body saying `pending`.
pub(super) fn pending(id: SubId) -> Input {
    Input::Notified {
        id,
        state: SubState::Pending,
        body: None,
    }
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn subscribed(out: &[Command]) -> Vec<SubId> {
    out.iter()
        .filter_map(|c| match c {
            Command::Subscribe { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

pub(super) fn states(out: &[Command]) -> Vec<CallState> {
    out.iter()
        .filter_map(|c| match c {
            Command::CallState { state, .. } => Some(*state),
            _ => None,
        })
        .collect()
}

pub(super) fn body(version: u32, full: bool, dialogs: &[(&str, &str)]) -> DialogInfo {
    let inner: String = dialogs
        .iter()
        .map(|(id, state)| format!(r#"<dialog id="{id}"><state>{state}</state></dialog>"#))
        .collect();
    let kind = if full { "full" } else { "partial" };
    let text = format!(
        r#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="{kind}" entity="sip:1000@pbx">{inner}</dialog-info>"#
    );
    parse(text.as_bytes()).unwrap()
}

pub(super) fn sample(name: &str) -> DialogInfo {
    let path = format!(
        "{}/tests/fuzz/corpus/dialog_info/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    parse(&std::fs::read(path).unwrap()).unwrap()
}

pub(super) fn active() -> SubState {
    SubState::Active { expires: None }
}

impl W {
    pub(super) fn feed(&mut self, input: Input) -> Vec<Command> {
        self.w.handle(input, self.now)
    }

    pub(super) fn notify(&mut self, id: SubId, body: DialogInfo) -> Vec<CallState> {
        states(&self.feed(Input::Notified {
            id,
            state: active(),
            body: Some(body),
        }))
    }

    /// Moves time to `at` and ticks.
    pub(super) fn at(&mut self, at: Millis) -> Vec<Command> {
        self.now = at;
        self.feed(Input::Tick)
    }

    /// Ticks at each deadline until `until`; returns every command with its time.
    pub(super) fn run_until(&mut self, until: Millis) -> Vec<(Millis, Command)> {
        let mut all = Vec::new();
        while let Some(next) = self.w.next_deadline(self.now) {
            if next > until {
                break;
            }
            let out = self.at(next.max(self.now));
            all.extend(out.into_iter().map(|c| (self.now, c)));
        }
        self.now = until;
        all
    }

    /// As [`W::run_until`], a PBX granting every SUBSCRIBE and refresh 600 s at once, and
    /// sending a first NOTIFY (`pending`) for each new one.
    pub(super) fn run_granting(&mut self, until: Millis) -> Vec<(Millis, Command)> {
        let mut all = Vec::new();
        while let Some(next) = self.w.next_deadline(self.now) {
            if next > until {
                break;
            }
            let out = self.at(next.max(self.now));
            for c in out {
                if let Command::Subscribe { id, .. } | Command::Refresh { id, .. } = c {
                    let granted = Input::Accepted {
                        id,
                        expires: secs(600),
                    };
                    assert!(self.feed(granted).is_empty());
                }
                if let Command::Subscribe { id, .. } = c {
                    assert!(self.feed(pending(id)).is_empty());
                }
                all.push((self.now, c));
            }
        }
        self.now = until;
        all
    }

    pub(super) fn sub(&self) -> Sub {
        self.w.user("1000").unwrap().sub
    }
}

#[test]
fn subscribes_at_start_paced_by_the_token_bucket() {
    let (mut w, out) = world(20, settings());
    assert_eq!(subscribed(&out).len(), 5, "the burst");
    assert_eq!(
        w.w.next_deadline(T0),
        Some(T0 + 100),
        "one token per 100 ms at 10/s"
    );
    assert_eq!(subscribed(&w.at(T0 + 99)).len(), 0);
    assert_eq!(subscribed(&w.at(T0 + 100)).len(), 1);
    let rest = w.run_until(T0 + 10 * SEC);
    let sends: Vec<Millis> = rest
        .iter()
        .filter(|(_, c)| matches!(c, Command::Subscribe { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(sends.len(), 14);
    assert_eq!(
        sends.last(),
        Some(&(T0 + 1_500)),
        "20 users: 5 at once, then 10 a second"
    );
    let Command::Subscribe { uri, expires, .. } = &out[0] else {
        panic!()
    };
    assert!(uri.starts_with("sip:10") && uri.ends_with("@pbx.example.com"));
    assert_eq!(*expires, secs(600));
}

#[test]
fn five_thousand_users_at_fifty_a_second_take_a_hundred_seconds() {
    let settings = Settings {
        rate: 50,
        burst: 50,
        ..settings()
    };
    let (mut w, out) = world(5_000, settings);
    assert_eq!(subscribed(&out).len(), 50);
    for id in subscribed(&out) {
        w.feed(Input::Accepted {
            id,
            expires: secs(600),
        });
        w.feed(pending(id));
    }
    let all = w.run_granting(T0 + 200 * SEC);
    let sends: Vec<Millis> = all
        .iter()
        .filter(|(_, c)| matches!(c, Command::Subscribe { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(sends.len(), 4_950);
    assert_eq!(sends.last(), Some(&(T0 + 99 * SEC)));
    // In any one second after the burst, at most 50.
    let in_second = |s: Millis| sends.iter().filter(|t| (**t - T0) / SEC == s).count();
    assert!((1..99).all(|s| in_second(s) <= 50));
    assert_eq!(w.w.subscribed(), 5_000);
}

#[test]
fn refreshes_at_eighty_percent_of_the_granted_expiry() {
    let (mut w, id) = granted();
    assert_eq!(w.w.next_deadline(w.now), Some(T0 + 480 * SEC));
    assert!(w.at(T0 + 479 * SEC).is_empty());
    let out = w.at(T0 + 480 * SEC);
    assert_eq!(
        out,
        vec![Command::Refresh {
            id,
            expires: secs(600)
        }]
    );
    assert!(matches!(w.sub(), Sub::Refreshing { .. }));
    // Granted less this time: the next refresh follows what was granted.
    assert!(
        w.feed(Input::Accepted {
            id,
            expires: secs(100)
        })
        .is_empty()
    );
    assert_eq!(w.w.next_deadline(w.now), Some(w.now + 80 * SEC));
    // A NOTIFY saying less is left brings the refresh forward.
    w.feed(Input::Notified {
        id,
        state: SubState::Active {
            expires: Some(secs(10)),
        },
        body: None,
    });
    assert_eq!(w.w.next_deadline(w.now), Some(w.now + 8 * SEC));
}

#[test]
fn a_481_to_a_refresh_makes_a_new_subscription_after_a_backoff() {
    let (mut w, id) = granted();
    w.at(T0 + 480 * SEC);
    let out = w.feed(Input::Failed {
        id,
        failure: Failure::Status(481),
    });
    assert_eq!(out, vec![Command::Forget { id }]);
    assert_eq!(w.sub(), Sub::Idle);
    let next = w.w.next_deadline(w.now).unwrap();
    let wait = next - w.now;
    assert!(
        (SEC..=2 * SEC).contains(&wait),
        "first backoff in [base/2, base]: {wait}"
    );
    let out = w.at(next);
    let new = subscribed(&out);
    assert_eq!(new.len(), 1);
    assert_ne!(new[0], id);
    // Answers about the old subscription change nothing now.
    assert!(
        w.feed(Input::Accepted {
            id,
            expires: secs(600)
        })
        .is_empty()
    );
    assert_eq!(w.sub(), Sub::Asking { id: new[0] });
}

#[test]
fn failures_in_a_row_back_off_exponentially_with_seeded_jitter() {
    let waits = |seed: u64| {
        let (mut w, out) = world(1, Settings { seed, ..settings() });
        let mut id = subscribed(&out)[0];
        let mut waits = Vec::new();
        for _ in 0..9 {
            w.feed(Input::Failed {
                id,
                failure: Failure::Status(503),
            });
            let next = w.w.next_deadline(w.now).unwrap();
            waits.push(next - w.now);
            id = subscribed(&w.at(next))[0];
        }
        waits
    };
    let a = waits(1);
    for (n, wait) in a.iter().enumerate() {
        let ceiling = (2 * SEC * (1 << n)).min(300 * SEC);
        assert!(
            *wait >= ceiling / 2 && *wait <= ceiling,
            "failure {}: {wait}",
            n + 1
        );
    }
    assert_eq!(a, waits(1), "same seed, same waits");
    assert_ne!(a, waits(2), "another seed, other waits");
}

#[test]
fn an_unanswered_subscribe_times_out_and_is_made_again() {
    let (mut w, out) = world(1, settings());
    let id = subscribed(&out)[0];
    assert_eq!(w.w.next_deadline(w.now), Some(T0 + 40 * SEC));
    let out = w.at(T0 + 40 * SEC);
    assert_eq!(out, vec![Command::Forget { id }]);
    let again = w.run_until(T0 + 45 * SEC);
    assert!(matches!(again.as_slice(), [(_, Command::Subscribe { .. })]));
    // A transport failure of a refresh goes the same way.
    let (mut w, id) = granted();
    w.at(T0 + 480 * SEC);
    assert_eq!(
        w.feed(Input::Failed {
            id,
            failure: Failure::Timeout
        }),
        vec![Command::Forget { id }]
    );
}

#[test]
fn subscription_state_terminated_makes_a_new_subscription() {
    let (mut w, id) = granted();
    let done = |reason: &str, retry: Option<u64>| Input::Notified {
        id,
        state: SubState::Terminated {
            reason: Some(reason.into()),
            retry_after: retry.map(secs),
        },
        body: None,
    };
    assert_eq!(
        w.feed(done("deactivated", None)),
        vec![Command::Forget { id }]
    );
    assert!(w.w.next_deadline(w.now).unwrap() - w.now <= 2 * SEC);
    // probation with retry-after: exactly then.
    let (mut w, id2) = granted();
    let _ = id;
    let out = w.feed(Input::Notified {
        id: id2,
        state: SubState::Terminated {
            reason: Some("probation".into()),
            retry_after: Some(secs(30)),
        },
        body: None,
    });
    assert_eq!(out, vec![Command::Forget { id: id2 }]);
    assert_eq!(w.w.next_deadline(w.now), Some(w.now + 30 * SEC));
}

#[test]
fn a_refusal_waits_long_and_is_reported_once() {
    let (mut w, out) = world(1, settings());
    let id = subscribed(&out)[0];
    let out = w.feed(Input::Failed {
        id,
        failure: Failure::Status(404),
    });
    let fact = Command::Fact(Fact::Refused {
        extension: Arc::from("1000"),
        uri: Arc::from("sip:1000@pbx.example.com"),
        why: Refusal::Status(404),
    });
    assert_eq!(out, vec![fact, Command::Forget { id }]);
    let next = w.w.next_deadline(w.now).unwrap();
    assert!(
        next - w.now >= 1_800 * SEC,
        "half an hour at least, no retry storm"
    );
    let id = subscribed(&w.at(next))[0];
    let out = w.feed(Input::Failed {
        id,
        failure: Failure::Status(403),
    });
    assert_eq!(out, vec![Command::Forget { id }], "said once");
    // Granted later (a hint was added), then refused again: said again.
    let id = subscribed(&w.at(w.w.next_deadline(w.now).unwrap()))[0];
    w.feed(Input::Accepted {
        id,
        expires: secs(600),
    });
    let out = w.feed(Input::Notified {
        id,
        state: SubState::Terminated {
            reason: Some("noresource".into()),
            retry_after: None,
        },
        body: None,
    });
    assert!(
        matches!(&out[0], Command::Fact(Fact::Refused { why: Refusal::Terminated(r), .. }) if r == "noresource")
    );
}

#[test]
fn users_removed_are_unsubscribed_and_stop_ends_everything() {
    let (mut w, out) = world(3, settings());
    let ids = subscribed(&out);
    w.feed(Input::Accepted {
        id: ids[0],
        expires: secs(600),
    });
    let out = w.feed(Input::Users(watched(1)));
    assert!(
        out.contains(&Command::Forget { id: ids[1] })
            && out.contains(&Command::Forget { id: ids[2] })
    );
    let out = w.feed(Input::Users(Vec::new()));
    assert_eq!(out, vec![Command::Unsubscribe { id: ids[0] }]);
    // A changed URI is a new subscription.
    let (mut w, id) = granted();
    let moved = vec![Watched {
        extension: Arc::from("1000"),
        uri: Arc::from("sip:1000@other"),
    }];
    let out = w.feed(Input::Users(moved));
    assert_eq!(out[0], Command::Unsubscribe { id });
    assert!(matches!(&out[1], Command::Subscribe { uri, .. } if &**uri == "sip:1000@other"));
    let out = w.feed(Input::Stop);
    assert!(matches!(out.as_slice(), [Command::Forget { .. }]));
    assert_eq!(w.w.next_deadline(w.now), None);
    assert!(
        w.feed(Input::Users(watched(2))).is_empty(),
        "nothing new after stop"
    );
    assert_eq!(w.w.subscribed(), 0);
}
