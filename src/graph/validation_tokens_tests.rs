//! The validator against tokens signed here with the emulator's two test keys (public by
//! design: `emulator/keys/`), and the key set served by a small local server.
#![allow(clippy::disallowed_methods)] // tests read the clock as the outside observer

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{EncodingKey, Header, encode};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::*;
use crate::graph::jwks::{Jwks, JwksSettings};

const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const TENANT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const KEY_1: &[u8] = include_bytes!("../../emulator/keys/signing-1.pem");
const KEY_2: &[u8] = include_bytes!("../../emulator/keys/signing-2.pem");

fn encoding(pem: &[u8]) -> EncodingKey {
    match PrivateKeyDer::from_pem_slice(pem).unwrap() {
        PrivateKeyDer::Pkcs1(k) => EncodingKey::from_rsa_der(k.secret_pkcs1_der()),
        _ => panic!("the test keys are PKCS#1"),
    }
}

/// The public half of `pem` as a JWK named `kid`.
fn jwk(pem: &[u8], kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(&encoding(pem), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk
}

fn decoding(pem: &[u8]) -> DecodingKey {
    DecodingKey::from_jwk(&jwk(pem, "k")).unwrap()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// The claims Graph's tokens carry (the rich notifications page).
fn claims() -> Value {
    let now = now_secs();
    json!({
        "aud": CLIENT, "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now, "nbf": now, "exp": now + 3600,
        "appid": PUBLISHER_APP, "appidacr": "2", "tid": TENANT,
    })
}

fn sign(pem: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(&header, claims, &encoding(pem)).unwrap()
}

fn expected() -> Expected {
    Expected {
        audience: CLIENT.into(),
        issuer: issuer_for(TENANT).unwrap(),
    }
}

/// `claims` with `key` set to `value` (or removed when `value` is null).
fn with(key: &str, value: Value) -> Value {
    let mut c = claims();
    if value.is_null() {
        c.as_object_mut().unwrap().remove(key);
    } else {
        c[key] = value;
    }
    c
}

fn check(claims: &Value) -> Result<(), TokenError> {
    check_token(&sign(KEY_1, "k1", claims), &decoding(KEY_1), &expected())
}

#[test]
fn a_token_graph_would_send_is_trusted() {
    assert_eq!(check(&claims()), Ok(()));
    // v2 tokens name the publisher in azp instead of appid.
    let mut v2 = with("appid", Value::Null);
    v2["azp"] = json!(PUBLISHER_APP);
    assert_eq!(check(&v2), Ok(()));
}

#[test]
fn a_token_for_another_app_is_refused() {
    let other = with("aud", json!("99999999-2222-3333-4444-555555555555"));
    assert_eq!(check(&other), Err(TokenError::Audience));
    assert!(check(&with("aud", Value::Null)).is_err());
}

#[test]
fn a_token_from_another_tenant_or_issuer_is_refused() {
    let tenant = with(
        "iss",
        json!("https://sts.windows.net/bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee/"),
    );
    assert_eq!(check(&tenant), Err(TokenError::Issuer));
    let issuer = with("iss", json!(format!("https://evil.example/{TENANT}/")));
    assert_eq!(check(&issuer), Err(TokenError::Issuer));
}

#[test]
fn an_expired_or_not_yet_valid_token_is_refused() {
    let past = now_secs() - 2 * 3600;
    assert_eq!(check(&with("exp", json!(past))), Err(TokenError::Expired));
    assert!(check(&with("exp", Value::Null)).is_err());
    let later = now_secs() + 600;
    assert_eq!(
        check(&with("nbf", json!(later))),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn a_token_not_issued_to_graphs_publisher_is_refused() {
    let other = "22222222-2222-3333-4444-555555555555";
    assert_eq!(
        check(&with("appid", json!(other))),
        Err(TokenError::Publisher)
    );
    assert_eq!(
        check(&with("appid", Value::Null)),
        Err(TokenError::Publisher),
        "no publisher claim at all"
    );
    let mut neither = with("appid", Value::Null);
    neither["azp"] = json!(other);
    assert_eq!(check(&neither), Err(TokenError::Publisher));
    let mut mixed = claims();
    mixed["azp"] = json!(other);
    assert_eq!(check(&mixed), Err(TokenError::Publisher));
}

#[test]
fn a_token_signed_with_another_key_is_refused() {
    let forged = sign(KEY_2, "k1", &claims());
    assert_eq!(
        check_token(&forged, &decoding(KEY_1), &expected()),
        Err(TokenError::Signature)
    );
    // A valid token whose claims were changed (a longer life) no longer matches its
    // signature.
    let good = sign(KEY_1, "k1", &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let longer = with("exp", json!(now_secs() + 86_400)).to_string();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(&b64, longer),
        parts[2]
    );
    assert_eq!(
        check_token(&tampered, &decoding(KEY_1), &expected()),
        Err(TokenError::Signature)
    );
}

#[test]
fn unsigned_or_keyless_tokens_are_refused_before_any_key_is_looked_up() {
    let b64 = |v: Value| {
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            v.to_string(),
        )
    };
    // What the emulator used to send: `alg: none`.
    let none = format!(
        "{}.{}.",
        b64(json!({"typ": "JWT", "alg": "none"})),
        b64(claims())
    );
    assert_eq!(key_id(&none), Err(TokenError::Malformed));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = None;
    let no_kid = encode(&header, &claims(), &encoding(KEY_1)).unwrap();
    assert_eq!(key_id(&no_kid), Err(TokenError::NoKeyId));
    assert_eq!(key_id("a.b"), Err(TokenError::Malformed));
    assert_eq!(key_id(&"x".repeat(20_000)), Err(TokenError::TooLong));
    assert_eq!(key_id(&sign(KEY_1, "k1", &claims())), Ok("k1".into()));
}

#[test]
fn the_issuer_is_built_from_the_tenant_id_only() {
    assert_eq!(
        issuer_for("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE").as_deref(),
        Some("https://sts.windows.net/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee/")
    );
    assert_eq!(issuer_for("contoso.onmicrosoft.com"), None);
}

/// A key set endpoint whose set the test changes, counting its fetches.
struct KeyServer {
    set: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    url: Url,
}

async fn key_server(keys: &[(&[u8], &str)]) -> KeyServer {
    let set = Arc::new(Mutex::new(Value::Null));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (s, f) = (set.clone(), fetches.clone());
    let openid = json!({"issuer": format!("https://login.microsoftonline.com/{TENANT}/v2.0")});
    let app = axum::Router::new()
        .route(
            "/common/discovery/v2.0/keys",
            axum::routing::get(move || {
                let (s, f) = (s.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(s.lock().unwrap().clone())
                }
            }),
        )
        .route(
            "/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(openid) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let server = KeyServer {
        set,
        fetches,
        url: Url::parse(&format!("http://{addr}")).unwrap(),
    };
    server.publish(keys);
    server
}

impl KeyServer {
    fn publish(&self, keys: &[(&[u8], &str)]) {
        let set = JwkSet {
            keys: keys.iter().map(|(pem, kid)| jwk(pem, kid)).collect(),
        };
        *self.set.lock().unwrap() = serde_json::to_value(set).unwrap();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn trust(&self) -> Trust {
        self.trust_for(TENANT)
    }

    fn trust_for(&self, tenant: &str) -> Trust {
        let settings = JwksSettings {
            url: crate::graph::jwks::jwks_url(&self.url).unwrap(),
            timeout: Duration::from_secs(2),
            min_refetch: Duration::from_secs(60),
        };
        Trust::new(CLIENT, tenant, Arc::new(Jwks::new(settings).unwrap()))
    }
}

#[tokio::test]
async fn a_new_key_id_is_fetched_once_and_then_trusted() {
    let server = key_server(&[(KEY_1, "k1")]).await;
    let trust = server.trust();
    assert_eq!(trust.jwks().refresh().await.unwrap(), 1);
    let t0 = tokio::time::Instant::now();
    let old = sign(KEY_1, "k1", &claims());
    assert_eq!(trust.check(&[old], true, t0).await, Ok(()));
    assert_eq!(server.fetches(), 1, "a cached key needs no fetch");
    // Microsoft rolls its keys: a token names a key the cache does not hold yet.
    server.publish(&[(KEY_1, "k1"), (KEY_2, "k2")]);
    let new = sign(KEY_2, "k2", &claims());
    assert_eq!(
        trust.check(std::slice::from_ref(&new), true, t0).await,
        Ok(())
    );
    assert_eq!(server.fetches(), 2);
    assert_eq!(trust.check(&[new], true, t0).await, Ok(()));
    assert_eq!(server.fetches(), 2, "and then it is cached");
}

#[tokio::test]
async fn an_unknown_key_id_is_refused_and_fetches_at_most_once_a_minute() {
    let server = key_server(&[(KEY_1, "k1")]).await;
    let trust = server.trust();
    trust.jwks().refresh().await.unwrap();
    let t0 = tokio::time::Instant::now();
    let foreign = sign(KEY_2, "k2", &claims());
    assert_eq!(
        trust.check(std::slice::from_ref(&foreign), true, t0).await,
        Err(Distrust::Refused(TokenError::UnknownKey("k2".into())))
    );
    assert_eq!(server.fetches(), 2, "one fetch for the unknown key id");
    let soon = t0 + Duration::from_secs(59);
    assert!(matches!(
        trust
            .check(std::slice::from_ref(&foreign), true, soon)
            .await,
        Err(Distrust::Later(_))
    ));
    assert_eq!(server.fetches(), 2, "no second fetch within a minute");
    // A good token still passes meanwhile; a later one may fetch again.
    let good = sign(KEY_1, "k1", &claims());
    assert_eq!(trust.check(&[good.clone(), good], true, soon).await, Ok(()));
    let later = t0 + Duration::from_secs(61);
    assert!(matches!(
        trust.check(&[foreign], true, later).await,
        Err(Distrust::Refused(TokenError::UnknownKey(_)))
    ));
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn one_bad_token_refuses_the_batch_and_a_rich_batch_needs_one() {
    let server = key_server(&[(KEY_1, "k1")]).await;
    let trust = server.trust();
    trust.jwks().refresh().await.unwrap();
    let now = tokio::time::Instant::now();
    let good = sign(KEY_1, "k1", &claims());
    let other_app = sign(KEY_1, "k1", &with("aud", json!("someone-else")));
    assert_eq!(
        trust.check(&[good, other_app], true, now).await,
        Err(Distrust::Refused(TokenError::Audience))
    );
    assert_eq!(
        trust.check(&[], true, now).await,
        Err(Distrust::Refused(TokenError::Missing))
    );
    assert_eq!(
        trust.check(&[], false, now).await,
        Ok(()),
        "basic batches carry none"
    );
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_ask_graph_to_deliver_again() {
    let server = key_server(&[(KEY_1, "k1")]).await;
    *server.set.lock().unwrap() = json!({"keys": []});
    let trust = server.trust();
    assert!(trust.jwks().refresh().await.is_err());
    let good = sign(KEY_1, "k1", &claims());
    let now = tokio::time::Instant::now();
    assert!(matches!(
        trust.check(&[good], true, now).await,
        Err(Distrust::Later(_))
    ));
}

#[tokio::test]
async fn a_tenant_given_by_its_domain_name_is_looked_up_once() {
    let server = key_server(&[(KEY_1, "k1")]).await;
    let trust = server.trust_for("contoso.onmicrosoft.com");
    trust.jwks().refresh().await.unwrap();
    let good = sign(KEY_1, "k1", &claims());
    let now = tokio::time::Instant::now();
    assert!(matches!(
        trust.check(std::slice::from_ref(&good), true, now).await,
        Err(Distrust::Later(_))
    ));
    trust.resolve_tenant(&server.url).await.unwrap();
    assert_eq!(trust.check(&[good], true, now).await, Ok(()));
    let elsewhere = with(
        "iss",
        json!("https://sts.windows.net/bbbbbbbb-bbbb-cccc-dddd-eeeeeeeeeeee/"),
    );
    let other_tenant = sign(KEY_1, "k1", &elsewhere);
    assert_eq!(
        trust.check(&[other_tenant], true, now).await,
        Err(Distrust::Refused(TokenError::Issuer))
    );
}

#[test]
fn a_key_set_keeps_only_rsa_signing_keys_with_an_id() {
    let mut enc = serde_json::to_value(jwk(KEY_1, "enc")).unwrap();
    enc["use"] = json!("enc");
    let mut no_kid = serde_json::to_value(jwk(KEY_1, "x")).unwrap();
    no_kid.as_object_mut().unwrap().remove("kid");
    let set = json!({"keys": [
        jwk(KEY_1, "k1"), enc, no_kid, {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "", "y": ""},
        {"kty": "RSA", "kid": "broken"}, {"nonsense": true}
    ]});
    let keys = crate::graph::jwks::parse(set.to_string().as_bytes()).unwrap();
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["k1"]);
    assert!(crate::graph::jwks::parse(b"{\"keys\": []}").is_err());
    assert!(crate::graph::jwks::parse(b"not json").is_err());
}
