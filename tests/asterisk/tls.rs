//! ARI over TLS against the real Asterisk with its TLS listener on and a certificate of a CA
//! this test makes: with the CA in `pbx.ca_file` the connector follows calls over `wss://` and
//! writes over `https://`; without it, the certificate is refused as of an unknown issuer, the
//! status says so, and the connector keeps trying.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use super::common::{ALICE, BOB, CAROL, World, eventually};
use super::sandbox::{ARI_TLS_ADDR, PHONES, Pbx, finish};
use super::{DEVICES, connected, in_a_call};

/// A CA, and Asterisk's certificate for 127.0.0.1 signed by it: `cert.pem`, `key.pem` (what
/// `asterisk.sh --tls` takes) and `ca.pem` (for `pbx.ca_file`).
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Certs {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "pbx-teams-presence test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_pem).unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Certs { dir }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_in_ca_file_calls_and_writes_go_over_tls() {
    let certs = Certs::new();
    let _pbx = Pbx::acquire_tls(certs.dir()).await;
    let mut w = World::new().await;
    let ca = format!("ca_file = \"{}\"\n", certs.ca().display());
    let url = format!("https://{ARI_TLS_ADDR}/ari");
    w.pbx_section = Some(format!("{}{DEVICES}", Pbx::pbx_section_at(&url, &ca)));
    w.write_config("");
    w.start().await;
    connected(&w).await;
    // Asterisk -> Teams: the events come over wss://.
    PHONES.register("1001").await;
    PHONES.register("1002").await;
    let callee = PHONES.answer("1002", 300);
    let caller = PHONES.dial("uac.xml", "1001", "1002", 2000, &[]);
    eventually(10, "Alice and Bob in a call", || {
        in_a_call(&w, ALICE) && in_a_call(&w, BOB)
    })
    .await;
    finish(caller, "1001 calls 1002").await;
    finish(callee, "1002 answers").await;
    eventually(10, "both cleared after the hangup", || {
        w.app_session(ALICE).is_none() && w.app_session(BOB).is_none()
    })
    .await;
    // Teams -> Asterisk: the writes go over https://.
    w.graph
        .set_user_presence(&w.id(CAROL), "Busy", "InAMeeting");
    Pbx::wait_device("Custom:teams-1003", "INUSE", 10).await;
    w.stop().await.unwrap();
}

/// A TCP relay to Asterisk's TLS port that counts the connections made through it.
async fn counting_relay() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(ARI_TLS_ADDR).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_certificate_is_refused_and_the_connector_keeps_trying() {
    let certs = Certs::new();
    let _pbx = Pbx::acquire_tls(certs.dir()).await;
    let (relay, connections) = counting_relay().await;
    let mut w = World::new().await;
    // Nothing is written to Asterisk: every connection through the relay is the listener's.
    let quiet = "device_state = \"\"\npresence_state = \"\"\n";
    let url = format!("https://{relay}/ari");
    w.pbx_section = Some(Pbx::pbx_section_at(&url, quiet));
    w.write_config("");
    w.start().await;
    let link = || {
        w.status()["pbx_link"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    eventually(15, "status says the certificate was refused", || {
        link().starts_with("disconnected: TLS certificate refused: unknown issuer")
    })
    .await;
    assert!(link().contains("pbx.ca_file"), "status says what to do");
    eventually(15, "three attempts, all refused", || {
        connections.load(Ordering::SeqCst) >= 3
    })
    .await;
    assert!(link().starts_with("disconnected"), "never connected");
    w.stop().await.unwrap();
}
