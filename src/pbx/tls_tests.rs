//! TLS to the PBX against a real TLS server on loopback with certificates made here: what each
//! refusal is called, that `pbx.ca_file` is trusted, and the fixtures other PBX tests share
//! (a test CA, the server, captured logs).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::Connector;

use super::*;
use crate::pbx::LinkLost;

/// A certificate authority of the test's own, trusted by nobody unless told.
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
}

/// A server certificate and its key.
pub(crate) struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pbx-teams-presence test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let der = params.self_signed(&key).unwrap().der().clone();
        TestCa {
            issuer: Issuer::new(params, key),
            der,
        }
    }

    /// A server certificate for `names`, valid now or (`expired`) only in 2020.
    pub fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// `pbx.ca_file` as the config would hold it.
    pub fn ca_file(&self) -> CaFile {
        CaFile {
            path: "test-ca.pem".into(),
            certs: vec![self.der.clone()],
        }
    }
}

/// A TLS server on 127.0.0.1 that takes WebSocket connections; `connections` counts every
/// TCP connection, handshake refused or not.
pub(crate) struct TlsServer {
    pub addr: SocketAddr,
    pub connections: watch::Receiver<usize>,
}

impl TlsServer {
    pub async fn start(leaf: Leaf) -> TlsServer {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(leaf.chain, leaf.key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count, connections) = watch::channel(0);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.send_modify(|n| *n += 1);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await {
                        use futures_util::StreamExt;
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                });
            }
        });
        TlsServer { addr, connections }
    }

    /// Wait until `n` connections were made (a failure after 20 s).
    pub async fn wait_for(&mut self, n: usize) {
        let seen = self.connections.wait_for(|c| *c >= n);
        tokio::time::timeout(std::time::Duration::from_secs(20), seen)
            .await
            .unwrap_or_else(|_| panic!("{n} connections within 20 s"))
            .unwrap();
    }
}

/// Log lines of the current thread (a current-thread runtime: its tasks too), as printed.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    pub fn lines(&self, level: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains(&format!(" {level} ")))
            .map(str::to_owned)
            .collect()
    }
}

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The events WebSocket's way in: a certificate problem is what `LinkLost` says.
async fn websocket(addr: SocketAddr, host: &str, ca: Option<&CaFile>) -> Result<(), LinkLost> {
    let url = format!("wss://{host}:{}/ari/events", addr.port());
    let tls = Connector::Rustls(client_config(ca).unwrap());
    let request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connected =
        tokio_tungstenite::client_async_tls_with_config(request, stream, None, Some(tls)).await;
    connected.map(|_| ()).map_err(LinkLost::from)
}

/// ARI REST's and the push's way in: reqwest with the same config.
async fn rest(addr: SocketAddr, ca: Option<&CaFile>) -> reqwest::Error {
    let tls = client_config(ca).unwrap();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{}/ari/asterisk/ping", addr.port());
    client.get(url).send().await.unwrap_err()
}

#[tokio::test]
async fn a_certificate_of_an_unknown_ca_is_refused_as_unknown_issuer() {
    let ca = TestCa::new();
    let server = TlsServer::start(ca.leaf(&["127.0.0.1"], false)).await;
    let lost = websocket(server.addr, "127.0.0.1", None).await.unwrap_err();
    assert_eq!(lost.certificate(), Some(&CertProblem::UnknownIssuer));
    assert!(lost.to_string().contains("unknown issuer"), "{lost}");
    assert!(lost.to_string().contains("pbx.ca_file"), "{lost}");
    let e = rest(server.addr, None).await;
    assert_eq!(certificate_problem(&e), Some(CertProblem::UnknownIssuer));
    assert!(explain(&e).contains("unknown issuer"), "{}", explain(&e));
}

#[tokio::test]
async fn with_the_ca_in_ca_file_the_websocket_connects() {
    let ca = TestCa::new();
    let server = TlsServer::start(ca.leaf(&["127.0.0.1", "localhost"], false)).await;
    let trusted = ca.ca_file();
    websocket(server.addr, "127.0.0.1", Some(&trusted))
        .await
        .unwrap();
    websocket(server.addr, "localhost", Some(&trusted))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_name_mismatch() {
    let ca = TestCa::new();
    let server = TlsServer::start(ca.leaf(&["pbx.example"], false)).await;
    let lost = websocket(server.addr, "127.0.0.1", Some(&ca.ca_file()))
        .await
        .unwrap_err();
    let problem = lost.certificate().cloned().unwrap();
    assert!(
        matches!(problem, CertProblem::NameMismatch { .. }),
        "{problem:?}"
    );
    let text = problem.to_string();
    assert!(
        text.starts_with("name mismatch") && text.contains("pbx.example"),
        "{text}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_told_with_its_date() {
    let ca = TestCa::new();
    let server = TlsServer::start(ca.leaf(&["127.0.0.1"], true)).await;
    let lost = websocket(server.addr, "127.0.0.1", Some(&ca.ca_file()))
        .await
        .unwrap_err();
    let text = lost.certificate().unwrap().to_string();
    assert!(text.starts_with("expired on 2020-12-31"), "{text}");
}

#[tokio::test]
async fn other_failures_are_explained_with_their_causes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = rest(addr, None).await;
    assert_eq!(certificate_problem(&e), None);
    let text = explain(&e);
    assert!(
        text.starts_with("error sending request") && text.contains("refused"),
        "{text}"
    );
}

#[test]
fn an_outage_tells_its_first_failure_and_its_first_certificate_problem_once() {
    let mut o = Outage::default();
    assert!(o.failed(false), "the first failure");
    assert!(!o.failed(false), "a retry");
    assert!(o.failed(true), "the first certificate problem");
    assert!(!o.failed(true) && !o.failed(false), "retries");
    assert_eq!(o.failures(), 5);
    assert_eq!(o.end(), 5);
    assert!(o.failed(true), "a new outage");
    assert!(!o.failed(true));
}

#[test]
fn clear_text_is_plain_http_to_another_host() {
    for (url, clear) in [
        ("http://192.0.2.10/presence", true),
        ("http://pbx.example:8080/presence", true),
        ("http://[2001:db8::1]/x", true),
        ("https://192.0.2.10/presence", false),
        ("http://127.0.0.1:8080/presence", false),
        ("http://127.8.9.10/presence", false),
        ("http://[::1]:8088/ari", false),
        ("http://localhost:8088/ari", false),
        ("http://pbx.localhost/ari", false),
    ] {
        assert_eq!(in_clear_text(&Url::parse(url).unwrap()), clear, "{url}");
    }
}
