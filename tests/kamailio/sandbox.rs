//! The project's test SIP server (`tests/pbx/kamailio.sh`): a real Kamailio 5.6 on
//! 127.0.0.1:5080 as registrar, proxy and presence server, and the host's SIPp placing real
//! calls through it. One per machine, so every test holds [`Kam`] (an exclusive file lock)
//! and starts from a clean Kamailio (no registrations, subscriptions or publications).

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

pub use crate::phones::{Phones, finish};

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

/// The test server's phones.
pub const PHONES: Phones = Phones {
    sipp: Kam::sipp,
    port,
};

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
}
