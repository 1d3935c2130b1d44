//! The metrics scrape at 50,000 users, printed (not asserted). Run with
//! `cargo bench --bench metrics` (`BENCH_USERS=10000` for another size).
//!
//! The daemon (its real service wiring, in this process) runs against the Graph emulator with
//! `[metrics]` on and pushes to a PBX receiver; once a poll cycle has read every user, calls
//! are placed, and then `GET /metrics` is scraped over loopback like Prometheus does: the
//! answer's size in bytes and the time of each scrape (request sent to last byte read), and
//! the encoding alone (no HTTP).
#![allow(clippy::disallowed_methods)] // the benchmark is the outside observer: it reads real time

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use graph_emulator::{Emulator, EmulatorOptions};
use pbx_teams_presence::service::{self, RunOptions};
use support::seed;

const SCRAPES: usize = 200;
const CALLS: usize = 100;

#[tokio::main]
async fn main() {
    let users: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    scrape(users).await;
}

async fn scrape(n: usize) {
    let options = EmulatorOptions {
        presence_limit_per_30s: 10_000,
        ..EmulatorOptions::default()
    };
    let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    seed(&graph, n, dir.path());
    let push_url = pbx_receiver().await;
    write_config(dir.path(), &graph, &push_url);
    let options = RunOptions::new(&dir.path().join("config.toml"));
    let shutdown = options.shutdown.clone();
    let mut bound = options.bound.subscribe();
    let daemon = tokio::spawn(service::run(options));
    let b = *bound.wait_for(|b| b.metrics.is_some()).await.unwrap();
    let (metrics, pbx) = (b.metrics.unwrap(), b.pbx.unwrap());
    let url = format!("http://{metrics}/metrics");
    let client = reqwest::Client::new();
    // Every user matched and read by a whole poll cycle.
    let matched = "pbx_teams_presence_users{match=\"matched\"}";
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while value(&text, matched) != Some(n as f64)
        || value(&text, "pbx_teams_presence_poll_cycle_seconds_count").unwrap_or(0.0) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "no full poll cycle within 10 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        text = client.get(&url).send().await.unwrap().text().await.unwrap();
    }
    calls(&client, pbx).await;
    let mut times = Vec::with_capacity(SCRAPES);
    let mut bytes = 0;
    for _ in 0..SCRAPES {
        let sent = Instant::now();
        let body = client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        times.push(sent.elapsed());
        bytes = body.len();
    }
    times.sort();
    let series = String::from_utf8_lossy(
        &client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .lines()
    .filter(|l| !l.starts_with('#'))
    .count();
    println!(
        "GET /metrics at {n} users: {bytes} bytes, {series} series; scrape over loopback p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({SCRAPES} scrapes)",
        ms(times[SCRAPES / 2]),
        ms(times[SCRAPES * 99 / 100]),
        ms(times[SCRAPES - 1]),
    );
    encode_only();
    shutdown.cancel();
    let _ = daemon.await;
}

/// The registry's encoding alone, as filled by a daemon (no HTTP).
fn encode_only() {
    let m = pbx_teams_presence::metrics::Metrics::new();
    let started = Instant::now();
    let mut len = 0;
    for _ in 0..1000 {
        len = m.encode().unwrap().len();
    }
    let each = started.elapsed() / 1000;
    println!(
        "encoding a fresh registry: {len} bytes in {:.1} µs",
        each.as_secs_f64() * 1e6
    );
}

/// `CALLS` calls answered and hung up: sessions, latencies and PBX events in the registry.
async fn calls(client: &reqwest::Client, pbx: std::net::SocketAddr) {
    let url = format!("http://{pbx}/pbx/events");
    for state in ["speaking", "idle"] {
        let events: Vec<String> = (0..CALLS)
            .map(|i| format!(r#"{{"extension":"{}","state":"{state}"}}"#, 100_000 + i))
            .collect();
        let body = format!("[{}]", events.join(","));
        let resp = client
            .post(&url)
            .bearer_auth("bench")
            .body(body)
            .send()
            .await;
        assert_eq!(resp.unwrap().status().as_u16(), 202);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn write_config(dir: &Path, graph: &Emulator, push_url: &str) {
    let base = graph.base_url();
    let text = format!(
        "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n\n\
         [sync]\nstate_db = \"state.db\"\npoll_interval = \"10s\"\n\n[users]\nfile = \"users.csv\"\n\n\
         [pbx]\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\ntoken = \"bench\"\npush_url = \"{push_url}\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n[log]\nlevel = \"warn\"\n",
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret(),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// A PBX that takes every push.
async fn pbx_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/presence", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/presence", axum::routing::post(|| async {}));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn value(text: &str, series: &str) -> Option<f64> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{series} ")))?;
    line.rsplit(' ').next()?.parse().ok()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
