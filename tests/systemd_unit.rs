//! The shipped units (the main one and the template `pbx-teams-presence@.service`) are
//! Type=notify with a watchdog, run as the package's system user with secrets from the
//! credentials directory, and are hardened to an exposure of 2.0 or lower by
//! `systemd-analyze security --offline=true`. The template is the main unit with the
//! instance's paths, line for line, so the two cannot drift apart.

use std::process::Command;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/pbx-teams-presence.service"
);
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/pbx-teams-presence@.service"
);

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The unit's directives (no comments, no blank lines).
fn directives(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn unit_declares_notify_watchdog_restart_user_and_credentials() {
    let unit = read(UNIT);
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StartLimitIntervalSec=",
        "StartLimitBurst=",
        "ExecStart=/usr/bin/pbx-teams-presence run --config /etc/pbx-teams-presence/config.toml",
        "User=pbx-teams-presence",
        "Group=pbx-teams-presence",
        "StateDirectory=pbx-teams-presence",
        "ConfigurationDirectory=pbx-teams-presence",
        "AssertPathIsDirectory=/etc/pbx-teams-presence/credentials",
        "LoadCredential=credentials:/etc/pbx-teams-presence/credentials",
        "LimitNOFILE=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "missing {line}");
    }
    assert!(
        !unit.lines().any(|l| l.starts_with("DynamicUser=")),
        "DynamicUser= is not used (docs/operations.md, Why a system user)"
    );
}

#[test]
fn template_is_the_unit_with_the_instance_paths() {
    let unit = read(UNIT);
    let template = read(TEMPLATE);
    let expected: Vec<String> = directives(&unit)
        .into_iter()
        .map(|l| {
            l.replace(
                "Description=PBX <-> Microsoft Teams presence sync",
                "Description=PBX <-> Microsoft Teams presence sync (%i)",
            )
            .replace("/etc/pbx-teams-presence/", "/etc/pbx-teams-presence/%i/")
            .replace(
                "StateDirectory=pbx-teams-presence",
                "StateDirectory=pbx-teams-presence/%i",
            )
            .replace(
                "ConfigurationDirectory=pbx-teams-presence",
                "ConfigurationDirectory=pbx-teams-presence/%i",
            )
        })
        .collect();
    assert_eq!(directives(&template), expected);
}

fn exposure(unit: &str) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
        .expect("systemd-analyze is needed (apt-get install systemd)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure line in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"))
}

#[test]
fn unit_exposure_is_at_most_2_0() {
    let score = exposure(UNIT);
    assert!(score <= 2.0, "exposure {score} > 2.0");
}

#[test]
fn template_instance_exposure_is_at_most_2_0() {
    // systemd-analyze takes an instance of a template file by its instance name.
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("pbx-teams-presence@tenant-a.service");
    std::fs::copy(TEMPLATE, &instance).unwrap();
    let score = exposure(instance.to_str().unwrap());
    assert!(score <= 2.0, "exposure {score} > 2.0");
}
