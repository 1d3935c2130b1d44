//! Fixtures: an emulator with seeded users, an HTTP client and a token of the default app.
#![allow(dead_code)]

pub mod subs;

use graph_emulator::{Emulator, EmulatorOptions, User};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// A running emulator with `users` seeded and a token of the default app.
pub struct Fx {
    pub emu: Emulator,
    pub http: reqwest::Client,
    pub token: String,
    pub ids: Vec<String>,
}

/// A status, headers and JSON body (Null when empty).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn user(i: usize) -> User {
    let upn = format!("user{i:04}@contoso.com");
    User {
        id: None,
        display_name: format!("User {i:04}"),
        mail: Some(format!("first.last{i}@contoso.com")),
        proxy_addresses: vec![
            format!("SMTP:first.last{i}@contoso.com"),
            format!("smtp:alias{i}@contoso.com"),
        ],
        user_principal_name: upn,
        ..Default::default()
    }
}

pub async fn start(users: usize) -> Fx {
    start_with(EmulatorOptions::default(), users).await
}

pub async fn start_with(opts: EmulatorOptions, users: usize) -> Fx {
    let emu = Emulator::start_with("127.0.0.1:0".parse().unwrap(), opts)
        .await
        .unwrap();
    let ids = (1..=users).map(|i| emu.add_user(user(i))).collect();
    let http = reqwest::Client::new();
    let token = token_for(&http, &emu, &emu.client_id(), &emu.client_secret()).await;
    Fx {
        emu,
        http,
        token,
        ids,
    }
}

/// Raw token request with a form body.
pub async fn token_request(
    http: &reqwest::Client,
    emu: &Emulator,
    tenant: &str,
    form: &[(&str, &str)],
) -> Answer {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", emu.base_url());
    let r = http.post(url).form(form).send().await.unwrap();
    answer(r).await
}

pub async fn token_for(
    http: &reqwest::Client,
    emu: &Emulator,
    client_id: &str,
    secret: &str,
) -> String {
    let a = token_request(
        http,
        emu,
        &emu.tenant_id(),
        &[
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["access_token"].as_str().unwrap().to_owned()
}

/// `POST /{tenant}/oauth2/v2.0/devicecode` for the default app; the 200 body.
pub async fn device_code(fx: &Fx, scope: &str) -> Value {
    let url = format!(
        "{}/{}/oauth2/v2.0/devicecode",
        fx.emu.base_url(),
        fx.emu.tenant_id()
    );
    let c = fx.emu.client_id();
    let r = fx
        .http
        .post(url)
        .form(&[("client_id", c.as_str()), ("scope", scope)])
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

pub async fn answer(r: reqwest::Response) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Answer {
        status,
        headers,
        body,
    }
}

impl Fx {
    pub fn url(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.emu.base_url())
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.get_as(&self.token, path).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> Answer {
        answer(
            self.http
                .get(self.url(path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.post_as(&self.token, path, body).await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: Value) -> Answer {
        answer(
            self.http
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// setPresence for user `id` with the default app's session.
    pub async fn set_presence(
        &self,
        id: &str,
        availability: &str,
        activity: &str,
        duration: &str,
    ) -> Answer {
        let body = serde_json::json!({
            "sessionId": self.emu.client_id(), "availability": availability,
            "activity": activity, "expirationDuration": duration,
        });
        self.post(&format!("/users/{id}/presence/setPresence"), body)
            .await
    }
}
