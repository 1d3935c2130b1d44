//! What the store's tests share: writes for a user, a database in a temp dir, and rows
//! counted from outside the store (SQLite or PostgreSQL).

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::Write;

pub(super) fn upsert(ext: &str) -> Write {
    Write::UpsertUser {
        extension: ext.into(),
        email: format!("{ext}@example.com").into(),
        direction: "both".into(),
    }
}

pub(super) fn teams(ext: &str, availability: &str, at: i64) -> Write {
    Write::SetTeams {
        extension: ext.into(),
        availability: availability.to_owned().into(),
        activity: availability.to_owned().into(),
        at,
    }
}

pub(super) fn session(ext: &str, expires_at: i64) -> Write {
    Write::OpenSession {
        extension: ext.into(),
        teams_id: format!("id-{ext}"),
        expires_at,
    }
}

pub(super) fn error(user: Option<&str>, message: &str, at: i64) -> Write {
    Write::RecordError {
        component: "graph".into(),
        user: user.map(Into::into),
        message: message.into(),
        at,
    }
}

pub(super) fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.db")
}

/// Counts a table's rows from outside the store (another connection).
pub(super) enum Rows {
    Sqlite(PathBuf),
    Postgres(tokio_postgres::Client),
}

impl Rows {
    pub(super) async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match self {
            Rows::Sqlite(path) => count(path, table),
            Rows::Postgres(client) => client.query_one(&sql, &[]).await.unwrap().get(0),
        }
    }
}

pub(super) fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// Every kind of write for one user, so tests can check that all of it is kept or removed.
pub(super) fn everything_about(ext: &str) -> Vec<Write> {
    vec![
        upsert(ext),
        Write::SetMatch {
            extension: ext.into(),
            teams_id: Some(format!("id-{ext}").into()),
            status: crate::sync::types::MatchStatus::Matched,
            detail: None,
            at: 1,
        },
        teams(ext, "Busy", 2),
        Write::SetPushed {
            extension: ext.into(),
            state: "busy".into(),
            availability: "Busy".into(),
            activity: "InACall".into(),
            at: 3,
        },
        Write::SetPbx {
            extension: ext.into(),
            state: "speaking".into(),
            dnd: Some(true),
            at: 4,
        },
        session(ext, 5),
        error(Some(ext), "by extension", 6),
        error(Some(&format!("{ext}@example.com")), "by e-mail", 7),
    ]
}
