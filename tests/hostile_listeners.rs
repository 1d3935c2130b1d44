//! Hostile input on the two HTTP listeners, in-process: slow or half-sent headers are closed,
//! a full listener makes room by closing the connection idle the longest, the PBX's bearer
//! token and the webhook's handshake are answered before any body is read, and a flood of
//! refused input logs one WARN per cause (attacker strings cut short), not one per item.
//!
//! Each test runs on a current-thread runtime so that a thread-local subscriber sees every
//! log line of the listener's tasks. The descriptor-limit flood is in `listener_fd_limit.rs`.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use pbx_teams_presence::graph::webhook;
use pbx_teams_presence::listener::{self, Limits, Options, Refusals};
use pbx_teams_presence::pbx::http as pbx_http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Long enough for any answer on a loaded machine; the old code never answered at all.
const PATIENCE: Duration = Duration::from_secs(20);

/// Log lines, captured.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    /// Capture this thread's log lines until the guard is dropped.
    fn capture() -> (Lines, tracing::subscriber::DefaultGuard) {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("pbx_teams_presence=debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn warnings(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(" WARN "))
            .map(str::to_owned)
            .collect()
    }
}

fn limits(max_connections: usize, header_timeout: Duration) -> Limits {
    Limits {
        max_connections,
        header_timeout,
        handshake_timeout: header_timeout,
    }
}

/// `app` on a loopback port with `limits`; the listener stops when the token is cancelled.
async fn start(app: Router, limits: Limits) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let mut options = Options::new("test", Refusals::new("test"));
    options.limits = limits;
    tokio::spawn(listener::serve(listener, app, options, cancel.clone()));
    (addr, cancel)
}

/// A connection that sent half a request header and then nothing.
async fn half_open(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /x HTTP/1.1\r\nHost: loca")
        .await
        .unwrap();
    tcp
}

/// Whether the server closed `tcp` within `wait` (EOF or reset), reading what it sent.
async fn closed_within(tcp: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(wait, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// One raw request; the status code of the answer.
async fn request(addr: SocketAddr, raw: &str) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(PATIENCE, tcp.read(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn ok_app() -> Router {
    Router::new().route("/x", post(|| async { "ok" }))
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(ok_app(), limits(16, Duration::from_millis(300))).await;
    let started = Instant::now();
    let mut tcp = half_open(addr).await;
    assert!(
        closed_within(&mut tcp, PATIENCE).await,
        "the half-sent header is held open"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
}

#[tokio::test]
async fn a_kept_alive_connection_idle_past_the_timeout_is_closed() {
    let (addr, _stop) = start(ok_app(), limits(16, Duration::from_millis(300))).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    tcp.write_all(request).await.unwrap();
    let mut answer = [0u8; 256];
    let n = tcp.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let idle_since = Instant::now();
    assert!(closed_within(&mut tcp, PATIENCE).await, "kept open");
    assert!(idle_since.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn past_the_cap_the_connection_idle_the_longest_makes_room() {
    let (lines, _guard) = Lines::capture();
    let (addr, stop) = start(ok_app(), limits(4, Duration::from_secs(30))).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(half_open(addr).await);
        // Accepted in this order (the listener runs while the test waits here).
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = request(
        addr,
        "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "a whole request is served on a full listener");
    assert!(
        closed_within(&mut held[0], PATIENCE).await,
        "the oldest idle one made room"
    );
    for tcp in &mut held[1..] {
        assert!(
            !closed_within(tcp, Duration::from_millis(50)).await,
            "only one was closed"
        );
    }
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let warnings = lines.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("connections_shed"), "{warnings:?}");
}

#[tokio::test]
async fn a_request_under_way_is_never_shed_and_a_full_listener_refuses() {
    let release = Arc::new(Notify::new());
    let app = {
        let release = Arc::clone(&release);
        Router::new().route(
            "/x",
            post(move || async move {
                release.notified().await;
                "done"
            }),
        )
    };
    let (addr, _stop) = start(app, limits(1, Duration::from_secs(30))).await;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = half_open(addr).await;
    assert!(
        closed_within(&mut refused, PATIENCE).await,
        "no place: the newcomer is closed"
    );
    release.notify_one();
    let mut answer = [0u8; 256];
    let n = tokio::time::timeout(PATIENCE, busy.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "the busy one is answered"
    );
}

/// The PBX listener with `token`, knowing extension 1001; its events channel is returned.
async fn pbx(
    token: &str,
) -> (
    SocketAddr,
    mpsc::Receiver<Vec<pbx_teams_presence::sync::types::PbxEvent>>,
    CancellationToken,
) {
    let listener = pbx_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (_token_tx, token_rx) = watch::channel(Arc::<str>::from(token));
    let known = pbx_http::ExtensionSet::new(["1001"]);
    let (_known_tx, known_rx) = watch::channel(Arc::new(known));
    let (events_tx, events_rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let (_t, _k) = (_token_tx, _known_tx);
        pbx_http::serve(listener, token_rx, known_rx, events_tx, stop).await;
    });
    (addr, events_rx, cancel)
}

#[tokio::test]
async fn the_pbx_token_is_checked_before_the_body_is_read() {
    let (addr, _events, _stop) = pbx("s3cret").await;
    // A body announced and never sent: the answer cannot wait for it.
    let status = request(
        addr,
        "POST /pbx/events HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_webhook_handshake_is_answered_before_any_body() {
    let listener = webhook::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_known_tx, known) = watch::channel(Arc::new(HashMap::new()));
    let (out, _notes) = mpsc::channel(4);
    tokio::spawn(webhook::serve(
        listener,
        None,
        known,
        out,
        None,
        CancellationToken::new(),
    ));
    let status = request(
        addr,
        "POST /n?validationToken=abc HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

/// One webhook post of about 1 MiB: ten items for unknown subscriptions with 4 KiB ids,
/// 1,000 with a wrong clientState, and then unreadable ones (`0`, two bytes each) to the end.
fn hostile_batch() -> (String, [usize; 3]) {
    let long_id = "A".repeat(4096);
    let mut items = Vec::new();
    for _ in 0..10 {
        items.push(serde_json::json!({"subscriptionId": long_id, "clientState": "x"}).to_string());
    }
    let wrong = serde_json::json!({"subscriptionId": "sub-1", "clientState": "guess",
        "resourceData": {"id": "u-1"}});
    items.extend(std::iter::repeat_n(wrong.to_string(), 1_000));
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let unreadable = (1_040_000 - size) / 2;
    items.extend(std::iter::repeat_n("0".to_owned(), unreadable));
    (
        format!("{{\"value\":[{}]}}", items.join(",")),
        [1_000, 10, unreadable],
    )
}

#[tokio::test]
async fn a_huge_refused_body_logs_one_warn_per_cause_with_strings_cut_short() {
    let (lines, _guard) = Lines::capture();
    let listener = webhook::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let known = HashMap::from([("sub-1".to_owned(), "the-secret".to_owned())]);
    let (_known_tx, known) = watch::channel(Arc::new(known));
    let (out, _notes) = mpsc::channel(4);
    let cancel = CancellationToken::new();
    let served = tokio::spawn(webhook::serve(
        listener,
        None,
        known,
        out,
        None,
        cancel.clone(),
    ));
    let (body, counts) = hostile_batch();
    assert!(
        body.len() > 1_000_000 && body.len() <= webhook::MAX_BODY,
        "{}",
        body.len()
    );
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/n");
    for _ in 0..2 {
        let answer = client.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(answer.status(), 403);
    }
    let during = lines.warnings();
    assert_eq!(
        during.len(),
        3,
        "one line per cause:\n{}",
        during.join("\n")
    );
    // Stopping says what was counted since.
    cancel.cancel();
    served.await.unwrap();
    let all = lines.warnings();
    let summaries = &all[3..];
    assert_eq!(summaries.len(), 3, "{}", summaries.join("\n"));
    let said = |cause: &str, n: usize| {
        let n = pbx_teams_presence::listener::refusals::grouped(n as u64);
        summaries
            .iter()
            .any(|l| l.contains(cause) && l.contains(&format!("refused {n} ")))
    };
    assert!(
        said("wrong_client_state", counts[0] * 2 - 1),
        "{summaries:?}"
    );
    assert!(
        said("unknown_subscription", counts[1] * 2 - 1),
        "{summaries:?}"
    );
    assert!(said("unreadable_item", counts[2] * 2 - 1), "{summaries:?}");
    assert!(
        counts[2] > 400_000,
        "the old code logged a line for each of these"
    );
    let text = lines.text();
    assert!(!text.contains(&"A".repeat(64)), "a long id reached the log");
    assert!(text.contains("… (4096 bytes)"), "{text}");
    assert!(
        !text.contains("guess"),
        "the guessed clientState is not logged"
    );
    eprintln!(
        "{} items refused in 2 posts of {} bytes: {} WARN lines\n{}",
        (counts[0] + counts[1] + counts[2]) * 2,
        body.len(),
        all.len(),
        all.join("\n")
    );
}

#[tokio::test]
async fn refused_pbx_posts_log_one_warn_per_cause() {
    let (lines, _guard) = Lines::capture();
    let (addr, _events, stop) = pbx("s3cret").await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/pbx/events");
    // Under the 32 KiB header limit (larger headers get 431 without reaching the handler).
    let long = "x".repeat(10_000);
    for _ in 0..50 {
        let answer = client
            .post(&url)
            .bearer_auth(&long)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        let bad = format!(r#"{{"extension":"1001","state":"{long}"}}"#);
        let answer = client
            .post(&url)
            .bearer_auth("s3cret")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
    }
    let warnings = lines.warnings();
    assert_eq!(warnings.len(), 2, "{}", warnings.join("\n"));
    assert!(
        warnings.iter().all(|l| l.len() < 400),
        "{}",
        warnings.join("\n")
    );
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = lines.text();
    assert!(
        text.contains("refused 49 PBX requests with a missing or wrong bearer token"),
        "{text}"
    );
    assert!(text.contains("refused 49 PBX event batches"), "{text}");
    assert!(
        !text.contains(&"x".repeat(64)),
        "a long string reached the log"
    );
}
