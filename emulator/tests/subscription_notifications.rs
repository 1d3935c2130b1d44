//! Notifications of presence subscriptions: basic ones on a presence change, deliveries that
//! fail and are retried, and rich ones that decrypt to the presence. Sources: the presence
//! notifications page <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>,
//! webhook delivery <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks>
//! and rich notifications
//! <https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>.

mod common;

use std::time::{Duration, Instant};

use aes::Aes256;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, KeyIvInit};
use common::subs::{body, create, delegated, fx, receiver, send};
use graph_emulator::DeliveryKind;
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use sha2::Sha256;

const KEY_PEM: &str = include_str!("data/notify-test-key.pem");
const CERT_B64: &str = include_str!("data/notify-test-cert.b64");

#[tokio::test]
async fn basic_notification_on_presence_change() {
    let fx = fx().await;
    let (rx, url) = receiver().await;
    let tok = delegated(&fx, "user0001@contoso.com").await;
    let a = create(&fx, &tok, &url, &fx.ids[1..3], 30).await;
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
    create(&fx, &tok, &url, &fx.ids[1..2], 30).await;
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
