//! Every parser of outside input, fed arbitrary and mutated bytes (property tests with
//! proptest: `cargo fuzz` needs a nightly toolchain, which CI does not have). Each target
//! starts from the seeds in `tests/fuzz/corpus/<target>/`, mutates them (bytes replaced,
//! inserted, removed, cut) or makes up bytes of its own, and asserts no panic and no state
//! change from refused input. Each prints how many inputs it ran and how many were refused.
//! More runs: `FUZZ_SCALE=10 cargo nextest run --test fuzz_inputs`.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod fuzz;

use std::path::Path;

use fuzz::{Tally, bytes, cases, run};
use pbx_teams_presence::config::{Config, parse_users};
use pbx_teams_presence::graph::notify_crypto::{EncryptedContent, KeyStore, decrypt};
use pbx_teams_presence::pbx::asterisk::events::{Parsed, parse};
use pbx_teams_presence::pbx::http::parse_batch;
use pbx_teams_presence::pbx::sip::dialog_info::{self, DocState, MAX_DIALOGS, MAX_TEXT};
use pbx_teams_presence::pbx::sip::notify;
use pbx_teams_presence::pbx::sip::watch::{
    Command, Input, Settings, SubId, SubState, Watch, Watched,
};

#[test]
fn pbx_event_batches_never_panic() {
    let tally = Tally::new("pbx_batch");
    run("pbx_batch", cases(20_000), |input| {
        match parse_batch(&input) {
            Ok(events) => {
                assert!(events.iter().all(|e| !e.extension.is_empty()));
                tally.accepted();
            }
            Err(why) => {
                assert!(!why.is_empty());
                tally.refused();
            }
        }
    });
    tally.report();
}

#[test]
fn ari_events_never_panic() {
    let tally = Tally::new("ari_event");
    run("ari_event", cases(20_000), |input| {
        match parse(&String::from_utf8_lossy(&input)) {
            Parsed::Device(_) | Parsed::Other(_) => tally.accepted(),
            Parsed::Invalid(_) => tally.refused(),
        }
    });
    tally.report();
}

#[test]
fn users_files_never_panic() {
    let tally = Tally::new("users_file");
    run("users_file", cases(20_000), |input| {
        match parse_users(&String::from_utf8_lossy(&input), Path::new("users.csv")) {
            Ok(_) => tally.accepted(),
            Err(e) => {
                assert!(e.to_string().contains("users.csv"), "{e}");
                tally.refused();
            }
        }
    });
    tally.report();
}

#[test]
fn config_files_never_panic() {
    let tally = Tally::new("config_file");
    // The seeds take their secrets from systemd credentials, as the shipped unit gives them.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("client-secret"), "s3cret\n").unwrap();
    std::fs::write(creds.path().join("pbx-token"), "t0ken\n").unwrap();
    let env =
        |key: &str| (key == "CREDENTIALS_DIRECTORY").then(|| creds.path().as_os_str().to_owned());
    let source = Path::new("/nonexistent/pbx-teams-presence/config.toml");
    run(
        "config_file",
        cases(5_000),
        |input| match Config::from_str_with(&String::from_utf8_lossy(&input), source, &env) {
            Ok(_) => tally.accepted(),
            Err(e) => {
                assert!(!e.to_string().is_empty());
                tally.refused();
            }
        },
    );
    tally.report();
}

/// Encrypted content as a notification carries it, half of the inputs naming our real key
/// (so the RSA, HMAC and AES steps see attacker bytes, not only the key lookup).
#[test]
fn encrypted_contents_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::load_or_create(
        dir.path(),
        std::time::SystemTime::now(),
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    let id = keys.current().certificate_id().to_owned();
    let tally = Tally::new("encrypted_content");
    run("encrypted_content", cases(2_000), |input| {
        let text = String::from_utf8_lossy(&input).replace("KEYID", &id);
        let Ok(content) = serde_json::from_str::<EncryptedContent>(&text) else {
            tally.refused();
            return;
        };
        match decrypt(&keys, &content) {
            Ok(_) => tally.accepted(),
            Err(_) => tally.refused(),
        }
    });
    tally.report();
    assert!(bytes("encrypted_content").iter().all(|s| !s.is_empty()));
}

/// A subscription core watching one user, its subscription granted.
fn granted_watch() -> (Watch, SubId) {
    let mut watch = Watch::new(Settings::default(), 0);
    let users = vec![Watched {
        extension: "1001".into(),
        uri: "sip:1001@pbx".into(),
    }];
    let Some(Command::Subscribe { id, .. }) = watch.handle(Input::Users(users), 0).pop() else {
        panic!("no SUBSCRIBE");
    };
    let expires = std::time::Duration::from_secs(600);
    watch.handle(Input::Accepted { id, expires }, 0);
    (watch, id)
}

/// NOTIFY bodies of the dialog event package (RFC 4235): refused with a typed error, or
/// accepted within the limits and fed to a subscription core as its first NOTIFY, which then
/// reports at most one call state, the one its dialogs give when the state is full.
#[test]
fn dialog_info_bodies_never_panic() {
    let tally = Tally::new("dialog_info");
    run(
        "dialog_info",
        cases(20_000),
        |input| match dialog_info::parse(&input) {
            Ok(info) => {
                assert!(info.dialogs.len() <= MAX_DIALOGS);
                assert!(info.dialogs.iter().all(|d| d.id.len() <= MAX_TEXT));
                let (mut watch, id) = granted_watch();
                let full = info.state == DocState::Full;
                let state = SubState::Active { expires: None };
                let body = Some(info);
                let out = watch.handle(Input::Notified { id, state, body }, 1);
                let reports = out
                    .iter()
                    .filter(|c| matches!(c, Command::CallState { .. }));
                assert_eq!(reports.count(), usize::from(full));
                tally.accepted();
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                tally.refused();
            }
        },
    );
    tally.report();
}

/// Whole NOTIFY messages as they come off the wire: parsed by the SIP stack (rsipstack) and
/// read as the connector reads them (Subscription-State, Event, the dialog-info body). A
/// refused one is a typed error and is never fed to the core; an accepted one changes at
/// most one user's call state.
#[test]
fn sip_notify_messages_never_panic() {
    let tally = Tally::new("sip_notify");
    run(
        "sip_notify",
        cases(20_000),
        |input| match notify::read_message(&input) {
            Ok(notice) => {
                let (mut watch, id) = granted_watch();
                let out = watch.handle(
                    Input::Notified {
                        id,
                        state: notice.state,
                        body: notice.body,
                    },
                    1,
                );
                let reports = out
                    .iter()
                    .filter(|c| matches!(c, Command::CallState { .. }));
                assert!(reports.count() <= 1);
                tally.accepted();
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                tally.refused();
            }
        },
    );
    tally.report();
}
