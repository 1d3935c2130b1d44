//! TLS trust the adapters share: the system's certificate authorities plus those of a CA file
//! from the config (`pbx.ca_file`, `store.ca_file`), for a rustls client on ring.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;

use crate::config::CaFile;

/// The system's CAs (a WARN for those that cannot be read) followed by those of `ca`. Reads a
/// few hundred files.
pub fn trusted_certs(ca: Option<&CaFile>) -> Vec<CertificateDer<'static>> {
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "some of the system's trusted CAs cannot be read: {e}");
    }
    let mut certs = native.certs;
    certs.extend(ca.iter().flat_map(|ca| ca.certs.iter().cloned()));
    certs
}

/// A client config trusting [`trusted_certs`]; the server's name is always checked.
pub fn client_config(ca: Option<&CaFile>) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    let (usable, _unusable) = roots.add_parsable_certificates(trusted_certs(ca));
    tracing::debug!(usable, "TLS trust loaded");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
