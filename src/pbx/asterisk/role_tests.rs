//! [`Role`]: beside SIP the connector only writes (no events WebSocket is ever asked for);
//! alone it also reads. Against a loopback HTTP server that answers every request with 204
//! and records its request line.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::Config;

/// Request lines seen ("GET /ari/events?app=..."), and a wake-up for each.
#[derive(Clone, Default)]
struct Seen {
    lines: Arc<Mutex<Vec<String>>>,
    new: Arc<Notify>,
}

impl Seen {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait (at most 10 s) until a request line satisfies `want`.
    async fn wait_for(&self, want: impl Fn(&str) -> bool) {
        let wait = async {
            loop {
                let notified = self.new.notified();
                if self.lines().iter().any(|l| want(l)) {
                    return;
                }
                notified.await;
            }
        };
        let within = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
        assert!(within.is_ok(), "not seen; requests: {:#?}", self.lines());
    }
}

/// Serve HTTP/1.1 on loopback: every request answered 204, its line recorded.
async fn server() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ari", listener.local_addr().unwrap());
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, record.clone()));
        }
    });
    (url, seen)
}

async fn answer(stream: tokio::net::TcpStream, seen: Seen) {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(v) = header.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = stream.read_exact(&mut body).await;
        seen.lines.lock().unwrap().push(line.trim_end().to_owned());
        seen.new.notify_waiters();
        let reply = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        if stream.get_mut().write_all(reply).await.is_err() {
            return;
        }
    }
}

fn asterisk(url: &str) -> AsteriskPbxConfig {
    let text = format!(
        "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         [pbx]\nkind = \"asterisk\"\nari_url = \"{url}\"\nari_password = \"p\"\n"
    );
    let config = Config::from_str_with(&text, Path::new("/c.toml"), &|_| None).unwrap();
    config.pbx.asterisk.expect("kind = \"asterisk\"")
}

fn update() -> PbxUpdate {
    PbxUpdate {
        extension: "1001".into(),
        email: "a@example.com".into(),
        availability: "Busy".into(),
        activity: "InAMeeting".into(),
        state: "in_meeting".into(),
        read_at: None,
    }
}

/// Start the connector in `role`, push one update, and wait until Asterisk took it.
async fn run(role: Role) -> Seen {
    let (url, seen) = server().await;
    let (_users_tx, users) = watch::channel(Arc::new(vec!["1001".to_owned()]));
    let (events, _events_rx) = mpsc::channel(8);
    let (delivered, mut delivered_rx) = mpsc::channel(8);
    let (status, _status_rx) = mpsc::channel(8);
    let links = AsteriskLinks {
        users,
        events,
        delivered,
        status,
        metrics: crate::metrics::Metrics::default(),
        fence: crate::fence::Fence::open(),
    };
    let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
    let pusher = spawn(&asterisk(&url), role, links, &cancel, &tracker).unwrap();
    pusher.push(update());
    let taken = delivered_rx.recv().await.unwrap();
    assert_eq!(taken, vec![update()]);
    if role == Role::ReadAndWrite {
        seen.wait_for(|l| l.starts_with("GET /ari/events")).await;
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    seen
}

#[tokio::test]
async fn write_only_writes_and_never_asks_for_the_events_websocket() {
    let seen = run(Role::WriteOnly).await;
    let lines = seen.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST /ari/asterisk/variable")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|l| l.contains("/events")), "{lines:#?}");
}

#[tokio::test]
async fn read_and_write_also_opens_the_events_websocket() {
    let seen = run(Role::ReadAndWrite).await;
    let lines = seen.lines();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("POST /ari/asterisk/variable")),
        "{lines:#?}"
    );
}

#[test]
fn the_role_follows_the_kinds() {
    let kinds = |text: &str| {
        let creds = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
        let text = format!("{creds}[pbx]\nari_password = \"p\"\n{text}");
        let config = Config::from_str_with(&text, Path::new("/c.toml"), &|_| None).unwrap();
        Role::of(&config.pbx)
    };
    assert_eq!(kinds("kind = \"asterisk\"\n"), Role::ReadAndWrite);
    let sip = "kind = [\"sip\", \"asterisk\"]\nregistrar = \"pbx\"\nusername = \"u\"\n";
    assert_eq!(kinds(sip), Role::WriteOnly);
}
