//! The typed queries: one statement set per [`Write`], and the [`Snapshot`] read, in SQL both
//! SQLite and PostgreSQL take (`db.rs`). Statements are prepared once per connection; 50,000
//! writes in one transaction cost little more than the row inserts themselves.

use crate::sync::types::MatchStatus;

use super::db::{Db, DbError, Param, RowRead, int, text};
use super::types::{
    AccountRow, ERRORS_KEPT, ERRORS_SHOWN, ErrorRow, LeaseRow, NodeRow, PushedRow, SessionRow,
    Snapshot, StateAt, SubscriptionRow, UserRow, Write,
};

/// The parameters of one statement.
macro_rules! p {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn Param),*]
    };
}

/// Applies one write inside the caller's transaction.
pub fn apply<D: Db>(conn: &mut D, write: &Write) -> Result<(), DbError> {
    match write {
        Write::UpsertUser {
            extension,
            email,
            direction,
        } => {
            let (extension, email, direction) = (&**extension, &**email, &**direction);
            // A match belongs to the e-mail it was found for: a new e-mail forgets it, so a
            // restart never takes the old address's Teams user for the new one.
            exec(
                conn,
                "DELETE FROM matches WHERE extension = $1
                 AND EXISTS (SELECT 1 FROM users WHERE extension = $1 AND email <> $2)",
                p![extension, email],
            )?;
            exec(
                conn,
                "INSERT INTO users (extension, email, direction) VALUES ($1, $2, $3)
                 ON CONFLICT (extension) DO UPDATE SET email = excluded.email,
                                                       direction = excluded.direction",
                p![extension, email, direction],
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
            "INSERT INTO matches (extension, teams_id, status, detail, at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (extension) DO UPDATE SET teams_id = excluded.teams_id,
                status = excluded.status, detail = excluded.detail, at = excluded.at",
            p![&**extension, teams_id.as_deref(), status.as_str(), detail, at],
        ),
        Write::SetTeams {
            extension,
            availability,
            activity,
            at,
        } => exec(
            conn,
            "INSERT INTO teams (extension, availability, activity, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (extension) DO UPDATE SET availability = excluded.availability,
                activity = excluded.activity, at = excluded.at",
            p![extension, availability, activity, at],
        ),
        Write::SetPushed {
            extension,
            state,
            availability,
            activity,
            at,
        } => exec(
            conn,
            "INSERT INTO pushed (extension, state, availability, activity, at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (extension) DO UPDATE SET state = excluded.state,
                availability = excluded.availability, activity = excluded.activity, at = excluded.at",
            p![extension, state, availability, activity, at],
        ),
        Write::SetPbx {
            extension,
            state,
            dnd,
            at,
        } => exec(
            conn,
            "INSERT INTO pbx (extension, state, dnd, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (extension) DO UPDATE SET state = excluded.state, dnd = excluded.dnd,
                at = excluded.at",
            p![extension, state, dnd, at],
        ),
        Write::OpenSession {
            extension,
            teams_id,
            expires_at,
        } => exec(
            conn,
            "INSERT INTO sessions (extension, teams_id, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (extension) DO UPDATE SET teams_id = excluded.teams_id,
                expires_at = excluded.expires_at",
            p![extension, teams_id, expires_at],
        ),
        Write::CloseSession { teams_id } => exec(
            conn,
            "DELETE FROM sessions WHERE teams_id = $1",
            p![teams_id],
        ),
        Write::OpenPreferred {
            extension,
            teams_id,
            expires_at,
        } => exec(
            conn,
            "INSERT INTO preferred (teams_id, extension, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (teams_id) DO UPDATE SET extension = excluded.extension,
                expires_at = excluded.expires_at",
            p![teams_id, extension, expires_at],
        ),
        Write::ClosePreferred { teams_id } => exec(
            conn,
            "DELETE FROM preferred WHERE teams_id = $1",
            p![teams_id],
        ),
        Write::RecordError {
            component,
            user,
            message,
            at,
        } => record_error(conn, component, user.as_deref(), message, *at),
        Write::AddCounter { name, delta } => exec(
            conn,
            "INSERT INTO counters (name, value) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value",
            p![name, delta],
        ),
        Write::SetMeta { key, value } => exec(
            conn,
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            p![key.as_str(), value],
        ),
        Write::SetAccountToken {
            account,
            refresh_token,
            at,
        } => exec(
            conn,
            "INSERT INTO accounts (account, refresh_token, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (account) DO UPDATE SET refresh_token = excluded.refresh_token,
                updated_at = excluded.updated_at",
            p![account, refresh_token.expose(), at],
        ),
        Write::RemoveAccountToken { account } => exec(
            conn,
            "DELETE FROM accounts WHERE account = $1",
            p![account],
        ),
        Write::SaveSubscription(r) => exec(
            conn,
            "INSERT INTO subscriptions (id, account, client_state, expires_at, users, rich)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET account = excluded.account,
                client_state = excluded.client_state, expires_at = excluded.expires_at,
                users = excluded.users, rich = excluded.rich",
            p![r.id, r.account, r.client_state, r.expires_at, r.users, r.rich],
        ),
        Write::DropSubscription { id } => exec(
            conn,
            "DELETE FROM subscriptions WHERE id = $1",
            p![id],
        ),
        Write::SetCoverage { account, teams_ids } => {
            exec(
                conn,
                "DELETE FROM coverage WHERE account = $1",
                p![account],
            )?;
            for id in teams_ids {
                exec(
                    conn,
                    "INSERT INTO coverage (teams_id, account) VALUES ($1, $2)
                     ON CONFLICT (teams_id) DO UPDATE SET account = excluded.account",
                    p![id, account],
                )?;
            }
            Ok(())
        }
    }
}

/// Every account's refresh token (for the daemon only; never part of a snapshot).
pub fn account_tokens<D: Db>(
    conn: &mut D,
) -> Result<Vec<(String, crate::secret::Secret)>, DbError> {
    conn.query(
        "SELECT account, refresh_token FROM accounts ORDER BY account",
        &[],
        |row| Ok((text(row, 0)?, crate::secret::Secret::new(text(row, 1)?))),
    )
}

fn exec<D: Db>(conn: &mut D, sql: &str, params: &[&dyn Param]) -> Result<(), DbError> {
    conn.exec(sql, params).map(drop)
}

/// Deletes the user and every row keyed by its extension, and the errors naming it (by
/// extension or e-mail).
fn remove_user<D: Db>(conn: &mut D, extension: &str) -> Result<(), DbError> {
    let email: Option<String> = conn
        .query(
            "SELECT email FROM users WHERE extension = $1",
            p![extension],
            |row| row.text(0),
        )?
        .into_iter()
        .next()
        .flatten();
    // The session row stays: it is removed by CloseSession once Teams confirmed the clear, so a
    // crash in between still finds it at the next start.
    for table in ["users", "matches", "teams", "pushed", "pbx"] {
        let sql = format!("DELETE FROM {table} WHERE extension = $1");
        exec(conn, &sql, p![extension])?;
    }
    exec(
        conn,
        "DELETE FROM errors WHERE \"user\" = $1 OR \"user\" = $2",
        p![extension, email],
    )
}

/// Inserts the error and drops all but the newest [`ERRORS_KEPT`]. Ids only grow (rows are
/// deleted from the old end), so "newest" is "highest id".
fn record_error<D: Db>(
    conn: &mut D,
    component: &str,
    user: Option<&str>,
    message: &str,
    at: i64,
) -> Result<(), DbError> {
    let ids = conn.query(
        "INSERT INTO errors (component, \"user\", message, at) VALUES ($1, $2, $3, $4) RETURNING id",
        p![component, user, message, at],
        |row| int(row, 0),
    )?;
    let newest = ids.first().copied().unwrap_or(0);
    exec(
        conn,
        "DELETE FROM errors WHERE id <= $1",
        p![newest - ERRORS_KEPT],
    )
}

fn session_row(row: &dyn RowRead) -> Result<SessionRow, DbError> {
    Ok(SessionRow {
        extension: text(row, 0)?,
        teams_id: text(row, 1)?,
        expires_at: int(row, 2)?,
    })
}

fn pair_text_int(row: &dyn RowRead) -> Result<(String, i64), DbError> {
    Ok((text(row, 0)?, int(row, 1)?))
}

fn pair_text(row: &dyn RowRead) -> Result<(String, String), DbError> {
    Ok((text(row, 0)?, text(row, 1)?))
}

/// Reads everything; call it inside a transaction when another connection may write.
pub fn snapshot<D: Db>(conn: &mut D) -> Result<Snapshot, DbError> {
    Ok(Snapshot {
        users: conn.query(USERS_SQL, &[], user_row)?,
        sessions: conn.query(
            "SELECT extension, teams_id, expires_at FROM sessions ORDER BY extension",
            &[],
            session_row,
        )?,
        preferred: conn.query(
            "SELECT extension, teams_id, expires_at FROM preferred ORDER BY extension",
            &[],
            session_row,
        )?,
        counters: conn
            .query("SELECT name, value FROM counters", &[], pair_text_int)?
            .into_iter()
            .collect(),
        errors: errors(conn)?,
        meta: conn
            .query("SELECT key, value FROM meta", &[], pair_text)?
            .into_iter()
            .collect(),
        subscriptions: conn.query(
            "SELECT id, account, client_state, expires_at, users, rich FROM subscriptions
             ORDER BY account, id",
            &[],
            |row| {
                Ok(SubscriptionRow {
                    id: text(row, 0)?,
                    account: text(row, 1)?,
                    client_state: text(row, 2)?,
                    expires_at: int(row, 3)?,
                    users: int(row, 4)?,
                    rich: row.boolean(5)?.unwrap_or(false),
                })
            },
        )?,
        accounts: conn.query(
            "SELECT account, updated_at FROM accounts ORDER BY account",
            &[],
            |row| {
                Ok(AccountRow {
                    account: text(row, 0)?,
                    updated_at: int(row, 1)?,
                })
            },
        )?,
        lease: lease(conn)?,
        nodes: nodes(conn)?,
    })
}

fn lease<D: Db>(conn: &mut D) -> Result<Option<LeaseRow>, DbError> {
    let rows = conn.query(
        "SELECT holder, epoch, expires_at, since FROM ha_lease WHERE name = 'leader'",
        &[],
        |row| {
            Ok(LeaseRow {
                holder: text(row, 0)?,
                epoch: int(row, 1)?,
                expires_at: int(row, 2)?,
                since: int(row, 3)?,
            })
        },
    )?;
    Ok(rows.into_iter().next())
}

fn nodes<D: Db>(conn: &mut D) -> Result<Vec<NodeRow>, DbError> {
    conn.query(
        "SELECT node, role, epoch, seen_at, started_at, detail FROM ha_nodes ORDER BY node",
        &[],
        |row| {
            Ok(NodeRow {
                node: text(row, 0)?,
                role: text(row, 1)?,
                epoch: int(row, 2)?,
                seen_at: int(row, 3)?,
                started_at: int(row, 4)?,
                detail: text(row, 5)?,
            })
        },
    )
}

fn errors<D: Db>(conn: &mut D) -> Result<Vec<ErrorRow>, DbError> {
    conn.query(
        "SELECT component, \"user\", message, at FROM errors ORDER BY id DESC LIMIT $1",
        p![ERRORS_SHOWN],
        |row| {
            Ok(ErrorRow {
                component: text(row, 0)?,
                user: row.text(1)?,
                message: text(row, 2)?,
                at: int(row, 3)?,
            })
        },
    )
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

fn user_row(row: &dyn RowRead) -> Result<UserRow, DbError> {
    Ok(UserRow {
        extension: text(row, 0)?,
        email: text(row, 1)?,
        direction: text(row, 2)?,
        teams_id: row.text(3)?,
        match_status: row.text(4)?.map(|s| MatchStatus::parse(&s)),
        match_detail: row.text(5)?,
        teams: teams_at(row)?,
        pushed: pushed_at(row)?,
        pbx_state: row.text(13)?,
        dnd: row.boolean(14)?,
        pbx_at: row.int(15)?,
        session_expires_at: row.int(16)?,
        covered_by: row.text(17)?,
    })
}

fn teams_at(row: &dyn RowRead) -> Result<Option<StateAt>, DbError> {
    let Some(at) = row.int(8)? else {
        return Ok(None);
    };
    Ok(Some(StateAt {
        availability: text(row, 6)?,
        activity: text(row, 7)?,
        at,
    }))
}

fn pushed_at(row: &dyn RowRead) -> Result<Option<PushedRow>, DbError> {
    let Some(at) = row.int(12)? else {
        return Ok(None);
    };
    Ok(Some(PushedRow {
        state: text(row, 9)?,
        availability: text(row, 10)?,
        activity: text(row, 11)?,
        at,
    }))
}
