//! SIPp phones 1001-1004 against a test SIP server, the Asterisk sandbox or Kamailio: what the
//! tests of both do with them. Each sandbox says how SIPp runs against it and on which port
//! each phone is (`PHONES`).

use std::time::Duration;

use tokio::process::Child;

/// A server's phones.
pub struct Phones {
    /// SIPp with a scenario's arguments, one call, against the server; killed if dropped.
    pub sipp: fn(&[&str]) -> Child,
    /// The SIPp port a phone registers from (its contact is `127.0.0.1:port`).
    pub port: fn(&str) -> u16,
}

impl Phones {
    /// Register a phone (password `pw<ext>`).
    pub async fn register(&self, device: &str) {
        let (p, pw) = ((self.port)(device).to_string(), format!("pw{device}"));
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
            &p,
        ];
        finish((self.sipp)(&args), &format!("register {device}")).await;
    }

    /// The callee rings `ring_ms`, answers, and waits for the BYE.
    pub fn answer(&self, device: &str, ring_ms: u64) -> Child {
        let (p, d) = ((self.port)(device).to_string(), ring_ms.to_string());
        (self.sipp)(&["-sf", "uas.xml", "-p", &p, "-d", &d])
    }

    /// The callee rings and never answers.
    pub fn ring_only(&self, device: &str) -> Child {
        let p = (self.port)(device).to_string();
        (self.sipp)(&["-sf", "uas_ring.xml", "-p", &p])
    }

    /// `from` dials `number` with `scenario`, `-d ms`, and extra args.
    pub fn dial(&self, scenario: &str, from: &str, number: &str, ms: u64, extra: &[&str]) -> Child {
        let (p, d, pw) = (
            (self.port)(from).to_string(),
            ms.to_string(),
            format!("pw{from}"),
        );
        let mut args = vec![
            "-sf", scenario, "-s", number, "-key", "caller", from, "-au", from, "-ap", &pw, "-p",
            &p, "-d", &d,
        ];
        args.extend_from_slice(extra);
        (self.sipp)(&args)
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
