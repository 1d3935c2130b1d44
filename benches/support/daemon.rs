//! The real daemon binary as a child process, and a PBX receiver for its pushes: what the
//! benches that measure the whole daemon (memory, start-up, Teams -> PBX) share.
#![allow(clippy::disallowed_methods)] // benches are outside observers: they read real time
#![allow(dead_code)] // each bench uses some of these

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The daemon child, killed if the benchmark fails half-way.
pub struct Daemon(pub Child);

impl Daemon {
    /// `pbx-teams-presence run --config CONFIG`, its log on this process's stderr.
    /// `BENCH_WRAP` (e.g. `heaptrack -o /tmp/daemon`) runs it under that command instead.
    pub fn spawn(config: &Path) -> Daemon {
        let bin = env!("CARGO_BIN_EXE_pbx-teams-presence");
        let wrap = std::env::var("BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut command = match words.next() {
            Some(wrapper) => {
                let mut c = Command::new(wrapper);
                c.args(words).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Daemon(child)
    }

    /// The daemon's pid: the child's, or under `BENCH_WRAP` the wrapper's child that runs the
    /// daemon (the child's if none does).
    fn daemon_pid(&self) -> String {
        let pid = self.0.id().to_string();
        if std::env::var_os("BENCH_WRAP").is_none() {
            return pid;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let daemon = |c: &&str| {
            std::fs::read_to_string(format!("/proc/{c}/cmdline"))
                .is_ok_and(|l| l.contains("pbx-teams-presence"))
        };
        let found = children.split_whitespace().find(daemon).map(str::to_owned);
        found.unwrap_or(pid)
    }

    /// Peak resident memory so far (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.daemon_pid()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time the daemon used so far, seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.daemon_pid().parse().map_or(0.0, cpu_seconds_of)
    }

    /// SIGTERM to the daemon, then wait for the child (under `BENCH_WRAP`, the wrapper).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.daemon_pid()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PBX taking the HTTP connector's pushes (`pbx.push_url`): counts the updates and keeps
/// when each extension last got each state.
#[derive(Clone)]
pub struct PbxReceiver {
    pub url: String,
    pub count: Arc<AtomicUsize>,
    seen: Arc<Mutex<HashMap<(String, String), Instant>>>,
}

impl PbxReceiver {
    pub async fn start() -> PbxReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/presence", listener.local_addr().unwrap());
        let receiver = PbxReceiver {
            url,
            count: Arc::default(),
            seen: Arc::default(),
        };
        let r = receiver.clone();
        let app = axum::Router::new().route(
            "/presence",
            axum::routing::post(move |body: axum::Json<serde_json::Value>| {
                r.take(&body);
                async {}
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn take(&self, body: &serde_json::Value) {
        let at = Instant::now();
        let updates = body["updates"].as_array().cloned().unwrap_or_default();
        self.count.fetch_add(updates.len(), Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap();
        for u in updates {
            let (Some(ext), Some(state)) = (u["extension"].as_str(), u["state"].as_str()) else {
                continue;
            };
            seen.insert((ext.to_owned(), state.to_owned()), at);
        }
    }

    pub fn pushed(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// When `extension` last got `state`.
    pub fn got(&self, extension: &str, state: &str) -> Option<Instant> {
        let seen = self.seen.lock().unwrap();
        seen.get(&(extension.to_owned(), state.to_owned())).copied()
    }
}

pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "benchmark setup timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time process `pid` used so far, user and system (`/proc/PID/stat` fields 14 and 15),
/// seconds.
pub fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // Fields 14 and 15 of proc(5) are 11 and 12 after the name and the state.
    (ticks(11) + ticks(12)) / per_second.max(1.0)
}
