//! Fixtures for the subscription tests: a receiver for notifications and validation
//! handshakes, an emulator set up for them, a delegated token, request bodies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use graph_emulator::EmulatorOptions;
use serde_json::{Value, json};

use super::{Answer, Fx, answer, device_code, start_with, token_request};

const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How the test receiver answers validation requests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Echo,
    WrongEcho,
    Slow,
    Status(u16),
}

#[derive(Clone)]
pub struct Rx {
    pub mode: Arc<Mutex<Mode>>,
    /// Status for notification POSTs.
    pub notify_status: Arc<Mutex<u16>>,
    pub posts: Arc<Mutex<Vec<(String, Value)>>>,
    pub validations: Arc<Mutex<Vec<(String, String)>>>,
}

pub async fn rx_handler(
    State(rx): State<Rx>,
    uri: Uri,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if let Some(token) = q.get("validationToken") {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        rx.validations.lock().unwrap().push((token.clone(), ct));
        let mode = *rx.mode.lock().unwrap();
        return match mode {
            Mode::Echo => (axum::http::StatusCode::OK, token.clone()).into_response(),
            Mode::WrongEcho => (axum::http::StatusCode::OK, "nope").into_response(),
            Mode::Slow => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                (axum::http::StatusCode::OK, token.clone()).into_response()
            }
            Mode::Status(s) => axum::http::StatusCode::from_u16(s).unwrap().into_response(),
        };
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    rx.posts.lock().unwrap().push((uri.path().to_owned(), v));
    let s = *rx.notify_status.lock().unwrap();
    axum::http::StatusCode::from_u16(s).unwrap().into_response()
}

pub async fn receiver() -> (Rx, String) {
    let rx = Rx {
        mode: Arc::new(Mutex::new(Mode::Echo)),
        notify_status: Arc::new(Mutex::new(202)),
        posts: Arc::default(),
        validations: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(rx_handler)
        .with_state(rx.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (rx, url)
}

impl Rx {
    /// Waits up to `secs` for a POST to `path` whose body satisfies `pred`.
    pub async fn wait(
        &self,
        path: &str,
        secs: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let found = self
                .posts
                .lock()
                .unwrap()
                .iter()
                .find(|(p, v)| p == path && pred(v))
                .map(|(_, v)| v.clone());
            if found.is_some() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    pub fn count(&self, path: &str) -> usize {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .count()
    }
}

pub async fn fx() -> Fx {
    let opts = EmulatorOptions {
        device_code_interval: 0,
        allow_http_notification_urls: true,
        validation_timeout: Duration::from_secs(1),
        notification_timeout: Duration::from_millis(500),
        notification_retry_delay: Duration::from_millis(50),
        ..EmulatorOptions::default()
    };
    start_with(opts, 4).await
}

/// A delegated token for `upn` through the device-code flow.
pub async fn delegated(fx: &Fx, upn: &str) -> String {
    let c = fx.emu.client_id();
    let dc = device_code(fx, "Presence.Read.All offline_access").await;
    assert!(
        fx.emu
            .approve_device_code(dc["user_code"].as_str().unwrap(), upn)
    );
    let a = token_request(
        &fx.http,
        &fx.emu,
        &fx.emu.tenant_id(),
        &[
            ("grant_type", DEVICE),
            ("client_id", c.as_str()),
            ("device_code", dc["device_code"].as_str().unwrap()),
        ],
    )
    .await;
    a.body["access_token"].as_str().unwrap().to_owned()
}

pub fn in_minutes(fx: &Fx, mins: u64) -> String {
    iso(fx.emu.now_utc() + Duration::from_secs(mins * 60))
}

/// RFC 3339 with an explicit `+00:00` offset (the form some clients send).
pub fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t)
        .to_string()
        .replace('Z', "+00:00")
}

pub fn filter(ids: &[String]) -> String {
    let list: Vec<String> = ids.iter().map(|i| format!("'{i}'")).collect();
    format!(
        "/communications/presences?$filter=id in ({})",
        list.join(",")
    )
}

pub fn body(fx: &Fx, url: &str, ids: &[String], mins: u64) -> Value {
    json!({
        "changeType": "updated",
        "notificationUrl": format!("{url}/notify"),
        "lifecycleNotificationUrl": format!("{url}/lifecycle"),
        "resource": filter(ids),
        "expirationDateTime": in_minutes(fx, mins),
        "clientState": "secret-state",
    })
}

/// `POST /subscriptions` of [`body`] with the delegated `token`.
pub async fn create(fx: &Fx, token: &str, url: &str, ids: &[String], mins: u64) -> Answer {
    send(
        fx,
        "POST",
        token,
        "/subscriptions",
        Some(body(fx, url, ids, mins)),
    )
    .await
}

pub async fn send(fx: &Fx, method: &str, token: &str, path: &str, b: Option<Value>) -> Answer {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = fx.http.request(m, fx.url(path)).bearer_auth(token);
    if let Some(b) = b {
        r = r.json(&b);
    }
    answer(r.send().await.unwrap()).await
}
