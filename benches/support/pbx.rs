//! What the benches against the test servers share: the sandbox scripts (Asterisk, Kamailio),
//! SIPp, figures.
#![allow(clippy::disallowed_methods)] // benches are outside observers: they read real time
#![allow(dead_code)] // each bench uses some of these

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Asterisk's SIP address in the sandbox.
pub const SIP: &str = "127.0.0.1:5060";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn secret(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/pbx/credentials").join(name))
        .unwrap()
        .trim()
        .to_owned()
}

/// `tests/pbx/asterisk.sh ARGS` as root.
pub fn pbx(args: &[&str]) -> Command {
    as_root("tests/pbx/asterisk.sh", args)
}

/// A script of the repository with `args`, as root (through `sudo -n` if need be).
fn as_root(script: &str, args: &[&str]) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let script = repo().join(script);
    let mut c = if root {
        Command::new(script)
    } else {
        let mut c = Command::new("sudo");
        c.arg("-n").arg(script);
        c
    };
    c.args(args).stdin(Stdio::null()).stdout(Stdio::null());
    c
}

pub fn sipp(args: &[&str]) -> Command {
    let mut all = vec!["sipp"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-timeout", "300", "-timeout_error", "-nostdin", SIP]);
    pbx(&all)
}

/// A test SIP server the SIP benches place calls through, and its phones 1001 and 1002.
#[derive(Clone, Copy, Debug)]
pub enum Server {
    /// `tests/pbx/asterisk.sh`: 127.0.0.1:5060, phones on 5061 and 5062 (SIPp in its chroot).
    Asterisk,
    /// `tests/pbx/kamailio.sh`: 127.0.0.1:5080, phones on 5081 and 5082 (the host's SIPp).
    Kamailio,
}

impl Server {
    /// `BENCH_SERVER` = `asterisk`, `kamailio`, or both (unset).
    pub fn chosen() -> Vec<Server> {
        match std::env::var("BENCH_SERVER").as_deref() {
            Ok("asterisk") => vec![Server::Asterisk],
            Ok("kamailio") => vec![Server::Kamailio],
            _ => vec![Server::Asterisk, Server::Kamailio],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Server::Asterisk => "Asterisk",
            Server::Kamailio => "Kamailio",
        }
    }

    pub fn sip(self) -> &'static str {
        match self {
            Server::Asterisk => SIP,
            Server::Kamailio => "127.0.0.1:5080",
        }
    }

    /// The SIPp port of phone 1001 (`0`) or 1002 (`1`).
    pub fn phone(self, which: usize) -> &'static str {
        match self {
            Server::Asterisk => ["5061", "5062"][which],
            Server::Kamailio => ["5081", "5082"][which],
        }
    }

    fn script(self, args: &[&str]) -> Command {
        match self {
            Server::Asterisk => pbx(args),
            Server::Kamailio => as_root("tests/pbx/kamailio.sh", args),
        }
    }

    /// Started clean (no registrations, no subscriptions).
    pub fn start(self) -> bool {
        let args: &[&str] = match self {
            Server::Asterisk => &["restart", "--clean"],
            Server::Kamailio => &["start"],
        };
        self.script(args).status().is_ok_and(|s| s.success())
    }

    pub fn stop(self) {
        let _ = self.script(&["stop"]).status();
    }

    /// Phones 1001 and 1002 registered (password `pw<ext>`, contact on their SIPp port).
    pub fn register_phones(self) {
        for (which, device) in ["1001", "1002"].into_iter().enumerate() {
            let pw = format!("pw{device}");
            let args = [
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
                self.phone(which),
                "-m",
                "1",
            ];
            let ok = self.sipp(&args).status().unwrap();
            assert!(ok.success(), "register {device} at {}", self.name());
        }
    }

    /// SIPp with `args` against this server.
    pub fn sipp(self, args: &[&str]) -> Command {
        let mut all = vec!["sipp"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-timeout", "300", "-timeout_error", "-nostdin", self.sip()]);
        self.script(&all)
    }
}

pub fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    if v.is_empty() {
        println!("{what}: no samples");
        return;
    }
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    println!(
        "{what}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        v.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

/// Whether a UDP socket is bound to `port` on this host (SIPp runs in a chroot, on this host's
/// network: its sockets are listed here).
pub fn udp_bound(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|table| {
            table.lines().skip(1).any(|line| {
                line.split_whitespace()
                    .nth(1)
                    .is_some_and(|local| local.ends_with(&suffix))
            })
        })
    })
}

pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
