//! Creating the file, connection settings and numbered migrations.
//!
//! The schema version is `PRAGMA user_version`. Migration `N` (1-based) moves the database
//! from version `N-1` to `N` in one transaction, together with the version bump. A file with a
//! version newer than [`SUPPORTED`] is refused, never downgraded.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// Migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
/// Append only: never edit an entry that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema. Every per-user table is keyed by extension and does not reference
    // `users`, so state written before the user is upserted is kept.
    "CREATE TABLE users (
        extension TEXT PRIMARY KEY NOT NULL,
        email     TEXT NOT NULL,
        direction TEXT NOT NULL
    );
    CREATE TABLE matches (
        extension TEXT PRIMARY KEY NOT NULL,
        teams_id  TEXT,
        status    TEXT NOT NULL,
        detail    TEXT,
        at        INTEGER NOT NULL
    );
    CREATE TABLE teams (
        extension    TEXT PRIMARY KEY NOT NULL,
        availability TEXT NOT NULL,
        activity     TEXT NOT NULL,
        at           INTEGER NOT NULL
    );
    CREATE TABLE pushed (
        extension    TEXT PRIMARY KEY NOT NULL,
        state        TEXT NOT NULL,
        availability TEXT NOT NULL,
        activity     TEXT NOT NULL,
        at           INTEGER NOT NULL
    );
    CREATE TABLE pbx (
        extension TEXT PRIMARY KEY NOT NULL,
        state     TEXT NOT NULL,
        dnd       INTEGER,
        at        INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        extension  TEXT PRIMARY KEY NOT NULL,
        teams_id   TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE errors (
        id        INTEGER PRIMARY KEY,
        component TEXT NOT NULL,
        user      TEXT,
        message   TEXT NOT NULL,
        at        INTEGER NOT NULL
    );
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY NOT NULL,
        value INTEGER NOT NULL
    );
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );",
    // 2: change notifications. The refresh token of each subscription account (written by
    // `login`, rotated by the daemon), and the subscriptions the daemon holds, so a restart
    // reuses or deletes them instead of leaving orphans.
    "CREATE TABLE accounts (
        account       TEXT PRIMARY KEY NOT NULL,
        refresh_token TEXT NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE TABLE subscriptions (
        id            TEXT PRIMARY KEY NOT NULL,
        account       TEXT NOT NULL,
        client_state  TEXT NOT NULL,
        expires_at    INTEGER NOT NULL,
        users         INTEGER NOT NULL,
        rich          INTEGER NOT NULL
    );
    CREATE TABLE coverage (
        teams_id TEXT PRIMARY KEY NOT NULL,
        account  TEXT NOT NULL
    );
    CREATE INDEX coverage_account ON coverage (account);",
    // 3: the phone's DND as the user's preferred presence: the ones we set, so a restart
    // after a crash clears (or keeps) them instead of leaving the user in DND.
    "CREATE TABLE preferred (
        teams_id   TEXT PRIMARY KEY NOT NULL,
        extension  TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
    // 4: high availability ([ha], PostgreSQL only in practice; here so both schemas keep one
    // numbering): the leader lease, the nodes, PBX events for the leader.
    "CREATE TABLE ha_lease (
        name       TEXT PRIMARY KEY NOT NULL,
        holder     TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        since      INTEGER NOT NULL
    );
    CREATE TABLE ha_nodes (
        node       TEXT PRIMARY KEY NOT NULL,
        role       TEXT NOT NULL,
        epoch      INTEGER NOT NULL,
        seen_at    INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        detail     TEXT NOT NULL
    );
    CREATE TABLE ha_inbox (
        id         INTEGER PRIMARY KEY,
        node       TEXT NOT NULL,
        extension  TEXT NOT NULL,
        state      TEXT NOT NULL,
        dnd        INTEGER,
        at         INTEGER NOT NULL
    );",
];

/// The schema version this build writes and reads.
pub const SUPPORTED: i64 = MIGRATIONS.len() as i64;

/// How long a statement waits for a lock held by another connection (the `status` reader
/// during a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates the database file with mode 0600 if it does not exist yet, before SQLite writes
/// anything to it. SQLite gives its `-wal` and `-shm` files the mode of the main file.
pub fn create_private(path: &Path) -> Result<(), StoreError> {
    let created = create_new_0600(path);
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_readable_by_others(path);
            Ok(())
        }
        Err(source) => Err(StoreError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(unix)]
fn create_new_0600(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask can only remove bits; set the mode explicitly so it is exactly 0600.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn create_new_0600(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "state database {} is accessible by other users; chmod 600 it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

/// Connection settings for the daemon's connection: WAL so the `status` command can read
/// while the daemon writes, `synchronous=NORMAL` (durable at checkpoints, never corrupt).
pub fn configure(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |source| classify(path, source);
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite)?;
    // An in-memory database answers "memory"; a file that refuses WAL is worth a warning.
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(path = %path.display(), journal_mode = %mode, "WAL not enabled on {} (journal_mode {mode})", path.display());
    }
    // A 512 KiB page cache (SQLite's default is 2 MiB): the writes are keyed updates and the
    // OS caches the file anyway; the daemon's memory at 50,000 users is what this buys.
    conn.pragma_update(None, "cache_size", -512)
        .map_err(sqlite)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Settings for a read-only reader (the `status` command).
pub fn configure_reader(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Refuses a file that is not a SQLite database or that SQLite finds damaged
/// (`PRAGMA quick_check`: every page read once, about 50 ms for 50,000 users).
pub fn check_intact(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let damaged = |detail: String| StoreError::Damaged {
        path: path.to_path_buf(),
        detail,
    };
    let verdict: String = conn
        .pragma_query_value(None, "quick_check", |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(damaged(verdict.chars().take(200).collect()))
    }
}

/// An error from opening or reading the file: `Damaged` when SQLite says the file is not a
/// database or is corrupt, `Open` otherwise.
pub fn classify(path: &Path, source: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match source.sqlite_error_code() {
        Some(NotADatabase | DatabaseCorrupt) => StoreError::Damaged {
            path: path.to_path_buf(),
            detail: source.to_string(),
        },
        _ => StoreError::Open {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// Reads `PRAGMA user_version`.
pub fn version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| classify(path, source))
}

/// Brings the schema to [`SUPPORTED`], one transaction per migration; refuses a newer one.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let found = version(conn, path)?;
    if found > SUPPORTED {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SUPPORTED,
        });
    }
    for (from, sql) in (0_i64..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        apply_migration(conn, from + 1, sql).map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        tracing::info!(path = %path.display(), version = from + 1, "state database {} migrated to version {}", path.display(), from + 1);
    }
    Ok(())
}

/// Runs one migration and the version bump in one transaction; a failure rolls both back
/// (the transaction rolls back when dropped uncommitted).
fn apply_migration(conn: &mut Connection, to: i64, sql: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute_batch(sql)?;
    tx.pragma_update(None, "user_version", to)?;
    tx.commit()
}

/// For a reader that cannot migrate: the version must be exactly [`SUPPORTED`].
pub fn check_current(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = version(conn, path)?;
    let path = path.to_path_buf();
    match found.cmp(&SUPPORTED) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(StoreError::NewerSchema {
            path,
            found,
            supported: SUPPORTED,
        }),
        std::cmp::Ordering::Less => Err(StoreError::OlderSchema {
            path,
            found,
            supported: SUPPORTED,
        }),
    }
}
