//! The `validationTokens` of rich notifications, signed the way Graph's are, and the key set
//! the identity platform publishes for them.
//!
//! Sources:
//! - rich notifications, section "Validating the authenticity of notifications":
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>
//!   (one token per app and tenant in a batch; RS256; `aud` = the app, `iss` =
//!   `https://sts.windows.net/{tenant}/`, `appid` = Graph's change-notification publisher);
//! - the key set: `jwks_uri` of
//!   <https://login.microsoftonline.com/common/.well-known/openid-configuration>, i.e.
//!   `/common/discovery/v2.0/keys` (RFC 7517 keys with `kty`, `use`, `kid`, `x5t`, `n`, `e`).
//!
//! The emulator signs with one of two fixed RSA keys (`keys/`, made for the emulator and
//! public by design). Microsoft's key set also carries each key's certificate (`x5c`); the
//! emulator's does not (no client of ours reads it). Tokens carry real time, not the
//! emulator's advanced clock: receivers check them against their system clock.
//!
//! Test controls: [`send_change`] (a rich notification with any presence, for any user, with
//! a good or a forged token), [`last_rich`] and [`resend`] (a body sent before, again: a
//! replay), and a key rollover (`rotated`: the second key is published and signs from then
//! on).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, PrivateKey};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::state::{Shared, State};
use crate::subscriptions::prune;

/// The app id of Graph's change-notification publisher (`appid` of the tokens).
pub(crate) const PUBLISHER_APP: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";
/// The emulator's signing keys (PKCS#1 PEM), with their key ids.
const KEYS: [(&str, &str); 2] = [
    ("emulator-signing-1", include_str!("../keys/signing-1.pem")),
    ("emulator-signing-2", include_str!("../keys/signing-2.pem")),
];
/// How long a token is valid (the page gives no figure; an hour, like Entra's tokens:
/// UNVERIFIED).
const LIFETIME_SECS: u64 = 3600;

/// How a forged validation token is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenForgery {
    /// Signed by a key the emulator does not publish, under a key id of its own.
    UnknownKey,
    /// Names the signing key, but another key signed it.
    BadSignature,
    /// For another app (`aud`).
    WrongAudience,
    /// From another tenant (`iss`).
    WrongTenant,
    /// Expired an hour ago.
    Expired,
    /// Issued to another app than Graph's publisher (`appid`).
    WrongPublisher,
    /// No `validationTokens` at all.
    Missing,
}

/// The signing keys, loaded at start.
#[derive(Debug)]
pub(crate) struct SigningKeys {
    keys: Vec<(String, PrivateKey)>,
}

/// What changes: the rollover, and each subscription's last rich body.
#[derive(Debug, Default)]
pub(crate) struct TrustState {
    /// The second key is published and signs.
    pub rotated: bool,
    last_rich: HashMap<String, Vec<u8>>,
}

impl SigningKeys {
    pub fn load() -> SigningKeys {
        let keys = KEYS
            .iter()
            .filter_map(|(kid, pem)| {
                let key = PrivateKey::from_pkcs1_pem(pem).ok()?;
                Some(((*kid).to_owned(), key))
            })
            .collect();
        SigningKeys { keys }
    }

    /// (key id, key) number `i`; a key id without key when the keys did not load.
    fn get(&self, i: usize) -> Option<&(String, PrivateKey)> {
        self.keys.get(i)
    }
}

/// GET /{tenant}/discovery/v2.0/keys: the published keys (the second after the rollover).
pub(crate) fn jwks(shared: &Shared) -> Value {
    let rotated = shared.lock().trust.rotated;
    let count = if rotated { 2 } else { 1 };
    let keys: Vec<Value> = shared
        .signing
        .keys
        .iter()
        .take(count)
        .map(|(kid, key)| {
            json!({
                "kty": "RSA", "use": "sig", "kid": kid, "x5t": kid,
                "n": URL_SAFE_NO_PAD.encode(minimal_be(key.n())),
                "e": URL_SAFE_NO_PAD.encode(minimal_be(key.e())),
            })
        })
        .collect();
    json!({ "keys": keys })
}

/// The `validationTokens` of a rich batch for `app_id` in `tenant`: one token, good or forged
/// as `forgery` says; `None` for [`TokenForgery::Missing`].
pub(crate) fn validation_tokens(
    shared: &Shared,
    app_id: &str,
    tenant: &str,
    forgery: Option<TokenForgery>,
) -> Option<Vec<String>> {
    let rotated = shared.lock().trust.rotated;
    let (signer, other) = if rotated { (1, 0) } else { (0, 1) };
    let keys = &shared.signing;
    // Real wall time, not the emulator's advanced clock (`State::wall`): the tokens are checked
    // by the daemon against its own real clock, as Graph's are against the receiver's.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut claims = json!({
        "aud": app_id, "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now, "nbf": now, "exp": now + LIFETIME_SECS,
        "appid": PUBLISHER_APP, "appidacr": "2", "tid": tenant, "ver": "1.0",
    });
    let kid = keys.get(signer).map(|(k, _)| k.clone()).unwrap_or_default();
    let (kid, key) = match forgery {
        Some(TokenForgery::Missing) => return None,
        Some(TokenForgery::UnknownKey) => ("not-published".to_owned(), keys.get(other)),
        Some(TokenForgery::BadSignature) => (kid, keys.get(other)),
        Some(f) => {
            forge_claims(&mut claims, f);
            (kid, keys.get(signer))
        }
        None => (kid, keys.get(signer)),
    };
    let token = key
        .map(|(_, key)| sign(key, &kid, &claims))
        .unwrap_or_default();
    Some(vec![token])
}

fn forge_claims(claims: &mut Value, forgery: TokenForgery) {
    match forgery {
        TokenForgery::WrongAudience => claims["aud"] = json!(crate::util::guid()),
        TokenForgery::WrongTenant => {
            claims["iss"] = json!(format!("https://sts.windows.net/{}/", crate::util::guid()));
        }
        TokenForgery::Expired => {
            let exp = claims["iat"].as_u64().unwrap_or(0).saturating_sub(3600);
            claims["exp"] = json!(exp);
            claims["nbf"] = json!(exp.saturating_sub(LIFETIME_SECS));
            claims["iat"] = claims["nbf"].clone();
        }
        TokenForgery::WrongPublisher => claims["appid"] = json!(crate::util::guid()),
        TokenForgery::UnknownKey | TokenForgery::BadSignature | TokenForgery::Missing => {}
    }
}

/// Big-endian bytes without leading zeros, as JWK wants them (RFC 7518 6.3.1).
fn minimal_be(n: &BoxedUint) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[first..].to_vec()
}

/// A compact JWS, RS256 (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 3.3).
fn sign(key: &PrivateKey, kid: &str, claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": kid, "x5t": kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// Remember `body` as the last rich body of `subscription` (for [`last_rich`]).
pub(crate) fn keep_for_replay(shared: &Shared, subscription: &str, body: &[u8]) {
    let mut guard = shared.lock();
    let st: &mut State = &mut guard;
    let live = &st.subscriptions;
    st.trust.last_rich.retain(|id, _| live.contains_key(id));
    if live.contains_key(subscription) {
        st.trust
            .last_rich
            .insert(subscription.to_owned(), body.to_vec());
    }
}

/// Sends a rich notification on subscription `id` saying that user `user` (in the
/// subscription or not) is now (`availability`, `activity`), whatever the emulator's
/// presence says, with a good token or a forged one.
pub(crate) fn send_change(
    st: &mut State,
    id: &str,
    user: &str,
    presence: (&str, &str),
    forgery: Option<TokenForgery>,
) -> Result<(), String> {
    prune(st);
    let tenant = st.tenant_id.clone();
    let sub = st
        .subscriptions
        .get(id)
        .ok_or_else(|| format!("no subscription '{id}'"))?;
    if sub.cert.is_none() {
        return Err(format!("subscription '{id}' has no resource data"));
    }
    let changed = [(
        user.to_owned(),
        (presence.0.to_owned(), presence.1.to_owned()),
    )];
    let job = crate::notify::change_job(sub, &tenant, &changed, forgery);
    sub.queue
        .send(job)
        .map_err(|_| "the delivery worker is gone".to_owned())
}

/// The last rich body sent on subscription `id`.
pub(crate) fn last_rich(st: &State, id: &str) -> Option<Vec<u8>> {
    st.trust.last_rich.get(id).cloned()
}

/// Sends `body` on subscription `id` as it is (a replay of an earlier body).
pub(crate) fn resend(st: &mut State, id: &str, body: Vec<u8>) -> Result<(), String> {
    prune(st);
    let tenant = st.tenant_id.clone();
    let sub = st
        .subscriptions
        .get(id)
        .ok_or_else(|| format!("no subscription '{id}'"))?;
    let mut job = crate::notify::change_job(sub, &tenant, &[], None);
    job.body = Some(body);
    sub.queue
        .send(job)
        .map_err(|_| "the delivery worker is gone".to_owned())
}
