//! Two real daemons (`[ha]`) sharing one real PostgreSQL database, for tests/ha.rs: each node
//! is the binary, on its own config file; its listener binds port 0 and the node reports the
//! address in its `ha_nodes` row (`pbx=...`), read back here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::World;

/// One node: the binary as a child process, killed if the test ends half-way.
pub struct Node {
    pub name: &'static str,
    pub listen: SocketAddr,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Node {
    /// Writes `config-NAME.toml`: the world's config, then `[store]` (PostgreSQL) and `[ha]`.
    pub fn new(w: &World, name: &'static str, store: &str, lease: &str) -> Node {
        let base = std::fs::read_to_string(w.config_path()).unwrap();
        let text = format!(
            "{base}\n{store}\n[ha]\nenabled = true\nnode = \"{name}\"\nlease = \"{lease}\"\n"
        );
        let config = w.dir.path().join(format!("config-{name}.toml"));
        super::write_atomically(&config, &text);
        let log = w.dir.path().join(format!("{name}.log"));
        Node {
            name,
            listen: super::UNBOUND,
            config,
            log,
            child: None,
        }
    }

    /// Starts the binary (its log in `NAME.log`) and waits until it reports where it takes PBX
    /// events and takes a connection there.
    pub async fn start(&mut self, db: &tokio_postgres::Client) {
        self.start_with(db, true).await;
    }

    /// Starts the binary of a node without a PBX listener (Asterisk) and waits until it is
    /// seen in `ha_nodes`.
    pub async fn start_without_listener(&mut self, db: &tokio_postgres::Client) {
        self.start_with(db, false).await;
    }

    async fn start_with(&mut self, db: &tokio_postgres::Client, listens: bool) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
            .args(["run", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = std::time::Instant::now();
        loop {
            let detail = reported(db, self.name).await;
            if !listens && detail.is_some() {
                return;
            }
            if let Some(addr) = detail.as_deref().and_then(listen_of)
                && std::net::TcpStream::connect(addr).is_ok()
            {
                self.listen = addr;
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} did not report its listener: {}",
                self.name,
                self.journal()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then the exit status (within `within`).
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not stop within {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the node wrote to its journal (stderr) so far.
    pub fn journal(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// POST events to this node's listener; the HTTP status.
    pub async fn post(&self, w: &World, body: &serde_json::Value) -> u16 {
        reqwest::Client::new()
            .post(format!("http://{}/pbx/events", self.listen))
            .bearer_auth(&w.token)
            .json(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }
}

/// The lease row: (holder, epoch), `None` before anyone took it.
pub async fn lease(db: &tokio_postgres::Client) -> Option<(String, i64)> {
    let row = db
        .query_opt(
            "SELECT holder, epoch FROM ha_lease WHERE name = 'leader'",
            &[],
        )
        .await
        .ok()??;
    Some((row.get(0), row.get(1)))
}

/// Waits until `node` holds the lease; its epoch.
pub async fn wait_for_leader(db: &tokio_postgres::Client, node: &str, secs: u64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some((holder, epoch)) = lease(db).await
            && holder == node
            && holder_valid(db).await
        {
            return epoch;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{node} did not lead within {secs} s (lease: {:?})",
            lease(db).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn holder_valid(db: &tokio_postgres::Client) -> bool {
    db.query_opt(
        "SELECT 1 FROM ha_lease WHERE name = 'leader' AND expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint",
        &[],
    )
    .await
    .ok()
    .flatten()
    .is_some()
}

/// The epoch in a Graph write's User-Agent (`... (node pbx1; epoch 7)`), with the node.
pub fn writer(user_agent: Option<&str>) -> Option<(String, i64)> {
    let ua = user_agent?;
    let inner = ua.split_once("(node ")?.1.strip_suffix(')')?;
    let (node, epoch) = inner.split_once("; epoch ")?;
    Some((node.to_owned(), epoch.parse().ok()?))
}

/// What `node` says of itself (`ha_nodes.detail`), if it was seen after it started this time.
async fn reported(db: &tokio_postgres::Client, node: &str) -> Option<String> {
    let row = db
        .query_opt(
            "SELECT detail FROM ha_nodes WHERE node = $1 AND role <> 'stopped'",
            &[&node],
        )
        .await
        .ok()??;
    Some(row.get(0))
}

/// Where a node takes PBX events, from its detail.
fn listen_of(detail: &str) -> Option<SocketAddr> {
    detail
        .split(' ')
        .find_map(|kv| kv.strip_prefix("pbx="))?
        .parse()
        .ok()
}

impl Node {
    /// `status --json` read with this node's config (from the shared database).
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
            .args(["status", "--json", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Node {
    /// What `check` prints with this node's config.
    pub fn check(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"))
            .args(["check", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
