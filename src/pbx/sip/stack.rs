//! The SIP stack the connector runs on: an rsipstack endpoint (transactions, retransmissions,
//! dialogs, digest authentication) bound where `[pbx]` says, and the requests the daemon
//! sends out of dialog: SUBSCRIBE, REGISTER, OPTIONS.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rsipstack::EndpointBuilder;
use rsipstack::dialog::authenticate::{Credential, handle_client_authenticate};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::sip::headers::make_header;
use rsipstack::sip::{
    self, Header, HeadersExt, Method, Request, Response, SipMessage, StatusCode, Transport,
};
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::{Endpoint, make_tag};
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, TransportLayer};
use tokio_util::sync::CancellationToken;

use crate::config::{SipPbxConfig, SipTransport};

/// How long a SIP address still in use is tried again.
const BIND_WAIT: Duration = Duration::from_secs(3);

/// Why the SIP stack cannot start, or a request cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// `pbx.registrar` / `pbx.proxy` does not resolve.
    #[error("cannot resolve {what} {host}: {reason}")]
    Resolve {
        what: &'static str,
        host: String,
        reason: String,
    },
    /// The local socket cannot be bound.
    #[error("cannot bind the SIP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TCP or TLS connection to the SIP server cannot be opened.
    #[error("cannot connect to {server} over {transport}: {reason}")]
    Connect {
        server: String,
        transport: Transport,
        reason: String,
    },
    /// A URI from the config or a template does not parse as SIP.
    #[error("not a SIP URI: {0:?}")]
    Uri(String),
    /// The stack refused to build or send a request.
    #[error("SIP stack: {0}")]
    Sip(String),
}

impl From<rsipstack::Error> for StackError {
    fn from(e: rsipstack::Error) -> StackError {
        StackError::Sip(e.to_string())
    }
}

impl From<sip::Error> for StackError {
    fn from(e: sip::Error) -> StackError {
        StackError::Sip(e.to_string())
    }
}

/// The endpoint and what every request needs. Cheap to clone.
#[derive(Clone)]
pub struct Stack {
    pub endpoint: Arc<Endpoint>,
    pub dialogs: Arc<DialogLayer>,
    /// Where requests go (the proxy, else the registrar), resolved.
    pub next_hop: SipAddr,
    /// Our Contact: over TCP and TLS the address of the open connection (`stream`).
    contact: Arc<Mutex<sip::Uri>>,
    /// The daemon's own address of record, `sip:username@domain`.
    pub aor: sip::Uri,
    pub credential: Option<Credential>,
}

/// The final answer to an out-of-dialog request (after digest authentication).
pub struct Answer {
    pub response: Response,
    /// The request that got it (the authenticated one, with its CSeq).
    pub request: Request,
}

impl Stack {
    /// Bind the socket and build the endpoint; the endpoint serves until `cancel`.
    pub async fn start(
        config: &SipPbxConfig,
        cancel: &CancellationToken,
    ) -> Result<Stack, StackError> {
        let transport = super::stream::transport(config.transport);
        let hop = resolve(
            config.next_hop().host.as_str(),
            config.next_hop().port,
            "the SIP server",
        )
        .await?;
        let local = match config.local_address {
            Some(a) => a,
            None => SocketAddr::new(route_to(hop).await?, 0),
        };
        let transports = TransportLayer::new(cancel.child_token());
        match config.transport {
            SipTransport::Udp => transports.add_transport(bind(local, cancel).await?.into()),
            SipTransport::Tcp => {}
            SipTransport::Tls => {
                transports.set_tls_config(super::stream::tls_config(config).await?)
            }
        }
        let endpoint = EndpointBuilder::new()
            .with_cancel_token(cancel.child_token())
            .with_transport_layer(transports)
            .with_inspector(Box::new(Wire))
            .with_user_agent(concat!("pbx-teams-presence/", env!("CARGO_PKG_VERSION")))
            .build();
        let dialogs = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let bound = match config.transport {
            SipTransport::Udp => endpoint
                .get_addrs()
                .first()
                .map(|a| a.addr.to_string())
                .ok_or_else(|| StackError::Sip("no local address".into()))?,
            // The connection's port, once open (`Stack::connect`).
            SipTransport::Tcp | SipTransport::Tls => {
                format!("{}:0;transport={}", local.ip(), config.transport.as_str())
            }
        };
        let contact = uri(&format!("sip:{}@{bound}", config.username))?;
        let aor = uri(&format!("sip:{}@{}", config.username, config.domain))?;
        let credential = config.password.as_ref().map(|p| Credential {
            username: config.username.clone(),
            password: p.expose().to_owned(),
            realm: None,
            auth_username: config.auth_username.clone(),
        });
        let stack = Stack {
            endpoint: Arc::new(endpoint),
            dialogs,
            next_hop: SipAddr {
                r#type: Some(transport),
                addr: hop.into(),
            },
            contact: Arc::new(Mutex::new(contact)),
            aor,
            credential,
        };
        if let Err(e) = stack.connect().await {
            // Not fatal: the keep-alive tries again every few seconds and says so.
            tracing::debug!(error = %e, "SIP: {e}");
        }
        Ok(stack)
    }

    /// Where the SIP socket is bound (UDP) or the connection comes from (TCP, TLS).
    pub fn local_addr(&self) -> String {
        self.contact().host_with_port.to_string()
    }

    /// Our Contact, as of now.
    pub fn contact(&self) -> sip::Uri {
        self.contact
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new address for our Contact (a new TCP/TLS connection); `true` if it changed.
    pub(super) fn set_contact_address(&self, address: sip::HostWithPort) -> bool {
        let mut contact = self.contact.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = contact.host_with_port != address;
        contact.host_with_port = address;
        changed
    }

    /// A request out of dialog to `target` (From us with a new tag, To the target), ready for
    /// headers. `call_id`/`tag` are given by the caller (a subscription is known by them
    /// before its answer arrives).
    pub fn request(
        &self,
        method: Method,
        target: &sip::Uri,
        call_id: &str,
        tag: &str,
        seq: u32,
    ) -> Result<Request, StackError> {
        let via = self.endpoint.inner.get_via(Some(self.local()), None)?;
        let from = sip::typed::From {
            display_name: None,
            uri: self.aor.clone(),
            params: vec![],
        }
        .with_tag(tag.to_owned().into());
        let to = sip::typed::To {
            display_name: None,
            uri: target.clone(),
            params: vec![],
        };
        let mut request = self.endpoint.inner.make_request(
            method,
            target.clone(),
            via,
            from,
            to,
            seq,
            Some(call_id.to_owned().into()),
        );
        request
            .headers
            .push(sip::typed::Contact::from(self.contact()).into());
        Ok(request)
    }

    fn local(&self) -> SipAddr {
        SipAddr {
            r#type: self.next_hop.r#type,
            addr: self.contact().host_with_port,
        }
    }

    /// Send `request` out of dialog and wait for its final answer, answering one digest
    /// challenge (a second one is the answer). `on_retry` sees the authenticated request
    /// before it is sent (a subscription needs it if a NOTIFY beats the 2xx). `None`: no
    /// final answer (the transaction timed out or the transport failed).
    pub async fn send(
        &self,
        request: Request,
        on_retry: &(dyn Fn(&Request) + Sync),
    ) -> Result<Option<Answer>, StackError> {
        self.send_to(request, &self.next_hop, on_retry).await
    }

    /// [`Stack::send`] to another server than the next hop (the presence server).
    pub async fn send_to(
        &self,
        request: Request,
        to: &SipAddr,
        on_retry: &(dyn Fn(&Request) + Sync),
    ) -> Result<Option<Answer>, StackError> {
        let key = TransactionKey::from_request(&request, TransactionRole::Client)?;
        let mut tx = Transaction::new_client(key, request, self.endpoint.inner.clone(), None);
        tx.destination = Some(to.clone());
        tx.send().await?;
        let mut challenged = false;
        while let Some(message) = tx.receive().await {
            let SipMessage::Response(response) = message else {
                continue;
            };
            if response.status_code.kind() == sip::StatusCodeKind::Provisional {
                continue;
            }
            let challenge = matches!(
                response.status_code,
                StatusCode::Unauthorized | StatusCode::ProxyAuthenticationRequired
            );
            match (&self.credential, challenge && !challenged) {
                (Some(cred), true) => {
                    challenged = true;
                    let seq = tx.original.cseq_header()?.seq()? + 1;
                    tx = handle_client_authenticate(seq, &tx, response, cred).await?;
                    tx.destination = Some(to.clone());
                    on_retry(&tx.original);
                    tx.send().await?;
                }
                _ => {
                    return Ok(Some(Answer {
                        response,
                        request: tx.original.clone(),
                    }));
                }
            }
        }
        Ok(None)
    }
}

/// Every SIP message in and out, one TRACE line each (start line, Call-ID, CSeq: never a
/// header that carries credentials), for `log.level = "pbx_teams_presence::pbx::sip=trace"`.
struct Wire;

impl rsipstack::transaction::endpoint::MessageInspector for Wire {
    fn before_send(&self, msg: SipMessage, dest: Option<&SipAddr>) -> SipMessage {
        trace_wire("out", "out to", &msg, dest);
        msg
    }

    fn after_received(&self, msg: SipMessage, from: Option<&SipAddr>) -> SipMessage {
        trace_wire("in", "in from", &msg, from);
        msg
    }
}

/// One TRACE line: `SIP in from PEER: START LINE (CSEQ)`, fields direction, peer, call_id.
fn trace_wire(direction: &'static str, way: &str, msg: &SipMessage, peer: Option<&SipAddr>) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let headers = match msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    };
    let value = |name| header_value(headers, name).unwrap_or("");
    let (line, call, cseq) = (msg.start_line(), value("Call-ID"), value("CSeq"));
    let peer = peer.map(ToString::to_string).unwrap_or_default();
    tracing::trace!(direction, peer = %peer, call_id = %call, "SIP {way} {peer}: {line} ({cseq})");
}

/// A new Call-ID and tag for a request out of dialog.
pub fn new_ids() -> (String, String) {
    let tag = make_tag().to_string();
    let call_id = format!("{}-{}", make_tag(), make_tag());
    (call_id, tag)
}

pub fn uri(text: &str) -> Result<sip::Uri, StackError> {
    sip::Uri::try_from(text).map_err(|_| StackError::Uri(text.to_owned()))
}

/// Add a header by name (rsipstack keeps most of them as text).
pub fn header(request: &mut Request, name: &str, value: impl Into<String>) {
    request.headers.push(make_header(name, value.into()));
}

/// The first header named `name` (case-insensitive), as text.
pub fn header_value<'a>(headers: &'a sip::Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h: &&Header| h.name().eq_ignore_ascii_case(name))
        .map(|h| h.value())
}

pub async fn resolve(host: &str, port: u16, what: &'static str) -> Result<SocketAddr, StackError> {
    let failed = |reason: String| StackError::Resolve {
        what,
        host: host.to_owned(),
        reason,
    };
    let mut found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(e.to_string()))?;
    found.next().ok_or_else(|| failed("no address".into()))
}

/// Bind the SIP socket; an address still held by the connector being replaced (a reload)
/// is tried again for up to [`BIND_WAIT`].
async fn bind(local: SocketAddr, cancel: &CancellationToken) -> Result<UdpConnection, StackError> {
    let until = crate::clock::monotonic() + BIND_WAIT;
    loop {
        match UdpConnection::create_connection(local, None, Some(cancel.child_token())).await {
            Ok(udp) => return Ok(udp),
            Err(rsipstack::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && crate::clock::monotonic() < until =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                return Err(StackError::Bind {
                    addr: local,
                    source: std::io::Error::other(e.to_string()),
                });
            }
        }
    }
}

/// The local address the system routes to `peer` from (no packet is sent).
async fn route_to(peer: SocketAddr) -> Result<IpAddr, StackError> {
    let any: SocketAddr = if peer.is_ipv6() {
        "[::]:0"
            .parse()
            .map_err(|_| StackError::Sip("bad address".into()))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| StackError::Sip("bad address".into()))?
    };
    let bind_failed = |source| StackError::Bind { addr: any, source };
    let socket = tokio::net::UdpSocket::bind(any)
        .await
        .map_err(bind_failed)?;
    socket.connect(peer).await.map_err(bind_failed)?;
    Ok(socket.local_addr().map_err(bind_failed)?.ip())
}
