//! The ARI REST calls the connector makes, and the events WebSocket's URL and request.
//!
//! Verified on Asterisk 22 (`tests/pbx/README.md`): `GET /deviceStates` lists only `Stasis:`
//! devices, so states are read one by one (`GET /deviceStates/{name}`, the `/` escaped);
//! `Custom:` states are written with `POST /asterisk/variable` (`PUT /deviceStates` answers
//! 409 for them); a subscription takes a comma-separated `eventSource` list and needs the
//! app's WebSocket to be connected first (else 404 "Application not found").

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use url::Url;

use crate::config::{AsteriskPbxConfig, Secret};
use crate::pbx::tls::{self, CertProblem, TlsSetupError};

/// Device names per subscription request (keeps the URL short).
pub const SUBSCRIBE_CHUNK: usize = 100;

/// Why an ARI request failed.
#[derive(Debug, thiserror::Error)]
pub enum AriError {
    /// Asterisk could not be reached or did not answer in time.
    #[error("ARI unreachable: {0}")]
    Unreachable(String),
    /// Asterisk's TLS certificate was refused (`https://` in `pbx.ari_url`).
    #[error("ARI's TLS certificate refused: {0}")]
    Certificate(CertProblem),
    /// The TLS client cannot be set up.
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// Wrong `pbx.ari_username` / `pbx.ari_password`.
    #[error(
        "ARI refused the credentials (HTTP 401): check pbx.ari_username and pbx.ari_password_file against ari.conf"
    )]
    Unauthorized,
    /// Any other answer than the documented success.
    #[error("ARI answered HTTP {status} to {what}: {body}")]
    Status {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
    /// A success answer we cannot read.
    #[error("ARI sent an unreadable answer to {what}: {why}")]
    Body { what: &'static str, why: String },
}

/// A cheap-to-clone ARI client.
#[derive(Clone)]
pub struct Ari {
    http: reqwest::Client,
    /// The same TLS settings for the events WebSocket as for REST.
    tls: Arc<rustls::ClientConfig>,
    base: Url,
    username: String,
    password: Secret,
    app: String,
}

#[derive(Deserialize)]
struct DeviceState {
    state: String,
}

impl Ari {
    pub fn new(config: &AsteriskPbxConfig, timeout: Duration) -> Result<Ari, AriError> {
        let tls = tls::client_config(config.ca_file.as_ref())?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| AriError::Unreachable(tls::explain(&e)))?;
        Ok(Ari {
            http,
            tls,
            base: config.ari_url.clone(),
            username: config.ari_username.clone(),
            password: config.ari_password.clone(),
            app: config.ari_app.clone(),
        })
    }

    /// `base` + path segments, each percent-escaped (`PJSIP/1001` -> `PJSIP%2F1001`).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AriError> {
        let response = request
            .basic_auth(&self.username, Some(self.password.expose()))
            .send()
            .await
            .map_err(|e| {
                let e = e.without_url();
                match tls::certificate_problem(&e) {
                    Some(problem) => AriError::Certificate(problem),
                    None => AriError::Unreachable(tls::explain(&e)),
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(AriError::Unauthorized);
        }
        let body = response.text().await.unwrap_or_default();
        let body = body.chars().take(200).collect();
        Err(AriError::Status { what, status, body })
    }

    /// `GET /asterisk/ping`: reachable, and the credentials are taken.
    pub async fn ping(&self) -> Result<(), AriError> {
        let url = self.url(&["asterisk", "ping"]);
        self.send("a ping", self.http.get(url)).await?;
        Ok(())
    }

    /// Subscribe our app to the state changes of `devices` (its WebSocket must be connected).
    pub async fn subscribe(&self, devices: &[&str]) -> Result<(), AriError> {
        for chunk in devices.chunks(SUBSCRIBE_CHUNK) {
            let sources: Vec<String> = chunk.iter().map(|d| format!("deviceState:{d}")).collect();
            let url = self.url(&["applications", &self.app, "subscription"]);
            let request = self
                .http
                .post(url)
                .query(&[("eventSource", sources.join(","))]);
            self.send("the device subscription", request).await?;
        }
        Ok(())
    }

    /// The current state of one device (`NOT_INUSE`, `INUSE`, ...; `UNKNOWN` if never set).
    pub async fn device_state(&self, name: &str) -> Result<String, AriError> {
        let what = "a device state read";
        let response = self
            .send(what, self.http.get(self.url(&["deviceStates", name])))
            .await?;
        let state: DeviceState = response.json().await.map_err(|e| AriError::Body {
            what,
            why: e.without_url().to_string(),
        })?;
        Ok(state.state)
    }

    /// Set a dialplan function such as `DEVICE_STATE(Custom:teams-1001)`. ARI answers 204
    /// even for a value Asterisk does not take, so values are checked before (config).
    pub async fn set_variable(&self, variable: &str, value: &str) -> Result<(), AriError> {
        let body = serde_json::json!({ "variable": variable, "value": value });
        let request = self
            .http
            .post(self.url(&["asterisk", "variable"]))
            .json(&body);
        self.send("a variable write", request).await?;
        Ok(())
    }

    /// The events WebSocket: `ws(s)://…/ari/events?app=APP` with basic auth in a header (the
    /// password is never part of a URL that could be logged).
    pub fn events_request(&self) -> Result<Request, String> {
        let mut url = self.url(&["events"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| format!("cannot make a WebSocket URL of {}", self.base))?;
        url.query_pairs_mut().append_pair("app", &self.app);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose()
        ));
        let header = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| "the ARI credentials cannot be sent in a header".to_owned())?;
        request.headers_mut().insert("Authorization", header);
        Ok(request)
    }

    /// The TLS settings, for the events WebSocket.
    pub fn tls(&self) -> Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// The ARI base URL without credentials, for logs.
    pub fn shown_url(&self) -> String {
        crate::pbx::push::redacted(&self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ari(base: &str) -> Ari {
        Ari {
            http: reqwest::Client::new(),
            tls: tls::client_config(None).unwrap(),
            base: Url::parse(base).unwrap(),
            username: "u".into(),
            password: Secret::new("p@ss"),
            app: "my app".into(),
        }
    }

    #[test]
    fn device_names_are_escaped_in_paths() {
        let a = ari("http://127.0.0.1:8088/ari");
        assert_eq!(
            a.url(&["deviceStates", "PJSIP/1001"]).as_str(),
            "http://127.0.0.1:8088/ari/deviceStates/PJSIP%2F1001"
        );
        let trailing = ari("http://127.0.0.1:8088/ari/");
        assert_eq!(
            trailing.url(&["asterisk", "variable"]).as_str(),
            "http://127.0.0.1:8088/ari/asterisk/variable"
        );
    }

    #[test]
    fn events_request_carries_credentials_in_a_header_only() {
        let r = ari("https://pbx.example/ari").events_request().unwrap();
        assert_eq!(
            r.uri().to_string(),
            "wss://pbx.example/ari/events?app=my+app"
        );
        let auth = r.headers().get("Authorization").unwrap().to_str().unwrap();
        assert_eq!(auth, "Basic dTpwQHNz");
    }
}
