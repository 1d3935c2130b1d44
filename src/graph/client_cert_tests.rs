//! The client assertion: the header and claims the certificate credentials page asks for, a
//! signature the certificate's public key verifies, and the files that are refused.

use std::sync::OnceLock;

use jsonwebtoken::{DecodingKey, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use serde_json::Value;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const AUD: &str = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

/// One RSA key for all tests (key generation is the slow part of a debug build).
fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut getrandom::SysRng, 2048).unwrap())
}

fn pkcs8_pem(key: &RsaPrivateKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

/// A self-signed certificate for `key` made by rcgen, expiring `days` from now.
fn certificate(key: &RsaPrivateKey, days: u32) -> String {
    let pair =
        rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8_pem(key), &rcgen::PKCS_RSA_SHA256)
            .unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pbx-teams-presence test");
    params.not_before = (crate::clock::wall_now() - DAY).into();
    params.not_after = (crate::clock::wall_now() + days * DAY).into();
    params.self_signed(&pair).unwrap().pem()
}

/// A certificate credential that expires `days` from now.
fn expiring_in(days: u32) -> ClientCertificate {
    ClientCertificate::from_pem(&certificate(key(), days), &pkcs8_pem(key())).unwrap()
}

fn decode_part(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn the_assertion_has_the_documented_header_and_claims() {
    let cert_pem = certificate(key(), 365);
    let cert = ClientCertificate::from_pem(&cert_pem, &pkcs8_pem(key())).unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let jwt = cert.sign(CLIENT, AUD, now).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header = decode_part(parts[0]);
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["typ"], "JWT");
    let der = certificate_der(&cert_pem).unwrap();
    assert_eq!(
        header["x5t#S256"],
        base64url(&Sha256::digest(&der)).as_str()
    );
    assert_eq!(header["x5t#S256"], cert.thumbprint());
    let claims = decode_part(parts[1]);
    assert_eq!(claims["aud"], AUD);
    assert_eq!(claims["iss"], CLIENT);
    assert_eq!(claims["sub"], CLIENT);
    assert_eq!(claims["nbf"], 1_700_000_000);
    assert_eq!(claims["iat"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_000_600);
    let jti = claims["jti"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(jti).is_ok(), "{jti}");
    let again = decode_part(
        cert.sign(CLIENT, AUD, now)
            .unwrap()
            .split('.')
            .nth(1)
            .unwrap(),
    );
    assert_ne!(again["jti"], claims["jti"], "a new jti for every assertion");
}

#[test]
fn the_signature_verifies_with_the_certificates_public_key() {
    let cert = ClientCertificate::from_pem(&certificate(key(), 365), &pkcs8_pem(key())).unwrap();
    let jwt = cert.sign(CLIENT, AUD, crate::clock::wall_now()).unwrap();
    // The verifier knows only the certificate: its public key, as the emulator and Entra do.
    let parsed = Certificate::from_der(&cert.cert_der).unwrap();
    let public = parsed
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let mut validation = Validation::new(Algorithm::PS256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[CLIENT]);
    let data =
        jsonwebtoken::decode::<Value>(&jwt, &DecodingKey::from_rsa_der(&public), &validation)
            .unwrap();
    assert_eq!(data.claims["sub"], CLIENT);
    // Another key's public key does not verify it.
    let other = RsaPrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let other_public =
        DecodingKey::from_rsa_raw_components(&other.n().to_be_bytes(), &other.e().to_be_bytes());
    assert!(jsonwebtoken::decode::<Value>(&jwt, &other_public, &validation).is_err());
}

#[test]
fn pkcs1_keys_and_a_combined_file_are_read() {
    let cert_pem = certificate(key(), 365);
    let pkcs1 = key().to_pkcs1_pem(LineEnding::LF).unwrap().to_string();
    let from_pkcs1 = ClientCertificate::from_pem(&cert_pem, &pkcs1).unwrap();
    let from_pkcs8 = ClientCertificate::from_pem(&cert_pem, &pkcs8_pem(key())).unwrap();
    assert_eq!(from_pkcs1, from_pkcs8);
    let combined = format!("{}{cert_pem}", pkcs8_pem(key()));
    assert_eq!(
        ClientCertificate::from_pem(&combined, &combined).unwrap(),
        from_pkcs8
    );
    assert_eq!(from_pkcs8.subject(), "CN=pbx-teams-presence test");
}

#[test]
fn wrong_or_missing_files_say_which_one() {
    let cert_pem = certificate(key(), 365);
    let other = RsaPrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    assert_eq!(
        ClientCertificate::from_pem(&cert_pem, &pkcs8_pem(&other)),
        Err(CertificateError::Mismatch)
    );
    let swapped = ClientCertificate::from_pem(&pkcs8_pem(key()), &cert_pem).unwrap_err();
    assert!(
        matches!(swapped, CertificateError::Certificate(_)),
        "{swapped}"
    );
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let e = ClientCertificate::from_pem(&cert_pem, encrypted).unwrap_err();
    assert!(e.to_string().contains("encrypted"), "{e}");
    let e = ClientCertificate::from_pem(&cert_pem, "").unwrap_err();
    assert!(matches!(e, CertificateError::Key(_)), "{e}");
}

#[test]
fn expiry_is_counted_in_days_and_warned_30_days_ahead() {
    let soon = ClientCertificate::from_pem(&certificate(key(), 10), &pkcs8_pem(key())).unwrap();
    let later = ClientCertificate::from_pem(&certificate(key(), 90), &pkcs8_pem(key())).unwrap();
    let now = crate::clock::wall_now();
    assert_eq!(soon.days_left(now), Some(9));
    assert!(soon.expires_soon(now));
    assert!(!later.expires_soon(now));
    assert!(later.expires_soon(now + 61 * DAY));
    assert_eq!(later.days_left(now + 91 * DAY), None);
}

#[test]
fn debug_never_shows_the_key() {
    let cert = ClientCertificate::from_pem(&certificate(key(), 365), &pkcs8_pem(key())).unwrap();
    let shown = format!("{cert:?}");
    assert!(
        shown.contains("[redacted]") && shown.contains("CN=pbx"),
        "{shown}"
    );
    assert!(!shown.contains("key_pkcs1"), "{shown}");
}

/// Captures what is logged while `f` runs.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

fn signer(days: u32) -> Signer {
    Signer::new(Arc::new(expiring_in(days)), "c", AUD)
}

#[tokio::test(start_paused = true)]
async fn an_expiring_certificate_is_warned_about_once_a_day() {
    let soon = signer(10);
    let log = logged(|| {
        soon.assertion().unwrap();
        soon.assertion().unwrap();
    });
    assert_eq!(log.matches("WARN").count(), 1, "{log}");
    assert!(log.contains("expires in 9 days"), "{log}");
    tokio::time::advance(Duration::from_secs(24 * 3600)).await;
    let log = logged(|| drop(soon.assertion().unwrap()));
    assert_eq!(log.matches("WARN").count(), 1, "a day later, again: {log}");
    let later = signer(90);
    let log = logged(|| drop(later.assertion().unwrap()));
    assert!(!log.contains("WARN"), "{log}");
}
