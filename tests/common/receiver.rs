//! The PBX of the HTTP connector's tests: collects what the daemon pushes to `pbx.push_url`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

/// Collects what the daemon pushes to `pbx.push_url`.
#[derive(Clone, Default)]
pub struct PbxReceiver {
    pub url: String,
    pub updates: Arc<Mutex<Vec<Value>>>,
    /// Answer this status instead of 200 while set (tests redelivery).
    pub fail_with: Arc<Mutex<Option<u16>>>,
}

impl PbxReceiver {
    pub async fn start() -> PbxReceiver {
        let mut r = PbxReceiver::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        r.url = format!("http://{}/presence", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/presence", post(receive))
            .with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    /// Every update pushed so far, flattened.
    pub fn updates(&self) -> Vec<Value> {
        self.updates.lock().unwrap().clone()
    }

    pub fn updates_for(&self, extension: &str) -> Vec<Value> {
        self.updates()
            .into_iter()
            .filter(|u| u["extension"] == extension)
            .collect()
    }
}

async fn receive(State(r): State<PbxReceiver>, body: axum::Json<Value>) -> StatusCode {
    if let Some(code) = *r.fail_with.lock().unwrap() {
        return StatusCode::from_u16(code).unwrap();
    }
    if let Some(items) = body["updates"].as_array() {
        r.updates.lock().unwrap().extend(items.iter().cloned());
    }
    StatusCode::OK
}
