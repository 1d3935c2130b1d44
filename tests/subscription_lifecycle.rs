//! A subscription's life against the Graph emulator when Graph does not simply grant what is
//! asked: a 30-second grant (a presence renewal was reported to extend by 5 minutes only:
//! <https://learn.microsoft.com/en-us/answers/questions/1037466/facing-issue-in-expriration-time-using-update-subs>),
//! a subscription deleted behind the daemon's back, a restart, and the lifecycle events
//! `subscriptionRemoved` and `missed`
//! (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>). Both
//! clocks are moved forward instead of waiting.

mod common;

use std::time::Duration;

use common::lifecycle_notify::{
    SYNC1, advance, calls, covered, creates, login, options, subscriptions_of, world,
};
use common::{BOB, World, eventually};
use graph_emulator::{DeliveryKind, EmulatorOptions};

/// Covered users are polled only hourly: a change reaches the PBX by notification, or not.
const HOURLY: &str = "reconciliation_interval = \"1h\"";

/// A signed-in account's daemon running, Bob covered; the subscription it made.
async fn running(emulator: EmulatorOptions) -> (World, graph_emulator::SubscriptionInfo) {
    let mut w = world(&[SYNC1], HOURLY, emulator).await;
    assert!(login(&w, SYNC1, SYNC1).await.0);
    w.start().await;
    covered(&w, BOB, SYNC1).await;
    let sub = subscriptions_of(&w, SYNC1).remove(0);
    (w, sub)
}

fn thirty_seconds() -> EmulatorOptions {
    EmulatorOptions {
        subscription_grant: Some(Duration::from_secs(30)),
        ..options()
    }
}

/// 25 s pass (both clocks): a subscription granted 30 s is renewed by PATCH, and still lives.
async fn renewed_within_its_grant(w: &World, id: &str) {
    let before = calls(w, "PATCH", id, 200);
    advance(w, Duration::from_secs(25));
    eventually(10, "renewed by PATCH before it lapsed", || {
        calls(w, "PATCH", id, 200) > before
    })
    .await;
}

async fn bob_goes(w: &World, availability: &str, activity: &str) {
    w.graph
        .set_user_presence(&w.id(BOB), availability, activity);
    eventually(10, &format!("Bob's {activity} pushed"), || {
        w.pbx
            .updates_for(BOB)
            .iter()
            .any(|u| u["activity"] == activity)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_second_grant_is_renewed_before_it_lapses_and_notifications_keep_flowing() {
    let (mut w, sub) = running(thirty_seconds()).await;
    let left = sub.expiration.duration_since(w.graph.now_utc()).unwrap();
    assert!(left <= Duration::from_secs(30), "granted 30 s: {left:?}");
    for _ in 0..4 {
        renewed_within_its_grant(&w, &sub.id).await;
    }
    // 100 s on: the same subscription, never made again, still delivering.
    let subs = subscriptions_of(&w, SYNC1);
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].id, sub.id);
    assert_eq!(creates(&w), 1);
    bob_goes(&w, "Busy", "InAMeeting").await;
    eventually(5, "by a notification", || {
        w.graph
            .deliveries()
            .iter()
            .any(|d| d.kind == DeliveryKind::Basic && d.ok() && d.ids.contains(&w.id(BOB)))
    })
    .await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_deleted_behind_the_daemons_back_is_made_again_at_the_next_look_up() {
    let (mut w, first) = running(options()).await;
    assert!(w.graph.remove_subscription(&first.id));
    // A 55-minute subscription is next renewed after 40 minutes; it is looked up after 10.
    advance(&w, Duration::from_secs(10 * 60 + 1));
    eventually(10, "made again", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.id != first.id)
    })
    .await;
    assert_eq!(calls(&w, "GET", &first.id, 404), 1, "noticed by a look-up");
    covered(&w, BOB, SYNC1).await;
    bob_goes(&w, "Away", "Away").await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_recorded_subscription_and_renews_it_by_the_time_it_has_left() {
    let (mut w, before) = running(thirty_seconds()).await;
    w.stop().await.unwrap();
    w.graph.clear_requests();
    w.start().await;
    // Adopted with the seconds it has left: renewed in time, again and again.
    for _ in 0..3 {
        renewed_within_its_grant(&w, &before.id).await;
    }
    assert_eq!(creates(&w), 0, "reused, not made again");
    assert_eq!(subscriptions_of(&w, SYNC1).len(), 1);
    bob_goes(&w, "Busy", "InAMeeting").await;
    // Gone at Graph while the daemon was stopped: made again at the next start.
    w.stop().await.unwrap();
    assert!(w.graph.remove_subscription(&before.id));
    w.start().await;
    // The emulator logs the create once it has answered it.
    eventually(10, "made again", || creates(&w) == 1).await;
    let now = subscriptions_of(&w, SYNC1);
    assert!(now.len() == 1 && now[0].id != before.id, "{now:?}");
    w.stop().await.unwrap();
    let snapshot = pbx_teams_presence::store::read_snapshot(&w.db_path()).unwrap();
    assert_eq!(
        snapshot.subscriptions.len(),
        1,
        "the lost one's record dropped"
    );
    assert_ne!(snapshot.subscriptions[0].id, before.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_removed_makes_the_subscription_again_at_once() {
    let (mut w, first) = running(options()).await;
    assert_eq!(
        w.graph.send_lifecycle(&first.id, "subscriptionRemoved"),
        Ok(true)
    );
    eventually(10, "made again", || {
        subscriptions_of(&w, SYNC1)
            .first()
            .is_some_and(|s| s.id != first.id)
    })
    .await;
    assert_eq!(
        calls(&w, "PATCH", &first.id, 404),
        0,
        "not renewed first: Graph said it is gone"
    );
    covered(&w, BOB, SYNC1).await;
    bob_goes(&w, "Away", "Away").await;
    w.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_reads_the_presences_of_the_subscriptions_users_at_once() {
    let (mut w, sub) = running(EmulatorOptions {
        notification_retries: 0,
        ..options()
    })
    .await;
    // Graph loses the notification of Bob's meeting.
    w.graph.fail_deliveries(1);
    w.graph.set_user_presence(&w.id(BOB), "Busy", "InAMeeting");
    eventually(10, "the notification lost", || {
        w.graph
            .deliveries()
            .iter()
            .any(|d| !d.ok() && d.ids.contains(&w.id(BOB)))
    })
    .await;
    assert!(
        !w.pbx
            .updates_for(BOB)
            .iter()
            .any(|u| u["activity"] == "InAMeeting")
    );
    assert_eq!(w.graph.send_lifecycle(&sub.id, "missed"), Ok(true));
    eventually(10, "Bob's meeting read and pushed", || {
        w.pbx
            .updates_for(BOB)
            .iter()
            .any(|u| u["activity"] == "InAMeeting")
    })
    .await;
    assert_eq!(
        calls(&w, "PATCH", &sub.id, 200),
        0,
        "read, not renewed: nothing is wrong with the subscription"
    );
    assert_eq!(subscriptions_of(&w, SYNC1)[0].id, sub.id);
    w.stop().await.unwrap();
}
