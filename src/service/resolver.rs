//! The resolver task: looks the users' e-mails up in Entra, one round at a time, and streams
//! the answers back to the main loop chunk by chunk (the main loop keeps the bookkeeping, in
//! `matching.rs`).

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::matching::Lookup;
use crate::graph::{GraphClient, GraphError, Stages, UserMatch};

/// E-mails per lookup step: the Graph client's working set (its address index, the users of
/// each `$batch` answer) stays that of 1,500 users, whatever the size of the directory. A
/// multiple of 300, so the `mail` stage sends only full `$batch`es (20 requests of 15).
const CHUNK: usize = 1500;

/// What the resolver reports.
#[derive(Debug)]
pub enum Matched {
    /// Answers for one chunk of the round.
    Chunk {
        generation: u64,
        results: Vec<(String, UserMatch)>,
    },
    /// The round ended: every chunk sent, or stopped at an error.
    Done {
        generation: u64,
        result: Result<(), GraphError>,
    },
}

/// The main loop's side of the resolver.
pub struct ResolverHandle {
    requests: mpsc::Sender<Lookup>,
    generation: watch::Sender<u64>,
}

impl ResolverHandle {
    pub fn start(
        graph: watch::Receiver<GraphClient>,
        out: mpsc::Sender<Matched>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> ResolverHandle {
        // One round runs at a time (`Matching::next_round`), so one place is enough.
        let (requests, rx) = mpsc::channel(1);
        let (generation, current) = watch::channel(0);
        let task = Resolver {
            graph,
            rx,
            out,
            current,
        };
        tracker.spawn(task.run(cancel).instrument(tracing::info_span!("resolver")));
        ResolverHandle {
            requests,
            generation,
        }
    }

    /// Start a round (the main loop sends one only when none runs).
    pub fn send(&self, lookup: Lookup) {
        if let Err(e) = self.requests.try_send(lookup) {
            tracing::error!(error = %e, "lookup round not started (one already runs): {e}");
        }
    }

    /// A new generation: the round under way stops at its next chunk.
    pub fn restart(&self, generation: u64) {
        self.generation.send_replace(generation);
    }
}

struct Resolver {
    graph: watch::Receiver<GraphClient>,
    rx: mpsc::Receiver<Lookup>,
    out: mpsc::Sender<Matched>,
    current: watch::Receiver<u64>,
}

impl Resolver {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            let lookup = tokio::select! {
                () = cancel.cancelled() => return,
                next = self.rx.recv() => match next {
                    Some(lookup) => lookup,
                    None => return,
                },
            };
            let generation = lookup.generation;
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.round(lookup) => r,
            };
            if self
                .out
                .send(Matched::Done { generation, result })
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn round(&self, lookup: Lookup) -> Result<(), GraphError> {
        let mut stages = Stages::default();
        let chunks = lookup.emails.chunks(CHUNK).count();
        for (n, chunk) in lookup.emails.chunks(CHUNK).enumerate() {
            if *self.current.borrow() != lookup.generation {
                break;
            }
            let graph = self.graph.borrow().clone();
            let results = graph
                .resolve_step(&mut stages, chunk, n + 1 == chunks)
                .await?;
            let answer = Matched::Chunk {
                generation: lookup.generation,
                results,
            };
            if self.out.send(answer).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}
