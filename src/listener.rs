//! The accept loop both HTTP listeners share (the PBX's `POST /pbx/events` and the
//! change-notification webhook): each connection is a task on the listener's own set, in a
//! span naming the listener and the peer, served by hyper over plain TCP or TLS. On cancel the
//! loop stops accepting, asks every connection to finish its request and close, and waits for
//! them (bounded): an event being posted is answered, not cut off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Longest wait for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait, at shutdown, for the requests under way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Serve `app` on `listener` until `cancel` fires. `name` names the listener in logs.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut connections = JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: let some connections end first.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Small request/answer exchanges: no Nagle delay on the answer.
        let _ = tcp.set_nodelay(true);
        let span = tracing::debug_span!("connection", listener = name, %peer);
        let task = connection(tcp, peer, acceptor.clone(), app.clone(), cancel.clone());
        connections.spawn(task.instrument(span));
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::debug!(listener = name, "connections still open at shutdown closed");
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    cancel: CancellationToken,
) {
    match tls {
        None => http1(hyper_util::rt::TokioIo::new(tcp), app, cancel).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => http1(hyper_util::rt::TokioIo::new(stream), app, cancel).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// One HTTP/1.1 connection; on cancel, the request under way is answered and the connection
/// closed.
async fn http1<I>(io: I, app: Router, cancel: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
