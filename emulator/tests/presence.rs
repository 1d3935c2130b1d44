//! Presence: getPresencesByUserId limits, setPresence validation, aggregation, expiry via
//! advance_clock, clearPresence, user-preferred presence.

mod common;

use std::time::Duration;

use common::start;
use serde_json::json;

fn pair(a: &str, b: &str) -> Option<(String, String)> {
    Some((a.into(), b.into()))
}

#[tokio::test]
async fn get_presences_by_user_id_takes_650_ids_not_651() {
    let fx = start(650).await;
    let a = fx
        .post(
            "/communications/getPresencesByUserId",
            json!({"ids": fx.ids}),
        )
        .await;
    assert_eq!(a.status, 200);
    let v = a.body["value"].as_array().unwrap();
    assert_eq!(v.len(), 650);
    assert_eq!(v[0]["id"], fx.ids[0].as_str());
    assert_eq!(v[0]["availability"], "Offline");
    assert!(v[0].get("statusMessage").is_some());
    let mut ids = fx.ids.clone();
    ids.push("00000000-0000-0000-0000-000000000001".into());
    let a = fx
        .post("/communications/getPresencesByUserId", json!({"ids": ids}))
        .await;
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn unknown_ids_are_left_out() {
    let fx = start(2).await;
    let a = fx
        .post(
            "/communications/getPresencesByUserId",
            json!({"ids": [fx.ids[0], "00000000-0000-0000-0000-000000000009", fx.ids[0]]}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn set_presence_then_read_back_on_every_path() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    let a = fx.set_presence(id, "Busy", "InACall", "PT10M").await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_null(), "setPresence answers with no body");
    for path in [
        format!("/users/{id}/presence"),
        format!("/communications/presences/{id}"),
    ] {
        let a = fx.get(&path).await;
        assert_eq!(
            (a.body["availability"].as_str(), a.body["activity"].as_str()),
            (Some("Busy"), Some("InACall"))
        );
    }
    let s = fx.emu.app_session(id, &fx.emu.client_id()).unwrap();
    assert_eq!(s.activity, "InACall");
    assert!(s.expires_in <= Duration::from_secs(600) && s.expires_in > Duration::from_secs(590));
}

#[tokio::test]
async fn set_presence_validation() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    for (a, b) in [
        ("Busy", "Busy"),
        ("Available", "InACall"),
        ("Offline", "Offline"),
        ("Busy", "InAMeeting"),
    ] {
        assert_eq!(
            fx.set_presence(id, a, b, "PT5M").await.status,
            400,
            "{a}/{b}"
        );
    }
    for d in ["PT4M", "PT4H1M", "P1D", "0:10:00"] {
        let r = fx.set_presence(id, "Busy", "InACall", d).await;
        assert_eq!(r.status, 400, "{d}");
        assert_eq!(r.code(), "InvalidArgument");
    }
    let r = fx.set_presence(id, "Busy", "InACall", "PT4M").await;
    assert_eq!(
        r.body["error"]["message"],
        "The provided [ExpirationDuration] is out of range."
    );
    for d in ["PT5M", "PT4H", "PT90M"] {
        assert_eq!(
            fx.set_presence(id, "Busy", "InACall", d).await.status,
            200,
            "{d}"
        );
    }
    assert_eq!(
        fx.set_presence(id, "DoNotDisturb", "Presenting", "PT5M")
            .await
            .status,
        200
    );
    // sessionId must be the caller's own client id.
    let body = json!({"sessionId": "22222222-0000-0000-0000-000000000000", "availability": "Away", "activity": "Away"});
    assert_eq!(
        fx.post(&format!("/users/{id}/presence/setPresence"), body)
            .await
            .status,
        400
    );
    // No expirationDuration: PT5M.
    let body = json!({"sessionId": fx.emu.client_id(), "availability": "Away", "activity": "Away"});
    assert_eq!(
        fx.post(&format!("/users/{id}/presence/setPresence"), body)
            .await
            .status,
        200
    );
    let left = fx
        .emu
        .app_session(id, &fx.emu.client_id())
        .unwrap()
        .expires_in
        .as_secs();
    assert!((290..300).contains(&left), "{left}");
    let a = fx
        .set_presence(
            "00000000-0000-0000-0000-00000000abcd",
            "Busy",
            "InACall",
            "PT5M",
        )
        .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn aggregation_with_the_users_own_client() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    fx.emu.set_user_presence(id, "Available", "Available");
    fx.set_presence(id, "Busy", "InACall", "PT1H").await;
    assert_eq!(fx.emu.presence(id), pair("Busy", "InACall"));
    fx.emu.set_user_presence(id, "DoNotDisturb", "DoNotDisturb");
    assert_eq!(
        fx.emu.presence(id),
        pair("DoNotDisturb", "DoNotDisturb"),
        "DND beats Busy"
    );
    fx.emu.set_user_presence(id, "Away", "Away");
    fx.set_presence(id, "Away", "Away", "PT1H").await;
    assert_eq!(fx.emu.presence(id), pair("Away", "Away"));
}

#[tokio::test]
async fn sessions_expire_with_emulator_time() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    fx.emu.set_user_presence(id, "Available", "Available");
    fx.set_presence(id, "Busy", "InACall", "PT5M").await;
    fx.emu.advance_clock(Duration::from_secs(299));
    assert_eq!(fx.emu.presence(id), pair("Busy", "InACall"));
    fx.emu.advance_clock(Duration::from_secs(2));
    assert_eq!(fx.emu.presence(id), pair("Available", "Available"));
    assert!(fx.emu.app_session(id, &fx.emu.client_id()).is_none());
    fx.emu.set_user_presence(id, "Offline", "Offline");
    let a = fx.get(&format!("/users/{id}/presence")).await;
    assert_eq!(a.body["availability"], "Offline");
}

#[tokio::test]
async fn available_session_fades_without_refresh() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    fx.set_presence(id, "Available", "Available", "PT1H").await;
    fx.emu.advance_clock(Duration::from_secs(301));
    assert_eq!(fx.emu.presence(id), pair("Available", "AvailableInactive"));
    fx.emu.advance_clock(Duration::from_secs(300));
    assert_eq!(fx.emu.presence(id), pair("Away", "Away"));
    fx.set_presence(id, "Available", "Available", "PT1H").await;
    assert_eq!(
        fx.emu.presence(id),
        pair("Available", "Available"),
        "a refresh restarts the timeout"
    );
}

#[tokio::test]
async fn clear_presence_then_404_without_a_session() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    fx.set_presence(id, "Busy", "InACall", "PT5M").await;
    let body = json!({"sessionId": fx.emu.client_id()});
    let a = fx
        .post(&format!("/users/{id}/presence/clearPresence"), body.clone())
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        fx.emu.presence(id),
        pair("Offline", "Offline"),
        "only session gone: Offline"
    );
    let a = fx
        .post(
            &format!("/communications/presences/{id}/clearPresence"),
            body,
        )
        .await;
    assert_eq!(a.status, 404);
    assert!(!a.code().is_empty());
}

#[tokio::test]
async fn preferred_presence_beats_sessions_only_while_one_exists() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    let p = format!("/users/{id}/presence");
    let a = fx
        .post(
            &format!("{p}/setUserPreferredPresence"),
            json!({"availability": "DoNotDisturb", "activity": "DoNotDisturb"}),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        fx.emu.presence(id),
        pair("Offline", "Offline"),
        "no session: Offline"
    );
    fx.set_presence(id, "Busy", "InACall", "PT5M").await;
    assert_eq!(fx.emu.presence(id), pair("DoNotDisturb", "DoNotDisturb"));
    let bad = fx
        .post(
            &format!("{p}/setUserPreferredPresence"),
            json!({"availability": "Busy", "activity": "InACall"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        fx.post(&format!("{p}/clearUserPreferredPresence"), json!({}))
            .await
            .status,
        200
    );
    assert_eq!(fx.emu.presence(id), pair("Busy", "InACall"));
    // Preferred with an explicit duration expires.
    fx.post(
        &format!("{p}/setUserPreferredPresence"),
        json!({"availability": "Away", "activity": "Away", "expirationDuration": "PT2M"}),
    )
    .await;
    assert_eq!(fx.emu.presence(id), pair("Away", "Away"));
    fx.emu.advance_clock(Duration::from_secs(121));
    assert_eq!(fx.emu.presence(id), pair("Busy", "InACall"));
}

#[tokio::test]
async fn status_message_is_returned_without_dates() {
    let fx = start(1).await;
    let id = &fx.ids[0];
    let body =
        json!({"statusMessage": {"message": {"content": "On a call", "contentType": "text"}}});
    assert_eq!(
        fx.post(&format!("/users/{id}/presence/setStatusMessage"), body)
            .await
            .status,
        200
    );
    let a = fx.get(&format!("/users/{id}/presence")).await;
    assert_eq!(
        a.body["statusMessage"],
        json!({"message": {"content": "On a call", "contentType": "text"}})
    );
}
