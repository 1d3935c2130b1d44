//! The one error type of the store. Each variant names what the caller should do about it.

use std::path::PathBuf;

/// Why the state database could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be created: fix the directory (exists? writable by the service
    /// user?) or point the config at another path.
    #[error("cannot create state database {}: {source}", .path.display())]
    Create {
        /// The database file we tried to create.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The path could not be looked at (a directory on the way is not readable): run as
    /// the service user, or fix the permissions.
    #[error("cannot access state database {}: {source}", .path.display())]
    Access {
        /// The database file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// SQLite could not open the file: check permissions (`status` must run as the service
    /// user).
    #[error(
        "cannot open state database {}: {source}; the service user must be able to read and \
         write the file and its directory",
        .path.display()
    )]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a SQLite database, or SQLite found it damaged. Restarting does not
    /// help: the admin moves it aside and the daemon starts empty (docs/operations.md,
    /// "A damaged state database").
    #[error(
        "state database {} is damaged or not a SQLite database ({detail}); restarting will not \
         help: stop the service, move the file aside (with its -wal and -shm files) and start \
         again. The daemon then starts empty: it looks users up again and pushes every state \
         again; only \"In a call\" sessions written before are forgotten, and they expire in \
         Teams by themselves within sync.in_call_expiration",
        .path.display()
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file does not exist (the `status` command never creates it): check the path, or
    /// start the daemon once.
    #[error("state database {} does not exist; has the daemon run with this config?", .path.display())]
    Missing {
        /// The path that was looked at.
        path: PathBuf,
    },
    /// The file was written by a newer version of this program: upgrade the program, or move
    /// the file away to start with empty state. We never downgrade a schema.
    #[error(
        "state database {} has schema version {found}, newer than version {supported} that \
         this build knows; upgrade the program or move the file away",
        .path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The newest version this build can migrate to.
        supported: i64,
    },
    /// The file has an older schema and a read-only reader cannot migrate it: start the
    /// daemon (this version) once, it migrates on open.
    #[error(
        "state database {} has schema version {found}, older than version {supported}; \
         start the daemon once to migrate it",
        .path.display()
    )]
    OlderSchema {
        /// The database file.
        path: PathBuf,
        /// `PRAGMA user_version` found in the file.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// A SQLite call failed outside a write batch (migration, snapshot): the detail says
    /// which; usually a disk or permission problem.
    #[error("state database {}: {source}", .path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// At least one write before a `flush` was not committed (already logged with its
    /// detail); the state on disk may be missing it. Usually disk full or I/O errors.
    #[error("state database {}: a write was not committed: {detail}", .path.display())]
    WriteFailed {
        /// The database file.
        path: PathBuf,
        /// The first failure, as SQLite reported it.
        detail: String,
    },
    /// A PostgreSQL call failed outside a write batch (connecting, migrating, reading): the
    /// detail says which; check `[store] postgres_url`, the server and the network.
    #[error("state database {}: {source}", .path.display())]
    Postgres {
        /// The database (`postgres://user@host:port/db`, never the password).
        path: PathBuf,
        #[source]
        source: postgres::Error,
    },
    /// TLS to PostgreSQL cannot be set up (no protocol version rustls accepts).
    #[error("state database {}: cannot set up TLS: {detail}", .path.display())]
    Tls { path: PathBuf, detail: String },
    /// `[ha]`: this node no longer holds the leader lease for its epoch: its writes since
    /// were dropped (another node leads).
    #[error(
        "state database {}: node {node} no longer holds the leader lease (epoch {epoch}); its writes were dropped",
        .path.display()
    )]
    Fenced {
        path: PathBuf,
        node: String,
        epoch: i64,
    },
    /// The store thread has stopped (closed, or it died): nothing more can be written.
    #[error("the state database is closed")]
    Closed,
    /// The operating system refused to start the store thread.
    #[error("cannot start the store thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// The store thread panicked; this is a bug, the log has the panic message.
    #[error("the store thread panicked")]
    Panicked,
}

impl StoreError {
    /// A failed statement outside a write batch.
    pub(super) fn db(path: &std::path::Path, e: super::db::DbError) -> StoreError {
        let path = path.to_path_buf();
        match e {
            super::db::DbError::Sqlite(source) => StoreError::Sqlite { path, source },
            super::db::DbError::Postgres(source) => StoreError::Postgres { path, source },
        }
    }
}
