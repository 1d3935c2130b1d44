//! A real PostgreSQL 15 (Debian's `postgresql-15`; `scripts/test.sh` installs it) for one
//! test: a private cluster in a temp dir, on 127.0.0.1 and a port of its own, password
//! authentication (SCRAM) for the user `postgres`. Stopped and started again on the same
//! port and data by the tests of restarts; killed when dropped. As root, the server runs as
//! the `postgres` user (it refuses root). Also compiled into the store's unit tests
//! (`src/store/pg_tests.rs`).
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // the harness is the outside observer: it reads real time

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where Debian puts the server's programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";
const PASSWORD: &str = "test-password-Zq8";

pub struct Postgres {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Mutex<Option<Child>>,
    /// Serves TLS too (`server.crt`, `server.key` in the data directory).
    tls: bool,
}

/// One database of the server.
pub struct Database {
    pub name: String,
    pub port: u16,
    /// A file holding the password (mode 0600), for `store.postgres_password_file`.
    pub password_file: PathBuf,
}

/// Whether the tests run as root (then the server runs as `postgres`, which it insists on).
fn root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn as_server_user(program: &str) -> Command {
    if root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        Command::new(program)
    }
}

fn chown_to_server_user(path: &Path) {
    if root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(ok.success(), "chown {}", path.display());
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

impl Postgres {
    /// A new cluster, started.
    pub fn start() -> Postgres {
        Postgres::start_with(None)
    }

    /// A new cluster that also serves TLS with this certificate and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Postgres {
        Postgres::start_with(Some((cert_pem, key_pem)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Postgres {
        let initdb = format!("{BIN}/initdb");
        assert!(
            Path::new(&initdb).exists(),
            "PostgreSQL 15 is not installed ({initdb}): apt-get install postgresql-15, or run scripts/test.sh"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        chown_to_server_user(dir.path());
        let data = dir.path().join("data");
        let out = as_server_user(&initdb)
            .arg("-D")
            .arg(&data)
            .args(["-A", "scram-sha-256", "-U", "postgres", "-N", "--pwfile"])
            .arg(&pwfile)
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((cert, key)) = tls {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(data.join("server.crt"), cert).expect("server.crt");
            let key_file = data.join("server.key");
            std::fs::write(&key_file, key).expect("server.key");
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&key_file, private).expect("chmod server.key");
            chown_to_server_user(&data);
        }
        let pg = Postgres {
            dir,
            port: free_port(),
            child: Mutex::new(None),
            tls: tls.is_some(),
        };
        pg.start_again();
        pg
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (after [`Postgres::stop`]) on the same port and data; returns once
    /// it takes connections.
    pub fn start_again(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "the server runs already");
        let log = std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.port)))
            .expect("server log");
        let spawned = as_server_user(&format!("{BIN}/postgres"))
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", if self.tls { "ssl=on" } else { "ssl=off" }])
            .args([
                "-c",
                &format!("unix_socket_directories={}", self.dir.path().display()),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        *child = Some(spawned);
        drop(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(format!("{BIN}/pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server wrote to its log so far.
    pub fn log(&self) -> String {
        let path = self.dir.path().join(format!("server-{}.log", self.port));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// Stops the server at once (SIGINT: "fast" shutdown, every connection closed) and
    /// waits for it.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        // The server is runuser's child: signal the whole group by the server's own pid file.
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned));
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new, empty database (from any context: the blocking client runs on a thread of its
    /// own, away from a test's runtime).
    pub fn database(&self, name: &str) -> Database {
        let url = format!(
            "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname=postgres",
            self.port
        );
        let sql = format!("CREATE DATABASE {name}");
        std::thread::spawn(move || {
            let mut admin =
                postgres::Client::connect(&url, postgres::NoTls).expect("admin connection");
            admin.batch_execute(&sql).expect("create database");
        })
        .join()
        .expect("database created");
        let password_file = self.dir.path().join(format!("{name}.password"));
        std::fs::write(&password_file, PASSWORD).expect("password file");
        Database {
            name: name.to_owned(),
            port: self.port,
            password_file,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Database {
    /// `store.postgres_url` (no TLS: loopback).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable",
            self.port, self.name
        )
    }

    /// The `[store]` section of a config that uses it.
    pub fn store_section(&self) -> String {
        format!(
            "[store]\nkind = \"postgres\"\npostgres_url = \"{}\"\npostgres_password_file = \"{}\"\n",
            self.url(),
            self.password_file.display()
        )
    }

    /// A connection of the test's own, to look at the tables.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let url = format!(
            "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname={}",
            self.port, self.name
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("test connection");
        tokio::spawn(connection);
        client
    }

    /// The settings of `[store]` for this database, as the config would load them.
    pub fn url_with_password(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres password={PASSWORD} dbname={}",
            self.port, self.name
        )
    }
}
