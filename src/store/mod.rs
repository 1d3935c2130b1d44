//! The state database: users, their last known states, open "In a call" sessions, counters
//! and recent errors, in one SQLite file.
//!
//! SQLite runs on its own thread (named `store`), which owns the only writing connection.
//! Async code talks to it through a bounded channel: [`Store::write`] and [`Store::write_all`]
//! wait only while the queue is full (a slow disk slows the daemon, it never loses a write),
//! and the thread applies everything queued in one transaction as soon as it is free, so a
//! burst after a poll costs one commit and a lone write is committed at once. [`Store::flush`],
//! [`Store::snapshot`] and [`Store::close`] wait for the thread without blocking the runtime.
//!
//! The `status` command reads the same file with [`read_snapshot`] while the daemon runs
//! (WAL mode lets a reader and the writer work side by side).
//!
//! - `schema`: file creation (mode 0600), connection settings, numbered migrations.
//! - `sql`: the statements for each [`Write`] and the [`Snapshot`] query.
//! - `worker`: the thread and its batching.

mod backend;
mod db;
mod error;
mod pg_runs;
mod pg_schema;
pub mod postgres;
mod schema;
mod sql;
mod types;
mod worker;

#[cfg(test)]
mod account_tests;
#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod pg_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::mpsc::Sender;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::oneshot;

pub use error::StoreError;
pub use schema::SUPPORTED as SCHEMA_VERSION;
pub use types::{
    AccountRow, ERRORS_KEPT, ERRORS_SHOWN, ErrorRow, LeaseRow, MetaKey, NodeRow, PushedRow,
    SessionRow, Snapshot, StateAt, SubscriptionRow, UserRow, Write,
};
use worker::{Ctx, MAX_BATCH, Msg, QUEUE, Stats, Worker};

/// Handle to the state database. Cheap to clone; every clone talks to the same thread.
/// The thread stops on [`Store::close`], or once every clone is dropped (after committing
/// what was queued).
#[derive(Clone)]
pub struct Store {
    /// Shared by the clones.
    inner: Arc<Inner>,
}

struct Inner {
    /// The queue of the store thread.
    tx: Sender<Msg>,
    /// The database path (or `:memory:`), for error messages.
    path: PathBuf,
    /// Counters kept by the thread.
    stats: Arc<Stats>,
    /// Taken by the first `close`, which joins the thread.
    thread: Mutex<Option<JoinHandle<()>>>,
    /// When the last "state database is slow" WARN was logged.
    stall_warned: Mutex<Option<tokio::time::Instant>>,
}

/// At most one "state database is slow" WARN per this period; the count is in the stats.
const STALL_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What the store thread has done so far; for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed that held at least one write.
    pub commits: u64,
    /// Writes applied without error.
    pub writes_applied: u64,
    /// Writes that failed (each was logged).
    pub writes_failed: u64,
    /// Times a writer waited because the queue was full (a slow disk: delayed, not dropped).
    pub stalls: u64,
}

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates the database, then starts the
    /// `store` thread. Opening does file I/O: call it before the runtime starts or from
    /// `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        schema::create_private(path)?;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::start(conn, path.to_path_buf())
    }

    /// Opens the database `config` names: the SQLite file `sync.state_db`, or PostgreSQL
    /// (`[store]`; writes fenced by `fence` under `[ha]`). Blocking: before the runtime or in
    /// `spawn_blocking`.
    pub fn open_configured(
        config: &crate::config::Config,
        fence: Option<postgres::StoreFence>,
    ) -> Result<Store, StoreError> {
        match &config.store {
            crate::config::StoreConfig::Sqlite => Store::open(&config.sync.state_db),
            crate::config::StoreConfig::Postgres(pg) => Store::open_postgres(pg, fence),
        }
    }

    /// Connects to PostgreSQL, migrates, and starts the `store` thread. Blocking.
    pub fn open_postgres(
        store: &crate::config::PostgresStore,
        fence: Option<postgres::StoreFence>,
    ) -> Result<Store, StoreError> {
        let target = postgres::Target::new(store)?;
        let client = postgres::open(&target)?;
        let path = target.path();
        Self::spawn(
            Box::new(postgres::Postgres::new(client, target, fence)),
            path,
        )
    }

    /// An empty database in memory, for tests and dry runs.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Self::start(conn, path)
    }

    fn start(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        schema::configure(&conn, &path)?;
        schema::check_intact(&conn, &path)?;
        schema::migrate(&mut conn, &path)?;
        let backend = Box::new(backend::Sqlite {
            conn,
            path: path.clone(),
        });
        Self::spawn(backend, path)
    }

    /// Starts the store thread on `backend`.
    fn spawn(backend: Box<dyn backend::Backend>, path: PathBuf) -> Result<Store, StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
        let stats = Arc::new(Stats::default());
        let worker = Worker {
            backend,
            rx,
            ctx: Ctx {
                path: path.clone(),
                stats: Arc::clone(&stats),
            },
            unreported: None,
        };
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || worker.run())
            .map_err(StoreError::Spawn)?;
        Ok(Store {
            inner: Arc::new(Inner {
                tx,
                path,
                stats,
                thread: Mutex::new(Some(thread)),
                stall_warned: Mutex::new(None),
            }),
        })
    }

    /// Queues a write; waits only while the queue is full. Writes are applied in the order
    /// they were queued. A failing write is logged by the thread and does not stop the others.
    pub async fn write(&self, w: Write) {
        if let Err(msg) = self.send(Msg::Write(w)).await {
            self.dropped(&msg);
        }
    }

    /// Queues writes in order, as few messages as possible (at most 10,000 writes
    /// each); waits only while the queue is full.
    pub async fn write_all(&self, writes: Vec<Write>) {
        if writes.len() <= MAX_BATCH {
            if !writes.is_empty() {
                self.send_writes(writes).await;
            }
            return;
        }
        let mut writes = writes.into_iter();
        loop {
            let chunk: Vec<Write> = writes.by_ref().take(MAX_BATCH).collect();
            if chunk.is_empty() || !self.send_writes(chunk).await {
                return;
            }
        }
    }

    /// False when the thread is gone (the loss is logged).
    async fn send_writes(&self, writes: Vec<Write>) -> bool {
        match self.send(Msg::Writes(writes)).await {
            Ok(()) => true,
            Err(msg) => {
                self.dropped(&msg);
                false
            }
        }
    }

    /// Queues `msg`, waiting while the queue is full; a wait is counted and reported. The
    /// message comes back if the thread is gone.
    async fn send(&self, msg: Msg) -> Result<(), Msg> {
        let msg = match self.inner.tx.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(msg)) => return Err(msg),
            Err(TrySendError::Full(msg)) => msg,
        };
        // Counted before the wait, so the wait itself can be seen from outside.
        let stalls = self.inner.stats.stalls.fetch_add(1, Ordering::Relaxed) + 1;
        let since = crate::clock::monotonic();
        let sent = self.inner.tx.send(msg).await.map_err(|e| e.0);
        self.stalled(since.elapsed(), stalls);
        sent
    }

    /// A writer waited `waited` for room in the queue: one WARN per minute at most.
    fn stalled(&self, waited: std::time::Duration, stalls: u64) {
        let now = crate::clock::monotonic();
        let mut warned = match self.inner.stall_warned.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if warned.is_some_and(|at| now.duration_since(at) < STALL_WARN_EVERY) {
            return;
        }
        *warned = Some(now);
        let path = self.inner.path.display();
        let waited_ms = waited.as_millis();
        tracing::warn!(path = %path, waited_ms, stalls,
            "state database {path} is slow: its queue was full and the daemon waited {waited_ms} ms; PBX events and Teams changes are delayed, none is dropped ({stalls} waits so far)");
    }

    /// The thread is gone: say which write was lost.
    fn dropped(&self, msg: &Msg) {
        let (kind, extension, count) = match msg {
            Msg::Write(w) => (w.kind(), w.extension().unwrap_or(""), 1),
            Msg::Writes(w) => (
                w.first().map_or("", Write::kind),
                w.first().and_then(Write::extension).unwrap_or(""),
                w.len(),
            ),
            _ => ("", "", 0),
        };
        let path = self.inner.path.display();
        tracing::error!(path = %path, write = kind, extension, count,
            "state database {path} is closed; write dropped ({kind} {extension})");
    }

    /// Resolves once every write queued before it is committed. `WriteFailed` if one of
    /// them could not be applied or committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ask(Msg::Flush).await?
    }

    /// Everything in the database, including every write queued before the call.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        self.ask(Msg::Snapshot).await?
    }

    /// Every subscription account's refresh token, including writes queued before the call.
    pub async fn account_tokens(&self) -> Result<Vec<(String, crate::secret::Secret)>, StoreError> {
        self.ask(Msg::Tokens).await?
    }

    /// Commits what is queued, closes the database and joins the thread (on the blocking
    /// pool, not the runtime). Writes sent afterwards through other clones are dropped.
    pub async fn close(self) -> Result<(), StoreError> {
        let result = self.ask(Msg::Close).await?;
        let thread = match self.inner.thread.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                return Err(StoreError::Panicked);
            }
        }
        result
    }

    /// What the thread has done so far; never waits.
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.stats;
        StoreStats {
            commits: s.commits.load(Ordering::Relaxed),
            writes_applied: s.applied.load(Ordering::Relaxed),
            writes_failed: s.failed.load(Ordering::Relaxed),
            stalls: s.stalls.load(Ordering::Relaxed),
        }
    }

    /// The database path, or `:memory:`.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sends a request carrying a reply channel and waits for the answer.
    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(msg(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// Tests only: parks the thread until `release` sends or is dropped.
    #[cfg(test)]
    async fn hold(&self, release: std::sync::mpsc::Receiver<()>) {
        let _ = self.inner.tx.send(Msg::Hold(release)).await;
    }
}

/// Connects to PostgreSQL and brings its schema to this build's version (blocking).
pub fn prepare(store: &crate::config::PostgresStore) -> Result<(), StoreError> {
    let target = postgres::Target::new(store)?;
    let client = postgres::open(&target)?;
    let path = target.path();
    client
        .close()
        .map_err(|source| StoreError::Postgres { path, source })
}

/// Reads a snapshot of the database `config` names, without writing to it (`status`).
pub fn read_configured(config: &crate::config::Config) -> Result<Snapshot, StoreError> {
    match &config.store {
        crate::config::StoreConfig::Sqlite => read_snapshot(&config.sync.state_db),
        crate::config::StoreConfig::Postgres(pg) => postgres::read_snapshot(pg),
    }
}

/// Reads a snapshot from the file without writing to it, for the `status` command; works
/// while the daemon has the file open. `Missing` if the file does not exist, and the schema
/// must be exactly the one this build knows.
pub fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
    match path.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(StoreError::Access {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    schema::configure_reader(&conn, path)?;
    schema::check_current(&conn, path)?;
    let sqlite = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    // One read transaction, so the parts of the snapshot agree with each other.
    conn.execute_batch("BEGIN").map_err(sqlite)?;
    let snapshot = sql::snapshot(&mut conn).map_err(|e| StoreError::db(path, e))?;
    conn.execute_batch("COMMIT").map_err(sqlite)?;
    Ok(snapshot)
}
