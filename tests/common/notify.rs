//! Change-notification fixtures: a world whose daemon has `[notifications]`, `login` through
//! the real binary, and what the emulator's subscriptions and `status` say.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use graph_emulator::EmulatorOptions;

use super::{UNBOUND, World, eventually, user};

pub const SYNC1: &str = "sync1@contoso.com";
pub const SYNC2: &str = "sync2@contoso.com";

/// The emulator of these tests: loopback `http://` notification URLs, fast device codes.
pub fn options() -> EmulatorOptions {
    EmulatorOptions {
        allow_http_notification_urls: true,
        device_code_interval: 1,
        ..EmulatorOptions::default()
    }
}

/// A world whose daemon has `[notifications]` for `accounts` (`extra` appended to it).
pub async fn world(accounts: &[&str], extra: &str) -> World {
    world_with(options(), accounts, extra).await
}

/// [`world`] with the emulator's `options`.
pub async fn world_with(options: EmulatorOptions, accounts: &[&str], extra: &str) -> World {
    let mut w = World::new_with(options).await;
    for a in [SYNC1, SYNC2] {
        w.graph.add_user(user(a, a, Some(a), &[]));
    }
    notifications_config(&mut w, accounts, extra).await;
    w
}

/// The webhook listens on port 0; Graph posts to a relay that follows it (`webhook_relay`).
pub async fn notifications_config(w: &mut World, accounts: &[&str], extra: &str) {
    let public = w.webhook_relay().await;
    let list: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    w.write_config(&format!(
        "\n[notifications]\nenabled = true\npublic_url = \"http://{public}/graph/notify\"\n\
         listen = \"{UNBOUND}\"\naccounts = [{}]\n{extra}",
        list.join(", ")
    ));
    w.notify_tick = Duration::from_millis(200);
}

/// The daemon's own webhook, not through the relay Graph uses.
pub fn webhook(w: &World) -> String {
    format!("http://{}/graph/notify", w.webhook())
}

/// `pbx-teams-presence login` (the real binary); the emulator approves the code as `as_upn`.
pub async fn login(w: &World, account: &str, as_upn: &str) -> (bool, String) {
    login_with(w, &w.config_path(), account, as_upn).await
}

/// [`login`] with the config file at `path`.
pub async fn login_with(
    w: &World,
    path: &std::path::Path,
    account: &str,
    as_upn: &str,
) -> (bool, String) {
    let graph = w.graph.clone();
    let path = path.to_owned();
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

/// The live subscriptions `upn` holds.
pub fn subscriptions_of(w: &World, upn: &str) -> Vec<graph_emulator::SubscriptionInfo> {
    w.graph
        .subscriptions()
        .into_iter()
        .filter(|s| s.creator_upn.eq_ignore_ascii_case(upn))
        .collect()
}

/// Wait until `status` says `extension` is covered by `account`'s subscription.
pub async fn covered(w: &World, extension: &str, account: &str) {
    eventually(15, &format!("{extension} covered by {account}"), || {
        w.user_status(extension)["covered_by"] == account
    })
    .await;
}
