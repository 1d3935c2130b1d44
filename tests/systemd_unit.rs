//! The shipped unit is Type=notify with a watchdog and is hardened to an exposure of 2.0 or
//! lower by `systemd-analyze security --offline=true`.

use std::process::Command;

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/systemd/pbx-teams-presence.service"
);

#[test]
fn unit_declares_notify_watchdog_restart_and_credentials() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StartLimitIntervalSec=",
        "StartLimitBurst=",
        "StateDirectory=pbx-teams-presence",
        "ConfigurationDirectory=pbx-teams-presence",
        "LoadCredential=client-secret:",
        "LoadCredential=pbx-token:",
        "LimitNOFILE=",
    ] {
        assert!(unit.lines().any(|l| l.starts_with(line)), "missing {line}");
    }
}

#[test]
fn unit_exposure_is_at_most_2_0() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", UNIT])
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
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0: {line}");
}
