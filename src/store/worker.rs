//! The store thread. It owns the only writing connection, takes messages from a bounded
//! channel (senders wait when it is full: a slow disk slows the daemon down, it never makes
//! it drop a write or grow without bound), and applies everything that is queued in one transaction, so a burst (50,000
//! `SetTeams` after one poll) costs one commit, and a lone write (an `OpenSession`) is
//! committed as soon as it arrives: no timer ever delays a commit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use super::types::{Snapshot, Write};
use super::{StoreError, sql};
use crate::secret::Secret;

/// Most messages taken into one transaction; bounds memory (a poll of 50,000 users is five
/// transactions, not one vector of 50,000 writes) and commit latency if the queue never
/// empties.
pub(super) const MAX_BATCH: usize = 10_000;

/// Messages the queue holds before senders wait. A message may carry up to [`MAX_BATCH`]
/// writes (the main loop sends what one of its steps produced as one message).
pub(super) const QUEUE: usize = 256;

/// A request to the store thread.
pub(super) enum Msg {
    /// Apply this write.
    Write(Write),
    /// Apply these writes, in order (at most [`MAX_BATCH`]).
    Writes(Vec<Write>),
    /// Answer once every earlier write is committed.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Answer with a snapshot that includes every earlier write.
    Snapshot(oneshot::Sender<Result<Snapshot, StoreError>>),
    /// Answer with every account's refresh token (after every earlier write).
    Tokens(oneshot::Sender<Result<Vec<(String, Secret)>, StoreError>>),
    /// Commit, close the connection, answer, stop.
    Close(oneshot::Sender<Result<(), StoreError>>),
    /// Tests only: park the thread until the sender sends or is dropped, so a test can
    /// queue a burst and know it is taken as one batch.
    #[cfg(test)]
    Hold(std::sync::mpsc::Receiver<()>),
}

/// Counters the thread keeps; readable without asking the thread.
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Transactions committed with at least one write.
    pub commits: AtomicU64,
    /// Writes applied (committed or not yet).
    pub applied: AtomicU64,
    /// Writes that failed (logged).
    pub failed: AtomicU64,
    /// Times a sender found the queue full and had to wait (a slow disk).
    pub stalls: AtomicU64,
}

/// A reply owed once the batch is committed.
enum Reply {
    /// Flush or close: `wrote` says whether a write of this batch came before it, `failure`
    /// the first failure before it.
    Done {
        tx: oneshot::Sender<Result<(), StoreError>>,
        wrote: bool,
        failure: Option<String>,
        close: bool,
    },
    Snapshot(oneshot::Sender<Result<Snapshot, StoreError>>),
    Tokens(oneshot::Sender<Result<Vec<(String, Secret)>, StoreError>>),
}

/// The thread's state.
pub(super) struct Worker {
    /// The only writing connection.
    pub conn: Connection,
    /// The queue.
    pub rx: Receiver<Msg>,
    /// Path and counters, apart from `conn` so both can be borrowed during a transaction.
    pub ctx: Ctx,
    /// A failure no flush has reported yet: the next flush (or close) reports it, even when it
    /// arrives in a later batch.
    pub unreported: Option<String>,
}

/// What the thread needs besides the connection.
pub(super) struct Ctx {
    /// The database path, for logs and errors.
    pub path: PathBuf,
    /// Counters shared with the `Store` handles.
    pub stats: Arc<Stats>,
}

impl Worker {
    /// The thread body: runs until a `Close` or until every `Store` handle is dropped.
    pub fn run(mut self) {
        let mut close_reply = None;
        while let Some(first) = self.rx.blocking_recv() {
            let batch = self.collect(first);
            close_reply = self.process(batch);
            if close_reply.is_some() {
                break;
            }
        }
        let closed = close_connection(self.conn, &self.ctx.path);
        if let Some((tx, result)) = close_reply {
            let _ = tx.send(result.and(closed));
        }
        tracing::debug!(path = %self.ctx.path.display(), "store thread stopped");
    }

    /// Takes `first` and everything queued behind it, up to a `Close` or [`MAX_BATCH`].
    fn collect(&mut self, first: Msg) -> Vec<Msg> {
        let mut batch = Vec::new();
        let mut writes = 0;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                #[cfg(test)]
                Msg::Hold(release) => {
                    let _ = release.recv();
                }
                Msg::Close(tx) => {
                    batch.push(Msg::Close(tx));
                    break;
                }
                msg => {
                    writes += msg.writes();
                    batch.push(msg);
                }
            }
            if writes >= MAX_BATCH {
                break;
            }
            next = self.rx.try_recv().ok();
        }
        batch
    }

    /// Applies the batch in one transaction, commits, then answers. Returns the close reply
    /// (and its result) if the batch ended with `Close`.
    fn process(&mut self, batch: Vec<Msg>) -> Option<CloseReply> {
        let (replies, commit) = self.apply_batch(batch);
        let mut close = None;
        for reply in replies {
            match reply {
                Reply::Snapshot(tx) => {
                    let _ = tx.send(self.snapshot());
                }
                Reply::Tokens(tx) => {
                    let tokens =
                        sql::account_tokens(&self.conn).map_err(|source| StoreError::Sqlite {
                            path: self.ctx.path.clone(),
                            source,
                        });
                    let _ = tx.send(tokens);
                }
                Reply::Done {
                    tx,
                    wrote,
                    failure,
                    close: is_close,
                } => {
                    let result = self.ctx.outcome(wrote, failure, commit.as_ref());
                    if is_close {
                        close = Some((tx, result));
                    } else {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        close
    }

    /// Runs every write of the batch inside one transaction (rolled back if dropped
    /// uncommitted) and commits. Returns the replies owed and the commit failure, if any.
    fn apply_batch(&mut self, batch: Vec<Msg>) -> (Vec<Reply>, Option<String>) {
        let has_writes = batch.iter().any(|m| m.writes() > 0);
        let mut tx = has_writes.then(|| {
            self.conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
        });
        let mut replies = Vec::new();
        let mut failure: Option<String> = self.unreported.take();
        let mut wrote = false;
        let mut wrote_since_reply = false;
        for msg in batch {
            let writes = match msg {
                Msg::Write(write) => vec![write],
                Msg::Writes(writes) => writes,
                Msg::Flush(tx) => {
                    replies.push(Reply::done(tx, wrote, &failure.take(), false));
                    wrote_since_reply = false;
                    continue;
                }
                Msg::Close(tx) => {
                    replies.push(Reply::done(tx, wrote, &failure.take(), true));
                    wrote_since_reply = false;
                    continue;
                }
                Msg::Snapshot(tx) => {
                    replies.push(Reply::Snapshot(tx));
                    continue;
                }
                Msg::Tokens(tx) => {
                    replies.push(Reply::Tokens(tx));
                    continue;
                }
                #[cfg(test)]
                Msg::Hold(_) => continue,
            };
            if writes.is_empty() {
                continue;
            }
            wrote = true;
            wrote_since_reply = true;
            for write in writes {
                self.ctx.apply(tx.as_ref(), &write, &mut failure);
            }
        }
        let commit = match tx.take() {
            Some(Ok(tx)) => self.ctx.commit(tx),
            Some(Err(e)) => {
                tracing::error!(path = %self.ctx.path.display(), error = %e, "cannot begin a transaction in {} ({e}); the writes of this batch are lost", self.ctx.path.display());
                None
            }
            None => None,
        };
        // Whatever went wrong after the last flush of this batch waits for the next flush.
        self.unreported = failure.or_else(|| commit.clone().filter(|_| wrote_since_reply));
        (replies, commit)
    }

    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        sql::snapshot(&self.conn).map_err(|source| StoreError::Sqlite {
            path: self.ctx.path.clone(),
            source,
        })
    }
}

impl Msg {
    /// How many writes it carries.
    fn writes(&self) -> usize {
        match self {
            Msg::Write(_) => 1,
            Msg::Writes(w) => w.len(),
            _ => 0,
        }
    }
}

impl Ctx {
    /// One write inside the batch's transaction (or counted as failed without one).
    fn apply(
        &self,
        tx: Option<&rusqlite::Result<rusqlite::Transaction<'_>>>,
        write: &Write,
        failure: &mut Option<String>,
    ) {
        match tx {
            Some(Ok(tx)) => match sql::apply(tx, write) {
                Ok(()) => _ = self.stats.applied.fetch_add(1, Ordering::Relaxed),
                Err(e) => self.write_failed(write, &e, failure),
            },
            Some(Err(e)) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                failure.get_or_insert_with(|| format!("cannot begin a transaction: {e}"));
            }
            None => {}
        }
    }

    fn commit(&self, tx: rusqlite::Transaction<'_>) -> Option<String> {
        match tx.commit() {
            Ok(()) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "commit to {} failed ({e}); the writes of this batch are lost", self.path.display());
                Some(format!("commit failed: {e}"))
            }
        }
    }

    fn write_failed(&self, write: &Write, e: &rusqlite::Error, failure: &mut Option<String>) {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            path = %self.path.display(),
            write = write.kind(),
            extension = write.extension().unwrap_or(""),
            error = %e,
            "store write {} {} failed: {e}",
            write.kind(),
            write.extension().unwrap_or("")
        );
        failure.get_or_insert_with(|| format!("{}: {e}", write.kind()));
    }

    /// What a flush (or close) learns: its earlier writes of this batch are committed
    /// unless one failed or the commit failed.
    fn outcome(
        &self,
        wrote: bool,
        failure: Option<String>,
        commit: Option<&String>,
    ) -> Result<(), StoreError> {
        let detail = failure.or_else(|| commit.filter(|_| wrote).cloned());
        match detail {
            None => Ok(()),
            Some(detail) => Err(StoreError::WriteFailed {
                path: self.path.clone(),
                detail,
            }),
        }
    }
}

/// The reply of a `Close` and its result, answered after the connection is closed.
type CloseReply = (
    oneshot::Sender<Result<(), StoreError>>,
    Result<(), StoreError>,
);

impl Reply {
    fn done(
        tx: oneshot::Sender<Result<(), StoreError>>,
        wrote: bool,
        failure: &Option<String>,
        close: bool,
    ) -> Reply {
        Reply::Done {
            tx,
            wrote,
            failure: failure.clone(),
            close,
        }
    }
}

/// Closes the connection (checkpointing the WAL when it is the last one).
fn close_connection(conn: Connection, path: &Path) -> Result<(), StoreError> {
    conn.close().map_err(|(_, source)| {
        tracing::error!(path = %path.display(), error = %source, "closing the state database {} failed: {source}", path.display());
        StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    })
}
