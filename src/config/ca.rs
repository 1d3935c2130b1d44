//! `pbx.ca_file`: a PEM bundle of certificate authorities trusted for the connections to the
//! PBX (ARI, `pbx.push_url`) in addition to the system's. Read and checked when the config is
//! loaded, so a bad file is a config error naming the key and the file, and a changed file is
//! a changed config.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::ConfigError;
use super::validate::Ctx;

/// The certificates of `pbx.ca_file`, each one usable as a trust anchor.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    /// The file, resolved against the config directory.
    pub path: PathBuf,
    /// Its certificates (DER), in file order.
    pub certs: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// Reads `pbx.ca_file` when it is set: at least one certificate, each a valid trust anchor.
pub(super) fn ca_file(ctx: &Ctx<'_>, file: Option<&Path>) -> Result<Option<CaFile>, ConfigError> {
    ca_file_at(ctx, "pbx.ca_file", file)
}

/// Reads the CA file of `key` when it is set: at least one certificate, each a valid trust
/// anchor.
pub(super) fn ca_file_at(
    ctx: &Ctx<'_>,
    key: &str,
    file: Option<&Path>,
) -> Result<Option<CaFile>, ConfigError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let path = ctx.path(file);
    let bad = |why: String| ctx.invalid(key, format!("{}: {why}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| {
            bad(format!(
                "certificate {} cannot be trusted as a CA: {e}",
                i + 1
            ))
        })?;
    }
    Ok(Some(CaFile { path, certs }))
}
