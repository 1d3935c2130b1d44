//! What the daemon's subscription upkeep is tested against: Graph granting less than asked
//! (<https://learn.microsoft.com/en-us/answers/questions/1037466/facing-issue-in-expriration-time-using-update-subs>),
//! a subscription deleted behind its owner's back, and the lifecycle events
//! `subscriptionRemoved` and `missed`
//! (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).

mod common;

use std::time::{Duration, SystemTime};

use common::subs::{create, delegated, fx, in_minutes, receiver, send};
use serde_json::{Value, json};

fn expiry(v: &Value) -> SystemTime {
    let text = v["expirationDateTime"].as_str().unwrap();
    humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).unwrap()
}

/// How far `t` is from `now + secs`, in seconds.
fn off(t: SystemTime, now: SystemTime, secs: u64) -> f64 {
    let want = now + Duration::from_secs(secs);
    match t.duration_since(want) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => e.duration().as_secs_f64(),
    }
}

#[tokio::test]
async fn a_shorter_grant_shows_in_the_answers_expiry_and_then_the_subscription_is_gone() {
    let fx = fx().await;
    let (_rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    fx.emu.set_subscription_grant(Some(Duration::from_secs(30)));
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert!(
        off(expiry(&a.body), fx.emu.now_utc(), 30) < 2.0,
        "{}",
        a.body
    );
    let path = format!("/subscriptions/{}", a.body["id"].as_str().unwrap());
    fx.emu.advance_clock(Duration::from_secs(20));
    let renew = json!({"expirationDateTime": in_minutes(&fx, 45)});
    let p = send(&fx, "PATCH", &tok, &path, Some(renew)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(
        off(expiry(&p.body), fx.emu.now_utc(), 30) < 2.0,
        "{}",
        p.body
    );
    let g = send(&fx, "GET", &tok, &path, None).await;
    assert_eq!(g.body["expirationDateTime"], p.body["expirationDateTime"]);
    fx.emu.advance_clock(Duration::from_secs(31));
    assert_eq!(send(&fx, "GET", &tok, &path, None).await.status, 404);
    // Off again: what is asked.
    fx.emu.set_subscription_grant(None);
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    assert!(
        off(expiry(&a.body), fx.emu.now_utc(), 30 * 60) < 2.0,
        "{}",
        a.body
    );
}

#[tokio::test]
async fn a_subscription_removed_behind_its_owners_back_answers_404() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert!(fx.emu.remove_subscription(&id));
    assert!(!fx.emu.remove_subscription(&id), "only once");
    let path = format!("/subscriptions/{id}");
    assert_eq!(send(&fx, "GET", &tok, &path, None).await.status, 404);
    let renew = json!({"expirationDateTime": in_minutes(&fx, 45)});
    assert_eq!(
        send(&fx, "PATCH", &tok, &path, Some(renew)).await.status,
        404
    );
    assert_eq!(rx.count("/lifecycle"), 0, "no word to the owner");
}

#[tokio::test]
async fn subscription_removed_is_posted_and_removes_it_while_missed_only_tells() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(fx.emu.send_lifecycle(&id, "missed"), Ok(true));
    let l = rx
        .wait("/lifecycle", 5, |v| {
            v["value"][0]["lifecycleEvent"] == "missed"
        })
        .await
        .expect("missed posted");
    assert_eq!(l["value"][0]["subscriptionId"], id.as_str());
    assert!(!fx.emu.subscriptions()[0].reauthorization_required);
    fx.emu.set_user_presence(&fx.ids[0], "Busy", "InACall");
    rx.wait("/notify", 5, |_| true)
        .await
        .expect("notifications go on after missed");
    assert_eq!(fx.emu.send_lifecycle(&id, "subscriptionRemoved"), Ok(true));
    rx.wait("/lifecycle", 5, |v| {
        v["value"][0]["lifecycleEvent"] == "subscriptionRemoved"
    })
    .await
    .expect("subscriptionRemoved posted");
    assert!(fx.emu.subscriptions().is_empty());
    let path = format!("/subscriptions/{id}");
    assert_eq!(send(&fx, "GET", &tok, &path, None).await.status, 404);
    assert!(fx.emu.send_lifecycle(&id, "missed").is_err(), "gone");
}
