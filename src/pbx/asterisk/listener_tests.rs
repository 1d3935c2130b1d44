//! The listener against a TLS server whose certificate it refuses: one ERROR for the outage,
//! naming the URL and why, while it keeps retrying.

use std::path::Path;

use super::*;
use crate::config::Config;
use crate::pbx::tls::CertProblem;
use crate::pbx::tls::tests::{Logs, TestCa, TlsServer};

fn asterisk_config(ari_url: &str) -> AsteriskPbxConfig {
    let text = format!(
        "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         [pbx]\nkind = \"asterisk\"\nari_url = \"{ari_url}\"\nari_password = \"p\"\n"
    );
    let config = Config::from_str_with(&text, Path::new("/c.toml"), &|_| None).unwrap();
    config.pbx.asterisk.expect("kind = \"asterisk\"")
}

#[tokio::test]
async fn a_refused_certificate_is_one_error_per_outage_and_the_listener_keeps_retrying() {
    let (logs, _guard) = Logs::capture();
    let ca = TestCa::new();
    let mut server = TlsServer::start(ca.leaf(&["127.0.0.1"], false)).await;
    let url = format!("https://127.0.0.1:{}/ari", server.addr.port());
    let config = asterisk_config(&url);
    let (_users_tx, users) = watch::channel(Arc::new(vec!["1001".to_owned()]));
    let (events, _events_rx) = mpsc::channel(8);
    let (status, mut status_rx) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let listener = Listener {
        ari: Ari::new(&config, Duration::from_secs(5)).unwrap(),
        config: Arc::new(config),
        users,
        events,
        status,
        cancel: cancel.clone(),
    };
    let task = tokio::spawn(listener.run());
    server.wait_for(4).await;
    cancel.cancel();
    task.await.unwrap();

    let errors = logs.lines("ERROR");
    assert_eq!(errors.len(), 1, "one ERROR for four refusals: {errors:#?}");
    assert!(
        errors[0].contains(&url) && errors[0].contains("unknown issuer"),
        "{}",
        errors[0]
    );
    assert!(logs.lines("WARN").is_empty(), "{:#?}", logs.lines("WARN"));
    match status_rx.try_recv() {
        Ok(LinkState::Disconnected(lost)) => {
            assert_eq!(lost.certificate(), Some(&CertProblem::UnknownIssuer));
        }
        other => panic!("status got {other:?}"),
    }
    assert!(status_rx.try_recv().is_err(), "status is told once too");
}
