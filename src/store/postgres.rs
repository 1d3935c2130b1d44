//! PostgreSQL behind the store thread (`[store] kind = "postgres"`): the blocking client on
//! the `store` thread, TLS over rustls (the system's CAs plus `store.ca_file`, the server's
//! name checked), a new connection when the old one is lost, and under `[ha]` every
//! transaction fenced by the leader lease.

use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::backend::{Backend, BackendError};
use super::db::{Db, DbError, PgConn};
use super::pg_schema::{self, Version};
use super::schema::SUPPORTED;
use super::types::{Snapshot, Write};
use super::{StoreError, sql};
use crate::config::PostgresStore;
use crate::secret::Secret;

/// `[ha]`: the term whose writes the store takes; any other is refused in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFence {
    pub node: String,
    pub epoch: i64,
}

/// The lease check at the start of every transaction; `FOR SHARE` makes a take-over wait
/// for a transaction in flight.
const FENCE_SQL: &str =
    "SELECT 1 FROM ha_lease WHERE name = 'leader' AND holder = $1 AND epoch = $2
     AND expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint FOR SHARE";

/// Attempts to (re)connect before a batch is given up.
const CONNECT_ATTEMPTS: u32 = 3;

/// How to connect, built once from the config.
pub struct Target {
    config: postgres::Config,
    tls: Option<MakeRustlsConnect>,
    /// `postgres://user@host:port/db`, for messages and as the store's "path".
    pub shown: String,
}

impl Target {
    pub fn new(store: &PostgresStore) -> Result<Target, StoreError> {
        let config = store.pg_config();
        let shown = store.shown();
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => {
                let tls = crate::trust::client_config(store.ca_file.as_ref()).map_err(|e| {
                    StoreError::Tls {
                        path: PathBuf::from(&shown),
                        detail: e.to_string(),
                    }
                })?;
                Some(MakeRustlsConnect::new((*tls).clone()))
            }
        };
        Ok(Target {
            config: config.into(),
            tls,
            shown,
        })
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(&self.shown)
    }

    /// One connection (blocking: the store thread, or `spawn_blocking`).
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(tokio_postgres::NoTls),
        }
    }
}

/// Connects and migrates (blocking).
pub fn open(target: &Target) -> Result<postgres::Client, StoreError> {
    let path = target.path();
    let mut client = target.connect().map_err(|source| StoreError::Postgres {
        path: path.clone(),
        source,
    })?;
    let migrated = pg_schema::migrate(&mut client).map_err(|source| StoreError::Postgres {
        path: path.clone(),
        source,
    })?;
    match migrated {
        Ok(applied) => {
            for version in applied {
                tracing::info!(path = %path.display(), version, "state database {} migrated to version {version}", path.display());
            }
            Ok(client)
        }
        Err(found) => Err(StoreError::NewerSchema {
            path,
            found,
            supported: SUPPORTED,
        }),
    }
}

/// A snapshot for `status`, read only, in one repeatable-read transaction.
pub fn read_snapshot(store: &PostgresStore) -> Result<Snapshot, StoreError> {
    let target = Target::new(store)?;
    let path = target.path();
    let pg = |source| StoreError::Postgres {
        path: path.clone(),
        source,
    };
    let mut client = target.connect().map_err(pg)?;
    match pg_schema::check(&mut client).map_err(pg)? {
        Version::Current => {}
        Version::Older(found) => {
            return Err(StoreError::OlderSchema {
                path,
                found,
                supported: SUPPORTED,
            });
        }
        Version::Newer(found) => {
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported: SUPPORTED,
            });
        }
    }
    let mut conn = PgConn::new(client);
    read_consistent(&mut conn).map_err(|e| StoreError::db(&path, e))
}

fn read_consistent(conn: &mut PgConn) -> Result<Snapshot, DbError> {
    conn.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
    let snapshot = sql::snapshot(conn)?;
    conn.client.batch_execute("COMMIT")?;
    Ok(snapshot)
}

/// The store thread's PostgreSQL.
pub struct Postgres {
    conn: PgConn,
    /// The connection failed: the next step makes a new one.
    broken: bool,
    target: Target,
    fence: Option<StoreFence>,
}

impl Postgres {
    pub fn new(client: postgres::Client, target: Target, fence: Option<StoreFence>) -> Postgres {
        Postgres {
            conn: PgConn::new(client),
            broken: false,
            target,
            fence,
        }
    }

    /// The connection, a new one when it was lost (a few tries with backoff).
    fn connection(&mut self) -> Result<&mut PgConn, BackendError> {
        if self.broken || self.conn.client.is_closed() {
            self.conn = PgConn::new(self.reconnect()?);
            self.broken = false;
            tracing::info!(path = %self.target.shown, "state database {}: connected again", self.target.shown);
        }
        Ok(&mut self.conn)
    }

    fn reconnect(&self) -> Result<postgres::Client, BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.target.connect() {
                Ok(client) => return Ok(client),
                Err(e) if attempt >= CONNECT_ATTEMPTS => return Err(DbError::from(e).into()),
                Err(_) => std::thread::sleep(Duration::from_millis(200) * 2u32.pow(attempt)),
            }
        }
    }

    fn lost(&mut self, e: BackendError) -> BackendError {
        if e.is_connection_lost() {
            self.broken = true;
        }
        e
    }

    fn path(&self) -> PathBuf {
        self.target.path()
    }
}

impl Backend for Postgres {
    fn aborts_on_error(&self) -> bool {
        true
    }

    fn begin(&mut self) -> Result<(), BackendError> {
        let fence = self.fence.clone();
        let conn = self.connection()?;
        let began = conn.client.batch_execute("BEGIN").map_err(DbError::from);
        let result = began.and_then(|()| match &fence {
            Some(f) => conn.query(FENCE_SQL, &[&f.node, &f.epoch], |_| Ok(())),
            None => Ok(vec![()]),
        });
        match result {
            Ok(held) if !held.is_empty() => Ok(()),
            Ok(_) => {
                let _ = conn.client.batch_execute("ROLLBACK");
                let f = fence.unwrap_or_else(|| StoreFence {
                    node: String::new(),
                    epoch: 0,
                });
                Err(BackendError::Fenced {
                    node: f.node,
                    epoch: f.epoch,
                })
            }
            Err(e) => Err(self.lost(e.into())),
        }
    }

    fn apply(&mut self, write: &Write) -> Result<(), BackendError> {
        let conn = self.connection()?;
        let applied = sql::apply(conn, write);
        applied.map_err(|e| self.lost(e.into()))
    }

    fn run_len(&self, writes: &[Write]) -> usize {
        super::pg_runs::run_len(writes)
    }

    fn apply_run(&mut self, run: &[Write]) -> Result<(), BackendError> {
        let conn = self.connection()?;
        let applied = super::pg_runs::apply_run(conn, run);
        applied.map_err(|e| self.lost(e.into()))
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        let conn = self.connection()?;
        let committed = conn.client.batch_execute("COMMIT");
        committed.map_err(|e| self.lost(DbError::from(e).into()))
    }

    fn rollback(&mut self) {
        if !self.broken {
            let _ = self.conn.client.batch_execute("ROLLBACK");
        }
    }

    fn snapshot(&mut self) -> Result<Snapshot, StoreError> {
        let path = self.path();
        let conn = self.connection().map_err(|e| backend_error(&path, e))?;
        read_consistent(conn).map_err(|e| StoreError::db(&path, e))
    }

    fn tokens(&mut self) -> Result<Vec<(String, Secret)>, StoreError> {
        let path = self.path();
        let conn = self.connection().map_err(|e| backend_error(&path, e))?;
        sql::account_tokens(conn).map_err(|e| StoreError::db(&path, e))
    }

    fn close(self: Box<Self>) -> Result<(), StoreError> {
        let path = self.path();
        self.conn
            .client
            .close()
            .map_err(|source| StoreError::Postgres { path, source })
    }
}

fn backend_error(path: &std::path::Path, e: BackendError) -> StoreError {
    match e {
        BackendError::Db(e) => StoreError::db(path, e),
        BackendError::Fenced { node, epoch } => StoreError::Fenced {
            path: path.to_path_buf(),
            node,
            epoch,
        },
    }
}
