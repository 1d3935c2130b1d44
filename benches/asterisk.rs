//! Asterisk connector figures, printed (not asserted). Needs the test PBX and root (SIPp runs
//! in its chroot): `sudo tests/pbx/asterisk.sh install`, then `cargo bench --bench asterisk`.
//!
//! 1. p50/p99 from the SIP 200 OK that answers a call (the callee's SIPp trace, wall clock)
//!    to the callee's setPresence received by the Graph emulator, over 100 real calls
//!    (target p99 < 20 ms).
//! 2. p50/p99 from a Teams presence change to the new `Custom:teams-…` device state
//!    announced by Asterisk (an ARI `DeviceStateChanged` on our own WebSocket): from the
//!    poll that carried it, and from the change itself (that one includes waiting for the
//!    next poll, `sync.poll_interval` = 1 s).
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

#[path = "support/pbx.rs"]
mod pbx_support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use graph_emulator::{Emulator, User};
use pbx_support::{Server, pbx, repo, report, secret, sipp, udp_bound, wait_until};
use pbx_teams_presence::service::{self, RunOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const CALLS: usize = 100;
const CHANGES: usize = 30;
const ARI: &str = "http://127.0.0.1:8088/ari";

#[tokio::main]
async fn main() {
    let status = pbx(&["restart", "--clean"]).status().unwrap();
    assert!(
        status.success(),
        "the test Asterisk did not start (root? installed?)"
    );
    let graph = Emulator::start().await.unwrap();
    let mut ids = Vec::new();
    for (name, mail) in [("Alice", "alice@contoso.com"), ("Bob", "bob@contoso.com")] {
        let id = graph.add_user(User {
            id: None,
            display_name: name.into(),
            user_principal_name: mail.into(),
            mail: Some(mail.into()),
            proxy_addresses: vec![],
            ..Default::default()
        });
        graph.set_user_presence(&id, "Available", "Available");
        ids.push(id);
    }
    let bob = ids[1].clone();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &graph);
    let options = RunOptions::new(&dir.path().join("config.toml"));
    let shutdown = options.shutdown.clone();
    let daemon = tokio::spawn(service::run(options));
    let db = dir.path().join("state.db");
    wait_until(Duration::from_secs(30), || {
        pbx_teams_presence::store::read_snapshot(&db)
            .is_ok_and(|s| s.meta.get("pbx_link").is_some_and(|v| v == "connected"))
    })
    .await;

    answered_to_set_presence(&graph, &bob).await;
    teams_to_asterisk(&graph, &bob).await;

    shutdown.cancel();
    let _ = daemon.await;
    let _ = pbx(&["stop"]).status();
}

fn write_config(dir: &Path, graph: &Emulator) {
    let base = graph.base_url();
    std::fs::write(
        dir.join("users.csv"),
        "1001,alice@contoso.com\n1002,bob@contoso.com\n",
    )
    .unwrap();
    let text = format!(
        "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nlogin_url = \"{base}\"\ngraph_url = \"{base}\"\n\n\
         [sync]\nstate_db = \"state.db\"\npoll_interval = \"1s\"\n\n[users]\nfile = \"users.csv\"\n\n\
         [pbx]\nkind = \"asterisk\"\nari_url = \"{ARI}\"\nari_password_file = \"{}\"\n\n[log]\nlevel = \"warn\"\n",
        graph.tenant_id(),
        graph.client_id(),
        graph.client_secret(),
        repo().join("tests/pbx/credentials/ari_password").display(),
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

async fn answered_to_set_presence(graph: &Emulator, bob: &str) {
    Server::Asterisk.register_phones();
    graph.clear_requests();
    let trace = repo().join("target/pbx/root/sipp/bench-uas.log");
    let _ = std::fs::remove_file(&trace);
    let calls = CALLS.to_string();
    let mut callee = sipp(&[
        "-sf",
        "uas.xml",
        "-p",
        "5062",
        "-d",
        "100",
        "-m",
        &calls,
        "-trace_msg",
        "-message_file",
        "/sipp/bench-uas.log",
    ])
    .spawn()
    .unwrap();
    // The callee takes calls once its SIP socket is bound.
    wait_until(Duration::from_secs(10), || udp_bound(5062)).await;
    // One call every 1.2 s, 200 ms of talk: Bob's session is set and cleared once per call,
    // undelayed (the daemon's writer starts two writes for one user at least 500 ms apart,
    // writer.rs MIN_GAP: faster calls would wait for it, and collapse).
    let caller = tokio::task::spawn_blocking(move || {
        sipp(&[
            "-sf", "uac.xml", "-s", "1002", "-key", "caller", "1001", "-au", "1001", "-ap",
            "pw1001", "-p", "5061", "-d", "200", "-m", &calls, "-r", "5", "-rp", "6000", "-l", "1",
        ])
        .status()
        .unwrap()
    })
    .await
    .unwrap();
    assert!(caller.success(), "the {CALLS} calls went through");
    assert!(callee.wait().unwrap().success());

    // Wall clock (SIPp) -> this process's monotonic clock.
    let (mono, wall) = (Instant::now(), SystemTime::now());
    let to_instant = |t: SystemTime| match wall.duration_since(t) {
        Ok(ago) => mono - ago,
        Err(e) => mono + e.duration(),
    };
    let answers: Vec<Instant> = invite_200_ok_times(&std::fs::read_to_string(&trace).unwrap())
        .into_iter()
        .map(to_instant)
        .collect();
    // The daemon is done with the calls once it has cleared Bob's session after each of them
    // (his writes go out in order: every call's setPresence came before its clear).
    let clears = format!("/users/{bob}/presence/clearPresence");
    let cleared = || {
        graph
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&clears) && r.status == 200)
            .count()
    };
    let until = Instant::now() + Duration::from_secs(10);
    while cleared() < answers.len() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if cleared() < answers.len() {
        println!(
            "(only {} of {} calls cleared in Teams after 10 s)",
            cleared(),
            answers.len()
        );
    }
    let path = format!("/users/{bob}/presence/setPresence");
    let mut sets: Vec<Instant> = graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(&path) && r.status == 200)
        .map(|r| r.at)
        .collect();
    sets.sort();
    let mut latencies = Vec::new();
    for (i, ok) in answers.iter().enumerate() {
        let next = answers.get(i + 1).copied();
        if let Some(set) = sets
            .iter()
            .find(|s| **s + Duration::from_millis(1) >= *ok && next.is_none_or(|n| **s < n))
        {
            latencies.push(set.saturating_duration_since(*ok));
        }
    }
    report(
        &format!(
            "SIP 200 OK (call answered) -> setPresence received ({} of {} calls matched)",
            latencies.len(),
            answers.len()
        ),
        latencies,
    );
}

/// Times of the `200 OK` answers to INVITEs in a SIPp `-trace_msg` file.
fn invite_200_ok_times(trace: &str) -> Vec<SystemTime> {
    let mut out = Vec::new();
    for block in trace
        .split("-----------------------------------------------")
        .skip(1)
    {
        let mut lines = block.lines();
        let stamp = lines.next().unwrap_or("").trim();
        let text: Vec<&str> = lines.collect();
        let is_ok = text.iter().any(|l| l.starts_with("SIP/2.0 200 OK"));
        let sent = text.iter().any(|l| l.starts_with("UDP message sent"));
        let invite = text
            .iter()
            .any(|l| l.starts_with("CSeq:") && l.trim_end().ends_with("INVITE"));
        if is_ok
            && sent
            && invite
            && let Ok(t) = humantime::parse_rfc3339(stamp)
        {
            out.push(t);
        }
    }
    out
}

async fn teams_to_asterisk(graph: &Emulator, bob: &str) {
    let app = "bench-watch";
    let mut request = format!("ws://127.0.0.1:8088/ari/events?app={app}")
        .into_client_request()
        .unwrap();
    let auth = format!("pbx-teams-presence:{}", secret("ari_password"));
    use base64::Engine as _;
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(auth)
    );
    request
        .headers_mut()
        .insert("Authorization", header.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    reqwest::Client::new()
        .post(format!(
            "{ARI}/applications/{app}/subscription?eventSource=deviceState:Custom:teams-1002"
        ))
        .basic_auth("pbx-teams-presence", Some(secret("ari_password")))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let (mut from_poll, mut from_change) = (Vec::new(), Vec::new());
    for i in 0..CHANGES {
        let (availability, activity, want) = if i % 2 == 0 {
            ("Busy", "InAMeeting", "INUSE")
        } else {
            ("Available", "Available", "NOT_INUSE")
        };
        graph.clear_requests();
        let changed = Instant::now();
        graph.set_user_presence(bob, availability, activity);
        let seen = loop {
            let Some(Ok(msg)) = ws.next().await else {
                panic!("the ARI WebSocket closed");
            };
            let Ok(text) = msg.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            if v["device_state"]["state"] == want {
                break Instant::now();
            }
        };
        let poll = graph
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("getPresencesByUserId") && r.at >= changed)
            .map(|r| r.at)
            .min();
        if let Some(poll) = poll {
            from_poll.push(seen.saturating_duration_since(poll));
        }
        from_change.push(seen - changed);
    }
    report(
        "Teams change read by a poll -> Custom: device state changed in Asterisk",
        from_poll,
    );
    report(
        "Teams change -> Custom: device state changed in Asterisk (incl. waiting for the 1 s poll)",
        from_change,
    );
}
