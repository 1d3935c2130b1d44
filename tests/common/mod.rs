//! Test fixtures: a Graph emulator, a PBX push receiver, a config in a temp dir, and the
//! daemon's real service wiring (or its real binary), all on loopback with free ports.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use graph_emulator::{Emulator, LoggedRequest, User};
use pbx_teams_presence::service::{self, Clock, RunOptions};
use serde_json::Value;
use tokio::task::JoinHandle;

/// One Teams user of the fixture.
pub struct Person {
    pub extension: &'static str,
    pub email: &'static str,
    pub id: String,
}

/// Everything a scenario needs.
pub struct World {
    pub graph: Emulator,
    pub pbx: PbxReceiver,
    pub dir: tempfile::TempDir,
    pub listen: SocketAddr,
    pub token: String,
    pub people: Vec<Person>,
    pub clock: Clock,
    /// The `[pbx]` section; `None`: the HTTP connector on `listen`, pushing to `pbx`.
    pub pbx_section: Option<String>,
    /// `RunOptions::notify_tick` for the daemon.
    pub notify_tick: Duration,
    daemon: Option<(RunOptions, JoinHandle<Result<(), service::ServiceError>>)>,
}

/// Collects what the daemon pushes to `pbx.push_url`.
#[derive(Clone, Default)]
pub struct PbxReceiver {
    pub url: String,
    pub updates: Arc<Mutex<Vec<Value>>>,
    /// Answer this status instead of 200 while set (tests redelivery).
    pub fail_with: Arc<Mutex<Option<u16>>>,
}

impl PbxReceiver {
    pub async fn start() -> PbxReceiver {
        let mut r = PbxReceiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.url = format!("http://{}/presence", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/presence", post(receive))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// Every update pushed so far, flattened.
    pub fn updates(&self) -> Vec<Value> {
        self.updates.lock().unwrap().clone()
    }

    pub fn updates_for(&self, extension: &str) -> Vec<Value> {
        self.updates()
            .into_iter()
            .filter(|u| u["extension"] == extension)
            .collect()
    }
}

async fn receive(State(r): State<PbxReceiver>, body: axum::Json<Value>) -> StatusCode {
    if let Some(code) = *r.fail_with.lock().unwrap() {
        return StatusCode::from_u16(code).unwrap();
    }
    if let Some(items) = body["updates"].as_array() {
        r.updates.lock().unwrap().extend(items.iter().cloned());
    }
    StatusCode::OK
}

pub const ALICE: &str = "1001";
pub const BOB: &str = "1002";
pub const CAROL: &str = "1003";

impl World {
    /// Alice (matched by mail), Bob (by UPN, mixed case in the users file), Carol (by a proxy
    /// address only), all Available in Teams.
    pub async fn new() -> World {
        World::new_with(graph_emulator::EmulatorOptions::default()).await
    }

    /// Like [`World::new`], with the emulator's options.
    pub async fn new_with(options: graph_emulator::EmulatorOptions) -> World {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,pbx_teams_presence=debug")
            .with_test_writer()
            .try_init();
        let graph = Emulator::start_with("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let alice = graph.add_user(user(
            "Alice",
            "alice@contoso.com",
            Some("alice@contoso.com"),
            &[],
        ));
        let bob = graph.add_user(user("Bob", "bob@contoso.com", None, &[]));
        let carol = graph.add_user(user(
            "Carol",
            "c.smith@contoso.com",
            Some("c.smith@contoso.com"),
            &["SMTP:c.smith@contoso.com", "smtp:carol@contoso.com"],
        ));
        for id in [&alice, &bob, &carol] {
            graph.set_user_presence(id, "Available", "Available");
        }
        let people = vec![
            Person {
                extension: ALICE,
                email: "alice@contoso.com",
                id: alice,
            },
            Person {
                extension: BOB,
                email: "Bob@Contoso.com",
                id: bob,
            },
            Person {
                extension: CAROL,
                email: "carol@contoso.com",
                id: carol,
            },
        ];
        let pbx = PbxReceiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let listen = free_port();
        let w = World {
            graph,
            pbx,
            dir,
            listen,
            token: "pbx-test-token".into(),
            people,
            clock: Clock::default(),
            pbx_section: None,
            notify_tick: Duration::from_secs(30),
            daemon: None,
        };
        w.write_users(&[]);
        w.write_config("");
        w
    }

    pub fn id(&self, extension: &str) -> String {
        self.people
            .iter()
            .find(|p| p.extension == extension)
            .unwrap()
            .id
            .clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }

    /// The users file: the three people plus `extra` lines.
    pub fn write_users(&self, extra: &[&str]) {
        let mut text = String::from("# extension,email\nextension,email\n");
        for p in &self.people {
            text.push_str(&format!("{},{}\n", p.extension, p.email));
        }
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        write_atomically(&self.dir.path().join("users.csv"), &text);
    }

    /// The config file, with `extra` TOML appended (sections of its own).
    pub fn write_config(&self, extra: &str) {
        let base = self.graph.base_url();
        let text = format!(
            r#"[azure]
tenant_id = "{tenant}"
client_id = "{client}"
client_secret = "{secret}"
login_url = "{base}"
graph_url = "{base}"

[sync]
state_db = "state.db"
poll_interval = "{poll}"
in_call_expiration = "5m"
shutdown_timeout = "5s"

[users]
file = "users.csv"

{pbx}

[log]
level = "info,pbx_teams_presence=debug"
{extra}"#,
            tenant = self.graph.tenant_id(),
            client = self.graph.client_id(),
            secret = self.graph.client_secret(),
            poll = "1s",
            pbx = self.pbx_section.clone().unwrap_or_else(|| format!(
                "[pbx]\nkind = \"http\"\nlisten = \"{}\"\ntoken = \"{}\"\npush_url = \"{}\"\n",
                self.listen, self.token, self.pbx.url
            )),
        );
        write_atomically(&self.config_path(), &text);
    }

    /// Start the daemon in-process (the real service wiring).
    pub async fn start(&mut self) {
        let mut options = RunOptions::new(&self.config_path());
        options.clock = self.clock.clone();
        options.notify_tick = self.notify_tick;
        let task = tokio::spawn(service::run(options.clone()));
        if self.pbx_section.is_some() {
            self.daemon = Some((options, task));
            return;
        }
        for _ in 0..500 {
            if task.is_finished() {
                panic!("the daemon stopped at start: {:?}", task.await);
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.daemon = Some((options, task));
        wait_for_port(self.listen).await;
    }

    /// SIGTERM-equivalent: the ordered shutdown. Returns the daemon's result.
    pub async fn stop(&mut self) -> Result<(), service::ServiceError> {
        let (options, task) = self.daemon.take().expect("daemon running");
        options.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("shutdown within 15 s")
            .unwrap()
    }

    /// POST a raw body to /pbx/events; returns status and JSON body.
    pub async fn post_raw(&self, body: &str, token: Option<&str>) -> (u16, Value) {
        self.try_post_raw(body, token).await.unwrap()
    }

    /// Like [`World::post_raw`], but a refused connection is an error, not a panic.
    pub async fn try_post_raw(
        &self,
        body: &str,
        token: Option<&str>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = reqwest::Client::new()
            .post(format!("http://{}/pbx/events", self.listen))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let json = resp.json().await.unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// Report one call state for an extension.
    pub async fn pbx_event(&self, extension: &str, state: &str) -> Value {
        let body = format!(r#"{{"extension":"{extension}","state":"{state}"}}"#);
        let (status, json) = self.post_raw(&body, Some(&self.token)).await;
        assert_eq!(status, 202, "{json}");
        json
    }

    /// Graph requests whose path contains `part`.
    pub fn graph_requests(&self, part: &str) -> Vec<LoggedRequest> {
        self.graph
            .requests()
            .into_iter()
            .filter(|r| r.path.contains(part))
            .collect()
    }

    pub fn set_presence_calls(&self, extension: &str) -> usize {
        let id = self.id(extension);
        self.graph_requests(&format!("/users/{id}/presence/setPresence"))
            .iter()
            .filter(|r| r.status == 200)
            .count()
    }

    pub fn clear_presence_calls(&self, extension: &str) -> usize {
        let id = self.id(extension);
        self.graph_requests(&format!("/users/{id}/presence/clearPresence"))
            .len()
    }

    pub fn app_session(&self, extension: &str) -> Option<graph_emulator::AppSession> {
        self.graph
            .app_session(&self.id(extension), &self.graph.client_id())
    }

    /// The `status --json` report read from the state database.
    pub fn status(&self) -> Value {
        let snapshot = pbx_teams_presence::store::read_snapshot(&self.db_path()).unwrap();
        serde_json::to_value(service::status_report(&snapshot)).unwrap()
    }

    /// Session rows in the state database (what the next start would clear).
    pub fn stored_sessions(&self) -> usize {
        pbx_teams_presence::store::read_snapshot(&self.db_path())
            .unwrap()
            .sessions
            .len()
    }

    pub fn user_status(&self, extension: &str) -> Value {
        let status = self.status();
        status["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["extension"] == extension)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

pub fn user(name: &str, upn: &str, mail: Option<&str>, proxies: &[&str]) -> User {
    User {
        id: None,
        display_name: name.into(),
        user_principal_name: upn.into(),
        mail: mail.map(Into::into),
        proxy_addresses: proxies.iter().map(|s| (*s).into()).collect(),
    }
}

/// Wait until `cond` holds, or fail the test after `secs` seconds with `what`.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub async fn wait_for_port(addr: SocketAddr) {
    for _ in 0..500 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing listens on {addr}");
}

/// Write through a temp file and a rename, as editors do.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
