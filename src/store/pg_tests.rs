//! The store on a real PostgreSQL 15 (a private server per test, `tests/common/postgres.rs`):
//! the same writes leave the same snapshot as on SQLite, migrations, failures, fencing and a
//! server restart.

#[path = "../../tests/common/postgres.rs"]
mod harness;

use harness::{Database, Postgres};

use super::postgres::StoreFence;
use super::test_support::{Rows, everything_about, session, upsert};
use super::tests as shared;
use super::*;
use crate::config::PostgresStore;
use crate::secret::Secret;

fn settings(db: &Database) -> PostgresStore {
    let password = std::fs::read_to_string(&db.password_file).unwrap();
    PostgresStore {
        url: db.url(),
        password: Some(Secret::new(password)),
        ca_file: None,
    }
}

async fn open(db: &Database, fence: Option<StoreFence>) -> Result<Store, StoreError> {
    let settings = settings(db);
    tokio::task::spawn_blocking(move || Store::open_postgres(&settings, fence))
        .await
        .unwrap()
}

/// Every kind of write, for a few users, then some removed: what each database keeps.
fn a_day_of_writes() -> Vec<Write> {
    let mut writes: Vec<Write> = ["1001", "1002", "1003"]
        .iter()
        .flat_map(|e| everything_about(e))
        .collect();
    writes.extend([
        Write::AddCounter {
            name: "pbx_events".into(),
            delta: 3,
        },
        Write::AddCounter {
            name: "pbx_events".into(),
            delta: 4,
        },
        Write::SetMeta {
            key: MetaKey::PbxLink,
            value: "connected".into(),
        },
        Write::SaveSubscription(SubscriptionRow {
            id: "sub-1".into(),
            account: "a@contoso.com".into(),
            client_state: "cs".into(),
            expires_at: 99,
            users: 650,
            rich: true,
        }),
        Write::SetCoverage {
            account: "a@contoso.com".into(),
            teams_ids: vec!["id-1001".into()],
        },
        Write::OpenPreferred {
            extension: "1002".into(),
            teams_id: "id-1002".into(),
            expires_at: 50,
        },
        Write::CloseSession {
            teams_id: "id-1003".into(),
        },
        Write::RemoveUser {
            extension: "1003".into(),
        },
        session("1001", 77),
    ]);
    writes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_writes_leave_the_same_snapshot_as_on_sqlite() {
    let pg = Postgres::start();
    let db = pg.database("same");
    let on_pg = open(&db, None).await.unwrap();
    let on_sqlite = Store::open_in_memory().unwrap();
    for store in [&on_pg, &on_sqlite] {
        store.write_all(a_day_of_writes()).await;
        store.flush().await.unwrap();
    }
    let want = on_sqlite.snapshot().await.unwrap();
    let got = on_pg.snapshot().await.unwrap();
    assert_eq!(got, want);
    assert_eq!(got.users.len(), 2, "{got:#?}");
    assert_eq!(got.counters.get("pbx_events"), Some(&7));
    on_pg.close().await.unwrap();
    // Reopened: the same, and the schema stays at this build's version.
    let again = open(&db, None).await.unwrap();
    assert_eq!(again.snapshot().await.unwrap(), want);
    again.close().await.unwrap();
    let client = db.connect().await;
    let version: i64 = client
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_migrating_one_empty_database_at_once_both_start() {
    let pg = Postgres::start();
    let db = pg.database("race");
    let (a, b) = tokio::join!(open(&db, None), open(&db, None));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.write(upsert("1001")).await;
    a.flush().await.unwrap();
    assert_eq!(b.snapshot().await.unwrap().users.len(), 1);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let pg = Postgres::start();
    let db = pg.database("newer");
    open(&db, None).await.unwrap().close().await.unwrap();
    let client = db.connect().await;
    client
        .execute("UPDATE schema_version SET version = version + 1", &[])
        .await
        .unwrap();
    let err = open(&db, None).await.err().expect("refused");
    assert!(matches!(err, StoreError::NewerSchema { .. }), "{err}");
}

/// PostgreSQL aborts a transaction at its first failed statement: the batch runs again
/// without the failed write, the others are committed, the next flush reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_does_not_stop_the_others() {
    let pg = Postgres::start();
    let db = pg.database("failed");
    let store = open(&db, None).await.unwrap();
    let client = db.connect().await;
    client.batch_execute("DROP TABLE meta").await.unwrap();
    let meta = Write::SetMeta {
        key: MetaKey::PbxLink,
        value: "v".into(),
    };
    store
        .write_all(vec![upsert("1001"), meta, upsert("1002")])
        .await;
    let err = store.flush().await.unwrap_err();
    assert!(matches!(err, StoreError::WriteFailed { .. }), "{err}");
    assert_eq!(store.stats().writes_failed, 1);
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 2);
    store.flush().await.unwrap();
}

/// `[ha]`: a store opened for a term writes only while the lease row says that term holds
/// it; once another node took it, the batch is dropped and the flush says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_store_writes_only_while_its_term_holds_the_lease() {
    let pg = Postgres::start();
    let db = pg.database("fenced");
    let fence = StoreFence {
        node: "pbx1".into(),
        epoch: 7,
    };
    let store = open(&db, Some(fence)).await.unwrap();
    let client = db.connect().await;
    let far = "(extract(epoch from clock_timestamp()) * 1000)::bigint + 60000";
    client
        .batch_execute(&format!(
            "INSERT INTO ha_lease (name, holder, epoch, expires_at, since) VALUES ('leader', 'pbx1', 7, {far}, 0)"
        ))
        .await
        .unwrap();
    store.write(upsert("1001")).await;
    store.flush().await.unwrap();
    client
        .batch_execute("UPDATE ha_lease SET holder = 'pbx2', epoch = 8")
        .await
        .unwrap();
    store.write(upsert("1002")).await;
    let err = store.flush().await.unwrap_err();
    assert!(
        err.to_string().contains("no longer holds the leader lease"),
        "{err}"
    );
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "the deposed term's write is not in the database");
}

/// PostgreSQL restarts: the store connects again and the next write is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connects_again_after_postgresql_restarts() {
    let pg = Postgres::start();
    let db = pg.database("restart");
    let store = open(&db, None).await.unwrap();
    store.write(upsert("1001")).await;
    store.flush().await.unwrap();
    pg.stop();
    pg.start_again();
    store.write(upsert("1002")).await;
    store.flush().await.unwrap();
    assert_eq!(store.snapshot().await.unwrap().users.len(), 2);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error_without_the_password() {
    let pg = Postgres::start();
    let db = pg.database("password");
    let mut wrong = settings(&db);
    wrong.password = Some(Secret::new("not-it-Kx3"));
    let err = tokio::task::spawn_blocking(move || Store::open_postgres(&wrong, None))
        .await
        .unwrap()
        .err()
        .expect("refused");
    let text = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains("postgres://postgres@127.0.0.1"), "{text}");
    assert!(!text.contains("not-it-Kx3"), "{text}");
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// `sslmode=require`: TLS with the server's certificate checked against `store.ca_file` and
/// its name; without that CA, or under another name, no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trusts_the_ca_file_and_checks_the_name() {
    let ca = crate::pbx::tls::tests::TestCa::new();
    let leaf = ca.leaf(&["127.0.0.1"], false);
    let pg = Postgres::start_tls(
        &pem("CERTIFICATE", &leaf.chain[0]),
        &pem("PRIVATE KEY", leaf.key.secret_der()),
    );
    let db = pg.database("tls");
    let mut trusted = settings(&db);
    trusted.url = trusted.url.replace("sslmode=disable", "sslmode=require");
    trusted.ca_file = Some(ca.ca_file());
    let opening = trusted.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_postgres(&opening, None))
        .await
        .unwrap()
        .unwrap();
    store.write(upsert("1001")).await;
    store.flush().await.unwrap();
    let client = db.connect().await;
    let over_tls: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE ssl AND application_name = 'pbx-teams-presence'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(over_tls, 1, "the store's connection is not over TLS");
    store.close().await.unwrap();

    let mut untrusted = trusted.clone();
    untrusted.ca_file = None;
    let mut wrong_name = trusted.clone();
    wrong_name.url = wrong_name.url.replace("127.0.0.1", "localhost");
    for (what, s) in [("no CA file", untrusted), ("another name", wrong_name)] {
        let err = tokio::task::spawn_blocking(move || Store::open_postgres(&s, None))
            .await
            .unwrap()
            .err()
            .unwrap_or_else(|| panic!("{what}: connected"));
        let text = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(
            text.to_lowercase().contains("certificate"),
            "{what}: {text}"
        );
    }
}

/// Runs of like writes (a poll's Teams states, a lookup round's matches, pushes, a users
/// file), some extensions written twice in a run: PostgreSQL takes each run as one statement
/// and ends where SQLite does, write by write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_like_writes_end_as_write_by_write() {
    let pg = Postgres::start();
    let db = pg.database("runs");
    let on_pg = open(&db, None).await.unwrap();
    let on_sqlite = Store::open_in_memory().unwrap();
    let ext = |i: usize| format!("{}", 2000 + i % 40);
    let mut writes: Vec<Write> = (0..40).map(|i| upsert(&ext(i))).collect();
    for round in 0..2_i64 {
        writes.extend((0..60).map(|i| Write::SetMatch {
            extension: ext(i).into(),
            teams_id: Some(format!("id-{i}-{round}").into()),
            status: crate::sync::types::MatchStatus::Matched,
            detail: None,
            at: round,
        }));
        writes.extend((0..60).map(|i| Write::SetTeams {
            extension: ext(i),
            availability: format!("A{i}-{round}").into(),
            activity: "Busy".to_owned().into(),
            at: round,
        }));
        writes.extend((0..60).map(|i| Write::SetPushed {
            extension: ext(i),
            state: format!("s{i}"),
            availability: "Busy".into(),
            activity: "InACall".into(),
            at: round,
        }));
    }
    // A changed e-mail in a run of upserts forgets the match, as one by one.
    writes.push(Write::UpsertUser {
        extension: ext(3).into(),
        email: "new@example.com".into(),
        direction: "both".into(),
    });
    for store in [&on_pg, &on_sqlite] {
        store.write_all(writes.clone()).await;
        store.flush().await.unwrap();
    }
    let want = on_sqlite.snapshot().await.unwrap();
    assert_eq!(on_pg.snapshot().await.unwrap(), want);
    assert_eq!(want.users.len(), 40);
    assert!(
        want.users
            .iter()
            .any(|u| u.email == "new@example.com" && u.teams_id.is_none())
    );
}

/// A run that fails (its table is gone) is tried again write by write: each of its writes
/// fails alone, the writes around it are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_fails_write_by_write_and_the_rest_commits() {
    let pg = Postgres::start();
    let db = pg.database("failed_run");
    let store = open(&db, None).await.unwrap();
    let client = db.connect().await;
    client.batch_execute("DROP TABLE pushed").await.unwrap();
    let pushed = |ext: &str| Write::SetPushed {
        extension: ext.into(),
        state: "busy".into(),
        availability: "Busy".into(),
        activity: "InACall".into(),
        at: 1,
    };
    store
        .write_all(vec![
            upsert("1001"),
            pushed("1001"),
            pushed("1002"),
            pushed("1003"),
            upsert("1002"),
        ])
        .await;
    let err = store.flush().await.unwrap_err();
    assert!(matches!(err, StoreError::WriteFailed { .. }), "{err}");
    assert_eq!(store.stats().writes_failed, 3);
    let users: i64 = client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 2);
}

/// The store's behaviour tests (`tests.rs`), on PostgreSQL: each body runs on SQLite there.
macro_rules! on_postgres {
    ($($name:ident => $body:ident $(with $rows:ident)?),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let pg = Postgres::start();
            let db = pg.database(stringify!($name));
            let store = open(&db, None).await.unwrap();
            shared::$body(store $(, Rows::$rows(db.connect().await))?).await;
        }
    )*};
}

on_postgres! {
    a_changed_email_forgets_the_match => changed_email_forgets_the_match,
    writes_apply_in_order => in_order,
    a_burst_is_one_transaction => burst_is_one_transaction,
    closed_store_says_closed => closed_says_closed,
    remove_user_removes_everything => removes_everything with Postgres,
    errors_are_capped => capped with Postgres,
}
