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

use aes::Aes256;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use common::start_with;
use common::subs::{Mode, body, delegated, fx, in_minutes, receiver, send};
use graph_emulator::{DeliveryKind, EmulatorOptions};
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use sha2::Sha256;

const KEY_PEM: &str = include_str!("data/notify-test-key.pem");
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
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 30)),
    )
    .await;
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
    let b = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids[..1], 30)),
    )
    .await;
    assert_eq!(b.status, 409, "{}", b.body);
    assert_eq!(b.code(), "ExtensionError");
    assert_eq!(
        b.body["error"]["message"],
        "A subscripton already exists. It must be deleted before a another can be made."
    );
    // Another user of the same app may subscribe.
    let tok2 = delegated(&fx, "user0002@contoso.com").await;
    let c = send(
        &fx,
        "POST",
        &tok2,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids[..1], 30)),
    )
    .await;
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
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &many, 30)),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    let ok650 = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &many[..650], 30)),
    )
    .await;
    assert_eq!(ok650.status, 201, "{}", ok650.body);
    let id = ok650.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        send(&fx, "DELETE", &tok, &format!("/subscriptions/{id}"), None)
            .await
            .status,
        204
    );

    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 61)),
    )
    .await;
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
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 30)),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.code(), "ValidationError");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly match")
    );
    *rx.mode.lock().unwrap() = Mode::Status(500);
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 30)),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body["error"]["message"],
        "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."
    );
    *rx.mode.lock().unwrap() = Mode::Slow;
    let t = Instant::now();
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 30)),
    )
    .await;
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
async fn basic_notification_on_presence_change() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids[1..3], 30)),
    )
    .await;
    let sid = a.body["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count("/notify"), 0, "no notification without a change");
    let t = Instant::now();
    fx.emu.set_user_presence(&fx.ids[1], "Busy", "InACall");
    let n = rx
        .wait("/notify", 5, |_| true)
        .await
        .expect("a notification");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let item = &n["value"][0];
    let id = fx.ids[1].as_str();
    assert_eq!(item["subscriptionId"], sid.as_str());
    assert_eq!(item["clientState"], "secret-state");
    assert_eq!(item["changeType"], "updated");
    assert_eq!(item["tenantId"], fx.emu.tenant_id().as_str());
    assert_eq!(item["resource"], format!("communications/presences/{id}"));
    assert_eq!(
        item["resourceData"]["@odata.id"],
        format!("users/{id}/presence")
    );
    assert_eq!(
        item["resourceData"]["@odata.type"],
        "#microsoft.graph.presence"
    );
    assert_eq!(item["resourceData"]["id"], id);
    assert!(item["subscriptionExpirationDateTime"].is_string());
    assert!(item.get("encryptedContent").is_none());
    // An app session (setPresence through Graph) also notifies; an unwatched user does not.
    let r = fx
        .post(
            &format!("/users/{}/presence/setPresence", fx.ids[2]),
            json!({"sessionId": fx.emu.client_id(), "availability": "DoNotDisturb", "activity": "Presenting", "expirationDuration": "PT5M"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let id2 = fx.ids[2].clone();
    rx.wait("/notify", 5, move |v| {
        v["value"][0]["resourceData"]["id"] == id2.as_str()
    })
    .await
    .expect("notification for the app session");
    fx.emu.set_user_presence(&fx.ids[3], "Away", "Away");
    // The app session's end (emulator time) is a change too.
    fx.emu.advance_clock(Duration::from_secs(6 * 60));
    let id2 = fx.ids[2].clone();
    rx.wait("/notify", 5, move |v| {
        v["value"][0]["resourceData"]["id"] == id2.as_str()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = fx.emu.deliveries();
    assert!(
        d.iter()
            .filter(|d| d.kind == DeliveryKind::Basic)
            .all(|d| d.ok())
    );
    assert!(
        !d.iter().any(|d| d.ids.contains(&fx.ids[3])),
        "unwatched user"
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_recorded() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids[1..2], 30)),
    )
    .await;
    fx.emu.fail_deliveries(1);
    *rx.notify_status.lock().unwrap() = 503;
    fx.emu.set_user_presence(&fx.ids[1], "Busy", "InACall");
    tokio::time::sleep(Duration::from_millis(200)).await;
    *rx.notify_status.lock().unwrap() = 202;
    rx.wait("/notify", 5, |_| true)
        .await
        .expect("delivered at last");
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        let d: Vec<_> = fx
            .emu
            .deliveries()
            .into_iter()
            .filter(|d| d.kind == DeliveryKind::Basic)
            .collect();
        if d.last().is_some_and(|x| x.ok()) {
            assert!(d.len() >= 3, "injected failure, 503s, then 202");
            assert!(d[0].error.as_deref().unwrap_or("").contains("injected"));
            assert_eq!(d[0].attempt, 1);
            assert!(d.iter().any(|x| x.status == Some(503)));
            break;
        }
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn rich_notification_decrypts_to_the_presence() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let mut b = body(&fx, &url, &fx.ids[1..2], 30);
    b["includeResourceData"] = json!(true);
    b["encryptionCertificate"] = json!(CERT_B64.trim());
    b["encryptionCertificateId"] = json!("test-key-1");
    let a = send(&fx, "POST", &tok, "/subscriptions", Some(b)).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["includeResourceData"], true);
    fx.emu
        .set_user_presence(&fx.ids[1], "DoNotDisturb", "Presenting");
    let n = rx
        .wait("/notify", 5, |_| true)
        .await
        .expect("rich notification");
    assert_eq!(n["validationTokens"].as_array().map(Vec::len), Some(1));
    let enc = &n["value"][0]["encryptedContent"];
    assert_eq!(enc["encryptionCertificateId"], "test-key-1");
    let b64 = base64::engine::general_purpose::STANDARD;
    let der = b64.decode(CERT_B64.trim()).unwrap();
    let thumb: String = <sha1::Sha1 as sha1::Digest>::digest(&der)
        .iter()
        .map(|x| format!("{x:02X}"))
        .collect();
    assert_eq!(enc["encryptionCertificateThumbprint"], thumb.as_str());
    // Decryption steps of the rich notifications page.
    let key = rsa::PrivateKey::from_pkcs8_pem(KEY_PEM).unwrap();
    let sym = key
        .oaep_decrypt::<sha1::Sha1>(&b64.decode(enc["dataKey"].as_str().unwrap()).unwrap())
        .unwrap();
    assert_eq!(sym.len(), 32);
    let data = b64.decode(enc["data"].as_str().unwrap()).unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&sym).unwrap();
    mac.update(&data);
    mac.verify_slice(&b64.decode(enc["dataSignature"].as_str().unwrap()).unwrap())
        .expect("dataSignature = HMAC-SHA256(key, data)");
    let plain = cbc::Decryptor::<Aes256>::new_from_slices(&sym, &sym[..16])
        .unwrap()
        .decrypt_padded_vec::<Pkcs7>(&data)
        .unwrap();
    let p: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(p["id"], fx.ids[1].as_str());
    assert_eq!(p["availability"], "DoNotDisturb");
    assert_eq!(p["activity"], "Presenting");
    assert_eq!(p["@odata.type"], "#microsoft.graph.presence");
    assert_eq!(p["@odata.id"], format!("users/{}/presence", fx.ids[1]));
    // The delivery is recorded once the POST's answer is back, a moment after the receiver
    // has the body.
    let end = Instant::now() + Duration::from_secs(5);
    while fx.emu.deliveries().last().map(|d| d.kind) != Some(DeliveryKind::Rich) {
        assert!(Instant::now() < end, "{:?}", fx.emu.deliveries());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn patch_renews_and_expiry_via_clock_gives_404_delete_204() {
    let fx = fx().await;
    let (_rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 10)),
    )
    .await;
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
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids, 10)),
    )
    .await;
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
    let a = send(
        &fx,
        "POST",
        &tok,
        "/subscriptions",
        Some(body(&fx, &url, &fx.ids[1..2], 30)),
    )
    .await;
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
