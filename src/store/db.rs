//! What the statements of `sql.rs` need from a database, so one set of statements serves
//! SQLite and PostgreSQL: portable SQL (`$1` parameters, `ON CONFLICT ... DO UPDATE`,
//! `RETURNING`), parameters both drivers take, and rows read by column index.

use std::collections::HashMap;

/// A parameter both drivers can bind: `&str`, `i64`, `bool` and their `Option`s.
pub trait Param: rusqlite::ToSql + postgres::types::ToSql + Sync {}
impl<T: rusqlite::ToSql + postgres::types::ToSql + Sync> Param for T {}

/// A failed statement.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
}

impl DbError {
    /// The connection is gone (PostgreSQL): worth a new connection and another try. Besides
    /// a closed socket: SQLSTATE class 08 (connection exception) and 57P (the server shuts
    /// down or restarts).
    pub fn is_connection_lost(&self) -> bool {
        let DbError::Postgres(e) = self else {
            return false;
        };
        let lost_state = e
            .code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
        e.is_closed() || e.as_db_error().is_none() || lost_state
    }
}

/// One row, read by column index; integers are `i64`, booleans `bool` (SQLite's 0/1 too).
pub trait RowRead {
    fn text(&self, i: usize) -> Result<Option<String>, DbError>;
    fn int(&self, i: usize) -> Result<Option<i64>, DbError>;
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbError>;
}

/// Statements with parameters, and queries mapped row by row.
pub trait Db {
    fn exec(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, DbError>;
    fn query<T>(
        &mut self,
        sql: &str,
        params: &[&dyn Param],
        map: impl FnMut(&dyn RowRead) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError>;
}

/// A text column that must be there.
pub fn text(row: &dyn RowRead, i: usize) -> Result<String, DbError> {
    Ok(row.text(i)?.unwrap_or_default())
}

/// An integer column that must be there.
pub fn int(row: &dyn RowRead, i: usize) -> Result<i64, DbError> {
    Ok(row.int(i)?.unwrap_or_default())
}

impl RowRead for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.get(i)?)
    }
    fn int(&self, i: usize) -> Result<Option<i64>, DbError> {
        Ok(self.get(i)?)
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbError> {
        Ok(self.get(i)?)
    }
}

impl Db for rusqlite::Connection {
    fn exec(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, DbError> {
        let params: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| *p as _).collect();
        let n = self.prepare_cached(sql)?.execute(params.as_slice())?;
        Ok(u64::try_from(n).unwrap_or(u64::MAX))
    }

    fn query<T>(
        &mut self,
        sql: &str,
        params: &[&dyn Param],
        mut map: impl FnMut(&dyn RowRead) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let params: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| *p as _).collect();
        let mut stmt = self.prepare_cached(sql)?;
        let mut rows = stmt.query(params.as_slice())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(map(row)?);
        }
        Ok(out)
    }
}

impl RowRead for postgres::Row {
    fn text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<Option<i64>, DbError> {
        Ok(self.try_get(i)?)
    }
    fn boolean(&self, i: usize) -> Result<Option<bool>, DbError> {
        Ok(self.try_get(i)?)
    }
}

/// A PostgreSQL connection with its prepared statements (one round trip per statement
/// afterwards, as SQLite's statement cache gives).
pub struct PgConn {
    pub client: postgres::Client,
    prepared: HashMap<String, postgres::Statement>,
}

impl PgConn {
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client,
            prepared: HashMap::new(),
        }
    }

    /// A statement with PostgreSQL-only parameters (arrays), prepared once.
    pub fn exec_pg(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<(), DbError> {
        let stmt = self.statement(sql)?;
        self.client.execute(&stmt, params)?;
        Ok(())
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(s) = self.prepared.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

impl Db for PgConn {
    fn exec(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, DbError> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| *p as _).collect();
        Ok(self.client.execute(&stmt, &params)?)
    }

    fn query<T>(
        &mut self,
        sql: &str,
        params: &[&dyn Param],
        mut map: impl FnMut(&dyn RowRead) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let stmt = self.statement(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> =
            params.iter().map(|p| *p as _).collect();
        let rows = self.client.query(&stmt, &params)?;
        rows.iter().map(|r| map(r)).collect()
    }
}
