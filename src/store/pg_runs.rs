//! PostgreSQL only: a run of like writes (a poll's Teams states, a lookup round's matches, a
//! delivered batch's pushed states, a users file) as one statement over arrays (`unnest`):
//! one round trip instead of one per user. The effect is that of applying them one by one:
//! of several writes for one extension the last wins; a run of user upserts never holds an
//! extension twice (each compares the e-mail with the one before).

use std::collections::HashSet;

use super::db::{DbError, PgConn};
use super::types::Write;

/// How many writes at the start of `writes` form one run (below 2: none).
pub fn run_len(writes: &[Write]) -> usize {
    let Some(first) = writes.first() else {
        return 0;
    };
    let mergeable = matches!(
        first,
        Write::SetTeams { .. }
            | Write::SetPushed { .. }
            | Write::SetMatch { .. }
            | Write::UpsertUser { .. }
    );
    if !mergeable {
        return 0;
    }
    let kind = first.kind();
    let same = writes.iter().take_while(|w| w.kind() == kind);
    if !matches!(first, Write::UpsertUser { .. }) {
        return same.count();
    }
    let mut seen = HashSet::new();
    same.take_while(|w| w.extension().is_some_and(|e| seen.insert(e)))
        .count()
}

/// The last write of each extension in `run`.
fn last_per_extension(run: &[Write]) -> Vec<&Write> {
    let mut seen = HashSet::new();
    run.iter()
        .rev()
        .filter(|w| w.extension().is_some_and(|e| seen.insert(e)))
        .collect()
}

/// Applies a run [`run_len`] found.
pub fn apply_run(conn: &mut PgConn, run: &[Write]) -> Result<(), DbError> {
    match run.first() {
        Some(Write::SetTeams { .. }) => teams_run(conn, run),
        Some(Write::SetPushed { .. }) => pushed_run(conn, run),
        Some(Write::SetMatch { .. }) => matches_run(conn, run),
        Some(Write::UpsertUser { .. }) => users_run(conn, run),
        _ => run.iter().try_for_each(|w| super::sql::apply(conn, w)),
    }
}

fn teams_run(conn: &mut PgConn, run: &[Write]) -> Result<(), DbError> {
    let (mut ext, mut avail, mut act, mut at) = (vec![], vec![], vec![], vec![]);
    for w in last_per_extension(run) {
        if let Write::SetTeams {
            extension,
            availability,
            activity,
            at: t,
        } = w
        {
            ext.push(extension.as_str());
            avail.push(availability.as_ref());
            act.push(activity.as_ref());
            at.push(*t);
        }
    }
    conn.exec_pg(
        "INSERT INTO teams (extension, availability, activity, at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
         ON CONFLICT (extension) DO UPDATE SET availability = excluded.availability,
             activity = excluded.activity, at = excluded.at",
        &[&ext, &avail, &act, &at],
    )
}

fn pushed_run(conn: &mut PgConn, run: &[Write]) -> Result<(), DbError> {
    let (mut ext, mut state, mut avail, mut act, mut at) = (vec![], vec![], vec![], vec![], vec![]);
    for w in last_per_extension(run) {
        if let Write::SetPushed {
            extension,
            state: s,
            availability,
            activity,
            at: t,
        } = w
        {
            ext.push(extension.as_str());
            state.push(s.as_str());
            avail.push(availability.as_ref());
            act.push(activity.as_ref());
            at.push(*t);
        }
    }
    conn.exec_pg(
        "INSERT INTO pushed (extension, state, availability, activity, at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
         ON CONFLICT (extension) DO UPDATE SET state = excluded.state,
             availability = excluded.availability, activity = excluded.activity,
             at = excluded.at",
        &[&ext, &state, &avail, &act, &at],
    )
}

fn matches_run(conn: &mut PgConn, run: &[Write]) -> Result<(), DbError> {
    let (mut ext, mut id, mut status, mut detail, mut at) =
        (vec![], vec![], vec![], vec![], vec![]);
    for w in last_per_extension(run) {
        if let Write::SetMatch {
            extension,
            teams_id,
            status: s,
            detail: d,
            at: t,
        } = w
        {
            ext.push(&**extension);
            id.push(teams_id.as_deref());
            status.push(s.as_str());
            detail.push(d.as_deref());
            at.push(*t);
        }
    }
    conn.exec_pg(
        "INSERT INTO matches (extension, teams_id, status, detail, at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[])
         ON CONFLICT (extension) DO UPDATE SET teams_id = excluded.teams_id,
             status = excluded.status, detail = excluded.detail, at = excluded.at",
        &[&ext, &id, &status, &detail, &at],
    )
}

/// Users (no extension twice): the matches of a changed e-mail forgotten, then the upsert.
fn users_run(conn: &mut PgConn, run: &[Write]) -> Result<(), DbError> {
    let (mut ext, mut email, mut direction) = (vec![], vec![], vec![]);
    for w in run {
        if let Write::UpsertUser {
            extension,
            email: e,
            direction: d,
        } = w
        {
            ext.push(&**extension);
            email.push(&**e);
            direction.push(&**d);
        }
    }
    conn.exec_pg(
        "DELETE FROM matches m USING users u, unnest($1::text[], $2::text[]) AS n(extension, email)
         WHERE m.extension = n.extension AND u.extension = n.extension AND u.email <> n.email",
        &[&ext, &email],
    )?;
    conn.exec_pg(
        "INSERT INTO users (extension, email, direction)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
         ON CONFLICT (extension) DO UPDATE SET email = excluded.email,
             direction = excluded.direction",
        &[&ext, &email, &direction],
    )
}
