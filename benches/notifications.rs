//! Change-notification figures, printed (not asserted): `cargo bench --bench notifications`.
//!
//! 1. p50/p99 from the moment the Graph emulator starts POSTing a notification to the PBX push
//!    received, rich (decryption included; target p99 < 5 ms) and basic (one presence read).
//! 2. Graph requests per hour for 5,000 users, polling only versus notifications, computed
//!    from what one cycle of each costs against the emulator (measured, then multiplied by
//!    the default intervals).
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use graph_emulator::{DeliveryKind, Emulator, EmulatorOptions, User};
use pbx_teams_presence::config::Secret;
use pbx_teams_presence::graph::delegated::{Delegated, DelegatedSettings};
use pbx_teams_presence::service::{self, Bound, RunOptions};
use pbx_teams_presence::store::{Store, Write};
use tokio::sync::watch;

type Pushes = Arc<Mutex<Vec<(String, String, Instant)>>>;

#[tokio::main]
async fn main() {
    latency(true, 300).await;
    latency(false, 100).await;
    requests_per_hour(5000).await;
}

fn options() -> EmulatorOptions {
    EmulatorOptions {
        allow_http_notification_urls: true,
        device_code_interval: 0,
        presence_limit_per_30s: 10_000,
        request_log_limit: 100_000,
        ..EmulatorOptions::default()
    }
}

fn add(graph: &Emulator, email: &str) -> String {
    let id = graph.add_user(User {
        id: None,
        display_name: email.into(),
        user_principal_name: email.into(),
        mail: Some(email.into()),
        proxy_addresses: vec![],
        ..Default::default()
    });
    graph.set_user_presence(&id, "Available", "Available");
    id
}

/// Sign `account` in through the emulator's device-code flow and store its refresh token.
async fn login(graph: &Emulator, db: &Path, account: &str) {
    let settings = DelegatedSettings {
        login_url: graph.base_url().parse().unwrap(),
        graph_url: graph.base_url().parse().unwrap(),
        tenant_id: graph.tenant_id(),
        client_id: graph.client_id(),
        request_timeout: Duration::from_secs(10),
    };
    let delegated = Delegated::new(&settings).unwrap();
    let code = delegated.start_device_login().await.unwrap();
    assert!(graph.approve_device_code(&code.user_code, account));
    let grant = delegated.finish_device_login(&code).await.unwrap();
    let store = Store::open(db).unwrap();
    store
        .write(Write::SetAccountToken {
            account: account.into(),
            refresh_token: Secret::new(grant.refresh_token.unwrap()),
            at: 0,
        })
        .await;
    store.close().await.unwrap();
}

async fn receiver() -> (String, Pushes) {
    let pushes: Pushes = Arc::default();
    async fn take(State(p): State<Pushes>, body: axum::Json<serde_json::Value>) -> &'static str {
        let now = Instant::now();
        if let Some(items) = body["updates"].as_array() {
            let mut p = p.lock().unwrap();
            for u in items {
                let ext = u["extension"].as_str().unwrap_or("").to_owned();
                let act = u["activity"].as_str().unwrap_or("").to_owned();
                p.push((ext, act, now));
            }
        }
        "ok"
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/presence", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/presence", post(take))
        .with_state(pushes.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, pushes)
}

/// What Graph posts to: a TCP relay on a port of its own (bound on port 0, held until the
/// bench ends) to wherever the daemon's webhook is bound (it listens on port 0 and reports
/// the address in `RunOptions::bound`), like the reverse proxy in front of it in production.
/// The figures include the relay's two loopback hops, as they would a proxy's.
async fn webhook_relay(bound: watch::Receiver<Bound>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let mut bound = bound.clone();
            tokio::spawn(async move {
                let Some(webhook) = bound
                    .wait_for(|b| b.webhook.is_some())
                    .await
                    .ok()
                    .and_then(|b| b.webhook)
                else {
                    return;
                };
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(webhook).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[allow(clippy::too_many_arguments)]
fn write_config(
    dir: &Path,
    graph: &Emulator,
    users: &[(String, String)],
    accounts: &[String],
    rich: bool,
    poll: &str,
    reconcile: &str,
    push: &str,
    public: SocketAddr,
) {
    let mut csv = String::from("extension,email\n");
    for (ext, email) in users {
        csv.push_str(&format!("{ext},{email}\n"));
    }
    std::fs::write(dir.join("users.csv"), csv).unwrap();
    let list: Vec<String> = accounts.iter().map(|a| format!("\"{a}\"")).collect();
    let base = graph.base_url();
    let text = format!(
        "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n\n\
         [sync]\nstate_db = \"state.db\"\npoll_interval = \"{poll}\"\n\n[users]\nfile = \"users.csv\"\n\n\
         [pbx]\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\ntoken = \"bench\"\npush_url = \"{push}\"\n\n\
         [notifications]\nenabled = true\npublic_url = \"http://{public}/notify\"\nlisten = \"127.0.0.1:0\"\n\
         accounts = [{}]\ninclude_resource_data = {rich}\nreconciliation_interval = \"{reconcile}\"\n\n[log]\nlevel = \"warn\"\n",
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret(),
        list.join(", "),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

async fn wait_covered(db: &Path, n: usize) {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let covered = pbx_teams_presence::store::read_snapshot(db)
            .map(|s| s.users.iter().filter(|u| u.covered_by.is_some()).count())
            .unwrap_or(0);
        if covered == n {
            return;
        }
        assert!(Instant::now() < until, "only {covered} of {n} covered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn latency(rich: bool, changes: usize) {
    let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options())
        .await
        .unwrap();
    add(&graph, "sync1@contoso.com");
    let n = 100;
    let users: Vec<(String, String)> = (0..n)
        .map(|i| (format!("{}", 10_000 + i), format!("user{i:03}@contoso.com")))
        .collect();
    let ids: Vec<String> = users.iter().map(|(_, e)| add(&graph, e)).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    login(&graph, &db, "sync1@contoso.com").await;
    let (push, pushes) = receiver().await;
    let accounts = vec!["sync1@contoso.com".to_owned()];
    let mut options = RunOptions::new(&dir.path().join("config.toml"));
    options.notify_tick = Duration::from_millis(200);
    let public = webhook_relay(options.bound.subscribe()).await;
    write_config(
        dir.path(),
        &graph,
        &users,
        &accounts,
        rich,
        "30s",
        "1h",
        &push,
        public,
    );
    let shutdown = options.shutdown.clone();
    let daemon = tokio::spawn(service::run(options));
    wait_covered(&db, n).await;
    // Start-up is over once every user's first state has reached the PBX.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let first: std::collections::HashSet<String> = pushes
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _, _)| e.clone())
            .collect();
        if users.iter().all(|(ext, _)| first.contains(ext)) {
            break;
        }
        assert!(Instant::now() < until, "first states not pushed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut latencies = Vec::with_capacity(changes);
    for i in 0..changes {
        let k = i % n;
        let (availability, activity) = if (i / n) % 2 == 0 {
            ("Busy", "InAMeeting")
        } else {
            ("Available", "Available")
        };
        graph.clear_deliveries();
        pushes.lock().unwrap().clear();
        graph.set_user_presence(&ids[k], availability, activity);
        let ext = &users[k].0;
        let until = Instant::now() + Duration::from_secs(10);
        let pushed = loop {
            let found = pushes
                .lock()
                .unwrap()
                .iter()
                .find(|(e, a, _)| e == ext && a == activity)
                .map(|(_, _, t)| *t);
            if let Some(t) = found {
                break t;
            }
            assert!(Instant::now() < until, "no push for {ext}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        let kind = if rich {
            DeliveryKind::Rich
        } else {
            DeliveryKind::Basic
        };
        // The emulator records the delivery once its answer is back (maybe after the push).
        let sent = loop {
            let found = graph
                .deliveries()
                .into_iter()
                .find(|d| d.kind == kind && d.ids.contains(&ids[k]))
                .map(|d| d.started);
            if let Some(t) = found {
                break t;
            }
            assert!(Instant::now() < until, "no delivery recorded for {ext}");
            tokio::time::sleep(Duration::from_micros(200)).await;
        };
        latencies.push(pushed.saturating_duration_since(sent));
    }
    latencies.sort();
    let p = |q: f64| {
        latencies[((latencies.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "notification POST started -> PBX push received ({}, {changes} changes, loopback): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        if rich {
            "rich, decryption included"
        } else {
            "basic, one getPresencesByUserId read"
        },
        p(0.5),
        p(0.99),
        p(1.0)
    );
    shutdown.cancel();
    let _ = daemon.await;
}

/// One full poll cycle, one round of look-ups and one of renewals for `n` users, then per
/// hour at the defaults (poll 30 s; reconciliation 5 min; renewal every 40 min of a 55-min
/// lifetime, with a look-up 10, 20 and 30 min after each grant).
async fn requests_per_hour(n: usize) {
    let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options())
        .await
        .unwrap();
    let accounts: Vec<String> = (1..=n.div_ceil(650))
        .map(|i| format!("sync{i}@contoso.com"))
        .collect();
    for a in &accounts {
        add(&graph, a);
    }
    let users: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("{}", 100_000 + i),
                format!("user{i:05}@contoso.com"),
            )
        })
        .collect();
    for (_, e) in &users {
        add(&graph, e);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    for a in &accounts {
        login(&graph, &db, a).await;
    }
    let (push, _pushes) = receiver().await;
    let mut options = RunOptions::new(&dir.path().join("config.toml"));
    options.notify_tick = Duration::from_millis(200);
    let public = webhook_relay(options.bound.subscribe()).await;
    write_config(
        dir.path(),
        &graph,
        &users,
        &accounts,
        true,
        "30s",
        "5m",
        &push,
        public,
    );
    let clock = options.clock.clone();
    let shutdown = options.shutdown.clone();
    let daemon = tokio::spawn(service::run(options));
    wait_covered(&db, n).await;
    let count = |part: &str, method: &str| {
        graph
            .requests()
            .iter()
            .filter(|r| r.path.contains(part) && r.method == method)
            .count()
    };
    let per_cycle = count("getPresencesByUserId", "POST");
    let created = count("/subscriptions", "POST");
    // 10 minutes later every subscription is looked up once.
    graph.clear_requests();
    clock.advance(Duration::from_secs(11 * 60));
    graph.advance_clock(Duration::from_secs(11 * 60));
    let until = Instant::now() + Duration::from_secs(30);
    while count("/subscriptions/", "GET") < accounts.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lookups = count("/subscriptions/", "GET");
    // 40 minutes after they were made every subscription is renewed once.
    graph.clear_requests();
    clock.advance(Duration::from_secs(30 * 60));
    graph.advance_clock(Duration::from_secs(30 * 60));
    let until = Instant::now() + Duration::from_secs(30);
    while count("/subscriptions/", "PATCH") < accounts.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let renewals = count("/subscriptions/", "PATCH");
    shutdown.cancel();
    let _ = daemon.await;

    let polling = per_cycle * 3600 / 30;
    let notified = per_cycle * 3600 / 300 + (renewals + 3 * lookups) * 60 / 40;
    println!(
        "{n} users: one full poll = {per_cycle} getPresencesByUserId requests; {} subscriptions made ({created} POST), {renewals} renewals and {} look-ups per 40 min",
        accounts.len(),
        3 * lookups
    );
    println!(
        "Graph requests per hour, {n} users: polling every 30 s = {polling}; rich notifications + reconciliation every 5 min = {notified} (plus 0 reads per change; basic notifications add 1 read per notification batch)"
    );
}
