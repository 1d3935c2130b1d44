//! `pbx.transport = "tcp"` and `"tls"` against the real Kamailio: the daemon opens one
//! connection, and the NOTIFYs come back on it. Over TCP and TLS the connector has no UDP
//! socket at all, so every call state seen here crossed that connection.

use pbx_teams_presence::config::{CaFile, SipPbxConfig, SipTransport};
use pbx_teams_presence::pbx::sip::stack::Stack;
use pbx_teams_presence::sync::types::CallState;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use super::kamailio;
use crate::sandbox::{Kam, PHONES, finish, repo};
use crate::sip_watcher::Watcher;

/// The test Kamailio's TLS port and the CA of its certificate (`tests/pbx/kamailio.sh`).
const TLS_PORT: u16 = 5090;

fn over(transport: SipTransport) -> SipPbxConfig {
    let mut config = kamailio();
    config.transport = transport;
    if transport == SipTransport::Tls {
        config.registrar.port = TLS_PORT;
        let dir = std::env::var_os("KAM_DIR")
            .map(Into::into)
            .unwrap_or_else(|| repo().join("target/kamailio"));
        let path = dir.join("tls/ca.pem");
        let certs = CertificateDer::pem_file_iter(&path)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        config.ca_file = Some(CaFile { path, certs });
    }
    config
}

/// 1001 calls 1002, who answers and talks `talk_ms`: speaking (within `secs`), then idle at
/// the hang-up.
async fn one_call(w: &mut Watcher, talk_ms: u64, secs: u64) {
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 300);
    let caller = PHONES.dial("uac.xml", "1001", "1002", talk_ms, &[]);
    w.states_until("1002", CallState::Speaking, secs).await;
    finish(caller, "1001 calls 1002").await;
    finish(callee, "1002 answers").await;
    assert_eq!(
        w.states_until("1002", CallState::Idle, 10).await.last(),
        Some(&CallState::Idle)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_over_tcp_a_call_is_speaking_then_idle() {
    let _kam = Kam::acquire().await;
    let mut w = Watcher::start(over(SipTransport::Tcp), &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle, "first NOTIFY");
    one_call(&mut w, 1000, 10).await;
    w.stop().await;
}

/// Over TLS, and Kamailio restarted: the connection is gone, the keep-alive opens a new one
/// (a new Contact) and subscribes again; calls are seen again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_over_tls_a_call_is_seen_and_after_a_restart_again() {
    let _kam = Kam::acquire().await;
    let mut w = Watcher::start(over(SipTransport::Tls), &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle, "first NOTIFY");
    one_call(&mut w, 1000, 10).await;
    Kam::restart().await;
    // Placed at once and long enough for the keep-alive (every 10 s) to find the connection
    // gone: the new subscription's first NOTIFY shows the call.
    one_call(&mut w, 20_000, 30).await;
    w.stop().await;
}

/// Without the test CA in `pbx.ca_file` the certificate is refused, and the error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_over_tls_without_its_ca_is_refused() {
    let _kam = Kam::acquire().await;
    let mut config = over(SipTransport::Tls);
    config.ca_file = None;
    let cancel = CancellationToken::new();
    let stack = Stack::start(&config, &cancel).await.unwrap();
    let refused = stack.connect().await.unwrap_err().to_string();
    cancel.cancel();
    assert!(
        refused.starts_with("cannot connect to 127.0.0.1:5090 over TLS")
            && refused.contains("UnknownIssuer"),
        "{refused}"
    );
}

/// `pbx.auth_username`: the account `teams-3cx` authenticates as `tp-auth-7` (Kamailio
/// refuses any other digest user name with 403), as a 3CX extension's authentication ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_digest_user_is_auth_username_when_set() {
    let _kam = Kam::acquire().await;
    let mut config = kamailio();
    config.username = "teams-3cx".into();
    config.auth_username = Some("tp-auth-7".into());
    let mut w = Watcher::start(config, &["1002"]).await;
    assert_eq!(w.next("1002", 10).await, CallState::Idle, "first NOTIFY");
    w.stop().await;
}
