//! The accept loop the HTTP listeners share (the PBX's `POST /pbx/events`, `GET /metrics` and the
//! change-notification webhook): each connection is a task on the listener's own set, in a
//! span naming the listener and the peer, served by hyper over plain TCP or TLS. On cancel the
//! loop stops accepting, asks every connection to finish its request and close, and waits for
//! them (bounded): an event being posted is answered, not cut off.
//!
//! Hostile input is bounded ([`Limits`]): a TLS handshake and each request header must arrive
//! within a few seconds (also the time a kept-alive connection may sit idle); a listener holds
//! at most [`Limits::max_connections`], and past that the connection idle the longest makes
//! room (`slots.rs`); a failed accept (out of descriptors) backs off instead of spinning.
//! Handlers read the body last ([`read_body`], bounded in size and time). Every refusal is
//! counted per cause and said at most once a minute ([`Refusals`]).

mod body;
pub mod refusals;
mod slots;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use body::{BODY_TIMEOUT, BodyError, read_body};
pub use refusals::{Cause, Refusals, truncate_for_log};
use slots::{Admission, Slot, Slots};

/// Longest wait, at shutdown, for the requests under way.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of file descriptors, mostly) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often the summaries of refusals that are due get logged.
const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Largest request header (request line included); larger ones get 431. The longest
/// legitimate one is the webhook's handshake, whose token is limited to 4 KiB.
const MAX_HEADER_SIZE: usize = 32 * 1024;

/// What one listener allows a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections held at once; past that the one idle the longest is closed to make room.
    pub max_connections: usize,
    /// Time to send a whole request header, from the connection's start and again after each
    /// answer: a kept-alive connection idle this long is closed.
    pub header_timeout: Duration,
    /// Time to finish a TLS handshake.
    pub handshake_timeout: Duration,
}

impl Limits {
    /// A quarter of the soft limit on open files for each listener (up to three listeners,
    /// and room for Graph, the store, the PBX link), between 64 and 1,024: 256 under systemd's default
    /// soft limit of 1,024, 1,024 under the unit's `LimitNOFILE`.
    pub fn for_this_process() -> Limits {
        let files = open_files_soft_limit().unwrap_or(1024);
        Limits {
            max_connections: usize::try_from(files / 4).unwrap_or(1024).clamp(64, 1024),
            header_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), if it can be read.
fn open_files_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    #[allow(clippy::useless_conversion)] // rlim_t is not u64 on every target
    (rc == 0).then(|| u64::from(limit.rlim_cur))
}

/// How one listener serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Names the listener in logs: `pbx`, `webhook`.
    pub name: &'static str,
    /// HTTPS with these settings; plain HTTP without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
    /// Where the handlers count their refusals; the loop adds its own (connections).
    pub refusals: Refusals,
}

impl Options {
    /// Plain HTTP, with the limits for this process.
    pub fn new(name: &'static str, refusals: Refusals) -> Options {
        Options {
            name,
            tls: None,
            limits: Limits::for_this_process(),
            refusals,
        }
    }
}

static SHED: Cause = Cause {
    key: "connections_shed",
    verb: "closed",
    one: "the connection idle the longest, to make room for a new one",
    many: "connections idle the longest, to make room for new ones",
};
static FULL: Cause = Cause {
    key: "connections_refused",
    verb: "refused",
    one: "a connection: every place is held by a request under way",
    many: "connections: every place was held by requests under way",
};
static ACCEPT: Cause = Cause {
    key: "accept_failed",
    verb: "could not accept",
    one: "a connection",
    many: "connections",
};

/// Serve `app` on `listener` until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: Options,
    cancel: CancellationToken,
) {
    let Options { name, refusals, .. } = &options;
    let each = Each {
        tls: options.tls.clone().map(tokio_rustls::TlsAcceptor::from),
        app,
        limits: options.limits,
        cancel: cancel.clone(),
    };
    let slots = Slots::new(options.limits.max_connections);
    let mut connections = JoinSet::new();
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        let (tcp, peer) = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = flush.tick() => {
                refusals.flush();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(&e, &slots, refusals, &cancel).await;
                    continue;
                }
            },
        };
        let Some(slot) = admit(&slots, refusals, peer) else {
            continue; // dropped: closed
        };
        // Small request/answer exchanges: no Nagle delay on the answer.
        let _ = tcp.set_nodelay(true);
        let span = tracing::debug_span!("connection", listener = name, %peer);
        connections.spawn(connection(tcp, slot, each.clone()).instrument(span));
    }
    drain(connections, name).await;
    refusals.drain();
}

/// Wait (bounded) for the connections to answer their requests under way and close.
async fn drain(mut connections: JoinSet<()>, name: &'static str) {
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::debug!(listener = name, "connections still open at shutdown closed");
    }
}

/// A place for the connection from `peer`, or `None` (counted) when every place is busy.
fn admit(slots: &Arc<Slots>, refusals: &Refusals, peer: SocketAddr) -> Option<Slot> {
    match slots.admit() {
        Admission::Free(slot) => Some(slot),
        Admission::Shed(slot) => {
            refusals.refused(&SHED, || format!("{} connections at most", slots.cap()));
            Some(slot)
        }
        Admission::Full => {
            refusals.refused(&FULL, || format!("{peer}; {} at most", slots.cap()));
            None
        }
    }
}

/// After a failed accept: out of descriptors, the connection idle the longest gives its own
/// back; then a short pause (the error would come again at once), cut short by `cancel`.
async fn accept_failed(
    e: &std::io::Error,
    slots: &Slots,
    refusals: &Refusals,
    cancel: &CancellationToken,
) {
    refusals.refused(&ACCEPT, || e.to_string());
    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) && slots.shed_one() {
        refusals.refused(&SHED, || format!("no file descriptor left: {e}"));
    }
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
    }
}

/// What every connection of a listener is served with.
#[derive(Clone)]
struct Each {
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    cancel: CancellationToken,
}

/// One connection, until it ends, is shed, or (after its request) the listener stops.
async fn connection(tcp: TcpStream, slot: Slot, each: Each) {
    let Each {
        tls,
        app,
        limits,
        cancel,
    } = each;
    let slot = Arc::new(slot);
    let shed = slot.shed().clone();
    let service = Tracked {
        app: TowerToHyperService::new(app),
        slot,
    };
    let serve = async {
        match tls {
            None => http1(TokioIo::new(tcp), service, limits, cancel).await,
            Some(acceptor) => {
                let handshake = acceptor.accept(tcp);
                match tokio::time::timeout(limits.handshake_timeout, handshake).await {
                    Ok(Ok(stream)) => http1(TokioIo::new(stream), service, limits, cancel).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            }
        }
    };
    tokio::select! {
        () = shed.cancelled() => tracing::debug!("closed to make room for a new connection"),
        () = serve => {}
    }
}

/// One HTTP/1.1 connection; on cancel, the request under way is answered and the connection
/// closed.
async fn http1<I>(io: I, service: Tracked, limits: Limits, cancel: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_SIZE)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::debug!("no whole request header in time (or idle too long); closed");
        }
        Err(e) => tracing::debug!(error = %e, "connection ended with an error"),
    }
}

/// The app, with the connection marked busy (not to be shed) while a request is under way.
struct Tracked {
    app: TowerToHyperService<Router>,
    slot: Arc<Slot>,
}

type Answer = Result<axum::response::Response, Infallible>;

impl hyper::service::Service<hyper::Request<Incoming>> for Tracked {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let slot = Arc::clone(&self.slot);
        let answer = self.app.call(request);
        // Polled at once, in the same turn of the connection's task.
        Box::pin(async move {
            let _busy = slot.busy();
            answer.await
        })
    }
}
