//! TLS to the PBX: one rustls client config for every connection a connector makes (ARI REST
//! and its events WebSocket, `pbx.push_url`), trusting the system's certificate authorities
//! plus `pbx.ca_file`; certificate errors told in words; and whether a secret would cross the
//! network in clear text.
//!
//! The system's CAs (rustls-native-certs: the OS trust store, e.g. `/etc/ssl/certs`) rather
//! than a bundle compiled in: a PBX usually carries a certificate of the company's own CA, and
//! an admin who installed that CA on the host (`update-ca-certificates`) expects every program
//! there to trust it; the store also follows the distribution's security updates.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::{CertificateError, ClientConfig};
use rustls_pki_types::UnixTime;
use tokio_tungstenite::tungstenite;
use url::{Host, Url};

use crate::config::CaFile;

/// The TLS client settings cannot be built (only a rustls without any protocol version).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS to the PBX: {0}")]
pub struct TlsSetupError(#[from] rustls::Error);

pub use crate::trust::trusted_certs;

/// The client config: the system's CAs plus those of `ca` (already checked by the config).
/// Loading the system store reads a few hundred files; call it when a connector starts.
pub fn client_config(ca: Option<&CaFile>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    Ok(crate::trust::client_config(ca)?)
}

/// Why the PBX's certificate was refused, in the admin's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertProblem {
    #[error(
        "unknown issuer: no trusted CA signed it (put the CA's certificate in pbx.ca_file, PEM)"
    )]
    UnknownIssuer,
    #[error(
        "name mismatch: it is not valid for the URL's host{presented} (the host must be one of its subject alternative names)"
    )]
    NameMismatch {
        /// ` (it names a, b)`, or empty when rustls did not say.
        presented: String,
    },
    #[error("expired{0} (renew it on the PBX)")]
    Expired(String),
    #[error("not valid yet{0} (check the clocks)")]
    NotValidYet(String),
    #[error("revoked")]
    Revoked,
    #[error("not meant for a TLS server (extended key usage)")]
    NotForServers,
    #[error("invalid certificate: {0}")]
    Other(String),
}

impl CertProblem {
    fn of(e: &CertificateError) -> CertProblem {
        use CertificateError as E;
        match e {
            E::UnknownIssuer => CertProblem::UnknownIssuer,
            E::NotValidForName => CertProblem::NameMismatch {
                presented: String::new(),
            },
            E::NotValidForNameContext { presented, .. } => CertProblem::NameMismatch {
                presented: names(presented),
            },
            E::Expired => CertProblem::Expired(String::new()),
            E::ExpiredContext { not_after, .. } => {
                CertProblem::Expired(format!(" on {}", date(*not_after)))
            }
            E::NotValidYet => CertProblem::NotValidYet(String::new()),
            E::NotValidYetContext { not_before, .. } => {
                CertProblem::NotValidYet(format!(": from {}", date(*not_before)))
            }
            E::Revoked => CertProblem::Revoked,
            E::InvalidPurpose | E::InvalidPurposeContext { .. } => CertProblem::NotForServers,
            other => CertProblem::Other(format!("{other:?}").chars().take(200).collect()),
        }
    }
}

/// The names a certificate presents, for a message: they come from the peer, so a few, short.
fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = presented
        .iter()
        .take(4)
        .map(|n| n.chars().take(64).collect())
        .collect();
    let more = if presented.len() > 4 { ", ..." } else { "" };
    format!("; it names {}{more}", shown.join(", "))
}

fn date(t: UnixTime) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(t.as_secs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The certificate problem somewhere in `err`'s chain, if that is why it failed. rustls's
/// error arrives wrapped in an `io::Error` (tokio-rustls, hyper), whose `source()` skips it,
/// so each link is also looked into.
pub fn certificate_problem(err: &(dyn StdError + 'static)) -> Option<CertProblem> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(c)) = rustls_error(e) {
            return Some(CertProblem::of(c));
        }
        next = e.source();
    }
    None
}

fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    let mut io = match e.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(r))) => return Some(r),
        Some(tungstenite::Error::Io(io)) => io,
        _ => e.downcast_ref::<std::io::Error>()?,
    };
    // hyper-rustls wraps tokio-rustls's io::Error in another one.
    loop {
        let inner = io.get_ref()?;
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        io = inner.downcast_ref::<std::io::Error>()?;
    }
}

/// `err` and its causes in one line (reqwest's own message is only "error sending request");
/// a certificate problem in words when that is the cause.
pub fn explain(err: &(dyn StdError + 'static)) -> String {
    if let Some(problem) = certificate_problem(err) {
        return format!("TLS certificate refused: {problem}");
    }
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = e.source();
    }
    text
}

/// Which failures of one outage were logged: the first, and the first certificate problem
/// (a PBX that comes back with a certificate we refuse is told, even when the outage began
/// with something else), never one per retry.
#[derive(Debug, Default)]
pub struct Outage {
    failures: u32,
    certificate_told: bool,
}

impl Outage {
    /// Counts one failure; whether it is one to log.
    pub fn failed(&mut self, certificate: bool) -> bool {
        let first = self.failures == 0;
        self.failures = self.failures.saturating_add(1);
        let tell = certificate && !self.certificate_told;
        self.certificate_told |= certificate;
        first || tell
    }

    /// Failures so far (for the backoff).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// It works (again): the next failure starts a new outage. Returns the failures it had.
    pub fn end(&mut self) -> u32 {
        std::mem::take(self).failures
    }
}

/// Whether a secret sent to `url` crosses the network in clear text: plain `http://` to a
/// host other than this machine (`localhost` and loopback addresses stay on it).
pub fn in_clear_text(url: &Url) -> bool {
    let local = match url.host() {
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        Some(Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    };
    url.scheme() == "http" && !local
}

#[cfg(test)]
#[path = "tls_tests.rs"]
pub(crate) mod tests;
