//! A real Prometheus server (Debian's `prometheus` package) scrapes the daemon every second
//! and the values are read back through Prometheus's HTTP query API; Prometheus also loads
//! the shipped alert rules. `promtool` checks and unit-tests those rules.
//!
//! Prometheus binds a port picked free just before (it cannot be handed a bound socket, and
//! on port 0 it does not say which port it got); if another process takes the port
//! meanwhile, Prometheus exits and the test starts it again on another one.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::process::{Child, Command};

const INSTALL: &str = "apt-get install -y --no-install-recommends prometheus";

/// The binary, from PATH; a test that needs it fails (never passes) without it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{name} is not installed; this test runs the real one. Install it: {INSTALL}")
    })
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A Prometheus server scraping `target` every second, with its own storage in `dir`.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    async fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        let alerts = root().join("docs/prometheus-alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {alerts}\n\
             scrape_configs:\n  - job_name: pbx-teams-presence\n    static_configs:\n      - targets: ['{target}']\n",
            alerts = alerts.display()
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        for _ in 0..3 {
            if let Some(p) = Prometheus::try_start(dir, &config_file).await {
                return p;
            }
        }
        panic!(
            "Prometheus did not start three times; its log is in {}",
            dir.display()
        );
    }

    /// One start on a free port; `None` when it exited before it was ready (port taken).
    async fn try_start(dir: &Path, config: &Path) -> Option<Prometheus> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let mut child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run prometheus ({e}); {INSTALL}"));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            let ready = reqwest::get(format!("{url}/-/ready")).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Some(Prometheus { child, url });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill().await;
        None
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let answer = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap();
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    /// The value of a query that yields one series (`None`: no series yet).
    async fn value(&self, query: &str) -> Option<f64> {
        let data = self.api("query", &[("query", query)]).await;
        let result = data["result"].as_array()?;
        assert!(result.len() <= 1, "{query} gave several series: {data}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Wait (polling Prometheus, at most `secs`) until `query`'s value passes `good`.
    async fn until(&self, secs: u64, query: &str, good: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let value = self.value(query).await;
            if let Some(v) = value.filter(|v| good(*v)) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{query} is {value:?} after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The daemon with `[metrics]` on a free loopback port, and a Prometheus scraping it.
async fn scraped_world(dir: &Path) -> (World, Prometheus) {
    let mut w = World::new().await;
    w.write_config("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    w.start().await;
    let target = w
        .bound
        .borrow()
        .metrics
        .expect("the metrics listener is bound");
    eventually(10, "status shows the metrics listener", || {
        w.status()["metrics_listen"] == target.to_string()
    })
    .await;
    let prometheus = Prometheus::start(dir, target).await;
    // Scraped at least twice, and up.
    prometheus
        .until(
            30,
            "count_over_time(up{job=\"pbx-teams-presence\"}[1m])",
            |n| n >= 2.0,
        )
        .await;
    let targets = prometheus.api("targets", &[]).await;
    let active = &targets["activeTargets"];
    assert_eq!(active.as_array().map(Vec::len), Some(1), "{targets}");
    assert_eq!(active[0]["health"], "up", "{targets}");
    (w, prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_daemon_and_reads_its_values() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, p) = scraped_world(dir.path()).await;
    let version = env!("CARGO_PKG_VERSION");
    let info = format!("pbx_teams_presence_build_info{{version=\"{version}\"}}");
    assert_eq!(p.value(&info).await, Some(1.0));
    // The three people of the world are matched.
    p.until(20, "pbx_teams_presence_users{match=\"matched\"}", |n| {
        n == 3.0
    })
    .await;
    assert_eq!(
        p.value("pbx_teams_presence_users{match=\"pending\"}").await,
        Some(0.0)
    );
    // Every poll (1 s) sends getPresencesByUserId: the count grows from scrape to scrape.
    let polls = "sum(pbx_teams_presence_graph_requests_total{op=\"getPresencesByUserId\"})";
    let first = p.until(20, polls, |n| n >= 1.0).await;
    p.until(20, polls, |n| n >= first + 2.0).await;
    let ok =
        "sum(pbx_teams_presence_graph_requests_total{op=\"getPresencesByUserId\",status=\"200\"})";
    assert!(p.value(ok).await.is_some_and(|n| n >= 1.0));
    p.until(20, "pbx_teams_presence_poll_cycle_seconds_count", |n| {
        n >= 2.0
    })
    .await;
    // The first reading of each user is pushed to the PBX and acknowledged.
    p.until(20, "pbx_teams_presence_teams_to_pbx_seconds_count", |n| {
        n >= 3.0
    })
    .await;
    p.until(
        20,
        "pbx_teams_presence_pbx_pushes_total{result=\"ok\"}",
        |n| n >= 1.0,
    )
    .await;
    assert_eq!(p.value("pbx_teams_presence_pbx_connected").await, Some(1.0));

    // A call: one session while it lasts, none after it.
    assert_eq!(
        p.value("pbx_teams_presence_sessions_active").await,
        Some(0.0)
    );
    w.pbx_event(ALICE, "speaking").await;
    eventually(5, "In a call written", || w.set_presence_calls(ALICE) == 1).await;
    p.until(10, "pbx_teams_presence_sessions_active", |n| n == 1.0)
        .await;
    p.until(
        10,
        "pbx_teams_presence_speaking_to_teams_seconds_count",
        |n| n == 1.0,
    )
    .await;
    let speaking = "pbx_teams_presence_pbx_events_total{state=\"speaking\"}";
    assert_eq!(p.value(speaking).await, Some(1.0));
    w.pbx_event(ALICE, "idle").await;
    eventually(5, "In a call cleared", || w.app_session(ALICE).is_none()).await;
    p.until(10, "pbx_teams_presence_sessions_active", |n| n == 0.0)
        .await;

    // The shipped alert rules load and evaluate in this Prometheus.
    let rules = p.api("rules", &[]).await;
    let names: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "PbxTeamsPresenceGraphFailing",
            "PbxTeamsPresenceSessionsStuck"
        ],
        "{rules}"
    );
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        assert_ne!(rule["health"], "err", "{rule}");
    }
    dashboard_queries_run(&p).await;
    p.stop().await;
    w.stop().await.unwrap();
}

/// Every query of the shipped Grafana dashboard is valid PromQL and finds data here.
async fn dashboard_queries_run(p: &Prometheus) {
    let text = std::fs::read_to_string(root().join("docs/grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut empty = Vec::new();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().unwrap()) {
        let expr = target["expr"].as_str().unwrap().replace("$instance", ".*");
        let data = p.api("query", &[("query", &expr)]).await;
        if data["result"].as_array().is_none_or(Vec::is_empty) {
            empty.push(expr);
        }
    }
    // Only subscriptions (notifications are off here) may find nothing.
    assert!(
        empty.iter().all(|e| e.contains("subscriptions")),
        "{empty:#?}"
    );
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    let promtool = tool("promtool");
    let check = std::process::Command::new(&promtool)
        .args(["check", "rules"])
        .arg(root().join("docs/prometheus-alerts.yml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 2 rules found"), "{said}");
    // The alerts fire when they should and stay quiet when all is well.
    let test = std::process::Command::new(&promtool)
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(root().join("tests/prometheus"))
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&test.stdout).into_owned() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success(), "{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}
