//! SIP connector figures, printed (not asserted). Needs the test servers and root:
//! `sudo tests/pbx/asterisk.sh install`, `sudo tests/pbx/kamailio.sh install`, then
//! `cargo bench --bench sip` (`BENCH_SERVER=asterisk` or `kamailio` for one of them).
//!
//! p50/p99 from the NOTIFY that says Bob's call is answered (`confirmed`), as the daemon's
//! SIP stack takes it off the socket, to Bob's setPresence received by the Graph emulator,
//! over 100 real calls through Asterisk, then through Kamailio (target p99 < 5 ms). The daemon runs in this
//! process; the NOTIFY's arrival is read from the SIP stack's TRACE line, the setPresence's
//! from the emulator's log, both on this process's clock. Only Bob is watched, so every
//! NOTIFY is his: the setPresence follows the last NOTIFY before it.
#![allow(clippy::disallowed_methods)] // the bench is the outside observer: it reads real time

#[path = "support/pbx.rs"]
mod pbx_support;
#[path = "support/wire.rs"]
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use graph_emulator::{Emulator, User};
use pbx_support::{Server, repo, report, udp_bound, wait_until};
use pbx_teams_presence::service::{self, RunOptions};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, Registry};
use wire::WireTimes;

const CALLS: usize = 100;

fn calls() -> usize {
    std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CALLS)
}

#[tokio::main]
async fn main() {
    let notifies = WireTimes::new("SIP in", "NOTIFY");
    let only_the_wire =
        Targets::new().with_target("pbx_teams_presence::pbx::sip::stack", tracing::Level::TRACE);
    let lines = std::env::var("BENCH_LOG").ok().map(|level| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::new(level))
    });
    let subscriber = Registry::default()
        .with(notifies.clone().with_filter(only_the_wire))
        .with(lines);
    tracing::subscriber::set_global_default(subscriber).unwrap();
    for server in Server::chosen() {
        through(server, &notifies).await;
    }
}

/// The daemon against `server`, 100 calls from 1001 to Bob (1002).
async fn through(server: Server, notifies: &WireTimes) {
    assert!(
        server.start(),
        "the test {} did not start (root? installed?)",
        server.name()
    );
    let seen_before = notifies.times().len();
    let graph = Emulator::start().await.unwrap();
    let bob = graph.add_user(User {
        id: None,
        display_name: "Bob".into(),
        user_principal_name: "bob@contoso.com".into(),
        mail: Some("bob@contoso.com".into()),
        proxy_addresses: vec![],
        ..Default::default()
    });
    graph.set_user_presence(&bob, "Available", "Available");
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &graph, server);
    let options = RunOptions::new(&dir.path().join("config.toml"));
    let shutdown = options.shutdown.clone();
    let daemon = tokio::spawn(service::run(options));
    // Subscribed: the first NOTIFY (idle) came in.
    wait_until(Duration::from_secs(30), || {
        notifies.times().len() > seen_before
    })
    .await;
    notify_to_set_presence(server, &graph, &bob, notifies, seen_before).await;
    shutdown.cancel();
    let _ = daemon.await;
    server.stop();
}

fn write_config(dir: &Path, graph: &Emulator, server: Server) {
    let base = graph.base_url();
    std::fs::write(dir.join("users.csv"), "1002,bob@contoso.com\n").unwrap();
    let text = format!(
        "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n\n\
         [sync]\nstate_db = \"state.db\"\npoll_interval = \"1s\"\n\n[users]\nfile = \"users.csv\"\n\n\
         [pbx]\nkind = \"sip\"\nregistrar = \"{}\"\nusername = \"teams-presence\"\n\
         password_file = \"{}\"\ndomain = \"127.0.0.1\"\nlocal_address = \"127.0.0.1:0\"\n\n[log]\nlevel = \"warn\"\n",
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret(),
        server.sip(),
        repo().join("tests/pbx/credentials/sip_password").display(),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

async fn notify_to_set_presence(
    server: Server,
    graph: &Emulator,
    bob: &str,
    notifies: &WireTimes,
    seen_before: usize,
) {
    let (caller_port, callee_port) = (server.phone(0), server.phone(1));
    server.register_phones();
    graph.clear_requests();
    let count = calls();
    let calls = count.to_string();
    let mut callee = server
        .sipp(&[
            "-sf",
            "uas.xml",
            "-p",
            callee_port,
            "-d",
            "100",
            "-m",
            &calls,
        ])
        .spawn()
        .unwrap();
    let callee_bound = callee_port.parse().unwrap();
    wait_until(Duration::from_secs(10), || udp_bound(callee_bound)).await;
    // One call every 1.2 s, 200 ms of talk: the daemon's writer starts two writes for one
    // user at least 500 ms apart (writer.rs MIN_GAP); a set, its clear 500 ms later, and the
    // next call's set 700 ms after that go out undelayed (one call a second drifts: each
    // set waits a little for the clear before it, and the waits add up).
    let caller = tokio::task::spawn_blocking(move || {
        server
            .sipp(&[
                "-sf",
                "uac.xml",
                "-s",
                "1002",
                "-key",
                "caller",
                "1001",
                "-au",
                "1001",
                "-ap",
                "pw1001",
                "-p",
                caller_port,
                "-d",
                "200",
                "-m",
                &calls,
                "-r",
                "5",
                "-rp",
                "6000",
                "-l",
                "1",
            ])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(caller.success(), "the {CALLS} calls went through");
    assert!(callee.wait().unwrap().success());
    let clears = format!("/users/{bob}/presence/clearPresence");
    let cleared = || {
        graph
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&clears) && r.status == 200)
            .count()
    };
    let until = Instant::now() + Duration::from_secs(10);
    while cleared() < count && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = format!("/users/{bob}/presence/setPresence");
    let sets: Vec<Instant> = graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&path) && r.status == 200)
        .map(|r| r.at)
        .collect();
    let arrived = notifies.times().split_off(seen_before);
    if std::env::var_os("BENCH_DEBUG").is_some() {
        let t0 = arrived[0];
        for n in &arrived {
            eprintln!("notify {:>8.1} ms", (*n - t0).as_secs_f64() * 1000.0);
        }
        for s in &sets {
            eprintln!("set    {:>8.1} ms", (*s - t0).as_secs_f64() * 1000.0);
        }
    }
    let latencies: Vec<Duration> = sets
        .iter()
        .filter_map(|set| arrived.iter().rev().find(|n| *n <= set).map(|n| *set - *n))
        .collect();
    report(
        &format!(
            "SIP NOTIFY (confirmed) received -> setPresence received, through {} ({} calls, {} cleared)",
            server.name(),
            sets.len(),
            cleared()
        ),
        latencies,
    );
}
