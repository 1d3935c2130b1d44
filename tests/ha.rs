//! `[ha]`: two real daemons on one real PostgreSQL 15, 200 users, calls running. The leader
//! is killed, frozen, or cut off from PostgreSQL; the other node leads, Teams ends up showing
//! exactly the calls still running, events posted to either node are applied, and the Graph
//! writes (their User-Agent names node and epoch) never come from two leaders at once.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::ha::{Node, lease, wait_for_leader, writer};
use common::postgres::Postgres;
use common::*;
use serde_json::json;

/// Users besides the world's three.
const USERS: usize = 197;
/// A short lease keeps the tests short: take-over within about 3.3 s.
const LEASE: &str = "3s";

fn extension(i: usize) -> String {
    format!("{}", 30_000 + i)
}

/// The world with [`USERS`] more users, matched by mail; their Teams ids.
async fn world() -> (World, Vec<String>) {
    World::crowd(USERS, "ha", extension, 200_000).await
}

/// The PostgreSQL server, a database for this test, and the two nodes' configs.
struct Pair {
    pg: Postgres,
    database: common::postgres::Database,
    db: tokio_postgres::Client,
    one: Node,
    two: Node,
}

async fn pair(w: &World, name: &str) -> Pair {
    let pg = Postgres::start();
    let database = pg.database(name);
    let store = database.store_section();
    let db = database.connect().await;
    let one = Node::new(w, "pbx1", &store, LEASE);
    let two = Node::new(w, "pbx2", &store, LEASE);
    Pair {
        pg,
        database,
        db,
        one,
        two,
    }
}

/// `state` for the users `range`, posted to `node` in one batch.
async fn report(w: &World, node: &Node, range: std::ops::Range<usize>, state: &str) {
    let events: Vec<_> = range
        .map(|i| json!({"extension": extension(i), "state": state}))
        .collect();
    assert_eq!(
        node.post(w, &json!(events)).await,
        202,
        "{} refused the events",
        node.name
    );
}

/// The users (indexes) with an app session in Teams now.
fn sessions(w: &World, ids: &[String]) -> BTreeSet<usize> {
    let client = w.graph.client_id();
    (0..ids.len())
        .filter(|&i| w.graph.app_session(&ids[i], &client).is_some())
        .collect()
}

async fn wait_sessions(p: &Pair, w: &World, ids: &[String], want: &BTreeSet<usize>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sessions(w, ids);
        if &got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: sessions {:?} != calls {:?}\n--- pbx1:\n{}\n--- pbx2:\n{}",
            got.symmetric_difference(want).collect::<Vec<_>>(),
            want.len(),
            p.one.journal(),
            p.two.journal(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every presence write Graph received, in arrival order, as (node, epoch).
fn writes(w: &World) -> Vec<(String, i64)> {
    w.graph
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && (r.path.ends_with("/setPresence") || r.path.ends_with("/clearPresence"))
        })
        .map(|r| writer(r.user_agent.as_deref()).expect("every write names its node and epoch"))
        .collect()
}

/// One leader at a time: the epochs of the writes never go down in arrival order, and each
/// epoch belongs to one node.
fn one_writer_at_a_time(w: &World) {
    let all = writes(w);
    assert!(!all.is_empty(), "no presence write seen");
    let mut owner = std::collections::BTreeMap::new();
    for pair in all.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "a write of epoch {} after one of epoch {}: {:?}",
            pair[1].1,
            pair[0].1,
            pair
        );
    }
    for (node, epoch) in &all {
        let first = owner.entry(*epoch).or_insert_with(|| node.clone());
        assert_eq!(first, node, "epoch {epoch} written by two nodes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_teams_shows_exactly_the_running_calls() {
    let (w, ids) = world().await;
    let mut p = pair(&w, "killed").await;
    p.one.start(&p.db).await;
    let first = wait_for_leader(&p.db, "pbx1", 20).await;
    p.two.start(&p.db).await;
    // Calls start, reported to both nodes: the standby's go through the inbox.
    report(&w, &p.one, 0..30, "speaking").await;
    report(&w, &p.two, 30..60, "speaking").await;
    report(&w, &p.one, 0..10, "idle").await;
    let mut calls: BTreeSet<usize> = (10..60).collect();
    wait_sessions(&p, &w, &ids, &calls, "before the failover").await;

    let killed = Instant::now();
    p.one.kill();
    // While nobody leads, the PBX reports to the standby: 5 calls end, 5 start.
    report(&w, &p.two, 10..15, "idle").await;
    report(&w, &p.two, 60..65, "speaking").await;
    calls.retain(|i| !(10..15).contains(i));
    calls.extend(60..65);
    let epoch = wait_for_leader(&p.db, "pbx2", 20).await;
    let took = killed.elapsed();
    assert!(epoch > first, "a take-over starts a new term");
    wait_sessions(&p, &w, &ids, &calls, "after the take-over").await;
    eprintln!(
        "take-over: pbx2 led {:.2} s after pbx1 was killed (lease {LEASE}), Teams matched the calls {:.2} s after",
        took.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    let journal = p.two.journal();
    assert!(
        journal.contains("node pbx2 takes over from pbx1"),
        "{journal}"
    );
    // `status` on either node shows who leads, the term, and both nodes.
    let status = p.one.status();
    assert_eq!(status["ha"]["leader"], "pbx2", "{status}");
    assert_eq!(status["ha"]["epoch"], epoch, "{status}");
    let nodes: Vec<&str> = status["ha"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["pbx1", "pbx2"], "{status}");
    assert_eq!(status["ha"]["nodes"][1]["role"], "leader", "{status}");
    assert_eq!(status["users"].as_array().unwrap().len(), 200, "{status}");

    one_writer_at_a_time(&w);
    assert_eq!(lease(&p.db).await.map(|l| l.0).as_deref(), Some("pbx2"));
    // `check` reaches the shared database and says who leads (its own Graph probe comes
    // after the writes checked above).
    let check = p.one.check();
    assert!(
        check.contains("ok: state database postgres://postgres@127.0.0.1:"),
        "{check}"
    );
    assert!(
        check.contains(&format!("ok: leader pbx2 (epoch {epoch}), 2 nodes seen")),
        "{check}"
    );
}

/// The presence clears Graph received from `node`.
fn clears_by(w: &World, node: &str) -> usize {
    w.graph
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/clearPresence"))
        .filter(|r| writer(r.user_agent.as_deref()).is_some_and(|(n, _)| n == node))
        .count()
}

async fn wait_journal(node: &Node, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.journal().contains(line) {
        assert!(
            Instant::now() < deadline,
            "{} never said {line:?}:\n{}",
            node.name,
            node.journal()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGSTOP for longer than the lease (a GC-like pause, a VM frozen): the other node leads;
/// when the frozen one runs again it finds its fence shut, writes nothing, steps down, and
/// takes events as a standby.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_writes_nothing_once_its_lease_is_gone() {
    let (w, ids) = world().await;
    let mut p = pair(&w, "frozen").await;
    p.one.start(&p.db).await;
    let first = wait_for_leader(&p.db, "pbx1", 20).await;
    p.two.start(&p.db).await;
    report(&w, &p.one, 0..40, "speaking").await;
    let mut calls: BTreeSet<usize> = (0..40).collect();
    wait_sessions(&p, &w, &ids, &calls, "before the freeze").await;

    p.one.signal("-STOP");
    let second = wait_for_leader(&p.db, "pbx2", 20).await;
    assert!(second > first);
    report(&w, &p.two, 0..10, "idle").await;
    report(&w, &p.two, 40..50, "speaking").await;
    calls.retain(|i| *i >= 10);
    calls.extend(40..50);
    wait_sessions(&p, &w, &ids, &calls, "while pbx1 is frozen").await;

    p.one.signal("-CONT");
    wait_journal(&p.one, "node pbx1 steps down").await;
    // pbx1 is a standby now: what the PBX posts to it is applied by pbx2.
    report(&w, &p.one, 10..20, "idle").await;
    calls.retain(|i| *i >= 20);
    wait_sessions(&p, &w, &ids, &calls, "after pbx1 woke up").await;
    one_writer_at_a_time(&w);
    assert_eq!(lease(&p.db).await, Some(("pbx2".to_owned(), second)));
}

/// PostgreSQL goes away for longer than the lease and comes back: the leader steps down
/// (it cannot renew), both nodes reconnect, one leads, and Teams shows the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_restarts_and_leadership_settles() {
    let (w, ids) = world().await;
    let mut p = pair(&w, "restart").await;
    p.one.start(&p.db).await;
    wait_for_leader(&p.db, "pbx1", 20).await;
    p.two.start(&p.db).await;
    report(&w, &p.one, 0..30, "speaking").await;
    let mut calls: BTreeSet<usize> = (0..30).collect();
    wait_sessions(&p, &w, &ids, &calls, "before the restart").await;

    p.pg.stop();
    wait_journal(&p.one, "node pbx1 steps down").await;
    p.pg.start_again();
    let db = p.database.connect().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some((holder, _)) = lease(&db).await
            && let Some(epoch) = valid(&db, &holder).await
        {
            break (holder, epoch);
        }
        assert!(
            Instant::now() < deadline,
            "nobody leads after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    report(&w, &p.two, 0..5, "idle").await;
    calls.retain(|i| *i >= 5);
    wait_sessions(
        &p,
        &w,
        &ids,
        &calls,
        &format!("after the restart ({} leads)", leader.0),
    )
    .await;
    one_writer_at_a_time(&w);
}

/// The epoch of `holder`'s lease if it has not run out.
async fn valid(db: &tokio_postgres::Client, holder: &str) -> Option<i64> {
    let row = db
        .query_opt(
            "SELECT epoch FROM ha_lease WHERE holder = $1 AND expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint",
            &[&holder],
        )
        .await
        .ok()??;
    Some(row.get(0))
}

/// A planned stop of the leader (SIGTERM) with a standby alive: it gives the lease up and
/// clears nothing; the standby leads at once and keeps every session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_hands_its_sessions_over() {
    let (w, ids) = world().await;
    let mut p = pair(&w, "handover").await;
    p.one.start(&p.db).await;
    let first = wait_for_leader(&p.db, "pbx1", 20).await;
    p.two.start(&p.db).await;
    wait_journal(&p.two, "node pbx2 started as a standby").await;
    report(&w, &p.one, 0..20, "speaking").await;
    let calls: BTreeSet<usize> = (0..20).collect();
    wait_sessions(&p, &w, &ids, &calls, "before the stop").await;

    let stopped = Instant::now();
    let status = p.one.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}: {}", p.one.journal());
    let epoch = wait_for_leader(&p.db, "pbx2", 20).await;
    eprintln!(
        "hand-over: pbx2 led {:.2} s after SIGTERM to pbx1",
        stopped.elapsed().as_secs_f64()
    );
    assert!(epoch > first);
    assert_eq!(
        clears_by(&w, "pbx1"),
        0,
        "the stopping leader cleared sessions"
    );
    wait_journal(&p.one, "standby pbx2 takes the sessions over").await;
    wait_journal(&p.two, "pbx1 stopped and gave the lease up").await;
    wait_sessions(&p, &w, &ids, &calls, "after the hand-over").await;
    report(&w, &p.two, 0..20, "idle").await;
    wait_sessions(&p, &w, &ids, &BTreeSet::new(), "after the calls ended").await;
}

/// `[notifications]` of one node: its own webhook port and public URL (nodes may differ).
fn notifications_of(port: u16) -> String {
    format!(
        "\n[notifications]\nenabled = true\npublic_url = \"http://127.0.0.1:{port}/graph/notify\"\n\
         listen = \"127.0.0.1:{port}\"\naccounts = [\"{}\"]\n",
        notify::SYNC1
    )
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The live subscriptions: (notification URL, users watched).
fn subscribed(w: &World) -> Vec<(String, usize)> {
    let subs = notify::subscriptions_of(w, notify::SYNC1);
    subs.into_iter()
        .map(|s| (s.notification_url, s.ids.len()))
        .collect()
}

/// A change of `extension`'s Teams presence, delivered to `url` and answered 2xx.
fn delivered_to(w: &World, url: &str, extension: &str) -> bool {
    let id = w.id(extension);
    w.graph
        .deliveries()
        .iter()
        .any(|d| d.url.starts_with(url) && d.ids.contains(&id) && d.status.is_some_and(|s| s < 300))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_leader_moves_the_subscription_to_its_own_webhook() {
    let w = World::new_with(notify::options()).await;
    let sync = notify::SYNC1;
    w.graph.add_user(user(sync, sync, Some(sync), &[]));
    w.write_config("");
    let pg = Postgres::start();
    let database = pg.database("notify");
    let db = database.connect().await;
    let (port1, port2) = (free_port(), free_port());
    let url1 = format!("http://127.0.0.1:{port1}/graph/notify");
    let url2 = format!("http://127.0.0.1:{port2}/graph/notify");
    let store = database.store_section();
    let mut one = Node::new(
        &w,
        "pbx1",
        &(store.clone() + &notifications_of(port1)),
        LEASE,
    );
    let mut two = Node::new(&w, "pbx2", &(store + &notifications_of(port2)), LEASE);
    let (ok, out) = notify::login_with(&w, &one.config, sync, sync).await;
    assert!(ok, "login: {out}");
    one.start(&db).await;
    wait_for_leader(&db, "pbx1", 20).await;
    two.start(&db).await;
    eventually(20, "pbx1 subscribed at its own webhook", || {
        subscribed(&w) == [(url1.clone(), 3)]
    })
    .await;
    w.graph.set_user_presence(&w.id(BOB), "Busy", "InAMeeting");
    eventually(15, "Bob's change notified to pbx1", || {
        delivered_to(&w, &url1, BOB)
    })
    .await;

    one.kill();
    wait_for_leader(&db, "pbx2", 20).await;
    eventually(
        20,
        "pbx2 made the subscription again at its own webhook",
        || subscribed(&w) == [(url2.clone(), 3)],
    )
    .await;
    let journal = two.journal();
    assert!(
        journal.contains(&format!("notifies {url1}, not notifications.public_url")),
        "{journal}"
    );
    w.graph.set_user_presence(&w.id(CAROL), "Away", "Away");
    eventually(15, "Carol's change notified to pbx2 and pushed", || {
        delivered_to(&w, &url2, CAROL) && !w.pbx.updates_for(CAROL).is_empty()
    })
    .await;
    two.terminate(Duration::from_secs(20)).await;
}
