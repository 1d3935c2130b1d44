//! The SIP connector holding 5,000 dialog subscriptions against the real Kamailio, printed
//! (not asserted). Needs Kamailio and root: `sudo tests/pbx/kamailio.sh install`, then
//! `cargo bench --bench sip_scale`. About 6 minutes.
//!
//! 1. Start-up: from the connector's start to every user's first NOTIFY taken (SUBSCRIBEs
//!    paced at `subscribe_rate`, 50 a second).
//! 2. Memory: this process's RSS (the connector alone, no daemon) and Kamailio's.
//! 3. Refresh load: SUBSCRIBEs sent in the minute after the first refreshes are due, with
//!    `subscribe_expires` = 300 s (refreshed at 80 %: 240 s); at the default 600 s it is half.
#![allow(clippy::disallowed_methods)] // the bench is the outside observer: it reads real time

#[path = "support/wire.rs"]
mod wire;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pbx_teams_presence::config::{HostPort, SipPbxConfig};
use pbx_teams_presence::pbx::sip::{SipLinks, spawn};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};
use wire::WireTimes;

const USERS: usize = 5_000;
const EXPIRES: Duration = Duration::from_secs(300);

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn kamailio_rss_kib() -> u64 {
    let out = Command::new("pgrep")
        .arg("-x")
        .arg("kamailio")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(rss_kib)
        .sum()
}

#[tokio::main]
async fn main() {
    let subscribes = WireTimes::new("SIP out", "SUBSCRIBE");
    let wire =
        Targets::new().with_target("pbx_teams_presence::pbx::sip::stack", tracing::Level::TRACE);
    tracing::subscriber::set_global_default(
        Registry::default().with(subscribes.clone().with_filter(wire)),
    )
    .unwrap();
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ok = Command::new(repo.join("tests/pbx/kamailio.sh"))
        .arg("start")
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "the test Kamailio did not start (installed? root?)"
    );
    let password =
        std::fs::read_to_string(repo.join("tests/pbx/credentials/sip_password")).unwrap();
    let mut config = SipPbxConfig::new(
        HostPort {
            host: "127.0.0.1".into(),
            port: 5080,
        },
        "teams-presence",
    );
    config.password = Some(pbx_teams_presence::config::Secret::new(
        password.trim().to_owned(),
    ));
    config.local_address = Some("127.0.0.1:0".parse().unwrap());
    config.subscribe_expires = EXPIRES;
    let n: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(USERS);
    let users: Vec<String> = (0..n).map(|i| (100_000 + i).to_string()).collect();
    let (_users_tx, users_rx) = watch::channel(Arc::new(users));
    let (events_tx, mut events) = mpsc::channel(1024);
    let (status_tx, _status) = mpsc::channel(64);
    let (delivered, _) = mpsc::channel(8);
    let links = SipLinks {
        users: users_rx,
        events: events_tx,
        status: status_tx,
        delivered,
        metrics: Default::default(),
        fence: Default::default(),
    };
    let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
    let rss_before = rss_kib("self");
    let started = Instant::now();
    spawn(&config, links, &cancel, &tracker).await.unwrap();
    let mut known = HashSet::new();
    // Every user's first call state, for at most 180 s (a first NOTIFY that went missing
    // shows up here as users not known).
    let give_up = started + Duration::from_secs(180);
    while known.len() < n {
        match tokio::time::timeout_at(give_up.into(), events.recv()).await {
            Ok(Some(batch)) => known.extend(batch.into_iter().map(|e| e.extension)),
            _ => break,
        }
    }
    if known.len() < n {
        println!(
            "only {} of {n} users had a first NOTIFY within 180 s",
            known.len()
        );
    }
    let all = started.elapsed();
    println!(
        "{n} dialog subscriptions against Kamailio 5.6: every user's first NOTIFY after {:.1} s (paced at 50 SUBSCRIBEs/s)",
        all.as_secs_f64()
    );
    println!(
        "RSS: this process (the SIP connector alone) {} KiB, +{} KiB for the subscriptions; Kamailio (all processes) {} KiB",
        rss_kib("self"),
        rss_kib("self").saturating_sub(rss_before),
        kamailio_rss_kib()
    );
    let window = (
        started + EXPIRES * 8 / 10,
        started + EXPIRES * 8 / 10 + Duration::from_secs(60),
    );
    let until = window.1 + Duration::from_secs(5);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        while events.try_recv().is_ok() {}
    }
    let sent = subscribes.times();
    let in_window = sent
        .iter()
        .filter(|t| **t >= window.0 && **t < window.1)
        .count();
    println!(
        "refresh load with subscribe_expires = {} s: {in_window} SUBSCRIBEs in the minute after the first refreshes were due ({:.1}/s); RSS then {} KiB",
        EXPIRES.as_secs(),
        in_window as f64 / 60.0,
        rss_kib("self")
    );
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(10), tracker.wait()).await;
    let _ = Command::new(repo.join("tests/pbx/kamailio.sh"))
        .arg("stop")
        .status();
}
