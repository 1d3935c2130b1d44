//! Delegated tokens: the device-code grant
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>) and the
//! refresh-token grant (auth-code page:
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow>;
//! revocation: <https://login.microsoftonline.com/error?code=50173>).

mod common;

use common::{Fx, device_code, start_with, token_request};
use graph_emulator::EmulatorOptions;
use serde_json::Value;

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const SCOPE: &str = "https://graph.microsoft.com/Presence.Read.All offline_access openid profile";

async fn fx() -> Fx {
    let opts = EmulatorOptions {
        device_code_interval: 0,
        ..EmulatorOptions::default()
    };
    start_with(opts, 3).await
}

async fn poll(fx: &Fx, device_code: &str) -> common::Answer {
    let c = fx.emu.client_id();
    token_request(
        &fx.http,
        &fx.emu,
        &fx.emu.tenant_id(),
        &[
            ("grant_type", DEVICE),
            ("client_id", c.as_str()),
            ("device_code", device_code),
        ],
    )
    .await
}

async fn refresh(fx: &Fx, rt: &str) -> common::Answer {
    let c = fx.emu.client_id();
    token_request(
        &fx.http,
        &fx.emu,
        &fx.emu.tenant_id(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", c.as_str()),
            ("refresh_token", rt),
        ],
    )
    .await
}

fn assert_aad(a: &common::Answer, error: &str, code: u64) {
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error"], error, "{}", a.body);
    assert_eq!(a.body["error_codes"][0], code, "{}", a.body);
    let d = a.body["error_description"].as_str().unwrap();
    assert!(d.starts_with(&format!("AADSTS{code}: ")), "{d}");
}

#[tokio::test]
async fn device_code_pending_then_approved() {
    let fx = fx().await;
    let dc = device_code(&fx, SCOPE).await;
    assert_eq!(dc["verification_uri"], "https://microsoft.com/devicelogin");
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 0);
    let user_code = dc["user_code"].as_str().unwrap();
    assert!(dc["message"].as_str().unwrap().contains(user_code));
    let device = dc["device_code"].as_str().unwrap();

    assert_aad(&poll(&fx, device).await, "authorization_pending", 70016);
    assert!(!fx.emu.approve_device_code(user_code, "nobody@contoso.com"));
    assert!(
        fx.emu
            .approve_device_code(user_code, "user0002@contoso.com")
    );
    let a = poll(&fx, device).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["token_type"], "Bearer");
    let scope = a.body["scope"].as_str().unwrap();
    for s in ["Presence.Read.All", "offline_access", "openid"] {
        assert!(scope.split(' ').any(|x| x == s), "{scope}");
    }
    assert!(a.body["refresh_token"].is_string());
    assert!(a.body["id_token"].is_string());
    // The access token works as the user: /me is user0002.
    let token = a.body["access_token"].as_str().unwrap();
    let me = fx.get_as(token, "/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["userPrincipalName"], "user0002@contoso.com");
    let p = fx.get_as(token, "/me/presence").await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_eq!(p.body["id"], fx.ids[1].as_str());
    // App-only tokens cannot use /me.
    assert_eq!(fx.get("/me").await.status, 400);
    // A redeemed code cannot be redeemed again.
    assert_aad(&poll(&fx, device).await, "bad_verification_code", 70018);
    // Delegated tokens expire like app tokens.
    fx.emu.expire_tokens();
    assert_eq!(fx.get_as(token, "/me").await.status, 401);
}

#[tokio::test]
async fn device_code_declined_unknown_and_expired() {
    let fx = fx().await;
    let dc = device_code(&fx, SCOPE).await;
    assert!(
        fx.emu
            .decline_device_code(dc["user_code"].as_str().unwrap())
    );
    assert_aad(
        &poll(&fx, dc["device_code"].as_str().unwrap()).await,
        "authorization_declined",
        70017,
    );
    assert_aad(
        &poll(&fx, "no-such-code").await,
        "bad_verification_code",
        70018,
    );
    let dc = device_code(&fx, SCOPE).await;
    fx.emu.advance_clock(std::time::Duration::from_secs(901));
    assert_aad(
        &poll(&fx, dc["device_code"].as_str().unwrap()).await,
        "expired_token",
        70019,
    );
    assert!(
        !fx.emu
            .approve_device_code(dc["user_code"].as_str().unwrap(), "user0001@contoso.com")
    );
}

#[tokio::test]
async fn device_code_wrong_secret_is_refused_and_no_offline_access_no_refresh_token() {
    let fx = fx().await;
    let dc = device_code(&fx, "Presence.Read.All").await;
    let device = dc["device_code"].as_str().unwrap();
    fx.emu
        .approve_device_code(dc["user_code"].as_str().unwrap(), "user0001@contoso.com");
    let c = fx.emu.client_id();
    let a = token_request(
        &fx.http,
        &fx.emu,
        &fx.emu.tenant_id(),
        &[
            ("grant_type", DEVICE),
            ("client_id", c.as_str()),
            ("client_secret", "wrong"),
            ("device_code", device),
        ],
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["error_codes"][0], 7_000_215);
    let a = poll(&fx, device).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("refresh_token").is_none());
    assert!(a.body.get("id_token").is_none());
}

async fn signed_in(fx: &Fx, upn: &str) -> Value {
    let dc = device_code(fx, SCOPE).await;
    assert!(
        fx.emu
            .approve_device_code(dc["user_code"].as_str().unwrap(), upn)
    );
    let a = poll(fx, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

#[tokio::test]
async fn refresh_rotates_and_old_token_stays_valid_until_revoked() {
    let fx = fx().await;
    let t0 = signed_in(&fx, "user0001@contoso.com").await;
    let rt0 = t0["refresh_token"].as_str().unwrap();
    let a = refresh(&fx, rt0).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let rt1 = a.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0, "a new refresh token on every use");
    assert_ne!(a.body["access_token"], t0["access_token"]);
    let me = fx
        .get_as(a.body["access_token"].as_str().unwrap(), "/me")
        .await;
    assert_eq!(me.body["userPrincipalName"], "user0001@contoso.com");
    // Entra does not revoke a used refresh token (auth-code page).
    assert_eq!(refresh(&fx, rt0).await.status, 200);
    // Another user's tokens are untouched by a revocation.
    let other = signed_in(&fx, "user0002@contoso.com").await;
    assert_eq!(
        fx.emu.revoke_refresh_tokens("user0001@contoso.com"),
        Some(3)
    );
    assert_aad(&refresh(&fx, rt0).await, "invalid_grant", 50173);
    assert_aad(&refresh(&fx, &rt1).await, "invalid_grant", 50173);
    assert_eq!(
        refresh(&fx, other["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    // Signing in again gives a working refresh token.
    let t2 = signed_in(&fx, "user0001@contoso.com").await;
    assert_eq!(
        refresh(&fx, t2["refresh_token"].as_str().unwrap())
            .await
            .status,
        200
    );
    assert_aad(&refresh(&fx, "garbage").await, "invalid_grant", 9_002_313);
}

#[tokio::test]
async fn refresh_token_expires_after_90_days_unused() {
    let fx = fx().await;
    let t = signed_in(&fx, "user0001@contoso.com").await;
    fx.emu
        .advance_clock(std::time::Duration::from_secs(91 * 86_400));
    assert_aad(
        &refresh(&fx, t["refresh_token"].as_str().unwrap()).await,
        "invalid_grant",
        700_082,
    );
}

#[tokio::test]
async fn control_routes_approve_and_revoke() {
    let fx = fx().await;
    let dc = device_code(&fx, SCOPE).await;
    let ctl = format!("{}/_control", fx.emu.base_url());
    let r = fx
        .http
        .post(format!("{ctl}/devicecodes/approve"))
        .json(&serde_json::json!({"user_code": dc["user_code"], "upn": "user0003@contoso.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let a = poll(&fx, dc["device_code"].as_str().unwrap()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = fx
        .http
        .post(format!("{ctl}/refreshtokens/revoke"))
        .json(&serde_json::json!({"upn": "user0003@contoso.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_aad(
        &refresh(&fx, a.body["refresh_token"].as_str().unwrap()).await,
        "invalid_grant",
        50173,
    );
}
