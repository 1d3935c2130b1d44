//! Presence subscriptions and change notifications. Sources: the presence notifications page
//! <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>, the subscription
//! resource <https://learn.microsoft.com/en-us/graph/api/resources/subscription>, webhook
//! delivery <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks>,
//! rich notifications
//! <https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data> and
//! lifecycle events
//! <https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>.

mod common;

use std::time::{Duration, Instant};

use common::start_with;
use common::subs::{Mode, body, create, delegated, fx, in_minutes, receiver, send};
use graph_emulator::{DeliveryKind, EmulatorOptions};
use serde_json::json;

const CERT_B64: &str = include_str!("data/notify-test-cert.b64");

#[tokio::test]
async fn app_only_token_is_refused_with_403() {
    let fx = fx().await;
    let (_rx, url) = receiver().await;
    let a = send(
        &fx,
        "POST",
        &fx.token,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids[..1], 30)),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(a.code(), "ExtensionError");
}

#[tokio::test]
async fn create_validates_both_urls_then_second_subscription_is_409() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["changeType"], "updated");
    assert_eq!(a.body["applicationId"], fx.emu.client_id().as_str());
    assert_eq!(a.body["creatorId"], fx.ids[0].as_str());
    assert_eq!(a.body["clientState"], "secret-state");
    let v = rx.validations.lock().unwrap().clone();
    assert_eq!(
        v.len(),
        2,
        "notificationUrl and lifecycleNotificationUrl are validated"
    );
    assert!(v.iter().all(|(_, ct)| ct == "text/plain; charset=utf-8"));
    let subs = fx.emu.subscriptions();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].creator_upn, "user0001@contoso.com");
    assert_eq!(subs[0].ids, fx.ids);
    // One presence subscription per user and app (presence notifications page; 409 as reported
    // in https://github.com/microsoftgraph/msgraph-beta-sdk-dotnet/issues/174).
    let b = create(&fx, &tok, &url, &fx.ids[..1], 30).await;
    assert_eq!(b.status, 409, "{}", b.body);
    assert_eq!(b.code(), "ExtensionError");
    assert_eq!(
        b.body["error"]["message"],
        "A subscripton already exists. It must be deleted before a another can be made."
    );
    // Another user of the same app may subscribe.
    let tok2 = delegated(&fx, "user0002@contoso.com").await;
    let c = create(&fx, &tok2, &url, &fx.ids[..1], 30).await;
    assert_eq!(c.status, 201, "{}", c.body);
    // GET lists the caller's only.
    let l = send(&fx, "GET", &tok, "/subscriptions", None).await;
    assert_eq!(l.body["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn body_rules_651_ids_61_minutes_https_client_state_certificate() {
    let fx = fx().await;
    let (_rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let many: Vec<String> = (0..651).map(|i| format!("id-{i}")).collect();
    let a = create(&fx, &tok, &url, &many, 30).await;
    assert_eq!(a.status, 400, "{}", a.body);
    let ok650 = create(&fx, &tok, &url, &many[..650], 30).await;
    assert_eq!(ok650.status, 201, "{}", ok650.body);
    let id = ok650.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&fx, "DELETE", &tok, &format!("/subscriptions/{id}"), None)
            .await
            .status,
        204
    );

    let a = create(&fx, &tok, &url, &fx.ids, 61).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "ExtensionError");
    assert_eq!(
        a.body["error"]["message"],
        "Subscription expiration can only be 60 minutes in the future."
    );
    let mut b = body(&fx, &url, &fx.ids, 30);
    b["notificationUrl"] = json!("http://example.com/notify");
    // http allowed by the option here; not by default:
    let strict = start_with(EmulatorOptions::default(), 1).await;
    let stok = delegated(&strict, "user0001@contoso.com").await;
    let a = send(
        &strict,
        "POST",
        &stok,
        "/subscriptions",
        Some(body(&strict, &url, &strict.ids, 30)),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "InvalidRequest");
    assert_eq!(
        a.body["error"]["message"],
        "NotificationUrl scheme='http' is not supported."
    );

    let mut b = body(&fx, &url, &fx.ids, 30);
    b["clientState"] = json!("x".repeat(129));
    assert_eq!(
        send(&fx, "POST", &tok, "/subscriptions", Some(b))
            .await
            .status,
        400
    );
    let mut b = body(&fx, &url, &fx.ids, 30);
    b["changeType"] = json!("created");
    assert_eq!(
        send(&fx, "POST", &tok, "/subscriptions", Some(b))
            .await
            .status,
        400
    );
    let mut b = body(&fx, &url, &fx.ids, 30);
    b["includeResourceData"] = json!(true);
    assert_eq!(
        send(&fx, "POST", &tok, "/subscriptions", Some(b.clone()))
            .await
            .status,
        400
    );
    b["encryptionCertificate"] = json!("bm90IGEgY2VydA==");
    b["encryptionCertificateId"] = json!("k1");
    assert_eq!(
        send(&fx, "POST", &tok, "/subscriptions", Some(b.clone()))
            .await
            .status,
        400
    );
    b["encryptionCertificate"] = json!(CERT_B64.trim());
    b["encryptionCertificateId"] = json!("k".repeat(129));
    assert_eq!(
        send(&fx, "POST", &tok, "/subscriptions", Some(b))
            .await
            .status,
        400
    );
    let mut b = body(&fx, &url, &fx.ids, 30);
    b["resource"] = json!("/users/x/messages");
    assert_eq!(
        send(&fx, "POST", &tok, "/subscriptions", Some(b))
            .await
            .status,
        400
    );
    assert!(fx.emu.subscriptions().is_empty());
}

#[tokio::test]
async fn validation_wrong_echo_error_status_and_timeout_fail_the_create() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    *rx.mode.lock().unwrap() = Mode::WrongEcho;
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "ValidationError");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly match")
    );
    *rx.mode.lock().unwrap() = Mode::Status(500);
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body["error"]["message"],
        "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
    );
    *rx.mode.lock().unwrap() = Mode::Slow;
    let t = Instant::now();
    let a = create(&fx, &tok, &url, &fx.ids, 30).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "InvalidRequest");
    assert_eq!(
        a.body["error"]["message"],
        "Subscription validation request timed out."
    );
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "validation_timeout is 1 s here"
    );
    assert!(fx.emu.subscriptions().is_empty());
    let v = fx.emu.deliveries();
    assert!(
        v.iter()
            .all(|d| d.kind == DeliveryKind::Validation && d.error.is_some())
    );
}

#[tokio::test]
async fn patch_renews_and_expiry_via_clock_gives_404_delete_204() {
    let fx = fx().await;
    let (_rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids, 10).await;
    let id = a.body["id"].as_str().unwrap().to_owned();
    let path = format!("/subscriptions/{id}");
    let p = send(
        &fx,
        "PATCH",
        &tok,
        &path,
        Some(json!({"expirationDateTime": in_minutes(&fx, 61)})),
    )
    .await;
    assert_eq!(p.status, 400);
    assert_eq!(p.code(), "ExtensionError");
    let p = send(
        &fx,
        "PATCH",
        &tok,
        &path,
        Some(json!({"expirationDateTime": in_minutes(&fx, 50)})),
    )
    .await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["id"], id.as_str());
    let g = send(&fx, "GET", &tok, &path, None).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body["expirationDateTime"], p.body["expirationDateTime"]);
    // 40 minutes on: still alive (renewed to 50).
    fx.emu.advance_clock(Duration::from_secs(40 * 60));
    assert_eq!(send(&fx, "GET", &tok, &path, None).await.status, 200);
    fx.emu.advance_clock(Duration::from_secs(11 * 60));
    assert!(
        fx.emu.subscriptions().is_empty(),
        "an expired subscription is gone"
    );
    let p = send(
        &fx,
        "PATCH",
        &tok,
        &path,
        Some(json!({"expirationDateTime": in_minutes(&fx, 30)})),
    )
    .await;
    assert_eq!(p.status, 404);
    assert_eq!(send(&fx, "GET", &tok, &path, None).await.status, 404);
    // A new one may be made now; DELETE 204 then 404.
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids, 10).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let path = format!("/subscriptions/{}", a.body["id"].as_str().unwrap());
    assert_eq!(send(&fx, "DELETE", &tok, &path, None).await.status, 204);
    assert_eq!(send(&fx, "DELETE", &tok, &path, None).await.status, 404);
    assert_eq!(send(&fx, "GET", &tok, &path, None).await.status, 404);
}

#[tokio::test]
async fn reauthorization_required_pauses_notifications_until_reauthorize() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids[1..2], 30).await;
    let sid = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        fx.emu.send_lifecycle(&sid, "reauthorizationRequired"),
        Ok(true)
    );
    assert!(
        fx.emu
            .send_lifecycle(&sid, "reauthorisationRequired")
            .is_err()
    );
    let l = rx
        .wait("/lifecycle", 5, |_| true)
        .await
        .expect("lifecycle notification");
    let item = &l["value"][0];
    assert_eq!(item["lifecycleEvent"], "reauthorizationRequired");
    assert_eq!(item["subscriptionId"], sid.as_str());
    assert_eq!(item["clientState"], "secret-state");
    assert!(item["subscriptionExpirationDateTime"].is_string());
    assert!(fx.emu.subscriptions()[0].reauthorization_required);
    fx.emu.set_user_presence(&fx.ids[1], "Busy", "InACall");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.count("/notify"),
        0,
        "paused while reauthorization is required"
    );
    let r = send(
        &fx,
        "POST",
        &tok,
        &format!("/subscriptions/{sid}/reauthorize"),
        None,
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(!fx.emu.subscriptions()[0].reauthorization_required);
    fx.emu.set_user_presence(&fx.ids[1], "Away", "Away");
    rx.wait("/notify", 5, |_| true)
        .await
        .expect("resumed after reauthorize");
    // Renewing (PATCH) also reauthorizes.
    fx.emu
        .send_lifecycle(&sid, "reauthorizationRequired")
        .unwrap();
    let p = send(
        &fx,
        "PATCH",
        &tok,
        &format!("/subscriptions/{sid}"),
        Some(json!({"expirationDateTime": in_minutes(&fx, 45)})),
    )
    .await;
    assert_eq!(p.status, 200);
    assert!(!fx.emu.subscriptions()[0].reauthorization_required);
}
