//! Test fixtures: a Graph emulator, a PBX push receiver, a config in a temp dir, and the
//! daemon's real service wiring (or its real binary), all on loopback. Every listener binds
//! port 0 and the address it got is read back (`RunOptions::bound`, or `status`'s
//! `pbx_listen` for the binary): no port is guessed and then bound by somebody else.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time
#![allow(dead_code)]

mod certificate;
mod crowd;
pub mod ha;
pub mod lifecycle_notify;
pub mod notify;
pub mod postgres;
mod receiver;

pub use receiver::PbxReceiver;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use graph_emulator::{Emulator, LoggedRequest, User};
use pbx_teams_presence::service::{self, Bound, Clock, RunOptions};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
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
    /// Where the daemon's `POST /pbx/events` is bound: read back at each start (the config
    /// asks for port 0).
    pub listen: SocketAddr,
    /// When the last run of the binary started (`status`'s `started_at`), once it stopped.
    last_start: Option<String>,
    /// `RunOptions::bound` of every daemon this world starts (one sender, so whatever
    /// watches it follows restarts); reset to nothing while no daemon runs.
    pub bound: watch::Sender<Bound>,
    pub token: String,
    pub people: Vec<Person>,
    pub clock: Clock,
    /// The `[pbx]` section; `None`: the HTTP connector on `listen`, pushing to `pbx`.
    pub pbx_section: Option<String>,
    /// `RunOptions::notify_tick` for the daemon.
    pub notify_tick: Duration,
    /// The `[azure]` credential lines; `None`: the emulator's client secret.
    pub credential: Option<String>,
    daemon: Option<(RunOptions, JoinHandle<Result<(), service::ServiceError>>)>,
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
        let w = World {
            graph,
            pbx,
            dir,
            listen: UNBOUND,
            last_start: None,
            bound: watch::Sender::new(Bound::default()),
            token: "pbx-test-token".into(),
            people,
            clock: Clock::default(),
            pbx_section: None,
            notify_tick: Duration::from_secs(30),
            credential: None,
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

    /// Adds `keys` (TOML lines) at the top of `[section]` of the config file as written: for
    /// keys of a section the config already has (`sync`, `users`), which `extra` cannot add.
    pub fn add_to_section(&self, section: &str, keys: &str) {
        let config = std::fs::read_to_string(self.config_path()).unwrap();
        let header = format!("[{section}]\n");
        assert!(config.contains(&header), "no [{section}] in the config");
        let config = config.replacen(&header, &format!("{header}{keys}\n"), 1);
        write_atomically(&self.config_path(), &config);
    }

    /// The config file, with `extra` TOML appended (sections of its own).
    pub fn write_config(&self, extra: &str) {
        let base = self.graph.base_url();
        let text = format!(
            r#"[azure]
tenant_id = "{tenant}"
client_id = "{client}"
{credential}
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
            credential = self.credential.clone().unwrap_or_else(|| format!(
                "client_secret = \"{}\"",
                self.graph.client_secret()
            )),
            poll = "1s",
            pbx = self.pbx_section.clone().unwrap_or_else(|| format!(
                "[pbx]\nkind = \"http\"\nlisten = \"{UNBOUND}\"\ntoken = \"{}\"\npush_url = \"{}\"\n",
                self.token, self.pbx.url
            )),
        );
        write_atomically(&self.config_path(), &text);
    }

    /// Start the daemon in-process (the real service wiring); returns once its listeners are
    /// bound, with `listen` set to where `POST /pbx/events` is.
    pub async fn start(&mut self) {
        self.bound.send_replace(Bound::default());
        let mut options = RunOptions::new(&self.config_path());
        options.clock = self.clock.clone();
        options.notify_tick = self.notify_tick;
        options.bound = self.bound.clone();
        let mut bound = self.bound.subscribe();
        let mut task = tokio::spawn(service::run(options.clone()));
        // The daemon reports its listeners once they are bound (none for Asterisk without
        // notifications, but it reports that too).
        let reported = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::select! {
                changed = bound.changed() => changed.expect("the daemon reports its listeners"),
                result = &mut task => panic!("the daemon stopped at start: {result:?}"),
            }
        })
        .await;
        reported.expect("the daemon bound its listeners within 30 s");
        if let Some(pbx) = self.bound.borrow().pbx {
            self.listen = pbx;
        }
        self.daemon = Some((options, task));
    }

    /// SIGTERM-equivalent: the ordered shutdown. Returns the daemon's result.
    pub async fn stop(&mut self) -> Result<(), service::ServiceError> {
        let (options, task) = self.daemon.take().expect("daemon running");
        options.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("shutdown within 15 s")
            .unwrap();
        self.bound.send_replace(Bound::default());
        result
    }

    /// Where the running daemon's change-notification webhook is bound.
    pub fn webhook(&self) -> SocketAddr {
        self.bound.borrow().webhook.expect("the webhook is bound")
    }

    /// An address for `notifications.public_url`: a TCP relay to wherever the webhook of the
    /// daemon running now is bound, like the reverse proxy in front of it in production (the
    /// webhook takes any path: the public URL's path is the proxy's). The relay's own port
    /// is bound here on port 0 and held until the test ends, so nothing can take it; the
    /// daemon binds its webhook on port 0 too, and the relay learns that address from
    /// `RunOptions::bound`. Graph is told `public_url` when a subscription is made, which is
    /// after the config was read; hence the relay rather than a port written in beforehand.
    /// A connection that comes while no daemon runs waits (at most 10 s) for the next one.
    pub async fn webhook_relay(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bound = self.bound.subscribe();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut bound = bound.clone();
                tokio::spawn(async move {
                    let target = tokio::time::timeout(
                        Duration::from_secs(10),
                        bound.wait_for(|b| b.webhook.is_some()),
                    )
                    .await;
                    let Some(webhook) = target.ok().and_then(|r| r.ok()).and_then(|b| b.webhook)
                    else {
                        return;
                    };
                    if let Ok(mut outbound) = TcpStream::connect(webhook).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        addr
    }

    /// The real binary was just spawned on this world's config: wait until it reports where
    /// `POST /pbx/events` is bound (`status`'s `pbx_listen`) and that address takes a
    /// connection, and use it from now on. A restart must [`World::forget_listen`] first.
    pub async fn wait_for_binary(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reported = pbx_teams_presence::store::read_snapshot(&self.db_path())
                .ok()
                .map(|s| service::status_report(&s))
                .filter(|r| r.started_at.is_some() && r.started_at != self.last_start)
                .and_then(|r| r.pbx_listen)
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if let Some(addr) = reported
                && TcpStream::connect(addr).await.is_ok()
            {
                self.listen = addr;
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon did not report a PBX listener within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Before the binary is started again: remember when the last run (stopped by now)
    /// started, so [`World::wait_for_binary`] takes only the new run's address. (The new run
    /// may well be given the same port again, so "a different address" would not do.)
    pub async fn forget_listen(&mut self) {
        self.listen = UNBOUND;
        self.last_start = pbx_teams_presence::store::read_snapshot(&self.db_path())
            .ok()
            .and_then(|s| service::status_report(&s).started_at);
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
        ..Default::default()
    }
}

/// The PBX states pushed to `extension` so far, once everything queued before now has gone:
/// pushes go out in order, so after a later change of Alice's (to Busy) has been pushed,
/// anything for `extension` before it has been too. Alice must be Available, pushed once.
pub async fn pushed_states_after_a_barrier(w: &World, extension: &str) -> Vec<Value> {
    w.graph.set_user_presence(&w.id(ALICE), "Busy", "Busy");
    eventually(10, "Alice's push (the barrier)", || {
        w.pbx.updates_for(ALICE).len() == 2
    })
    .await;
    w.pbx
        .updates_for(extension)
        .iter()
        .map(|u| u["state"].clone())
        .collect()
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

/// An oversized body, refused before it was read: the server answered `want`, or it closed
/// the connection before the client had written it all (a broken pipe or a reset: the close
/// raced the client's last writes). Any other failure fails the test.
pub fn refused_before_read(sent: Result<u16, reqwest::Error>, want: u16) {
    match sent {
        Ok(status) => assert_eq!(status, want),
        Err(e) => {
            let e = format!("{e:?}");
            assert!(
                e.contains("BrokenPipe") || e.contains("Reset"),
                "the post failed otherwise than by the server's close: {e}"
            );
        }
    }
}

/// What every listen address in the configs written here asks for: loopback, any free port.
pub const UNBOUND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Write through a temp file and a rename, as editors do.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
