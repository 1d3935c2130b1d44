//! The admin commands against the emulator: `check` says in words what is wrong, `status`
//! reads the state database, `consent-url` prints the admin-consent link.

mod common;

use std::process::{Command, Output};

use common::*;

/// Run the real binary with `args` and `--config path` (in a blocking task: the emulator
/// answering it runs on this test's runtime).
fn run(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_when_everything_works() {
    let w = World::new().await;
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("match: 3 of 3"), "{text}");
    assert!(text.contains("credential: client secret"), "{text}");
    assert!(!text.contains("problem:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_certificate_and_warns_30_days_before_it_expires() {
    let mut w = World::new().await;
    let thumbprint = w.use_certificate(10);
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "a warning is not a problem: {text}");
    assert!(
        text.contains("ok: token"),
        "signed in with the certificate: {text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("credential:"))
        .unwrap_or_default();
    assert!(
        line.starts_with(&format!(
            "credential: certificate CN=pbx-teams-presence test, thumbprint {thumbprint}, expires "
        )) && line.ends_with("(in 9 days)"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("warning:") && l.contains("expires in 9 days")),
        "{text}"
    );
    // A certificate with a year left: no warning.
    w.use_certificate(365);
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success() && text.contains("(in 364 days)"),
        "{text}"
    );
    assert!(!text.contains("warning:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_explains_a_wrong_secret() {
    let w = World::new().await;
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    write_atomically(
        &w.config_path(),
        &config.replace(&w.graph.client_secret(), "not-the-secret"),
    );
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(!out.status.success());
    assert!(text.contains("7000215"), "{text}");
    assert!(text.contains("client secret is wrong"), "{text}");
    assert!(
        !text.contains("not-the-secret"),
        "the secret must not be printed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_explains_missing_admin_consent_and_unknown_users() {
    let w = World::new().await;
    w.graph
        .add_app("11111111-2222-3333-4444-555555555555", "s3cret", &[]);
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    let config = config
        .replace(&w.graph.client_id(), "11111111-2222-3333-4444-555555555555")
        .replace(&w.graph.client_secret(), "s3cret");
    write_atomically(&w.config_path(), &config);
    w.write_users(&["1009,nobody@contoso.com"]);
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(!out.status.success());
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("problem:")).collect();
    assert!(problems.iter().any(|l| l.contains("consent")), "{text}");
    assert!(
        problems
            .iter()
            .any(|l| l.contains("Presence.ReadWrite.All")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_users_matches_and_sessions_as_json() {
    let mut w = World::new().await;
    w.write_users(&["1004,nobody@contoso.com"]);
    w.start().await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "in a call and matched", || {
        w.user_status(ALICE)["in_call_session"] == true
            && w.user_status("1004")["match"] == "not_found"
    })
    .await;
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["status", "--json"]))
        .await
        .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = json["users"].as_array().unwrap();
    let alice = users.iter().find(|u| u["extension"] == ALICE).unwrap();
    assert_eq!(alice["email"], "alice@contoso.com");
    assert_eq!(alice["match"], "matched");
    assert_eq!(alice["teams_id"], w.id(ALICE).as_str());
    assert_eq!(alice["pbx_state"], "speaking");
    assert_eq!(alice["in_call_session"], true);
    assert!(alice["teams"]["availability"].is_string());
    let nobody = users.iter().find(|u| u["extension"] == "1004").unwrap();
    assert_eq!(nobody["match"], "not_found");
    assert!(json["counters"]["pbx_events"].as_i64().unwrap() >= 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&w.graph.client_secret()));
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_url_names_tenant_and_client() {
    let w = World::new().await;
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["consent-url"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success());
    assert!(
        text.trim().starts_with(&format!(
            "{}/{}/adminconsent?client_id={}",
            w.graph.base_url(),
            w.graph.tenant_id(),
            w.graph.client_id()
        )),
        "{text}"
    );
}

/// A config error names the file and the key, and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_names_the_key_and_the_file() {
    let w = World::new().await;
    w.write_config("\n[sync2]\nfoo = 1\n");
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["run"]))
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("config.toml") && err.contains("sync2"),
        "{err}"
    );
}

/// An unreadable config (here a directory) names the file, and its cause is said once.
#[test]
fn an_unreadable_config_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let cause = "Is a directory";
    assert!(err.contains("cannot read"), "{err}");
    assert_eq!(err.matches(cause).count(), 1, "the cause once: {err}");
}

/// Outside systemd (no CREDENTIALS_DIRECTORY), `check` reads the secrets from the directory
/// `credentials` next to the config, as the shipped units pass it to the service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_credentials_directory_beside_the_config() {
    let mut w = World::new().await;
    w.credential = Some(String::new());
    w.write_config("");
    let dir = w.dir.path().join("credentials");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("client-secret"), w.graph.client_secret()).unwrap();
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
            .args(["check", "--config"])
            .arg(path)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("credential: client secret"), "{text}");
}

/// The config with `[users]` naming the Entra group `pbx-users` (no users file) instead of the
/// file; the group holds Alice (no phone) and Dave (an office number).
async fn group_world() -> World {
    let w = World::new().await;
    let mut dave = user("Dave", "dave@contoso.com", Some("dave@contoso.com"), &[]);
    dave.business_phones = vec!["+49 30 1234-5678".into()];
    let dave = w.graph.add_user(dave);
    w.graph.add_group(graph_emulator::Group {
        id: None,
        display_name: "PBX users".into(),
        mail_nickname: "pbx-users".into(),
        mail: None,
        members: vec![w.id(ALICE), dave],
    });
    let config = std::fs::read_to_string(w.config_path()).unwrap().replace(
        "[users]\nfile = \"users.csv\"\n",
        "[users]\nentra_group = \"pbx-users\"\nextension_regex = '(\\d{4})$'\n",
    );
    write_atomically(&w.config_path(), &config);
    std::fs::remove_file(w.dir.path().join("users.csv")).unwrap();
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_group_and_lists_members_without_an_extension() {
    let w = group_world().await;
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("users: no users file"), "{text}");
    assert!(
        text.contains("ok: group members (GroupMember.Read.All) (2 users in group pbx-users, 1 with businessPhones)"),
        "{text}"
    );
    assert!(
        text.contains("note: group member alice@contoso.com has no usable extension"),
        "{text}"
    );
    assert!(!text.contains("dave@contoso.com has no"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_to_grant_group_member_read_all() {
    let w = group_world().await;
    let roles = ["Presence.ReadWrite.All", "User.Read.All"];
    w.graph
        .add_app("11111111-2222-3333-4444-555555555555", "s3cret", &roles);
    let config = std::fs::read_to_string(w.config_path()).unwrap();
    let config = config
        .replace(&w.graph.client_id(), "11111111-2222-3333-4444-555555555555")
        .replace(&w.graph.client_secret(), "s3cret");
    write_atomically(&w.config_path(), &config);
    let path = w.config_path();
    let out = tokio::task::spawn_blocking(move || run(&path, &["check"]))
        .await
        .unwrap();
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    let problem = text
        .lines()
        .find(|l| l.starts_with("problem: group members"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        problem.contains("grant the Application permission GroupMember.Read.All"),
        "{problem}"
    );
    assert!(problem.contains("admin consent"), "{problem}");
}
