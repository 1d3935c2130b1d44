//! Certificate credentials: instead of a client secret, the token request carries a client
//! assertion, a JWT the app signs with its private key (signed by `jsonwebtoken`).
//!
//! Sources: the certificate credentials page
//! <https://learn.microsoft.com/entra/identity-platform/certificate-credentials> (header `alg`
//! PS256, `typ` JWT, `x5t#S256` = base64url SHA-256 of the certificate's DER; claims `aud` =
//! the token endpoint, `iss` = `sub` = the client id, `jti` a GUID, `nbf`, `iat`, `exp` at most
//! 5 to 10 min after `nbf`; PSS padding) and the client-credentials page
//! <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//! ("second case": `client_assertion_type` and `client_assertion` form fields).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::PrivateKey as RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};
use zeroize::Zeroizing;

use super::GraphError;

/// `client_assertion_type` for a JWT assertion (client-credentials page above).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: `exp` is 10 min after `nbf` (the page above says 5 to 10).
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// Warn this long before the certificate expires.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The app's certificate and private key, checked to belong together. `Debug` shows the
/// certificate only; the key is zeroed when dropped.
#[derive(Clone)]
pub struct ClientCertificate {
    cert_der: Vec<u8>,
    /// The RSA private key as PKCS#1 DER, the form `jsonwebtoken` signs with.
    key_pkcs1: Zeroizing<Vec<u8>>,
    x5t_s256: String,
    subject: String,
    not_after: SystemTime,
}

impl PartialEq for ClientCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.cert_der == other.cert_der && *self.key_pkcs1 == *other.key_pkcs1
    }
}

impl Eq for ClientCertificate {}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.subject)
            .field("x5t#S256", &self.x5t_s256)
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Why a certificate or key file cannot be used; says which of the two, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The certificate file: no PEM `CERTIFICATE` block, or not X.509.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The key file: no usable RSA private key.
    #[error("private key: {0}")]
    Key(String),
    /// Both read, but the key is not the certificate's.
    #[error("the private key does not belong to the certificate")]
    Mismatch,
}

/// The JWT claims of a client assertion (certificate credentials page above).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

impl ClientCertificate {
    /// Reads a PEM certificate (the first `CERTIFICATE` block: a chain may follow) and a PEM
    /// RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`, unencrypted). The
    /// two texts may be the same file holding both.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClientCertificate, CertificateError> {
        let cert_der = certificate_der(cert_pem)?;
        let cert = Certificate::from_der(&cert_der)
            .map_err(|e| CertificateError::Certificate(format!("not X.509 ({e})")))?;
        let tbs = cert.tbs_certificate();
        let key = private_key(key_pem)?;
        let cert_spki = tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|e| CertificateError::Certificate(e.to_string()))?;
        let key_spki = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        if cert_spki != key_spki.as_bytes() {
            return Err(CertificateError::Mismatch);
        }
        let key_pkcs1 = key
            .to_pkcs1_der()
            .map_err(|e| CertificateError::Key(e.to_string()))?;
        Ok(ClientCertificate {
            x5t_s256: base64url(&Sha256::digest(&cert_der)),
            subject: tbs.subject().to_string(),
            not_after: tbs.validity().not_after.to_system_time(),
            key_pkcs1: Zeroizing::new(key_pkcs1.as_bytes().to_vec()),
            cert_der,
        })
    }

    /// The certificate's subject, e.g. `CN=pbx-teams-presence`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// base64url SHA-256 of the certificate's DER: the `x5t#S256` header, and what the
    /// app registration shows (in hex) once the certificate is uploaded.
    pub fn thumbprint(&self) -> &str {
        &self.x5t_s256
    }

    /// The certificate's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Whole days left at `now` (0 when it expires within a day), `None` when already expired.
    pub fn days_left(&self, now: SystemTime) -> Option<u64> {
        self.not_after
            .duration_since(now)
            .ok()
            .map(|left| left.as_secs() / 86_400)
    }

    /// Whether `now` is within [`EXPIRY_WARNING`] of the expiry (or past it).
    pub fn expires_soon(&self, now: SystemTime) -> bool {
        self.not_after
            .duration_since(now)
            .map_or(true, |left| left <= EXPIRY_WARNING)
    }

    /// A fresh client assertion for `client_id` at the token endpoint `audience`, valid from
    /// `now` for 10 min, with a new `jti`.
    pub(crate) fn sign(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: secs,
            iat: secs,
            exp: secs + ASSERTION_LIFETIME.as_secs(),
        };
        let mut header = Header::new(Algorithm::PS256);
        header.typ = Some("JWT".to_owned());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        // jsonwebtoken keeps its own copy of the key only for this call.
        let key = EncodingKey::from_rsa_der(&self.key_pkcs1);
        jsonwebtoken::encode(&header, &claims, &key)
    }
}

/// What signs the client assertions of one app (the token fetcher holds one when the app
/// uses a certificate), and says when the certificate is about to expire.
pub(crate) struct Signer {
    certificate: Arc<ClientCertificate>,
    client_id: String,
    /// The token endpoint: the assertion's `aud` (certificate credentials page).
    audience: String,
    /// When the last expiry warning was logged (at most one a day).
    warned: Mutex<Option<Instant>>,
}

impl Signer {
    pub(crate) fn new(
        certificate: Arc<ClientCertificate>,
        client_id: &str,
        audience: &str,
    ) -> Signer {
        Signer {
            certificate,
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
            warned: Mutex::new(None),
        }
    }

    /// A fresh assertion, and (at most once a day) a WARN when the certificate expires within
    /// 30 days. Entra compares `nbf` and `exp` with real time, so the wall clock is read here
    /// rather than the service clock (which tests move).
    pub(crate) fn assertion(&self) -> Result<String, GraphError> {
        let now = crate::clock::wall_now();
        self.warn_if_expiring(now);
        self.certificate
            .sign(&self.client_id, &self.audience, now)
            .map_err(|e| {
                GraphError::InvalidSettings(format!(
                    "client certificate: cannot sign the client assertion: {e}"
                ))
            })
    }

    fn warn_if_expiring(&self, now: SystemTime) {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if !self.certificate.expires_soon(now) {
            return;
        }
        let mono = crate::clock::monotonic();
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        if warned.is_some_and(|at| mono.saturating_duration_since(at) < DAY) {
            return;
        }
        *warned = Some(mono);
        let thumbprint = self.certificate.thumbprint();
        let subject = self.certificate.subject();
        match self.certificate.days_left(now) {
            Some(days) => tracing::warn!(
                days_left = days,
                subject,
                thumbprint,
                "the client certificate {subject} ({thumbprint}) expires in {days} days: make a new one, upload it to the app registration and set it in [azure] (docs/azure-setup.md)"
            ),
            None => tracing::warn!(
                subject,
                thumbprint,
                "the client certificate {subject} ({thumbprint}) has expired: Entra will refuse it; make a new one (docs/azure-setup.md)"
            ),
        }
    }
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The text of the first PEM block labelled `label`, markers included.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}

fn certificate_der(pem: &str) -> Result<Vec<u8>, CertificateError> {
    let block = pem_block(pem, "CERTIFICATE").ok_or_else(|| {
        CertificateError::Certificate("no PEM block \"BEGIN CERTIFICATE\"".to_owned())
    })?;
    x509_cert::der::pem::decode_vec(block.as_bytes())
        .map(|(_, der)| der)
        .map_err(|e| CertificateError::Certificate(format!("bad PEM ({e})")))
}

fn private_key(pem: &str) -> Result<RsaPrivateKey, CertificateError> {
    let bad = |e: &dyn fmt::Display| CertificateError::Key(format!("not an RSA key ({e})"));
    if let Some(block) = pem_block(pem, "PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs8_pem(block).map_err(|e| bad(&e));
    }
    if let Some(block) = pem_block(pem, "RSA PRIVATE KEY") {
        return RsaPrivateKey::from_pkcs1_pem(block).map_err(|e| bad(&e));
    }
    let reason = if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        "the key is encrypted; write it unencrypted to a file only the service can read \
         (openssl pkey -in key.pem -out plain-key.pem)"
    } else {
        "no PEM block \"BEGIN PRIVATE KEY\" or \"BEGIN RSA PRIVATE KEY\""
    };
    Err(CertificateError::Key(reason.to_owned()))
}

#[cfg(test)]
#[path = "client_cert_tests.rs"]
mod tests;
