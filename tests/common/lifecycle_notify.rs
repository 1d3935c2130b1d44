//! Fixtures for change-notification scenarios: an emulator that accepts loopback `http://`
//! notification URLs, the subscription accounts, `[notifications]` in the config, `login`
//! through the real binary, and what the emulator holds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use graph_emulator::{EmulatorOptions, SubscriptionInfo};

use super::{UNBOUND, World, eventually, user};

pub const SYNC1: &str = "sync1@contoso.com";
pub const SYNC2: &str = "sync2@contoso.com";

/// Loopback `http://` notification URLs allowed; device codes polled every second.
pub fn options() -> EmulatorOptions {
    EmulatorOptions {
        allow_http_notification_urls: true,
        device_code_interval: 1,
        ..EmulatorOptions::default()
    }
}

/// A world on `emulator` options whose daemon has `[notifications]` for `accounts` (`extra`
/// appended to that section). The webhook listens on port 0; Graph posts to a relay that
/// follows it (`World::webhook_relay`).
pub async fn world(accounts: &[&str], extra: &str, emulator: EmulatorOptions) -> World {
    let mut w = World::new_with(emulator).await;
    for a in [SYNC1, SYNC2] {
        w.graph.add_user(user(a, a, Some(a), &[]));
    }
    let public = w.webhook_relay().await;
    let list: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    w.write_config(&format!(
        "\n[notifications]\nenabled = true\npublic_url = \"http://{public}/graph/notify\"\n\
         listen = \"{UNBOUND}\"\naccounts = [{}]\n{extra}",
        list.join(", ")
    ));
    w.notify_tick = Duration::from_millis(200);
    w
}

/// `pbx-teams-presence login` (the real binary); the emulator approves the code as `as_upn`.
pub async fn login(w: &World, account: &str, as_upn: &str) -> (bool, String) {
    let graph = w.graph.clone();
    let path = w.config_path();
    let (account, as_upn) = (account.to_owned(), as_upn.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
            .args(["login", "--config"])
            .arg(path)
            .args(["--account", &account])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let code = first
            .split("enter the code ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no code in {first:?}"))
            .to_owned();
        assert!(graph.approve_device_code(&code, &as_upn), "code {code}");
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let output = child.wait_with_output().unwrap();
        rest.push_str(&String::from_utf8_lossy(&output.stderr));
        (output.status.success(), first + &rest)
    })
    .await
    .unwrap()
}

/// The live subscriptions the emulator holds for `upn`.
pub fn subscriptions_of(w: &World, upn: &str) -> Vec<SubscriptionInfo> {
    w.graph
        .subscriptions()
        .into_iter()
        .filter(|s| s.creator_upn.eq_ignore_ascii_case(upn))
        .collect()
}

/// Wait until `status` says `extension` is covered by `account`.
pub async fn covered(w: &World, extension: &str, account: &str) {
    eventually(15, &format!("{extension} covered by {account}"), || {
        w.user_status(extension)["covered_by"] == account
    })
    .await;
}

/// Move the emulator's clock, then the daemon's (so the daemon never asks for an expiry the
/// emulator would take as more than 60 minutes ahead).
pub fn advance(w: &World, by: Duration) {
    w.graph.advance_clock(by);
    w.clock.advance(by);
}

/// Graph requests on `/subscriptions/{id}` with `method` that were answered `status`.
pub fn calls(w: &World, method: &str, id: &str, status: u16) -> usize {
    w.graph_requests(&format!("/subscriptions/{id}"))
        .iter()
        .filter(|r| r.method == method && r.status == status)
        .count()
}

/// Subscriptions made (`POST /subscriptions` answered 201) since the log was last cleared.
pub fn creates(w: &World) -> usize {
    w.graph_requests("/subscriptions")
        .iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .count()
}
