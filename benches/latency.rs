//! Performance figures, printed (not asserted). Run with `cargo bench --bench latency`.
//!
//! 1. p50/p99 from a `speaking` event accepted by the HTTP connector to the setPresence
//!    request received by the Graph emulator (target p99 < 5 ms).
//! 2. One full poll cycle for 10,000 and 50,000 users: Graph requests used and the daemon's CPU
//!    time (the requests are spread over the interval, so wall time is the interval).
//! 3. Peak RSS of the daemon process (the real binary) at 50,000 users (target < 64 MB).
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

#[path = "support/daemon.rs"]
mod daemon;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon::{Daemon, PbxReceiver, wait_until};
use graph_emulator::{Emulator, EmulatorOptions};
use pbx_teams_presence::service::{self, RunOptions};
use support::seed;

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_USERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 50_000]);
    speaking_latency(1000).await;
    for n in sizes {
        poll_cycle(n).await;
    }
}

fn options() -> EmulatorOptions {
    EmulatorOptions {
        presence_limit_per_30s: 10_000,
        ..EmulatorOptions::default()
    }
}

fn write_config(dir: &Path, graph: &Emulator, poll: &str, push: Option<&str>) {
    let base = graph.base_url();
    let text = format!(
        "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n\n\
         [sync]\nstate_db = \"state.db\"\npoll_interval = \"{poll}\"\n\n[users]\nfile = \"users.csv\"\n\n\
         [pbx]\nkind = \"http\"\nlisten = \"{ANY_PORT}\"\ntoken = \"bench\"\n{push}\n[log]\nlevel = \"warn\"\n",
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret(),
        push = push.map_or(String::new(), |u| format!("push_url = \"{u}\"\n")),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// Every listen address the configs ask for: any free port; the daemon says which it got.
const ANY_PORT: &str = "127.0.0.1:0";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Each event is for a user who is idle, so each one is a real setPresence.
async fn speaking_latency(events: usize) {
    let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    seed(&graph, events, dir.path());
    write_config(dir.path(), &graph, "1h", None);
    let options = RunOptions::new(&dir.path().join("config.toml"));
    let shutdown = options.shutdown.clone();
    let mut bound = options.bound.subscribe();
    let daemon = tokio::spawn(service::run(options));
    let listen: SocketAddr = bound
        .wait_for(|b| b.pbx.is_some())
        .await
        .expect("the daemon reports where it listens")
        .pbx
        .unwrap();
    // Wait until every user is matched (the writes need Teams ids).
    let db = dir.path().join("state.db");
    wait_until(Duration::from_secs(120), || {
        pbx_teams_presence::store::read_snapshot(&db)
            .is_ok_and(|s| s.users.iter().filter(|u| u.teams_id.is_some()).count() == events)
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/pbx/events");
    let mut latencies = Vec::with_capacity(events);
    for i in 0..events {
        graph.clear_requests();
        let body = format!(r#"{{"extension":"{}","state":"speaking"}}"#, 100_000 + i);
        let sent = Instant::now();
        let resp = client
            .post(&url)
            .bearer_auth("bench")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let received = loop {
            if let Some(r) = graph
                .requests()
                .into_iter()
                .find(|r| r.path.ends_with("/setPresence"))
            {
                break r.at;
            }
            tokio::task::yield_now().await;
        };
        latencies.push(received.saturating_duration_since(sent));
    }
    latencies.sort();
    println!(
        "speaking -> setPresence received ({events} events, sent-to-received, loopback): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap())
    );
    shutdown.cancel();
    let _ = daemon.await;
}

/// The real binary as a child process: poll-cycle figures from its state database, peak RSS
/// from /proc.
async fn poll_cycle(n: usize) {
    let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    seed(&graph, n, dir.path());
    let pbx = PbxReceiver::start().await;
    write_config(dir.path(), &graph, "10s", Some(&pbx.url));
    let started = Instant::now();
    let child = Daemon::spawn(&dir.path().join("config.toml"));
    let db = dir.path().join("state.db");
    let polled = |want: usize| {
        pbx_teams_presence::store::read_snapshot(&db)
            .ok()
            .and_then(|s| {
                let users: usize = s.meta.get("last_poll_users")?.parse().ok()?;
                let requests = s.meta.get("last_poll_requests").cloned()?;
                let wall_ms = s.meta.get("last_poll_ms").cloned()?;
                (users == want).then_some((requests, wall_ms))
            })
    };
    wait_until(Duration::from_secs(300), || polled(n).is_some()).await;
    let first = started.elapsed();
    let lookups = graph
        .requests()
        .iter()
        .filter(|r| r.path.contains("$batch"))
        .count();
    // A second cycle, with nothing left to match: the steady state. Its requests are spread
    // over the interval, so its wall time is the interval: the daemon's CPU time tells the
    // cost.
    let cpu = child.cpu_seconds();
    graph.clear_requests();
    wait_until(Duration::from_secs(60), || {
        graph
            .requests()
            .iter()
            .filter(|r| r.path.contains("getPresencesByUserId"))
            .count()
            >= n.div_ceil(650)
    })
    .await;
    wait_until(Duration::from_secs(60), || polled(n).is_some()).await;
    let (requests, _) = polled(n).unwrap();
    let cpu_ms = (child.cpu_seconds() - cpu) * 1000.0;
    wait_until(Duration::from_secs(60), || pbx.pushed() >= n).await;
    let rss = child.peak_rss_kib();
    println!(
        "poll cycle, {n} users: {requests} getPresencesByUserId requests, daemon CPU {cpu_ms:.0} ms; start to first full poll {:.1} s ({lookups} $batch lookups); {} updates pushed; daemon peak RSS {:.1} MB",
        first.as_secs_f64(),
        pbx.pushed(),
        rss as f64 / 1024.0
    );
    child.stop();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
