//! ADAPTER: the lease, the nodes and the inbox in PostgreSQL (tables `ha_lease`, `ha_nodes`,
//! `ha_inbox`, created by the store's migration 4). Every time here is the database's clock
//! (`clock_timestamp()`, in ms), so the nodes' own clocks never need to agree.

use std::time::Duration;

use tokio_postgres::{Client, IsolationLevel};

use super::lease::{Answer, Ask, Holder, Previous};
use crate::sync::types::{CallState, PbxEvent};

/// The database's clock in ms since the Unix epoch.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The one row of `ha_lease`.
const LEASE: &str = "leader";

/// A failed question: the connection is gone or a statement failed.
pub type DbError = tokio_postgres::Error;

/// What went wrong, in words: the server's message when it sent one (tokio-postgres says
/// only "db error"), else the error and its cause.
pub fn describe(e: &DbError) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Where the database is and how to reach it (from `[store]`).
#[derive(Clone)]
pub struct PgTarget {
    pub config: tokio_postgres::Config,
    /// `None`: plain TCP (`sslmode=disable`).
    pub tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl PgTarget {
    /// From `[store]`: TLS unless `sslmode=disable`, trusting the system's CAs and
    /// `store.ca_file`.
    pub fn from_store(store: &crate::config::PostgresStore) -> Result<PgTarget, rustls::Error> {
        let config = store.pg_config();
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => None,
            _ => {
                let tls = crate::trust::client_config(store.ca_file.as_ref())?;
                Some(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (*tls).clone(),
                ))
            }
        };
        Ok(PgTarget { config, tls })
    }

    /// A new connection; its I/O runs on a task that ends with it. Notifications (`LISTEN`)
    /// go to `notices` when given.
    pub async fn connect(
        &self,
        notices: Option<tokio::sync::mpsc::Sender<()>>,
    ) -> Result<Client, DbError> {
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(drive(connection, notices));
                Ok(client)
            }
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(drive(connection, notices));
                Ok(client)
            }
        }
    }
}

/// Runs a connection until it closes, passing a wake-up to `notices` for each notification.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notices: Option<tokio::sync::mpsc::Sender<()>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
        match message {
            Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                if let Some(tx) = &notices {
                    let _ = tx.try_send(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "PostgreSQL connection closed: {e}");
                break;
            }
        }
    }
}

/// What `ha_nodes` says of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub role: &'static str,
    pub epoch: i64,
    pub detail: String,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn since_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Ask the database `ask` for `node`, and record the node as seen, in one transaction.
pub async fn ask(
    client: &mut Client,
    ask: Ask,
    node: &str,
    lease: Duration,
    me: &NodeView,
) -> Result<Answer, DbError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let now: i64 = tx.query_one(&format!("SELECT {NOW_MS}"), &[]).await?.get(0);
    let row = tx
        .query_opt(
            "SELECT holder, epoch, expires_at FROM ha_lease WHERE name = $1 FOR UPDATE",
            &[&LEASE],
        )
        .await?;
    let current = row.map(|r| {
        (
            r.get::<_, String>(0),
            r.get::<_, i64>(1),
            r.get::<_, i64>(2),
        )
    });
    let answer = match (ask, current) {
        (Ask::Acquire, None) => {
            tx.execute(
                "INSERT INTO ha_lease (name, holder, epoch, expires_at, since) VALUES ($1, $2, 1, $3, $4)",
                &[&LEASE, &node, &(now + ms(lease)), &now],
            )
            .await?;
            Answer::Held {
                epoch: 1,
                previous: None,
            }
        }
        (Ask::Acquire, Some((holder, epoch, expires_at))) => {
            if holder != node && expires_at > now {
                Answer::Taken(Holder {
                    node: holder,
                    epoch,
                    expires_in: since_ms(expires_at - now),
                })
            } else {
                let released = released(&tx, &holder).await?;
                tx.execute(
                    "UPDATE ha_lease SET holder = $2, epoch = epoch + 1, expires_at = $3, since = $4 WHERE name = $1",
                    &[&LEASE, &node, &(now + ms(lease)), &now],
                )
                .await?;
                let previous = Previous {
                    node: holder,
                    epoch,
                    expired_for: since_ms(now - expires_at),
                    released,
                };
                Answer::Held {
                    epoch: epoch + 1,
                    previous: Some(previous),
                }
            }
        }
        (Ask::Renew { epoch: ours }, Some((holder, epoch, expires_at)))
            if holder == node && epoch == ours && expires_at > now =>
        {
            tx.execute(
                "UPDATE ha_lease SET expires_at = $2 WHERE name = $1",
                &[&LEASE, &(now + ms(lease))],
            )
            .await?;
            Answer::Held {
                epoch,
                previous: None,
            }
        }
        (Ask::Renew { .. }, Some((holder, epoch, expires_at))) => Answer::Taken(Holder {
            node: holder,
            epoch,
            expires_in: since_ms(expires_at - now),
        }),
        (Ask::Renew { .. }, None) => Answer::Taken(Holder {
            node: String::new(),
            epoch: 0,
            expires_in: Duration::ZERO,
        }),
    };
    let role = match &answer {
        Answer::Held { epoch, .. } => NodeView {
            role: "leader",
            epoch: *epoch,
            detail: me.detail.clone(),
        },
        _ => NodeView {
            role: "standby",
            ..me.clone()
        },
    };
    seen(&tx, node, &role, now).await?;
    tx.commit().await?;
    Ok(answer)
}

/// Whether `holder` said it stopped (its row's role is `stopped`): a planned hand-over.
async fn released(tx: &tokio_postgres::Transaction<'_>, holder: &str) -> Result<bool, DbError> {
    let row = tx
        .query_opt("SELECT role FROM ha_nodes WHERE node = $1", &[&holder])
        .await?;
    Ok(row.is_some_and(|r| r.get::<_, String>(0) == "stopped"))
}

/// Records `node` as seen now, in `view`'s role.
async fn seen(
    tx: &tokio_postgres::Transaction<'_>,
    node: &str,
    view: &NodeView,
    now: i64,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO ha_nodes (node, role, epoch, seen_at, started_at, detail) VALUES ($1, $2, $3, $4, $4, $5)
         ON CONFLICT (node) DO UPDATE SET role = $2, epoch = $3, seen_at = $4, detail = $5,
            started_at = CASE WHEN ha_nodes.role = 'stopped' THEN $4 ELSE ha_nodes.started_at END",
        &[&node, &view.role, &view.epoch, &now, &view.detail],
    )
    .await?;
    Ok(())
}

/// A planned stop: give the lease up now if `node` holds it for `epoch` (a standby takes it at
/// its next question), and mark the node stopped.
pub async fn release(client: &mut Client, node: &str, epoch: Option<i64>) -> Result<bool, DbError> {
    let tx = client.transaction().await?;
    let released = match epoch {
        Some(epoch) => {
            tx.execute(
                &format!("UPDATE ha_lease SET expires_at = {NOW_MS} WHERE name = $1 AND holder = $2 AND epoch = $3"),
                &[&LEASE, &node, &epoch],
            )
            .await?
                == 1
        }
        None => false,
    };
    tx.execute(
        &format!("UPDATE ha_nodes SET role = 'stopped', seen_at = {NOW_MS} WHERE node = $1"),
        &[&node],
    )
    .await?;
    tx.commit().await?;
    Ok(released)
}

/// Whether another node was seen as a standby within `within`: a leader that stops hands over
/// to it instead of clearing every session.
pub async fn standby_alive(
    client: &Client,
    node: &str,
    within: Duration,
) -> Result<Option<String>, DbError> {
    let row = client
        .query_opt(
            &format!("SELECT node FROM ha_nodes WHERE node <> $1 AND role = 'standby' AND seen_at > {NOW_MS} - $2 ORDER BY seen_at DESC LIMIT 1"),
            &[&node, &ms(within)],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Channel of `NOTIFY` after each insert into the inbox.
pub const INBOX_CHANNEL: &str = "ha_inbox";

/// The lock every inbox insert takes (any constant; "ptq" in ASCII).
const INBOX_LOCK: i64 = 0x0070_7471;

/// Store PBX events that reached `node`, for the leader, in one transaction, and wake it.
pub async fn inbox_put(
    client: &mut Client,
    node: &str,
    events: &[PbxEvent],
) -> Result<(), DbError> {
    let tx = client.transaction().await?;
    // Ids are then committed in the order they are given: a reader that saw id N never
    // finds a smaller one later (no event skipped).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&INBOX_LOCK])
        .await?;
    let insert = tx
        .prepare(&format!("INSERT INTO ha_inbox (node, extension, state, dnd, at) VALUES ($1, $2, $3, $4, {NOW_MS})"))
        .await?;
    for e in events {
        let dnd = e.dnd.map(i32::from);
        tx.execute(&insert, &[&node, &e.extension, &e.state.as_str(), &dnd])
            .await?;
    }
    tx.batch_execute(&format!("NOTIFY {INBOX_CHANNEL}")).await?;
    tx.commit().await
}

/// Up to `limit` events after `after`, in the order they arrived; rows whose state is not a
/// call state this build knows are skipped (and logged), never applied.
pub async fn inbox_after(
    client: &Client,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, PbxEvent)>, DbError> {
    let rows = client
        .query(
            "SELECT id, extension, state, dnd FROM ha_inbox WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        let extension: String = r.get(1);
        let state: String = r.get(2);
        let dnd: Option<i32> = r.get(3);
        let Some(state) = CallState::parse(&state) else {
            tracing::warn!(
                id,
                extension,
                state,
                "inbox row {id} for {extension}: unknown call state {state:?}, skipped"
            );
            continue;
        };
        events.push((
            id,
            PbxEvent {
                extension,
                state,
                dnd: dnd.map(|d| d != 0),
            },
        ));
    }
    Ok(events)
}

/// The newest inbox id (0 when empty): where a first leader starts.
pub async fn inbox_last(client: &Client) -> Result<i64, DbError> {
    let row = client
        .query_one("SELECT coalesce(max(id), 0) FROM ha_inbox", &[])
        .await?;
    Ok(row.get(0))
}

/// Forget inbox rows up to `applied` that are older than `keep`.
pub async fn inbox_prune(client: &Client, applied: i64, keep: Duration) -> Result<u64, DbError> {
    client
        .execute(
            &format!("DELETE FROM ha_inbox WHERE id <= $1 AND at < {NOW_MS} - $2"),
            &[&applied, &ms(keep)],
        )
        .await
}

/// Every extension the leader knows (the `users` table): what the listeners accept.
pub async fn extensions(client: &Client) -> Result<Vec<String>, DbError> {
    let rows = client.query("SELECT extension FROM users", &[]).await?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}
