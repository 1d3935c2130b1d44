//! The typed queries: one statement set per [`Write`], and the [`Snapshot`] read.
//! Statements go through the prepared-statement cache; 50,000 writes in one transaction
//! cost little more than the row inserts themselves.

use crate::sync::types::MatchStatus;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::types::{
    AccountRow, ERRORS_KEPT, ERRORS_SHOWN, ErrorRow, PushedRow, SessionRow, Snapshot, StateAt,
    SubscriptionRow, UserRow, Write,
};

/// Applies one write inside the caller's transaction.
pub fn apply(conn: &Connection, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::UpsertUser {
            extension,
            email,
            direction,
        } => {
            // A match belongs to the e-mail it was found for: a new e-mail forgets it, so a
            // restart never takes the old address's Teams user for the new one.
            exec(
                conn,
                "DELETE FROM matches WHERE extension = ?1
                 AND EXISTS (SELECT 1 FROM users WHERE extension = ?1 AND email <> ?2)",
                params![extension, email],
            )?;
            exec(
                conn,
                "INSERT INTO users (extension, email, direction) VALUES (?1, ?2, ?3)
                 ON CONFLICT (extension) DO UPDATE SET email = excluded.email,
                                                       direction = excluded.direction",
                params![extension, email, direction],
            )
        }
        Write::RemoveUser { extension } => remove_user(conn, extension),
        Write::SetMatch {
            extension,
            teams_id,
            status,
            detail,
            at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO matches (extension, teams_id, status, detail, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![extension, teams_id.as_deref(), status.as_str(), detail, at],
        ),
        Write::SetTeams {
            extension,
            availability,
            activity,
            at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO teams (extension, availability, activity, at)
             VALUES (?1, ?2, ?3, ?4)",
            params![extension, availability, activity, at],
        ),
        Write::SetPushed {
            extension,
            state,
            availability,
            activity,
            at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO pushed (extension, state, availability, activity, at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![extension, state, availability, activity, at],
        ),
        Write::SetPbx {
            extension,
            state,
            dnd,
            at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO pbx (extension, state, dnd, at) VALUES (?1, ?2, ?3, ?4)",
            params![extension, state, dnd, at],
        ),
        Write::OpenSession {
            extension,
            teams_id,
            expires_at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO sessions (extension, teams_id, expires_at)
             VALUES (?1, ?2, ?3)",
            params![extension, teams_id, expires_at],
        ),
        Write::CloseSession { teams_id } => exec(
            conn,
            "DELETE FROM sessions WHERE teams_id = ?1",
            params![teams_id],
        ),
        Write::OpenPreferred {
            extension,
            teams_id,
            expires_at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO preferred (teams_id, extension, expires_at)
             VALUES (?1, ?2, ?3)",
            params![teams_id, extension, expires_at],
        ),
        Write::ClosePreferred { teams_id } => exec(
            conn,
            "DELETE FROM preferred WHERE teams_id = ?1",
            params![teams_id],
        ),
        Write::RecordError {
            component,
            user,
            message,
            at,
        } => record_error(conn, component, user.as_deref(), message, *at),
        Write::AddCounter { name, delta } => exec(
            conn,
            "INSERT INTO counters (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            params![name, delta],
        ),
        Write::SetMeta { key, value } => exec(
            conn,
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key.as_str(), value],
        ),
        Write::SetAccountToken {
            account,
            refresh_token,
            at,
        } => exec(
            conn,
            "INSERT OR REPLACE INTO accounts (account, refresh_token, updated_at)
             VALUES (?1, ?2, ?3)",
            params![account, refresh_token.expose(), at],
        ),
        Write::RemoveAccountToken { account } => exec(
            conn,
            "DELETE FROM accounts WHERE account = ?1",
            params![account],
        ),
        Write::SaveSubscription(r) => exec(
            conn,
            "INSERT OR REPLACE INTO subscriptions (id, account, client_state, expires_at, users, rich)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![r.id, r.account, r.client_state, r.expires_at, r.users, r.rich],
        ),
        Write::DropSubscription { id } => exec(
            conn,
            "DELETE FROM subscriptions WHERE id = ?1",
            params![id],
        ),
        Write::SetCoverage { account, teams_ids } => {
            exec(
                conn,
                "DELETE FROM coverage WHERE account = ?1",
                params![account],
            )?;
            for id in teams_ids {
                exec(
                    conn,
                    "INSERT OR REPLACE INTO coverage (teams_id, account) VALUES (?1, ?2)",
                    params![id, account],
                )?;
            }
            Ok(())
        }
    }
}

/// Every account's refresh token (for the daemon only; never part of a snapshot).
pub fn account_tokens(conn: &Connection) -> rusqlite::Result<Vec<(String, crate::secret::Secret)>> {
    collect(
        conn,
        "SELECT account, refresh_token FROM accounts ORDER BY account",
        |row| {
            Ok((
                row.get(0)?,
                crate::secret::Secret::new(row.get::<_, String>(1)?),
            ))
        },
    )
}

fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute(params).map(drop)
}

/// Deletes the user and every row keyed by its extension, and the errors naming it (by
/// extension or e-mail).
fn remove_user(conn: &Connection, extension: &str) -> rusqlite::Result<()> {
    let email: Option<String> = conn
        .prepare_cached("SELECT email FROM users WHERE extension = ?1")?
        .query_row([extension], |row| row.get(0))
        .optional()?;
    // The session row stays: it is removed by CloseSession once Teams confirmed the clear, so a
    // crash in between still finds it at the next start.
    for table in ["users", "matches", "teams", "pushed", "pbx"] {
        exec(
            conn,
            &format!("DELETE FROM {table} WHERE extension = ?1"),
            [extension],
        )?;
    }
    exec(
        conn,
        "DELETE FROM errors WHERE user = ?1 OR user = ?2",
        params![extension, email],
    )
}

/// Inserts the error and drops all but the newest [`ERRORS_KEPT`]. Ids only grow (rows are
/// deleted from the old end), so "newest" is "highest id".
fn record_error(
    conn: &Connection,
    component: &str,
    user: Option<&str>,
    message: &str,
    at: i64,
) -> rusqlite::Result<()> {
    exec(
        conn,
        "INSERT INTO errors (component, user, message, at) VALUES (?1, ?2, ?3, ?4)",
        params![component, user, message, at],
    )?;
    let newest = conn.last_insert_rowid();
    exec(
        conn,
        "DELETE FROM errors WHERE id <= ?1",
        [newest - ERRORS_KEPT],
    )
}

fn session_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        extension: row.get(0)?,
        teams_id: row.get(1)?,
        expires_at: row.get(2)?,
    })
}

/// Reads everything; call it inside a transaction when another connection may write.
pub fn snapshot(conn: &Connection) -> rusqlite::Result<Snapshot> {
    Ok(Snapshot {
        users: users(conn)?,
        sessions: collect(
            conn,
            "SELECT extension, teams_id, expires_at FROM sessions ORDER BY extension",
            session_row,
        )?,
        preferred: collect(
            conn,
            "SELECT extension, teams_id, expires_at FROM preferred ORDER BY extension",
            session_row,
        )?,
        counters: collect(conn, "SELECT name, value FROM counters", pair)?
            .into_iter()
            .collect(),
        errors: errors(conn)?,
        meta: collect(conn, "SELECT key, value FROM meta", pair)?
            .into_iter()
            .collect(),
        subscriptions: collect(
            conn,
            "SELECT id, account, client_state, expires_at, users, rich FROM subscriptions
             ORDER BY account, id",
            |row| {
                Ok(SubscriptionRow {
                    id: row.get(0)?,
                    account: row.get(1)?,
                    client_state: row.get(2)?,
                    expires_at: row.get(3)?,
                    users: row.get(4)?,
                    rich: row.get(5)?,
                })
            },
        )?,
        accounts: collect(
            conn,
            "SELECT account, updated_at FROM accounts ORDER BY account",
            |row| {
                Ok(AccountRow {
                    account: row.get(0)?,
                    updated_at: row.get(1)?,
                })
            },
        )?,
    })
}

fn pair<A: rusqlite::types::FromSql, B: rusqlite::types::FromSql>(
    row: &Row<'_>,
) -> rusqlite::Result<(A, B)> {
    Ok((row.get(0)?, row.get(1)?))
}

fn collect<T>(
    conn: &Connection,
    sql: &str,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare_cached(sql)?.query_map([], map)?.collect()
}

fn errors(conn: &Connection) -> rusqlite::Result<Vec<ErrorRow>> {
    conn.prepare_cached(
        "SELECT component, user, message, at FROM errors ORDER BY id DESC LIMIT ?1",
    )?
    .query_map([ERRORS_SHOWN], |row| {
        Ok(ErrorRow {
            component: row.get(0)?,
            user: row.get(1)?,
            message: row.get(2)?,
            at: row.get(3)?,
        })
    })?
    .collect()
}

const USERS_SQL: &str = "
    SELECT u.extension, u.email, u.direction,
           m.teams_id, m.status, m.detail,
           t.availability, t.activity, t.at,
           p.state, p.availability, p.activity, p.at,
           x.state, x.dnd, x.at,
           s.expires_at, c.account
    FROM users u
    LEFT JOIN matches m ON m.extension = u.extension
    LEFT JOIN teams t ON t.extension = u.extension
    LEFT JOIN pushed p ON p.extension = u.extension
    LEFT JOIN pbx x ON x.extension = u.extension
    LEFT JOIN sessions s ON s.extension = u.extension
    LEFT JOIN coverage c ON c.teams_id = m.teams_id
    ORDER BY u.extension";

fn users(conn: &Connection) -> rusqlite::Result<Vec<UserRow>> {
    collect(conn, USERS_SQL, user_row)
}

fn user_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        extension: row.get(0)?,
        email: row.get(1)?,
        direction: row.get(2)?,
        teams_id: row.get(3)?,
        match_status: row
            .get::<_, Option<String>>(4)?
            .map(|s| MatchStatus::parse(&s)),
        match_detail: row.get(5)?,
        teams: teams_at(row)?,
        pushed: pushed_at(row)?,
        pbx_state: row.get(13)?,
        dnd: row.get(14)?,
        pbx_at: row.get(15)?,
        session_expires_at: row.get(16)?,
        covered_by: row.get(17)?,
    })
}

fn teams_at(row: &Row<'_>) -> rusqlite::Result<Option<StateAt>> {
    let at: Option<i64> = row.get(8)?;
    let Some(at) = at else { return Ok(None) };
    Ok(Some(StateAt {
        availability: row.get(6)?,
        activity: row.get(7)?,
        at,
    }))
}

fn pushed_at(row: &Row<'_>) -> rusqlite::Result<Option<PushedRow>> {
    let at: Option<i64> = row.get(12)?;
    let Some(at) = at else { return Ok(None) };
    Ok(Some(PushedRow {
        state: row.get(9)?,
        availability: row.get(10)?,
        activity: row.get(11)?,
        at,
    }))
}
