//! The listeners cannot be locked out: the real binary, started with systemd's default soft
//! limit of 1,024 open files, holds 1,100 connections that sent half a request header on the
//! PBX listener and 1,100 that sent half a TLS ClientHello on the webhook (own TLS), and still
//! answers a valid `POST /pbx/events` and a valid handshake on the webhook. The daemon's log
//! says so in a few lines, not one per connection.
//!
//! A test binary of its own: it raises this process's own soft limit (it holds 2,200 sockets),
//! and lowers the daemon's, in the child only.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// systemd's default soft limit on open files (the unit did not set `LimitNOFILE`).
const DAEMON_SOFT_LIMIT: libc::rlim_t = 1024;
/// Half-open connections held on each listener.
const HELD: usize = 1100;
/// Long enough for an answer on a loaded machine; the old code never answered.
const PATIENCE: Duration = Duration::from_secs(20);

/// Half a request header.
const HALF_HEADER: &[u8] = b"POST /pbx/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty";
/// The first bytes of a TLS record announcing a 512-byte ClientHello, then nothing.
const HALF_CLIENT_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn limits() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    limit
}

/// This process holds both floods: its soft limit goes up to its hard limit.
fn raise_own_limit() {
    let mut limit = limits();
    let needed = (2 * HELD + 512) as libc::rlim_t;
    assert!(
        limit.rlim_max >= needed,
        "the hard limit on open files ({}) is below the {needed} this test needs",
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// The binary on the world's config, with a soft limit of 1,024 open files, logging to `log`.
fn spawn_limited(w: &World, log: std::fs::File) -> Daemon {
    let hard = limits().rlim_max;
    let mut command = Command::new(env!("CARGO_BIN_EXE_pbx-teams-presence"));
    command
        .args(["run", "--config"])
        .arg(w.config_path())
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only setrlimit (async-signal-safe) runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: DAEMON_SOFT_LIMIT,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    Daemon(command.spawn().unwrap())
}

/// `HELD` connections to `addr` that each sent `bytes` and then nothing; how many connected.
/// A listener that stopped accepting (its backlog full) ends the flood after a few attempts.
async fn flood(addr: SocketAddr, bytes: &'static [u8], held: &mut Vec<TcpStream>) -> usize {
    let (mut connected, mut failed_in_a_row) = (0, 0);
    for _ in 0..HELD {
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            let mut tcp = TcpStream::connect(addr).await?;
            tcp.write_all(bytes).await?;
            Ok::<_, std::io::Error>(tcp)
        });
        if let Ok(Ok(tcp)) = attempt.await {
            held.push(tcp);
            connected += 1;
            failed_in_a_row = 0;
        } else {
            failed_in_a_row += 1;
            if failed_in_a_row == 3 {
                break;
            }
        }
    }
    connected
}

/// Open descriptors of process `pid`.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_request_is_answered_while_1100_half_open_connections_are_held() {
    raise_own_limit();
    let mut w = World::new().await;
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert_file, key_file) = (w.dir.path().join("cert.pem"), w.dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    w.write_config(&format!(
        "\n[notifications]\nenabled = true\npublic_url = \"https://127.0.0.1:9/notify\"\n\
         listen = \"{UNBOUND}\"\naccounts = [\"sync1@contoso.com\"]\n\
         tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert_file.display(),
        key_file.display()
    ));
    let log_path = w.dir.path().join("daemon.log");
    let daemon = spawn_limited(&w, std::fs::File::create(&log_path).unwrap());
    w.wait_for_binary().await;
    let webhook: SocketAddr = w.status()["webhook_listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pid = daemon.0.id();

    let flood_start = Instant::now();
    let mut held = Vec::with_capacity(2 * HELD);
    let on_pbx = flood(w.listen, HALF_HEADER, &mut held).await;
    let on_webhook = flood(webhook, HALF_CLIENT_HELLO, &mut held).await;
    let flood_took = flood_start.elapsed();
    let daemon_files = open_files(pid);

    let asked = Instant::now();
    let body = r#"{"extension":"1001","state":"ringing"}"#;
    let answer = tokio::time::timeout(PATIENCE, w.try_post_raw(body, Some(&w.token))).await;
    let pbx_took = asked.elapsed();
    let (status, json) = answer
        .expect("the PBX event is answered under the flood")
        .expect("the PBX event is answered, not refused");
    assert_eq!(status, 202, "{json}");

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let asked = Instant::now();
    let handshake = client
        .post(format!(
            "https://{webhook}/notify?validationToken=still-here"
        ))
        .send();
    let answer = tokio::time::timeout(PATIENCE, handshake)
        .await
        .expect("the webhook answers under the flood")
        .expect("the webhook answers over TLS");
    let webhook_took = asked.elapsed();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "still-here");
    let flood_lasted = flood_start.elapsed();

    signal_term(&daemon);
    let mut daemon = daemon;
    assert!(daemon.0.wait().unwrap().success());
    drop(held);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(" WARN ")).collect();
    assert!(
        log.contains("connections_shed"),
        "the shedding is said:\n{log}"
    );
    assert!(
        warnings.len() <= 12,
        "a few lines, not one per connection:\n{}",
        warnings.join("\n")
    );
    eprintln!(
        "held {on_pbx} half-open connections on the PBX listener and {on_webhook} on the \
         webhook (TLS) in {flood_took:.2?}; the daemon (soft limit {DAEMON_SOFT_LIMIT}) had \
         {daemon_files} files open; a valid PBX event was answered in {pbx_took:.2?}, a webhook \
         handshake in {webhook_took:.2?}; {} WARN lines over the {flood_lasted:.2?} of the flood \
         and the stop:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
}

fn signal_term(daemon: &Daemon) {
    let ok = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}
