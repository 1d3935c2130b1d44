//! `GET /metrics`, served through the daemon's hardened listener (`crate::listener`: header
//! and handshake timeouts, a connection cap, refusals counted): the scrape answers the
//! registry's text; any other path is 404, any other method 405.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::listener::{Options, Refusals};

/// What a scrape answer says it is (the OpenMetrics text format, which Prometheus asks for).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the metrics listener cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address is taken or not ours: fix `metrics.listen`.
    #[error("cannot listen on {addr} (metrics.listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Bind the listener (separate from [`serve`] so a bad address fails at start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serve `GET /metrics` until `cancel` fires.
pub async fn serve(listener: TcpListener, metrics: Metrics, cancel: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(metrics);
    let options = Options::new("metrics", Refusals::new("metrics"));
    crate::listener::serve(listener, app, options, cancel).await;
}

async fn scrape(State(metrics): State<Metrics>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
