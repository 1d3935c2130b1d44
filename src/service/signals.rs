//! SIGTERM and SIGINT start the ordered shutdown; a second signal is not needed (the shutdown is
//! bounded by `sync.shutdown_timeout`).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancel `token` on the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        () = token.cancelled() => return Ok(()),
    }
    token.cancel();
    Ok(())
}
