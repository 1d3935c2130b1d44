//! PBX events under `[ha]`: every node takes `POST /pbx/events` (the PBX may post to any of
//! them) and stores the events in the database's inbox before they count; the leader reads
//! the inbox in order and applies it. One path for both roles: nothing a standby accepted is
//! lost by a take-over, and the listener never moves between tasks.
//!
//! - [`Intake`] (every node, both roles): the listener's events -> `ha_inbox`, `NOTIFY`; the
//!   extensions it accepts come from the `users` table, read again every [`KNOWN_EVERY`].
//! - [`Reader`] (the leader, inside the daemon): `LISTEN`, then every row after the last one
//!   applied -> the main loop, which records how far it got (meta `inbox_applied`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::ha::sql::{self, PgTarget};
use crate::pbx::http::ExtensionSet;
use crate::sync::types::PbxEvent;

/// How often the intake reads the users the leader knows.
pub const KNOWN_EVERY: Duration = Duration::from_secs(30);
/// The reader looks at the inbox at least this often, even without a `NOTIFY`.
const READ_EVERY: Duration = Duration::from_secs(1);
/// Rows per read.
const READ_LIMIT: i64 = 5_000;
/// Applied rows are kept this long (for a look by hand), then deleted.
const KEEP: Duration = Duration::from_secs(600);

/// Events the leader has not applied yet, and the inbox id of the last one.
#[derive(Debug)]
pub struct InboxBatch {
    pub events: Vec<PbxEvent>,
    pub last_id: i64,
}

/// Reconnects with backoff; `None` when cancelled first.
async fn connect(
    target: &PgTarget,
    notices: Option<mpsc::Sender<()>>,
    cancel: &CancellationToken,
    what: &str,
) -> Option<Client> {
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 0u32;
    loop {
        match target.connect(notices.clone()).await {
            Ok(client) => return Some(client),
            Err(e) => {
                attempt += 1;
                if attempt == 1 {
                    let e = sql::describe(&e);
                    tracing::warn!(error = %e, "{what}: cannot reach the state database ({e}); retrying");
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return None,
            () = tokio::time::sleep(backoff.delay(attempt)) => {}
        }
    }
}

/// Every node: stores what its listener accepted.
pub struct Intake {
    pub target: PgTarget,
    pub node: String,
    /// What the listener accepted, and where to say it is stored.
    pub events: mpsc::Receiver<(Vec<PbxEvent>, oneshot::Sender<bool>)>,
    pub known: watch::Sender<Arc<ExtensionSet>>,
    /// The users file's extensions, read at the node's start: taken before any leader
    /// wrote its users (the table adds the Entra group's and the voicemail boxes').
    pub file: Vec<String>,
}

impl Intake {
    pub async fn run(mut self, cancel: CancellationToken) {
        let file = ExtensionSet::new(self.file.iter().map(String::as_str));
        self.known.send_replace(Arc::new(file));
        let Some(mut client) = connect(&self.target, None, &cancel, "PBX events").await else {
            return;
        };
        self.read_known(&client).await;
        let mut known = tokio::time::interval(KNOWN_EVERY);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = known.tick() => self.read_known(&client).await,
                batch = self.events.recv() => {
                    let Some((batch, stored)) = batch else { break };
                    match self.put(client, &batch, &cancel).await {
                        Some(c) => {
                            client = c;
                            let _ = stored.send(true);
                        }
                        None => break,
                    }
                }
            }
        }
    }

    /// Stores `batch`, reconnecting until it is stored (or cancelled). The listener waits
    /// meanwhile: the PBX sees slow answers, not lost events.
    async fn put(
        &self,
        mut current: Client,
        batch: &[PbxEvent],
        cancel: &CancellationToken,
    ) -> Option<Client> {
        loop {
            match sql::inbox_put(&mut current, &self.node, batch).await {
                Ok(()) => return Some(current),
                Err(e) => {
                    let n = batch.len();
                    let e = sql::describe(&e);
                    tracing::warn!(error = %e, events = n,
                        "cannot store {n} PBX events in the state database ({e}); retrying");
                    current = connect(&self.target, None, cancel, "PBX events").await?;
                }
            }
        }
    }

    async fn read_known(&self, client: &Client) {
        match sql::extensions(client).await {
            Ok(list) => {
                let all = list.iter().chain(&self.file).map(String::as_str);
                self.known.send_replace(Arc::new(ExtensionSet::new(all)));
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the users for the PBX listener: {e}")
            }
        }
    }
}

/// The leader: hands the inbox to the main loop, in order, from `after` on.
pub struct Reader {
    pub target: PgTarget,
    pub after: i64,
    pub out: mpsc::Sender<InboxBatch>,
}

impl Reader {
    pub async fn run(mut self, cancel: CancellationToken) {
        let (notices_tx, mut notices) = mpsc::channel(1);
        let mut tick = tokio::time::interval(READ_EVERY);
        let mut client: Option<Client> = None;
        loop {
            if client.as_ref().is_none_or(Client::is_closed) {
                client = self.listen(&notices_tx, &cancel).await;
            }
            let Some(c) = &client else { return };
            if !self.read(c).await {
                client = None;
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
                _ = notices.recv() => {}
            }
        }
    }

    async fn listen(
        &self,
        notices: &mpsc::Sender<()>,
        cancel: &CancellationToken,
    ) -> Option<Client> {
        loop {
            let client = connect(&self.target, Some(notices.clone()), cancel, "inbox").await?;
            let listen = format!("LISTEN {}", sql::INBOX_CHANNEL);
            match client.batch_execute(&listen).await {
                Ok(()) => return Some(client),
                Err(e) => {
                    let e = sql::describe(&e);
                    tracing::warn!(error = %e, "cannot listen for PBX events: {e}");
                }
            }
        }
    }

    /// Every row after `after`, to the main loop; false when the connection failed.
    async fn read(&mut self, client: &Client) -> bool {
        loop {
            let rows = match sql::inbox_after(client, self.after, READ_LIMIT).await {
                Ok(rows) => rows,
                Err(e) => {
                    let e = sql::describe(&e);
                    tracing::warn!(error = %e, "cannot read PBX events from the state database: {e}");
                    return false;
                }
            };
            let Some(&(last_id, _)) = rows.last() else {
                return true;
            };
            let full = i64::try_from(rows.len()).unwrap_or(0) >= READ_LIMIT;
            let events = rows.into_iter().map(|(_, e)| e).collect();
            if self.out.send(InboxBatch { events, last_id }).await.is_err() {
                return true;
            }
            self.after = last_id;
            if let Err(e) = sql::inbox_prune(client, last_id, KEEP).await {
                let e = sql::describe(&e);
                tracing::debug!(error = %e, "inbox not pruned: {e}");
            }
            if !full {
                return true;
            }
        }
    }
}
