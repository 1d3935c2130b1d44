//! The client-credentials token endpoint: success shapes and the documented errors
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>,
//! <https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>).

mod common;

use common::{answer, start, token_request};

const GRAPH: &str = "https://graph.microsoft.com/.default";

#[tokio::test]
async fn issues_a_bearer_token_with_expiry_fields() {
    let fx = start(0).await;
    let (c, s) = (fx.emu.client_id(), fx.emu.client_secret());
    let form = [
        ("client_id", c.as_str()),
        ("client_secret", s.as_str()),
        ("scope", GRAPH),
        ("grant_type", "client_credentials"),
    ];
    let a = token_request(&fx.http, &fx.emu, &fx.emu.tenant_id(), &form).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 3599);
    assert_eq!(a.body["ext_expires_in"], 3599);
    assert!(a.body["access_token"].as_str().unwrap().len() > 20);
    assert!(
        a.body.get("refresh_token").is_none(),
        "client credentials never return a refresh token"
    );
    // A domain name also names the tenant.
    let a = token_request(&fx.http, &fx.emu, "contoso.onmicrosoft.com", &form).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn accepts_the_secret_by_basic_auth() {
    let fx = start(0).await;
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        fx.emu.base_url(),
        fx.emu.tenant_id()
    );
    let r = fx
        .http
        .post(url)
        .basic_auth(fx.emu.client_id(), Some(fx.emu.client_secret()))
        .form(&[("scope", GRAPH), ("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn error_case(form: &[(&str, &str)], tenant: Option<&str>) -> common::Answer {
    let fx = start(0).await;
    let tenant = tenant.map_or_else(|| fx.emu.tenant_id(), str::to_owned);
    token_request(&fx.http, &fx.emu, &tenant, form).await
}

fn assert_aad(a: &common::Answer, status: u16, error: &str, code: u64) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["error"], error);
    assert_eq!(a.body["error_codes"][0], code);
    let desc = a.body["error_description"].as_str().unwrap();
    assert!(desc.starts_with(&format!("AADSTS{code}:")), "{desc}");
    for f in ["Trace ID", "Correlation ID", "Timestamp"] {
        assert!(desc.contains(f), "{desc}");
    }
    for f in ["timestamp", "trace_id", "correlation_id"] {
        assert!(a.body[f].is_string(), "{f} missing");
    }
    assert_eq!(a.header("cache-control"), Some("no-store, no-cache"));
    assert!(a.header("x-ms-request-id").is_some());
}

#[tokio::test]
async fn wrong_secret_is_401_invalid_client_7000215() {
    let fx = start(0).await;
    let c = fx.emu.client_id();
    let form = [
        ("client_id", c.as_str()),
        ("client_secret", "nope"),
        ("scope", GRAPH),
        ("grant_type", "client_credentials"),
    ];
    let a = token_request(&fx.http, &fx.emu, &fx.emu.tenant_id(), &form).await;
    assert_aad(&a, 401, "invalid_client", 7_000_215);
}

#[tokio::test]
async fn unknown_client_is_400_unauthorized_client_700016() {
    let form = [
        ("client_id", "00000000-1111-2222-3333-444444444444"),
        ("client_secret", "x"),
        ("scope", GRAPH),
        ("grant_type", "client_credentials"),
    ];
    let a = error_case(&form, None).await;
    assert_aad(&a, 400, "unauthorized_client", 700_016);
}

#[tokio::test]
async fn unknown_tenant_is_400_90002() {
    let form = [
        ("client_id", "x"),
        ("client_secret", "x"),
        ("scope", GRAPH),
        ("grant_type", "client_credentials"),
    ];
    let a = error_case(&form, Some("fabrikam.example")).await;
    assert_aad(&a, 400, "invalid_request", 90_002);
}

#[tokio::test]
async fn missing_secret_is_7000218_and_bad_scope_is_70011() {
    let fx = start(0).await;
    let c = fx.emu.client_id();
    let s = fx.emu.client_secret();
    let t = fx.emu.tenant_id();
    let form = [
        ("client_id", c.as_str()),
        ("scope", GRAPH),
        ("grant_type", "client_credentials"),
    ];
    assert_aad(
        &token_request(&fx.http, &fx.emu, &t, &form).await,
        401,
        "invalid_client",
        7_000_218,
    );
    let form = [
        ("client_id", c.as_str()),
        ("client_secret", s.as_str()),
        ("scope", "https://graph.microsoft.com/User.Read"),
        ("grant_type", "client_credentials"),
    ];
    assert_aad(
        &token_request(&fx.http, &fx.emu, &t, &form).await,
        400,
        "invalid_scope",
        70_011,
    );
    let form = [
        ("client_id", c.as_str()),
        ("client_secret", s.as_str()),
        (
            "scope",
            "https://graph.microsoft.com/.default https://vault.azure.net/.default",
        ),
        ("grant_type", "client_credentials"),
    ];
    assert_aad(
        &token_request(&fx.http, &fx.emu, &t, &form).await,
        400,
        "invalid_scope",
        70_011,
    );
    let form = [
        ("client_id", c.as_str()),
        ("client_secret", s.as_str()),
        ("scope", GRAPH),
        ("grant_type", "password"),
    ];
    let a = token_request(&fx.http, &fx.emu, &t, &form).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn app_without_roles_gets_a_token_but_graph_answers_403() {
    let fx = start(1).await;
    fx.emu.add_app("limited-app", "limited-secret", &[]);
    let tok = common::token_for(&fx.http, &fx.emu, "limited-app", "limited-secret").await;
    let a = fx.get_as(&tok, &format!("/users/{}", fx.ids[0])).await;
    assert_eq!(a.status, 403);
    assert_eq!(a.code(), "Authorization_RequestDenied");
    let a = fx
        .get_as(&tok, &format!("/users/{}/presence", fx.ids[0]))
        .await;
    assert_eq!(a.status, 403);
    let a = fx
        .post_as(
            &tok,
            "/communications/getPresencesByUserId",
            serde_json::json!({"ids": [fx.ids[0]]}),
        )
        .await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn read_only_presence_app_cannot_write() {
    let fx = start(1).await;
    fx.emu.add_app("reader", "s", &["Presence.Read.All"]);
    let tok = common::token_for(&fx.http, &fx.emu, "reader", "s").await;
    let a = fx
        .get_as(&tok, &format!("/users/{}/presence", fx.ids[0]))
        .await;
    assert_eq!(a.status, 200);
    let body =
        serde_json::json!({"sessionId": "reader", "availability": "Busy", "activity": "InACall"});
    let a = fx
        .post_as(
            &tok,
            &format!("/users/{}/presence/setPresence", fx.ids[0]),
            body,
        )
        .await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn strict_user_readbasic_refuses_listing() {
    let opts = graph_emulator::EmulatorOptions {
        strict_user_readbasic: true,
        ..Default::default()
    };
    let fx = common::start_with(opts, 1).await;
    fx.emu.add_app("basic", "s", &["User.ReadBasic.All"]);
    let tok = common::token_for(&fx.http, &fx.emu, "basic", "s").await;
    assert_eq!(fx.get_as(&tok, "/users").await.status, 403);
    let fx = start(1).await;
    fx.emu.add_app("basic", "s", &["User.ReadBasic.All"]);
    let tok = common::token_for(&fx.http, &fx.emu, "basic", "s").await;
    assert_eq!(fx.get_as(&tok, "/users").await.status, 200);
}
