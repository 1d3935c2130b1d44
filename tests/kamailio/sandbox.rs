//! The project's test SIP server (`tests/pbx/kamailio.sh`): a real Kamailio 5.6 on
//! 127.0.0.1:5080 as registrar, proxy and presence server, and the host's SIPp placing real
//! calls through it. One per machine, so every test holds [`Kam`] (an exclusive file lock)
//! and starts from a clean Kamailio (no registrations, subscriptions or publications).

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub const SIP: &str = "127.0.0.1:5080";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn credential(name: &str) -> PathBuf {
    repo().join("tests/pbx/credentials").join(name)
}

fn script(args: &[&str]) -> Command {
    let mut c = Command::new(repo().join("tests/pbx/kamailio.sh"));
    c.args(args).stdin(Stdio::null()).kill_on_drop(true);
    c
}

/// The SIPp port a phone registers from.
pub fn port(device: &str) -> u16 {
    match device {
        "1001" => 5081,
        "1002" => 5082,
        "1003" => 5083,
        "1004" => 5084,
        other => panic!("no SIPp port for {other}"),
    }
}

/// Exclusive use of the machine's test Kamailio, started clean.
pub struct Kam {
    _lock: File,
}

impl Kam {
    pub async fn acquire() -> Kam {
        let dir = repo().join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = File::create(dir.join("kamailio-tests.lock")).unwrap();
        let lock = tokio::task::spawn_blocking(move || {
            lock.lock().unwrap();
            lock
        })
        .await
        .unwrap();
        Kam::restart().await;
        Kam { _lock: lock }
    }

    /// Stop and start: every registration, subscription and publication is forgotten.
    pub async fn restart() {
        let out = script(&["start"]).output().await.unwrap();
        assert!(
            out.status.success(),
            "the test Kamailio did not start: {}{}\nIt needs `tests/pbx/kamailio.sh install` \
             (root; ./scripts/test.sh does it)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIPp with the scenario's arguments, one call; the child is killed if dropped.
    pub fn sipp(args: &[&str]) -> Child {
        let mut all = vec!["sipp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "-m",
            "1",
            "-timeout",
            "40",
            "-timeout_error",
            "-nostdin",
            SIP,
        ]);
        script(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Register a phone (its contact is `127.0.0.1:port`).
    pub async fn register(device: &str) {
        let (p, pw) = (port(device).to_string(), format!("pw{device}"));
        let child = Kam::sipp(&[
            "-sf",
            "register.xml",
            "-s",
            device,
            "-au",
            device,
            "-ap",
            &pw,
            "-key",
            "expires",
            "600",
            "-p",
            &p,
        ]);
        finish(child, &format!("register {device}")).await;
    }

    /// The callee rings `ring_ms`, answers, and waits for the BYE.
    pub fn answer(device: &str, ring_ms: u64) -> Child {
        let (p, d) = (port(device).to_string(), ring_ms.to_string());
        Kam::sipp(&["-sf", "uas.xml", "-p", &p, "-d", &d])
    }

    /// The callee rings and never answers.
    pub fn ring_only(device: &str) -> Child {
        let p = port(device).to_string();
        Kam::sipp(&["-sf", "uas_ring.xml", "-p", &p])
    }

    /// `from` dials `number` with `scenario`, `-d ms`, and extra args.
    pub fn dial(scenario: &str, from: &str, number: &str, ms: u64, extra: &[&str]) -> Child {
        let (p, d, pw) = (port(from).to_string(), ms.to_string(), format!("pw{from}"));
        let mut args = vec![
            "-sf", scenario, "-s", number, "-key", "caller", from, "-au", from, "-ap", &pw, "-p",
            &p, "-d", &d,
        ];
        args.extend_from_slice(extra);
        Kam::sipp(&args)
    }
}

/// Wait for a SIPp run and require success.
pub async fn finish(child: Child, what: &str) {
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what}: SIPp still running after 60 s"))
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: SIPp failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
