//! Checking the `validationTokens` of rich notifications, the proof that a batch comes from
//! Microsoft Graph and is meant for this app
//! (<https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>, section
//! "Validating the authenticity of notifications"). Each token is a JWT that must be:
//!
//! - signed (RS256) by a key of the Microsoft identity platform's key set ([`super::jwks`]);
//! - not expired (and not before its `nbf`), with 60 s of leeway for clock skew;
//! - for this app: `aud` = `azure.client_id`;
//! - from this tenant: `iss` = `https://sts.windows.net/{tenant id}/`;
//! - issued to Graph's change-notification publisher: `azp` or `appid` =
//!   [`PUBLISHER_APP`].
//!
//! The claims are checked by `jsonwebtoken` (signature, `exp`, `nbf`, `aud`, `iss`); only the
//! publisher claim, which no library knows, is compared here. `jsonwebtoken` reads the system
//! clock for `exp` and `nbf` (it takes no clock); Microsoft mints the tokens on real time too.
//!
//! A batch is trusted only when every token in it passes; a batch with encrypted content and
//! no token is not trusted either.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::jwks::{Jwks, Lookup};
use super::{GraphError, join};

/// The app id of Graph's change-notification publisher (the rich notifications page above).
pub const PUBLISHER_APP: &str = "0bf30f3b-4a52-48df-9a82-234910c4a086";
/// Tokens per batch: one per app and tenant pair, so a handful at most.
const MAX_TOKENS: usize = 16;
/// Longest token taken (Graph's are about 1,500 characters).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// A batch's check ends within this (a key fetch included): Graph wants an answer in 3 s.
const CHECK_BUDGET: Duration = Duration::from_millis(2500);

/// Why a token is not trusted. Never holds the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a rich notification batch without validationTokens")]
    Missing,
    #[error("more than {MAX_TOKENS} validationTokens")]
    TooMany,
    #[error("a validation token over {MAX_TOKEN_LEN} characters")]
    TooLong,
    #[error("not a JWT")]
    Malformed,
    #[error("signed with {0}, not RS256")]
    Algorithm(String),
    #[error("no key id (kid) in the token")]
    NoKeyId,
    #[error("signed with key {0}, which Microsoft does not publish")]
    UnknownKey(String),
    #[error("bad signature")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not valid yet (nbf)")]
    NotYetValid,
    #[error("for another app (aud)")]
    Audience,
    #[error("from another issuer or tenant (iss)")]
    Issuer,
    #[error("not issued to Graph's notification publisher (azp/appid)")]
    Publisher,
    #[error("claims unreadable: {0}")]
    Claims(String),
}

/// Why a batch is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Distrust {
    /// A token failed: the batch is refused (403).
    #[error("validation token refused: {0}")]
    Refused(TokenError),
    /// The keys (or the tenant's id) cannot be had right now: Graph is to deliver it again
    /// later (503).
    #[error("validation tokens cannot be checked now: {0}")]
    Later(&'static str),
}

/// What a token is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `azure.client_id`.
    pub audience: String,
    /// `https://sts.windows.net/{tenant id}/`.
    pub issuer: String,
}

/// The checker the webhook holds: what to expect and the key set.
pub struct Trust {
    audience: String,
    /// `azure.tenant_id`, when it is a domain name rather than the tenant's id.
    tenant_domain: Option<String>,
    issuer: RwLock<Option<String>>,
    jwks: Arc<Jwks>,
}

#[derive(Deserialize)]
struct Claims {
    azp: Option<String>,
    appid: Option<String>,
}

/// `https://sts.windows.net/{tenant}/` for a tenant id (a GUID); `None` for a domain name.
pub fn issuer_for(tenant_id: &str) -> Option<String> {
    let id = uuid::Uuid::parse_str(tenant_id).ok()?;
    Some(format!("https://sts.windows.net/{}/", id.hyphenated()))
}

impl Trust {
    /// For the app `client_id` of tenant `tenant_id` (its id, or a domain name, resolved by
    /// [`Trust::resolve_tenant`]).
    pub fn new(client_id: &str, tenant_id: &str, jwks: Arc<Jwks>) -> Trust {
        let issuer = issuer_for(tenant_id);
        Trust {
            audience: client_id.to_owned(),
            tenant_domain: issuer.is_none().then(|| tenant_id.to_owned()),
            issuer: RwLock::new(issuer),
            jwks,
        }
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    fn expected(&self) -> Option<Expected> {
        let issuer = self
            .issuer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        Some(Expected {
            audience: self.audience.clone(),
            issuer,
        })
    }

    /// When `azure.tenant_id` is a domain name: the tenant's id, from its OpenID configuration
    /// (`{login_url}/{domain}/v2.0/.well-known/openid-configuration`, whose `issuer` is
    /// `https://login.microsoftonline.com/{tenant id}/v2.0`). Nothing to do otherwise.
    pub async fn resolve_tenant(&self, login_url: &Url) -> Result<(), GraphError> {
        let Some(domain) = &self.tenant_domain else {
            return Ok(());
        };
        if self.expected().is_some() {
            return Ok(());
        }
        let url = join(
            login_url,
            &[domain, "v2.0", ".well-known", "openid-configuration"],
        )?;
        let bad = |why: String| GraphError::InvalidResponse(format!("{url}: {why}"));
        let config: serde_json::Value = self
            .jwks
            .http()
            .get(url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| bad(super::error::error_chain(&e)))?
            .json()
            .await
            .map_err(|e| bad(e.to_string()))?;
        let tenant = config["issuer"]
            .as_str()
            .and_then(|i| i.split('/').find_map(issuer_for))
            .ok_or_else(|| bad("no tenant id in its issuer".into()))?;
        *self
            .issuer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tenant);
        Ok(())
    }

    /// Check a batch's tokens; `rich`: the batch holds encrypted content. `now` is the
    /// monotonic clock (for the key fetches' rate limit).
    pub async fn check(&self, tokens: &[String], rich: bool, now: Instant) -> Result<(), Distrust> {
        if tokens.is_empty() {
            return if rich {
                Err(Distrust::Refused(TokenError::Missing))
            } else {
                Ok(())
            };
        }
        if tokens.len() > MAX_TOKENS {
            return Err(Distrust::Refused(TokenError::TooMany));
        }
        let Some(expected) = self.expected() else {
            return Err(Distrust::Later("the tenant id is not known yet"));
        };
        let all = async {
            for token in tokens {
                let key = self.key_for(token, now).await?;
                check_token(token, &key, &expected).map_err(Distrust::Refused)?;
            }
            Ok(())
        };
        tokio::time::timeout(CHECK_BUDGET, all)
            .await
            .unwrap_or(Err(Distrust::Later("the signing keys took too long")))
    }

    async fn key_for(&self, token: &str, now: Instant) -> Result<DecodingKey, Distrust> {
        let kid = key_id(token).map_err(Distrust::Refused)?;
        match self.jwks.key(&kid, now).await {
            Lookup::Found(key) => Ok(key),
            Lookup::Unknown => Err(Distrust::Refused(TokenError::UnknownKey(truncate(&kid)))),
            Lookup::Later => Err(Distrust::Later("the signing keys cannot be fetched now")),
        }
    }
}

/// The key id a token names, after the checks that need no key (length, shape, algorithm).
pub fn key_id(token: &str) -> Result<String, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::RS256 {
        return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
    }
    header.kid.ok_or(TokenError::NoKeyId)
}

/// One token against its key: signature and claims.
pub fn check_token(token: &str, key: &DecodingKey, expected: &Expected) -> Result<(), TokenError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&[&expected.audience]);
    validation.set_issuer(&[&expected.issuer]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let claims = decode::<Claims>(token, key, &validation)
        .map_err(|e| token_error(e.kind()))?
        .claims;
    let publisher =
        |c: &Option<String>| c.as_deref().map(|v| v.eq_ignore_ascii_case(PUBLISHER_APP));
    match (publisher(&claims.azp), publisher(&claims.appid)) {
        (Some(true), None | Some(true)) | (None, Some(true)) => Ok(()),
        _ => Err(TokenError::Publisher),
    }
}

fn token_error(kind: &jsonwebtoken::errors::ErrorKind) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::InvalidSignature => TokenError::Signature,
        K::ExpiredSignature => TokenError::Expired,
        K::ImmatureSignature => TokenError::NotYetValid,
        K::InvalidAudience => TokenError::Audience,
        K::InvalidIssuer => TokenError::Issuer,
        K::InvalidAlgorithm => TokenError::Algorithm("another algorithm".into()),
        K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) => TokenError::Claims(truncate(c)),
        K::InvalidToken | K::Base64(_) | K::Utf8(_) => TokenError::Malformed,
        other => TokenError::Claims(truncate(&format!("{other:?}"))),
    }
}

/// An attacker's string, cut for a log line.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
#[path = "validation_tokens_tests.rs"]
mod tests;
