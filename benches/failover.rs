//! Take-over figures under `[ha]`, printed (not asserted): two real daemons on one real
//! PostgreSQL 15, 200 users, calls starting and ending all the time; the leader is killed
//! (SIGKILL) ten times in a row, alternating nodes, each restarted as the standby. Printed:
//! - take-over: from the kill to the other node holding the lease (p50, max);
//! - write gap: from the last Graph write of the old term to the first of the new one, as the
//!   Graph emulator received them (p50, max).
//!
//! Run with `cargo bench --bench failover` (`BENCH_FAILOVERS`, default 10; `BENCH_LEASE`,
//! default 10s, the shipped default).
#![allow(clippy::disallowed_methods)] // the bench is the outside observer: it reads real time

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::ha::{Node, lease, wait_for_leader, writer};
use common::postgres::Postgres;
use common::*;
use serde_json::json;

const USERS: usize = 197;

fn extension(i: usize) -> String {
    format!("{}", 30_000 + i)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let lease_text = std::env::var("BENCH_LEASE").unwrap_or_else(|_| "10s".into());
    let (w, _) = World::crowd(USERS, "ha", extension, 1_000_000).await;
    let pg = Postgres::start();
    let database = pg.database("failover");
    let store = database.store_section();
    let db = database.connect().await;
    let mut nodes = [
        Node::new(&w, "pbx1", &store, &lease_text),
        Node::new(&w, "pbx2", &store, &lease_text),
    ];
    nodes[0].start(&db).await;
    wait_for_leader(&db, "pbx1", 60).await;
    nodes[1].start(&db).await;
    let mut takeovers = Vec::new();
    let mut gaps = Vec::new();
    let mut leader = 0;
    // The churn goes on where it stopped: every event changes a user's call.
    let next = Arc::new(AtomicUsize::new(0));
    for round in 0..rounds {
        let standby = 1 - leader;
        // Calls keep changing through the standby's listener (the inbox) during the round.
        let churn = churn(&w, nodes[standby].listen, Arc::clone(&next));
        tokio::time::sleep(Duration::from_secs(3)).await;
        let killed = Instant::now();
        nodes[leader].kill();
        let epoch = wait_for_leader(&db, nodes[standby].name, 120).await;
        let took = killed.elapsed();
        // Let the new leader write for a while, then measure the gap Graph saw.
        tokio::time::sleep(Duration::from_secs(3)).await;
        churn.abort();
        let gap = write_gap(&w, epoch);
        println!(
            "failover {}: {} -> {} (epoch {epoch}) in {:.2} s; Graph write gap {:.2} s",
            round + 1,
            nodes[leader].name,
            nodes[standby].name,
            took.as_secs_f64(),
            gap.as_secs_f64()
        );
        takeovers.push(took);
        gaps.push(gap);
        nodes[leader].start(&db).await;
        leader = standby;
    }
    println!("lease {lease_text}, {rounds} failovers, 200 users:");
    println!(
        "  take-over (kill -> other node leads): {}",
        summary(&mut takeovers)
    );
    println!(
        "  Graph write gap (last write of the old term -> first of the new): {}",
        summary(&mut gaps)
    );
    let (holder, epoch) = lease(&db).await.unwrap_or_default();
    println!("  lease now: {holder}, epoch {epoch}");
}

fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let p50 = v[v.len() / 2];
    let max = v[v.len() - 1];
    format!(
        "p50 {:.2} s, max {:.2} s",
        p50.as_secs_f64(),
        max.as_secs_f64()
    )
}

/// Starts and ends calls on rotating users, one event every 100 ms, until aborted: event `i`
/// puts user `i % USERS` in a call on even laps, ends it on odd ones, so each one changes a
/// call and the leader writes to Graph.
fn churn(
    w: &World,
    listen: std::net::SocketAddr,
    next: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let token = w.token.clone();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let ext = extension(i % USERS);
            let state = if (i / USERS).is_multiple_of(2) {
                "speaking"
            } else {
                "idle"
            };
            let _ = client
                .post(format!("http://{listen}/pbx/events"))
                .bearer_auth(&token)
                .json(&json!({"extension": ext, "state": state}))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Between the last presence write of an earlier term and the first of `epoch`.
fn write_gap(w: &World, epoch: i64) -> Duration {
    let writes: Vec<(Instant, i64)> = w
        .graph
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && (r.path.ends_with("/setPresence") || r.path.ends_with("/clearPresence"))
        })
        .filter_map(|r| Some((r.at, writer(r.user_agent.as_deref())?.1)))
        .collect();
    let first_new = writes.iter().find(|(_, e)| *e == epoch).map(|w| w.0);
    let last_old = writes.iter().filter(|(_, e)| *e < epoch).map(|w| w.0).max();
    match (last_old, first_new) {
        (Some(old), Some(new)) => new.saturating_duration_since(old),
        _ => Duration::ZERO,
    }
}
