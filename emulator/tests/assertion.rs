//! Certificate credentials at the token endpoint: a client assertion signed by a registered
//! certificate's key gets a token; a bad signature, an unknown thumbprint, a wrong audience,
//! another app's iss/sub, an expired assertion and (when asked) a reused jti are refused with
//! Entra's codes (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>).
#![allow(clippy::disallowed_methods)] // the test reads real time to make its assertions

mod common;

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use graph_emulator::EmulatorOptions;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use common::{Answer, Fx, start, start_with, token_request};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RSA key with a self-signed certificate (rcgen).
struct Key {
    pkcs1: Vec<u8>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl Key {
    fn new() -> Key {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let pair =
            rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["app".to_owned()]).unwrap();
        let cert = params.self_signed(&pair).unwrap();
        Key {
            pkcs1: key.to_pkcs1_der().unwrap().as_bytes().to_vec(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
        }
    }

    fn x5t_s256(&self) -> String {
        b64(&Sha256::digest(&self.cert_der))
    }

    fn x5t(&self) -> String {
        b64(&Sha1::digest(&self.cert_der))
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The registered key, made once per test process.
fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(Key::new)
}

/// Another key, for the tests that need one.
fn other() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(Key::new)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The documented claims for the emulator's default app and token endpoint.
fn claims(fx: &Fx) -> Value {
    let t = now();
    json!({
        "aud": format!("{}/{}/oauth2/v2.0/token", fx.emu.base_url(), fx.emu.tenant_id()),
        "iss": fx.emu.client_id(),
        "sub": fx.emu.client_id(),
        "jti": uuid(),
        "nbf": t,
        "iat": t,
        "exp": t + 600,
    })
}

fn uuid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// PS256 with `x5t#S256` of `named`, signed by `signer`.
fn ps256(named: &Key, signer: &Key, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::PS256);
    header.x5t_s256 = Some(named.x5t_s256());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&signer.pkcs1)).unwrap()
}

async fn send(fx: &Fx, assertion: &str) -> Answer {
    let c = fx.emu.client_id();
    let form = [
        ("client_id", c.as_str()),
        ("scope", "https://graph.microsoft.com/.default"),
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    token_request(&fx.http, &fx.emu, &fx.emu.tenant_id(), &form).await
}

/// An emulator whose default app has the first key's certificate.
async fn registered(opts: EmulatorOptions) -> Fx {
    let fx = start_with(opts, 0).await;
    let thumbprint = fx
        .emu
        .add_app_certificate(&fx.emu.client_id(), key().cert_pem.as_bytes())
        .unwrap();
    assert_eq!(thumbprint, key().x5t_s256());
    fx
}

/// Entra's refusal: 401 `invalid_client` with the AADSTS code, in the documented body shape.
fn assert_refused(a: &Answer, code: u32, text: &str) {
    assert_eq!(a.status, 401, "{}", a.body);
    assert_eq!(a.body["error"], "invalid_client", "{}", a.body);
    assert_eq!(a.body["error_codes"], json!([code]), "{}", a.body);
    let description = a.body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")) && description.contains(text),
        "{description}"
    );
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(a.body[field].is_string(), "{field}: {}", a.body);
    }
}

#[tokio::test]
async fn a_signed_assertion_of_a_registered_certificate_gets_a_token() {
    let fx = registered(EmulatorOptions::default()).await;
    let key = key();
    let a = send(&fx, &ps256(key, key, &claims(&fx))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["token_type"], "Bearer");
    // The older form: RS256 with the SHA-1 `x5t`, and other accepted audiences.
    for aud in [
        format!(
            "https://login.microsoftonline.com/{}/oauth2/v2.0/token",
            fx.emu.tenant_id()
        ),
        format!("{}/contoso.onmicrosoft.com/oauth2/token", fx.emu.base_url()),
        format!(
            "https://login.microsoftonline.com/{}/v2.0",
            fx.emu.tenant_id()
        ),
    ] {
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(key.x5t());
        let mut c = claims(&fx);
        c["aud"] = json!(aud);
        let jwt =
            jsonwebtoken::encode(&header, &c, &EncodingKey::from_rsa_der(&key.pkcs1)).unwrap();
        let a = send(&fx, &jwt).await;
        assert_eq!(a.status, 200, "{aud}: {}", a.body);
    }
}

/// What MSAL Python sends: the thumbprint base64url with `=` padding, times with fractions.
#[tokio::test]
async fn an_msal_style_assertion_is_accepted() {
    let fx = registered(EmulatorOptions::default()).await;
    let key = key();
    let mut header = Header::new(Algorithm::PS256);
    header.x5t_s256 = Some(format!("{}=", key.x5t_s256()));
    let mut c = claims(&fx);
    let t = now() as f64 + 0.25;
    c["iat"] = json!(t);
    c["exp"] = json!(t + 600.0);
    c.as_object_mut().unwrap().remove("nbf");
    let jwt = jsonwebtoken::encode(&header, &c, &EncodingKey::from_rsa_der(&key.pkcs1)).unwrap();
    let a = send(&fx, &jwt).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn the_control_api_registers_a_certificate() {
    let fx = start(0).await;
    let key = key();
    let refused = send(&fx, &ps256(key, key, &claims(&fx))).await;
    assert_refused(&refused, 700_027, "The key was not found");
    let url = format!(
        "{}/_control/apps/{}/certificates",
        fx.emu.base_url(),
        fx.emu.client_id()
    );
    let r = fx
        .http
        .post(url)
        .json(&json!({"certificate": key.cert_pem}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["x5t#S256"], key.x5t_s256().as_str(), "{body}");
    let a = send(&fx, &ps256(key, key, &claims(&fx))).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let fx = registered(EmulatorOptions::default()).await;
    let (key, other) = (key(), other());
    // Names the registered certificate, signed by another key.
    let a = send(&fx, &ps256(key, other, &claims(&fx))).await;
    assert_refused(&a, 700_027, "did not match the expected signature");
}

#[tokio::test]
async fn an_unknown_thumbprint_is_refused() {
    let fx = registered(EmulatorOptions::default()).await;
    let other = other();
    let a = send(&fx, &ps256(other, other, &claims(&fx))).await;
    assert_refused(&a, 700_027, "The key was not found");
    let hex: String = Sha256::digest(&other.cert_der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert!(a.body["error_description"].as_str().unwrap().contains(&hex));
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let fx = registered(EmulatorOptions::default()).await;
    let key = key();
    for aud in [
        format!("{}/other-tenant.com/oauth2/v2.0/token", fx.emu.base_url()),
        "https://graph.microsoft.com/.default".to_owned(),
        format!(
            "{}/{}/oauth2/v2.0/devicecode",
            fx.emu.base_url(),
            fx.emu.tenant_id()
        ),
    ] {
        let mut c = claims(&fx);
        c["aud"] = json!(aud);
        let a = send(&fx, &ps256(key, key, &c)).await;
        assert_refused(&a, 700_023, "audience claim does not match");
    }
}

#[tokio::test]
async fn another_apps_issuer_or_subject_is_refused() {
    let fx = registered(EmulatorOptions::default()).await;
    let key = key();
    for claim in ["iss", "sub"] {
        let mut c = claims(&fx);
        c[claim] = json!("99999999-2222-3333-4444-555555555555");
        let a = send(&fx, &ps256(key, key, &c)).await;
        assert_refused(&a, 700_021, "doesn't match 'client_id'");
    }
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_assertion_is_refused() {
    let fx = registered(EmulatorOptions::default()).await;
    let key = key();
    let t = now();
    let mut expired = claims(&fx);
    expired["nbf"] = json!(t - 3600);
    expired["exp"] = json!(t - 3000);
    let a = send(&fx, &ps256(key, key, &expired)).await;
    assert_refused(&a, 700_024, "not within its valid time range");
    let mut early = claims(&fx);
    early["nbf"] = json!(t + 3600);
    early["exp"] = json!(t + 4200);
    let a = send(&fx, &ps256(key, key, &early)).await;
    assert_refused(&a, 700_024, "not within its valid time range");
}

#[tokio::test]
async fn a_reused_jti_is_refused_only_when_asked() {
    let key = key();
    // Entra accepts a repeat (MSAL Python re-sends one assertion): so does the default.
    let fx = registered(EmulatorOptions::default()).await;
    let jwt = ps256(key, key, &claims(&fx));
    assert_eq!(send(&fx, &jwt).await.status, 200);
    assert_eq!(send(&fx, &jwt).await.status, 200);
    let strict = registered(EmulatorOptions {
        reject_reused_assertions: true,
        ..EmulatorOptions::default()
    })
    .await;
    let jwt = ps256(key, key, &claims(&strict));
    assert_eq!(send(&strict, &jwt).await.status, 200);
    assert_refused(&send(&strict, &jwt).await, 50_013, "was already used");
    // A fresh jti is fine.
    let a = send(&strict, &ps256(key, key, &claims(&strict))).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn malformed_assertions_are_refused() {
    let fx = registered(EmulatorOptions::default()).await;
    let key = key();
    assert_refused(
        &send(&fx, "not.a.jwt").await,
        50_027,
        "invalid or malformed",
    );
    let no_thumbprint = jsonwebtoken::encode(
        &Header::new(Algorithm::PS256),
        &claims(&fx),
        &EncodingKey::from_rsa_der(&key.pkcs1),
    )
    .unwrap();
    assert_refused(
        &send(&fx, &no_thumbprint).await,
        50_027,
        "No certificate thumbprint",
    );
    // No client_assertion_type.
    let c = fx.emu.client_id();
    let jwt = ps256(key, key, &claims(&fx));
    let form = [
        ("client_id", c.as_str()),
        ("scope", "https://graph.microsoft.com/.default"),
        ("grant_type", "client_credentials"),
        ("client_assertion", jwt.as_str()),
    ];
    let a = token_request(&fx.http, &fx.emu, &fx.emu.tenant_id(), &form).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.body["error_codes"], json!([900_144]));
}
