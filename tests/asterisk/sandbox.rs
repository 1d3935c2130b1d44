//! The project's test PBX (`tests/pbx/`): a real Asterisk on 127.0.0.1 and SIPp placing real
//! calls. One Asterisk per machine, so every test holds [`Pbx`] (an exclusive file lock) and
//! starts from a clean Asterisk (astdb wiped: no registrations, no Custom: or presence states).

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use pbx_teams_presence::pbx::asterisk::ami::AmiClient;
use serde_json::Value;
use tokio::process::{Child, Command};

pub use crate::phones::{Phones, finish};

pub const ARI_URL: &str = "http://127.0.0.1:8088/ari";
/// ARI over TLS, served only after [`Pbx::acquire_tls`].
pub const ARI_TLS_ADDR: &str = "127.0.0.1:8089";
pub const AMI_ADDR: &str = "127.0.0.1:5038";
pub const ARI_USER: &str = "pbx-teams-presence";
const SIP: &str = "127.0.0.1:5060";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    repo().join("tests/pbx/asterisk.sh")
}

pub fn credential(name: &str) -> PathBuf {
    repo().join("tests/pbx/credentials").join(name)
}

fn secret(name: &str) -> String {
    std::fs::read_to_string(credential(name))
        .unwrap()
        .trim()
        .to_owned()
}

/// The script as root (it chroots): directly when we are root, else through `sudo -n`.
fn root_command(args: &[&str]) -> Command {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut c = if is_root {
        Command::new(script())
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(script());
        c
    };
    c.args(args).stdin(Stdio::null()).kill_on_drop(true);
    c
}

/// The test server's phones.
pub const PHONES: Phones = Phones {
    sipp: Pbx::sipp,
    port,
};

/// The SIPp port a device registers from (tests/pbx/README.md).
pub fn port(device: &str) -> u16 {
    match device {
        "1001" => 5061,
        "1002" => 5062,
        "1003" => 5063,
        "1004" => 5064,
        "1011" => 5071,
        other => panic!("no SIPp port for {other}"),
    }
}

/// Exclusive use of the machine's test Asterisk, restarted clean.
pub struct Pbx {
    _lock: File,
}

impl Pbx {
    pub async fn acquire() -> Pbx {
        Pbx::acquire_with(&[]).await
    }

    /// Like [`Pbx::acquire`], with ARI served over TLS too (on [`ARI_TLS_ADDR`]) with
    /// `dir/cert.pem` and `dir/key.pem`.
    pub async fn acquire_tls(dir: &std::path::Path) -> Pbx {
        Pbx::acquire_with(&["--tls", dir.to_str().unwrap()]).await
    }

    async fn acquire_with(extra: &[&str]) -> Pbx {
        let dir = repo().join("target");
        std::fs::create_dir_all(&dir).unwrap();
        let lock = File::create(dir.join("asterisk-tests.lock")).unwrap();
        let lock = tokio::task::spawn_blocking(move || {
            lock.lock().unwrap();
            lock
        })
        .await
        .unwrap();
        let mut args = vec!["restart", "--clean"];
        args.extend_from_slice(extra);
        let out = root_command(&args).output().await.unwrap();
        assert!(
            out.status.success(),
            "the test Asterisk did not (re)start: {}{}\nIt needs root and an installed root: \
             `sudo tests/pbx/asterisk.sh install` (./scripts/test.sh does it)",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Pbx { _lock: lock }
    }

    /// `[pbx]` for the daemon against this Asterisk, plus `extra` keys.
    pub fn pbx_section(extra: &str) -> String {
        Pbx::pbx_section_at(ARI_URL, extra)
    }

    /// Like [`Pbx::pbx_section`], with ARI at `ari_url`.
    pub fn pbx_section_at(ari_url: &str, extra: &str) -> String {
        format!(
            "[pbx]\nkind = \"asterisk\"\nari_url = \"{ari_url}\"\nari_username = \"{ARI_USER}\"\n\
             ari_password_file = \"{}\"\n{extra}\n",
            credential("ari_password").display()
        )
    }

    /// `SIPp` with the scenario's arguments; the child is killed if dropped.
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
        root_command(&all)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Stop Asterisk (clean shutdown).
    pub async fn stop() {
        let out = root_command(&["stop"]).output().await.unwrap();
        assert!(out.status.success(), "stop: {out:?}");
    }

    /// Restart Asterisk like an admin would (`--clean` also wipes astdb).
    pub async fn restart(args: &[&str]) {
        let mut all = vec!["restart"];
        all.extend_from_slice(args);
        let out = root_command(&all).output().await.unwrap();
        assert!(out.status.success(), "restart: {out:?}");
    }

    /// ARI `GET /deviceStates/{name}`.
    pub async fn device_state(name: &str) -> String {
        let url = format!("{ARI_URL}/deviceStates/{}", name.replace('/', "%2F"));
        let v: Value = reqwest::Client::new()
            .get(url)
            .basic_auth(ARI_USER, Some(secret("ari_password")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["state"].as_str().unwrap().to_owned()
    }

    /// Wait until ARI reports `state` for `name`.
    pub async fn wait_device(name: &str, state: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let now = Pbx::device_state(name).await;
            if now == state {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} is {now}, not {state}, after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// AMI `PresenceState`: (value, message), what phones subscribed to presence get.
    /// Waits until `provider`'s presence state is `(state, message)`.
    pub async fn wait_presence(provider: &str, want: (&str, &str), secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = Pbx::presence(provider).await;
            if (got.0.as_str(), got.1.as_str()) == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{provider} is {got:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn presence(provider: &str) -> (String, String) {
        let mut ami = AmiClient::connect(
            AMI_ADDR,
            ARI_USER,
            &secret("ami_password"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let p = ami.presence_state(provider).await.unwrap();
        let _ = ami.logoff().await;
        p
    }
}
