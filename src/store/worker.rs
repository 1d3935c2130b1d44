//! The store thread. It owns the only writing connection, takes messages from a bounded
//! channel (senders wait when it is full: a slow disk slows the daemon down, it never makes
//! it drop a write or grow without bound), and applies everything that is queued in one transaction, so a burst (50,000
//! `SetTeams` after one poll) costs one commit, and a lone write (an `OpenSession`) is
//! committed as soon as it arrives: no timer ever delays a commit.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc::Receiver;
use tokio::sync::oneshot;

use super::StoreError;
use super::backend::{Backend, BackendError};
use super::types::{Snapshot, Write};
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
    /// Flush or close.
    Done {
        tx: oneshot::Sender<Result<(), StoreError>>,
        close: bool,
    },
    Snapshot(oneshot::Sender<Result<Snapshot, StoreError>>),
    Tokens(oneshot::Sender<Result<Vec<(String, Secret)>, StoreError>>),
}

/// The thread's state.
pub(super) struct Worker {
    /// The only writing connection.
    pub backend: Box<dyn Backend>,
    /// The queue.
    pub rx: Receiver<Msg>,
    /// Path and counters.
    pub ctx: Ctx,
    /// A failure no flush has reported yet: the next flush (or close) reports it, even when it
    /// arrives in a later batch.
    pub unreported: Option<String>,
}

/// What the thread needs besides the connection.
pub(super) struct Ctx {
    /// The database path (or PostgreSQL target), for logs and errors.
    pub path: PathBuf,
    /// Counters shared with the `Store` handles.
    pub stats: Arc<Stats>,
}

/// A batch taken apart: its writes in order, and each reply with how many writes came
/// before it.
struct Split {
    writes: Vec<Write>,
    replies: Vec<(usize, Reply)>,
}

/// What running a batch's writes gave: the writes that failed (index, why) and the commit's
/// failure.
struct Ran {
    failed: Vec<(usize, String)>,
    commit: Option<String>,
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
        let closed = self.backend.close();
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
        let Split { writes, replies } = split(batch);
        let ran = self.run_writes(&writes);
        let mut close = None;
        let mut failed = ran.failed.iter().peekable();
        let mut failure = self.unreported.take();
        let mut last_before = 0;
        for (before, reply) in replies {
            while let Some((_, why)) = failed.next_if(|(i, _)| *i < before) {
                failure.get_or_insert_with(|| why.clone());
            }
            let wrote = before > 0;
            last_before = before;
            match reply {
                Reply::Snapshot(tx) => _ = tx.send(self.backend.snapshot()),
                Reply::Tokens(tx) => _ = tx.send(self.backend.tokens()),
                Reply::Done {
                    tx,
                    close: is_close,
                } => {
                    let result = self.ctx.outcome(wrote, failure.take(), ran.commit.as_ref());
                    if is_close {
                        close = Some((tx, result));
                    } else {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        let since_reply = writes.len() - last_before;
        for (_, why) in failed {
            failure.get_or_insert_with(|| why.clone());
        }
        // Whatever went wrong after the last flush of this batch waits for the next flush.
        self.unreported = failure.or_else(|| ran.commit.clone().filter(|_| since_reply > 0));
        close
    }

    /// Runs every write in one transaction and commits. A write that fails is left out; on
    /// PostgreSQL (which aborts the transaction) the batch runs again without it, and once
    /// more on a new connection when the connection was lost.
    fn run_writes(&mut self, writes: &[Write]) -> Ran {
        let mut ran = Ran {
            failed: Vec::new(),
            commit: None,
        };
        if writes.is_empty() {
            return ran;
        }
        let mut skip = BTreeSet::new();
        let mut reconnected = false;
        // A run that fails is applied again write by write, to find the one that fails.
        let mut runs = true;
        loop {
            match self.one_pass(writes, &mut skip, &mut ran.failed, &mut runs) {
                Ok(()) => break,
                Err(e) if e.is_connection_lost() && !reconnected => {
                    tracing::warn!(path = %self.ctx.path.display(), error = %e, "the connection to the state database was lost ({e}); the batch is written again on a new one");
                    reconnected = true;
                }
                Err(Retry::Again) => {}
                Err(e) => {
                    self.ctx.stats.failed.fetch_add(
                        u64::try_from(writes.len() - skip.len()).unwrap_or(0),
                        Ordering::Relaxed,
                    );
                    tracing::error!(path = %self.ctx.path.display(), error = %e, "commit to {} failed ({e}); the writes of this batch are lost", self.ctx.path.display());
                    ran.commit = Some(format!("commit failed: {e}"));
                    return ran;
                }
            }
        }
        let applied = writes.len() - skip.len();
        self.ctx
            .stats
            .applied
            .fetch_add(u64::try_from(applied).unwrap_or(0), Ordering::Relaxed);
        self.ctx.stats.commits.fetch_add(1, Ordering::Relaxed);
        ran.failed.sort_by_key(|(i, _)| *i);
        ran
    }

    /// One transaction over the writes not in `skip`; a failed write joins `skip`. With
    /// `runs`, a run of like writes goes as one statement where the database can; a failed
    /// run turns `runs` off and the batch runs again write by write.
    fn one_pass(
        &mut self,
        writes: &[Write],
        skip: &mut BTreeSet<usize>,
        failed: &mut Vec<(usize, String)>,
        runs: &mut bool,
    ) -> Result<(), Retry> {
        self.backend.begin().map_err(Retry::Failed)?;
        let mut i = 0;
        while i < writes.len() {
            let n = if *runs {
                self.run_at(writes, i, skip)
            } else {
                0
            };
            if n >= 2 {
                if let Err(e) = self.backend.apply_run(&writes[i..i + n]) {
                    self.backend.rollback();
                    if e.is_connection_lost() || matches!(e, BackendError::Fenced { .. }) {
                        return Err(Retry::Failed(e));
                    }
                    *runs = false;
                    return Err(Retry::Again);
                }
                i += n;
                continue;
            }
            if !skip.contains(&i) {
                self.apply_one(writes, i, skip, failed)?;
            }
            i += 1;
        }
        self.backend.commit().map_err(|e| {
            self.backend.rollback();
            Retry::Failed(e)
        })
    }

    /// The length of the run the database takes at `i`, none of it left out.
    fn run_at(&self, writes: &[Write], i: usize, skip: &BTreeSet<usize>) -> usize {
        let n = self.backend.run_len(&writes[i..]);
        if n >= 2 && skip.range(i..i + n).next().is_none() {
            n
        } else {
            0
        }
    }

    /// Write `i` alone; a failure leaves it out (and, on PostgreSQL, starts the pass again).
    fn apply_one(
        &mut self,
        writes: &[Write],
        i: usize,
        skip: &mut BTreeSet<usize>,
        failed: &mut Vec<(usize, String)>,
    ) -> Result<(), Retry> {
        let write = &writes[i];
        let Err(e) = self.backend.apply(write) else {
            return Ok(());
        };
        if e.is_connection_lost() || matches!(e, BackendError::Fenced { .. }) {
            self.backend.rollback();
            return Err(Retry::Failed(e));
        }
        self.ctx.write_failed(write, &e);
        skip.insert(i);
        failed.push((i, format!("{}: {e}", write.kind())));
        if self.backend.aborts_on_error() {
            self.backend.rollback();
            return Err(Retry::Again);
        }
        Ok(())
    }
}

/// Why a pass over the batch stopped.
#[derive(Debug, thiserror::Error)]
enum Retry {
    /// A write failed and the transaction is gone: run the batch again without it.
    #[error("a write failed")]
    Again,
    #[error(transparent)]
    Failed(BackendError),
}

impl Retry {
    fn is_connection_lost(&self) -> bool {
        matches!(self, Retry::Failed(e) if e.is_connection_lost())
    }
}

/// Takes the messages apart into writes and replies.
fn split(batch: Vec<Msg>) -> Split {
    let mut split = Split {
        writes: Vec::new(),
        replies: Vec::new(),
    };
    for msg in batch {
        let n = split.writes.len();
        match msg {
            Msg::Write(w) => split.writes.push(w),
            Msg::Writes(ws) => split.writes.extend(ws),
            Msg::Flush(tx) => split.replies.push((n, Reply::Done { tx, close: false })),
            Msg::Close(tx) => split.replies.push((n, Reply::Done { tx, close: true })),
            Msg::Snapshot(tx) => split.replies.push((n, Reply::Snapshot(tx))),
            Msg::Tokens(tx) => split.replies.push((n, Reply::Tokens(tx))),
            #[cfg(test)]
            Msg::Hold(_) => {}
        }
    }
    split
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
    fn write_failed(&self, write: &Write, e: &BackendError) {
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
