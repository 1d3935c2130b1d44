//! The two databases behind the store thread: SQLite (a file, the default) and PostgreSQL
//! (shared by the nodes of `[ha]`). The thread only begins, applies, commits and reads; what
//! differs is here.

use rusqlite::Connection;

use super::db::DbError;
use super::types::{Snapshot, Write};
use super::{StoreError, sql};
use crate::secret::Secret;

/// Why a step of a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// `[ha]`: this node no longer holds the leader lease for its epoch.
    #[error("node {node} no longer holds the leader lease (epoch {epoch})")]
    Fenced { node: String, epoch: i64 },
}

impl BackendError {
    /// The connection is gone: a new one, and the batch again, may succeed.
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, BackendError::Db(e) if e.is_connection_lost())
    }
}

/// What the store thread asks of a database.
pub trait Backend: Send {
    /// A failed statement aborts the transaction (PostgreSQL): the batch is run again
    /// without it. SQLite goes on after a failed statement.
    fn aborts_on_error(&self) -> bool;
    fn begin(&mut self) -> Result<(), BackendError>;
    fn apply(&mut self, write: &Write) -> Result<(), BackendError>;
    /// How many writes from the start of `writes` this database applies as one statement
    /// ([`Backend::apply_run`]); below 2: one at a time.
    fn run_len(&self, _writes: &[Write]) -> usize {
        0
    }
    /// Applies a run [`Backend::run_len`] found, with the effect of applying it write by write.
    fn apply_run(&mut self, run: &[Write]) -> Result<(), BackendError> {
        run.iter().try_for_each(|w| self.apply(w))
    }
    fn commit(&mut self) -> Result<(), BackendError>;
    fn rollback(&mut self);
    fn snapshot(&mut self) -> Result<Snapshot, StoreError>;
    fn tokens(&mut self) -> Result<Vec<(String, Secret)>, StoreError>;
    fn close(self: Box<Self>) -> Result<(), StoreError>;
}

/// SQLite: the only writing connection to the file.
pub struct Sqlite {
    pub conn: Connection,
    pub path: std::path::PathBuf,
}

impl Backend for Sqlite {
    fn aborts_on_error(&self) -> bool {
        false
    }

    fn begin(&mut self) -> Result<(), BackendError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| BackendError::Db(e.into()))
    }

    fn apply(&mut self, write: &Write) -> Result<(), BackendError> {
        Ok(sql::apply(&mut self.conn, write)?)
    }

    fn commit(&mut self) -> Result<(), BackendError> {
        self.conn
            .execute_batch("COMMIT")
            .map_err(|e| BackendError::Db(e.into()))
    }

    fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn snapshot(&mut self) -> Result<Snapshot, StoreError> {
        sql::snapshot(&mut self.conn).map_err(|e| StoreError::db(&self.path, e))
    }

    fn tokens(&mut self) -> Result<Vec<(String, Secret)>, StoreError> {
        sql::account_tokens(&mut self.conn).map_err(|e| StoreError::db(&self.path, e))
    }

    /// Closes the connection (checkpointing the WAL when it is the last one).
    fn close(self: Box<Self>) -> Result<(), StoreError> {
        let path = self.path;
        self.conn.close().map_err(|(_, source)| {
            tracing::error!(path = %path.display(), error = %source, "closing the state database {} failed: {source}", path.display());
            StoreError::Sqlite { path, source }
        })
    }
}
