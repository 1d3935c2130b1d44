//! Behaviour of the store, on `:memory:` and on files in a temporary directory.

use rusqlite::Connection;

use super::test_support::*;
use super::*;

/// A new file gets the whole schema, version SCHEMA_VERSION, WAL, and an empty snapshot.
#[tokio::test]
async fn migrates_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.snapshot().await.unwrap(), Snapshot::default());
    store.close().await.unwrap();

    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// Everything written is there again after close and reopen, and reopening does not
/// migrate twice.
#[tokio::test]
async fn reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    for w in everything_about("1001") {
        store.write(w).await;
    }
    store
        .write(Write::AddCounter {
            name: "polls".into(),
            delta: 3,
        })
        .await;
    store
        .write(Write::SetMeta {
            key: MetaKey::LastPollUsers,
            value: "1".into(),
        })
        .await;
    let before = store.snapshot().await.unwrap();
    store.close().await.unwrap();

    let store = Store::open(&path).unwrap();
    let after = store.snapshot().await.unwrap();
    assert_eq!(after, before);
    assert_eq!(after.users.len(), 1);
    assert_eq!(after.counters["polls"], 3);
    assert_eq!(after.meta(MetaKey::LastPollUsers), Some("1"));
    assert_eq!(after.errors.len(), 2);
    store.close().await.unwrap();
}

/// A file from a newer build is refused by the daemon and by `status`, naming the path.
#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();

    let Err(err) = Store::open(&path) else {
        panic!("a newer schema was accepted")
    };
    assert!(matches!(
        err,
        StoreError::NewerSchema { found, supported, .. }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
    ));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(matches!(
        read_snapshot(&path),
        Err(StoreError::NewerSchema { .. })
    ));
}

/// A match belongs to its e-mail: upserting the same e-mail keeps it, a new one forgets it.
#[tokio::test]
async fn a_changed_email_forgets_the_match() {
    changed_email_forgets_the_match(Store::open_in_memory().unwrap()).await;
}

pub(super) async fn changed_email_forgets_the_match(store: Store) {
    for w in everything_about("1001") {
        store.write(w).await;
    }
    store.write(upsert("1001")).await;
    let user = |s: &Snapshot| s.users[0].clone();
    let kept = user(&store.snapshot().await.unwrap());
    assert_eq!(kept.teams_id.as_deref(), Some("id-1001"));
    store
        .write(Write::UpsertUser {
            extension: "1001".into(),
            email: "new@example.com".into(),
            direction: "both".into(),
        })
        .await;
    let moved = user(&store.snapshot().await.unwrap());
    assert_eq!(moved.email, "new@example.com");
    assert_eq!((moved.teams_id, moved.match_status), (None, None));
    // The rest of what is known about the extension stays.
    assert_eq!(moved.pbx_state, kept.pbx_state);
}

/// Writes land in the order they were sent; a write before the user is upserted is kept.
#[tokio::test]
async fn writes_apply_in_order() {
    in_order(Store::open_in_memory().unwrap()).await;
}

pub(super) async fn in_order(store: Store) {
    store.write(teams("1001", "Away", 1)).await;
    store.write(teams("1001", "Busy", 2)).await;
    store.write(upsert("1001")).await;
    store.write(session("1001", 10)).await;
    store
        .write(Write::CloseSession {
            teams_id: "id-1001".into(),
        })
        .await;
    store.write(session("1002", 20)).await;
    store
        .write(Write::AddCounter {
            name: "n".into(),
            delta: 5,
        })
        .await;
    store
        .write(Write::AddCounter {
            name: "n".into(),
            delta: -2,
        })
        .await;
    store
        .write(Write::SetMeta {
            key: MetaKey::PbxLink,
            value: "a".into(),
        })
        .await;
    store
        .write(Write::SetMeta {
            key: MetaKey::PbxLink,
            value: "b".into(),
        })
        .await;

    let snap = store.snapshot().await.unwrap();
    let user = &snap.users[0];
    assert_eq!(
        user.teams,
        Some(StateAt {
            availability: "Busy".into(),
            activity: "Busy".into(),
            at: 2
        })
    );
    assert_eq!(user.session_expires_at, None);
    // A session of a user that is not upserted is still listed: a restart must clear it.
    assert_eq!(snap.sessions.len(), 1);
    assert_eq!(snap.sessions[0].extension, "1002");
    assert_eq!(snap.counters["n"], 3);
    assert_eq!(snap.meta(MetaKey::PbxLink), Some("b"));
    store.close().await.unwrap();
}

/// `flush` does not resolve while earlier writes are still queued, and once it has
/// resolved another connection sees them on disk.
#[tokio::test]
async fn flush_resolves_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    let (release, parked) = std::sync::mpsc::channel();
    store.hold(parked).await;
    store.write(upsert("1001")).await;
    let flush = tokio::spawn({
        let store = store.clone();
        async move { store.flush().await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !flush.is_finished(),
        "flush resolved before its write was applied"
    );
    assert_eq!(count(&path, "users"), 0);

    release.send(()).unwrap();
    flush.await.unwrap().unwrap();
    assert_eq!(count(&path, "users"), 1);
    store.close().await.unwrap();
}

/// 50,000 `SetTeams` queued while the thread is busy are committed in transactions of
/// `MAX_BATCH` writes, not one per write.
#[tokio::test]
async fn a_burst_is_one_transaction() {
    burst_is_one_transaction(Store::open_in_memory().unwrap()).await;
}

pub(super) async fn burst_is_one_transaction(store: Store) {
    const N: usize = 50_000;
    for i in 0..N {
        store.write(upsert(&i.to_string())).await;
    }
    store.flush().await.unwrap();
    let before = store.stats();

    let (release, parked) = std::sync::mpsc::channel();
    store.hold(parked).await;
    let burst = (0..N).map(|i| teams(&i.to_string(), "Busy", 1)).collect();
    store.write_all(burst).await;
    release.send(()).unwrap();
    store.flush().await.unwrap();

    let after = store.stats();
    let commits = after.commits - before.commits;
    assert_eq!(commits, N.div_ceil(super::worker::MAX_BATCH) as u64);
    assert_eq!(after.writes_applied - before.writes_applied, N as u64);
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.users.iter().filter(|u| u.teams.is_some()).count(), N);
    store.close().await.unwrap();
}

/// The file, and the WAL next to it, are readable by the owner only.
#[cfg(unix)]
#[tokio::test]
async fn file_mode_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    store.write(upsert("1001")).await;
    store.flush().await.unwrap();
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("state.db-wal");
    assert_eq!(mode(&wal), 0o600);
    store.close().await.unwrap();
}

/// `RemoveUser` leaves nothing about the user behind but an open session (closed separately
/// once Teams confirmed it), and a later upsert starts clean.
#[tokio::test]
async fn remove_user_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    removes_everything(store, Rows::Sqlite(path)).await;
}

pub(super) async fn removes_everything(store: Store, rows: Rows) {
    for w in everything_about("1001")
        .into_iter()
        .chain(everything_about("1002"))
    {
        store.write(w).await;
    }
    store.write(error(None, "not about a user", 8)).await;
    store
        .write(Write::RemoveUser {
            extension: "1001".into(),
        })
        .await;
    store.flush().await.unwrap();

    for table in ["users", "matches", "teams", "pushed", "pbx"] {
        assert_eq!(rows.count(table).await, 1, "{table}");
    }
    assert_eq!(
        rows.count("sessions").await,
        2,
        "the session waits for CloseSession"
    );
    store
        .write(Write::CloseSession {
            teams_id: "id-1001".into(),
        })
        .await;
    store.write(upsert("1001")).await;
    let snap = store.snapshot().await.unwrap();
    let fresh = snap.users.iter().find(|u| u.extension == "1001").unwrap();
    assert_eq!(
        (fresh.teams_id.as_ref(), fresh.teams.as_ref()),
        (None, None)
    );
    assert_eq!(snap.sessions.len(), 1);
    let messages: Vec<_> = snap
        .errors
        .iter()
        .map(|e| (e.user.clone(), e.message.as_str()))
        .collect();
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|(user, _)| user.as_deref().is_none_or(|u| u.starts_with("1002")))
    );
    store.close().await.unwrap();
}

/// `status` reads the file while the daemon has it open, and the daemon keeps working.
#[tokio::test]
async fn read_snapshot_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    for w in everything_about("1001") {
        store.write(w).await;
    }
    store.flush().await.unwrap();

    let read = read_snapshot(&path).unwrap();
    assert_eq!(read, store.snapshot().await.unwrap());
    assert_eq!(read.users[0].pbx_state.as_deref(), Some("speaking"));

    store.write(upsert("1002")).await;
    store.flush().await.unwrap();
    assert_eq!(read_snapshot(&path).unwrap().users.len(), 2);
    store.close().await.unwrap();
    assert_eq!(read_snapshot(&path).unwrap().users.len(), 2);
}

/// `status` on a path with no database says so and creates nothing.
#[test]
fn read_snapshot_of_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let err = read_snapshot(&path).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }));
    assert!(err.to_string().contains("state.db"), "{err}");
    assert!(!path.exists());
}

/// Only the newest 100 errors are kept; a snapshot shows the newest 20, newest first.
#[tokio::test]
async fn errors_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    capped(store, Rows::Sqlite(path)).await;
}

pub(super) async fn capped(store: Store, rows: Rows) {
    for i in 0..150 {
        store.write(error(None, &format!("e{i}"), i)).await;
    }
    let snap = store.snapshot().await.unwrap();
    assert_eq!(rows.count("errors").await, ERRORS_KEPT);
    assert_eq!(snap.errors.len(), ERRORS_SHOWN as usize);
    let ats: Vec<i64> = snap.errors.iter().map(|e| e.at).collect();
    assert_eq!(ats, (130..150).rev().collect::<Vec<i64>>());
    store.close().await.unwrap();
}

/// A write that fails is logged and reported to the next flush; the writes around it are
/// still committed.
#[tokio::test]
async fn a_failed_write_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE meta")
        .unwrap();
    let (release, parked) = std::sync::mpsc::channel();
    store.hold(parked).await;
    store.write(upsert("1001")).await;
    store
        .write(Write::SetMeta {
            key: MetaKey::PbxLink,
            value: "v".into(),
        })
        .await;
    store.write(upsert("1002")).await;
    drop(release);

    let err = store.flush().await.unwrap_err();
    assert!(matches!(err, StoreError::WriteFailed { .. }), "{err}");
    assert_eq!(store.stats().writes_failed, 1);
    assert_eq!(count(&path, "users"), 2);
    // The failure belongs to that flush only.
    store.flush().await.unwrap();
    store.close().await.unwrap();
}

/// An "In a call" session is committed without a flush or any later write.
#[tokio::test]
async fn a_session_is_committed_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = Store::open(&path).unwrap();
    store.write(session("1001", 99)).await;
    let deadline = crate::clock::monotonic() + std::time::Duration::from_secs(10);
    while store.stats().commits == 0 {
        assert!(crate::clock::monotonic() < deadline, "not committed");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(read_snapshot(&path).unwrap().sessions.len(), 1);
    store.close().await.unwrap();
}

/// After `close`, the other handles get `Closed` and their writes are dropped quietly.
#[tokio::test]
async fn closed_store_says_closed() {
    closed_says_closed(Store::open_in_memory().unwrap()).await;
}

pub(super) async fn closed_says_closed(store: Store) {
    let other = store.clone();
    store.close().await.unwrap();
    other.write(upsert("1001")).await;
    assert!(matches!(other.flush().await, Err(StoreError::Closed)));
    assert!(matches!(other.snapshot().await, Err(StoreError::Closed)));
    assert!(matches!(other.close().await, Err(StoreError::Closed)));
}
