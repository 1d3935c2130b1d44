//! `[ha]` with Asterisk: two real daemons on one real PostgreSQL 15 and the real Asterisk. The
//! standby follows Asterisk over its own ARI application while it stands by; the leader is
//! killed during a call and another call starts while nobody leads; the new leader reads
//! every device again, keeps the running call's sessions and sets the new one's.

use std::time::Duration;

use crate::common::ha::{Node, wait_for_leader, writer};
use crate::common::postgres::Postgres;
use crate::common::{ALICE, BOB, CAROL, World, eventually};
use crate::sandbox::{PHONES, Pbx, finish};

fn in_a_call(w: &World, extension: &str) -> bool {
    w.app_session(extension)
        .is_some_and(|s| s.availability == "Busy" && s.activity == "InACall")
}

/// What `status` says of `node` (from the shared database).
fn node_status(reader: &Node, node: &str) -> serde_json::Value {
    let status = reader.status();
    let nodes = status["ha"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = nodes.into_iter().find(|n| n["node"] == node);
    found.unwrap_or(serde_json::Value::Null)
}

/// Presence clears Graph received from `node`, for the user behind `extension`.
fn clears_by(w: &World, node: &str, extension: &str) -> usize {
    let path = format!("/users/{}/presence/clearPresence", w.id(extension));
    w.graph
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&path))
        .filter(|r| writer(r.user_agent.as_deref()).is_some_and(|(n, _)| n == node))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_asterisk_and_takes_the_running_calls_over() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    w.pbx_section = Some(Pbx::pbx_section(""));
    w.write_config("");
    let pg = Postgres::start();
    let database = pg.database("asterisk_ha");
    let db = database.connect().await;
    let store = database.store_section();
    let mut one = Node::new(&w, "pbx1", &store, "3s");
    let mut two = Node::new(&w, "pbx2", &store, "3s");
    one.start_without_listener(&db).await;
    let first = wait_for_leader(&db, "pbx1", 20).await;
    two.start_without_listener(&db).await;
    eventually(20, "pbx2 follows Asterisk while standing by", || {
        node_status(&one, "pbx2")["pbx_link"] == "connected"
    })
    .await;
    let journal = two.journal();
    assert!(
        journal.contains("as application pbx-teams-presence-pbx2"),
        "{journal}"
    );

    for phone in ["1001", "1002", "1003", "1004"] {
        PHONES.register(phone).await;
    }
    let bob = PHONES.answer("1002", 100);
    let alice = PHONES.dial("uac.xml", "1001", "1002", 15_000, &[]);
    eventually(15, "Alice and Bob in a call, set by pbx1", || {
        in_a_call(&w, ALICE) && in_a_call(&w, BOB)
    })
    .await;
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while node_status(&one, "pbx2")["pbx_calls"] != 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    if seen.await.is_err() {
        panic!(
            "the standby does not see the two in a call: {}\n--- pbx2:\n{}",
            node_status(&one, "pbx2"),
            two.journal()
        );
    }

    one.kill();
    // While nobody leads, Carol calls 1004 (not a user): only a read of Asterisk can tell.
    let other = PHONES.answer("1004", 100);
    let carol = PHONES.dial("uac.xml", "1003", "1004", 15_000, &[]);
    let epoch = wait_for_leader(&db, "pbx2", 20).await;
    assert!(epoch > first, "a take-over starts a new term");
    eventually(15, "Carol in a call, set by pbx2 after its resync", || {
        in_a_call(&w, CAROL)
    })
    .await;
    // The running call's sessions were kept: the new leader did not clear them.
    assert!(in_a_call(&w, ALICE) && in_a_call(&w, BOB));
    assert_eq!(clears_by(&w, "pbx2", ALICE) + clears_by(&w, "pbx2", BOB), 0);

    for (child, what) in [(alice, "1001 calls 1002"), (bob, "1002 answers")] {
        finish(child, what).await;
    }
    for (child, what) in [(carol, "1003 calls 1004"), (other, "1004 answers")] {
        finish(child, what).await;
    }
    eventually(15, "the three cleared by the new leader", || {
        [ALICE, BOB, CAROL]
            .iter()
            .all(|u| w.app_session(u).is_none() && clears_by(&w, "pbx2", u) >= 1)
    })
    .await;
    let status = two.status();
    assert_eq!(status["ha"]["leader"], "pbx2", "{status}");
    // The leader's row says nothing of a standby link; the footer shows the daemon's own.
    assert!(node_status(&two, "pbx2")["pbx_link"].is_null(), "{status}");
    two.terminate(Duration::from_secs(20)).await;
}
