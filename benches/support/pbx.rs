//! What the benches against the test PBX share: the sandbox script, SIPp, figures.
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
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let script = repo().join("tests/pbx/asterisk.sh");
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
