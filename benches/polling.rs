//! Teams -> PBX by polling alone, `sync.poll_interval = "auto"` side by side with the old
//! default, a fixed 30 s, at each size (`BENCH_USERS`, default 1000,10000,50000; 250000 works
//! too). Printed, not asserted. Run with `cargo bench --bench polling`; `BENCH_MODES=auto`
//! runs one mode, `BENCH_LOG=info` shows the daemon's log.
//!
//! Per size and mode, the real binary as a child process against the Graph emulator (its
//! presence limit the documented 1,500 per 30 s):
//! - start -> first full poll (matching included, its `$batch` requests counted) and peak RSS;
//! - then a warm-up of one interval (at least the 30 s budget window: the start-up's lookups
//!   count against the share until they leave it), and in steady state:
//!   - Teams change -> PBX push: 60 users turned Busy at random moments over two intervals
//!     (at least 20 s), each latency from the emulator's change to the push received;
//!   - getPresencesByUserId requests meanwhile, per 30 s, as a share of the budget;
//! - answers 429 since the start.
#![allow(clippy::disallowed_methods)] // the bench is the outside observer: it reads real time

#[path = "support/daemon.rs"]
mod daemon;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use daemon::{Daemon, PbxReceiver, wait_until};
use graph_emulator::Emulator;
use support::seed;

const CHANGES: usize = 60;
const BUDGET_PER_30S: f64 = 1500.0;

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_USERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000, 50_000]);
    for n in sizes {
        let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "auto,30s".into());
        for mode in modes.split(',') {
            run(n, mode).await;
        }
    }
}

async fn run(n: usize, mode: &str) {
    // The request log holds the whole start (250,000 users: 834 `$batch`es of 21 entries).
    let options = graph_emulator::EmulatorOptions {
        request_log_limit: 100_000,
        ..Default::default()
    };
    let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ids = seed(&graph, n, dir.path());
    let pbx = PbxReceiver::start().await;
    write_config(dir.path(), &graph, mode, &pbx.url);
    let started = Instant::now();
    let daemon = Daemon::spawn(&dir.path().join("config.toml"));
    wait_until(Duration::from_secs(600), || pbx.pushed() >= n).await;
    let first = started.elapsed();
    let start_log = graph.requests();
    let throttled = start_log.iter().filter(|r| r.status == 429).count();
    let lookups = start_log
        .iter()
        .filter(|r| r.path.ends_with("$batch"))
        .count();
    // Steady state: the start-up's lookups have left the budget window, and the first
    // regular cycle after the catch-up is over.
    let warm = Duration::from_secs_f64(interval_s(dir.path()).unwrap_or(30.0).max(30.0) + 2.0);
    tokio::time::sleep(warm).await;
    graph.clear_requests();
    let steady = Instant::now();
    let cpu_before = daemon.cpu_seconds();
    // The emulator answers in this process: its CPU time (with the PBX receiver's, small).
    let emulator_before = daemon::cpu_seconds_of(std::process::id());
    let interval = interval_s(dir.path()).unwrap_or(30.0);
    let latencies = changes(&graph, &ids, &pbx, interval).await;
    let seconds = steady.elapsed().as_secs_f64();
    let daemon_cpu = (daemon.cpu_seconds() - cpu_before) / seconds;
    let emulator_cpu = (daemon::cpu_seconds_of(std::process::id()) - emulator_before) / seconds;
    let log = graph.requests();
    let polls = log
        .iter()
        .filter(|r| r.path.contains("getPresencesByUserId"))
        .count() as f64
        * 30.0
        / steady.elapsed().as_secs_f64();
    let throttled = throttled + log.iter().filter(|r| r.status == 429).count();
    let interval = interval_s(dir.path()).unwrap_or(interval);
    // CPU seconds per second of the steady state, times the interval in effect.
    let (cpu_per_cycle, emulator_per_cycle) = (daemon_cpu * interval, emulator_cpu * interval);
    let churn = churn(&graph, &ids, &pbx, dir.path()).await;
    let rss = daemon.peak_rss_kib();
    daemon.stop();
    let (p50, p99) = percentiles(latencies.clone());
    println!(
        "polling {mode:>4}, {n} users: Teams change -> PBX push p50 {p50:.2} s, p99 {p99:.2} s ({} of {CHANGES} changes); \
         interval {interval:.1} s; {polls:.0} getPresencesByUserId per 30 s ({:.0} % of the budget), {throttled} answers 429; \
         start to first full poll {:.1} s ({lookups} $batch lookups); CPU per cycle: daemon {cpu_per_cycle:.3} s, emulator {emulator_per_cycle:.3} s; peak RSS {:.1} MB",
        latencies.len(),
        polls * 100.0 / BUDGET_PER_30S,
        first.as_secs_f64(),
        rss as f64 / 1024.0
    );
    println!(
        "polling {mode:>4}, {n} users: {} users changed at once (10 %): all pushed in {:.2} s, all committed to the state database in {:.2} s; \
         longest gap between getPresencesByUserId requests meanwhile {:.0} ms (spacing planned {:.0} ms)",
        churn.users,
        churn.pushed.as_secs_f64(),
        churn.committed.as_secs_f64(),
        churn.longest_gap.as_secs_f64() * 1000.0,
        churn.spacing.as_secs_f64() * 1000.0,
    );
}

/// What a change of 10 % of the users at once costs.
struct Churn {
    users: usize,
    pushed: Duration,
    committed: Duration,
    longest_gap: Duration,
    spacing: Duration,
}

/// Every tenth user turns Away at once: how long until every one is pushed to the PBX and
/// committed to the state database, and whether the poll requests kept their pace meanwhile
/// (the longest gap between two of them, against the spacing before).
async fn churn(graph: &Emulator, ids: &[String], pbx: &PbxReceiver, dir: &Path) -> Churn {
    let before_gaps = gaps(graph);
    let spacing = before_gaps.iter().sum::<Duration>() / (before_gaps.len().max(1) as u32);
    graph.clear_requests();
    let changed: Vec<&String> = ids.iter().step_by(10).collect();
    let before = pbx.pushed();
    let t0 = Instant::now();
    for id in &changed {
        graph.set_user_presence(id, "Away", "Away");
    }
    wait_until(Duration::from_secs(600), || {
        pbx.pushed() >= before + changed.len()
    })
    .await;
    let pushed = t0.elapsed();
    let db = rusqlite::Connection::open_with_flags(
        dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let away = || -> usize {
        db.query_row(
            "SELECT count(*) FROM teams WHERE availability = 'Away'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0)
    };
    wait_until(Duration::from_secs(600), || away() >= changed.len()).await;
    let committed = t0.elapsed();
    Churn {
        users: changed.len(),
        pushed,
        committed,
        longest_gap: gaps(graph).into_iter().max().unwrap_or_default(),
        spacing,
    }
}

/// The gaps between consecutive getPresencesByUserId requests in the emulator's log (the
/// last 100 of them at most, for the spacing in effect).
fn gaps(graph: &Emulator) -> Vec<Duration> {
    let at: Vec<Instant> = graph
        .requests()
        .iter()
        .filter(|r| r.path.contains("getPresencesByUserId"))
        .map(|r| r.at)
        .collect();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    gaps[gaps.len().saturating_sub(100)..].to_vec()
}

/// 60 users turned Busy at random moments over two intervals; each one's delay to the PBX.
async fn changes(graph: &Emulator, ids: &[String], pbx: &PbxReceiver, interval: f64) -> Vec<f64> {
    let span = Duration::from_secs_f64((2.0 * interval).max(20.0));
    let step = (ids.len() / CHANGES).max(1);
    let mut offsets: Vec<(Duration, usize)> = (0..CHANGES.min(ids.len()))
        .map(|k| (span.mul_f64(rand::random::<f64>()), k * step))
        .collect();
    offsets.sort();
    let t0 = Instant::now();
    let mut changed = Vec::new();
    for (at, i) in offsets {
        tokio::time::sleep_until((t0 + at).into()).await;
        graph.set_user_presence(&ids[i], "Busy", "Busy");
        changed.push((i, Instant::now()));
    }
    let extension = |i: usize| (100_000 + i).to_string();
    let _ = tokio::time::timeout(Duration::from_secs_f64(interval * 2.0 + 30.0), async {
        while changed
            .iter()
            .any(|(i, _)| pbx.got(&extension(*i), "busy").is_none())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    changed
        .iter()
        .filter_map(|(i, at)| {
            pbx.got(&extension(*i), "busy")
                .map(|p| (p - *at).as_secs_f64())
        })
        .collect()
}

/// The interval in effect, from the state database (`status`).
fn interval_s(dir: &Path) -> Option<f64> {
    let snapshot = pbx_teams_presence::store::read_snapshot(&dir.join("state.db")).ok()?;
    let ms: f64 = snapshot.meta.get("poll_interval_ms")?.parse().ok()?;
    Some(ms / 1000.0)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(f64::total_cmp);
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

fn write_config(dir: &Path, graph: &Emulator, poll: &str, push: &str) {
    let base = graph.base_url();
    let text = format!(
        "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n\n\
         [sync]\nstate_db = \"state.db\"\npoll_interval = \"{poll}\"\n\n[users]\nfile = \"users.csv\"\n\n\
         [pbx]\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\ntoken = \"bench\"\npush_url = \"{push}\"\n\n[log]\nlevel = \"{level}\"\n",
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret(),
        level = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}
