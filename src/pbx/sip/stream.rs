//! `pbx.transport = "tcp"` or `"tls"`: one connection to the SIP server, opened by the daemon
//! and kept busy by the keep-alive's OPTIONS. The daemon's Contact is that connection's own
//! address, so the server's requests (the NOTIFYs) come back on it, as they do to a desk
//! phone behind a firewall: Kamailio and Asterisk (PJSIP) send a request to a Contact over
//! the open connection whose far end is that address (RFC 3261 section 18; RFC 5923 names
//! the reuse). A connection lost and opened again has another address: the keep-alive sees
//! the new Contact and every subscription is made again with it.
//!
//! TLS checks the server's certificate against the system's CAs plus `pbx.ca_file`, for the
//! name written in `pbx.proxy` / `pbx.registrar` (an IP address written there must be in the
//! certificate's subject alternative names).

use std::net::IpAddr;

use base64::Engine;
use rsipstack::sip::{HostWithPort, Transport};
use rsipstack::transport::tls::TlsConfig;

use super::stack::{Stack, StackError};
use crate::config::{SipPbxConfig, SipTransport};

/// The SIP stack's name for `pbx.transport`.
pub fn transport(t: SipTransport) -> Transport {
    match t {
        SipTransport::Udp => Transport::Udp,
        SipTransport::Tcp => Transport::Tcp,
        SipTransport::Tls => Transport::Tls,
    }
}

/// The TLS client settings: the system's CAs and `pbx.ca_file` (PEM, as the stack takes them),
/// and the server's name when the config gives one rather than an address. Reads the system
/// store (a few hundred files) off the runtime.
pub async fn tls_config(config: &SipPbxConfig) -> Result<TlsConfig, StackError> {
    let ca = config.ca_file.clone();
    let ca_certs = tokio::task::spawn_blocking(move || {
        let certs = crate::pbx::tls::trusted_certs(ca.as_ref());
        pem(certs.iter().map(AsRef::as_ref))
    })
    .await
    .map_err(|e| StackError::Sip(format!("reading the system's CAs: {e}")))?;
    let host = &config.next_hop().host;
    let sni_hostname = host.parse::<IpAddr>().is_err().then(|| host.clone());
    Ok(TlsConfig {
        ca_certs: Some(ca_certs),
        sni_hostname,
        ..TlsConfig::default()
    })
}

/// DER certificates as one PEM bundle.
fn pem<'a>(certs: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = String::new();
    for der in certs {
        let text = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

impl Stack {
    /// Over TCP or TLS: find the connection to the next hop, or open it, and make its local
    /// address our Contact. `Ok(true)` when the Contact changed (a new connection): what was
    /// subscribed with the old one must be subscribed again. Over UDP: nothing, `Ok(false)`.
    pub async fn connect(&self) -> Result<bool, StackError> {
        if self.next_hop.r#type == Some(Transport::Udp) {
            return Ok(false);
        }
        let layer = &self.endpoint.inner.transport_layer;
        let (connection, _) =
            layer
                .lookup(&self.next_hop, None)
                .await
                .map_err(|e| StackError::Connect {
                    server: self.next_hop.addr.to_string(),
                    transport: self.next_hop.r#type.unwrap_or_default(),
                    reason: e.to_string(),
                })?;
        let local: HostWithPort = connection.get_addr().addr.clone();
        Ok(self.set_contact_address(local))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_base64_at_64_columns_between_the_markers() {
        let der = vec![0x30u8; 100];
        let text = String::from_utf8(pem([der.as_slice()].into_iter())).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
        assert!(lines[1..lines.len() - 1].iter().all(|l| l.len() <= 64));
        let body: String = lines[1..lines.len() - 1].concat();
        let back = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert_eq!(back, der);
    }

    #[test]
    fn pem_of_two_certificates_is_read_back_as_two() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let a = vec![1u8, 2, 3];
        let b = vec![4u8; 70];
        let bundle = pem([a.as_slice(), b.as_slice()].into_iter());
        let read: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bundle)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].as_ref(), a.as_slice());
        assert_eq!(read[1].as_ref(), b.as_slice());
    }
}
