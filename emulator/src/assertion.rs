//! Certificate credentials at the token endpoint: the app sends a client assertion, a JWT
//! signed with the private key of a certificate registered for it, instead of a secret.
//! Verified with `jsonwebtoken`.
//!
//! Sources:
//! - certificate credentials
//!   <https://learn.microsoft.com/entra/identity-platform/certificate-credentials>: header
//!   `alg` PS256 with `x5t#S256` (base64url SHA-256 of the certificate DER), or the older RS256
//!   with `x5t` (SHA-1); claims `aud` = the token endpoint, `iss` = `sub` = the client id,
//!   `jti`, `nbf`, `exp`; "Microsoft Entra ID doesn't currently place restrictions on the exp
//!   time".
//! - the client-credentials page
//!   <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>:
//!   `client_assertion_type` `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
//! - error codes: AADSTS700027 (invalid signature), 700021 (iss/sub), 700023 (audience) and
//!   50027 (malformed JWT) on
//!   <https://learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal>
//!   (the AADSTS reference
//!   <https://learn.microsoft.com/entra/identity-platform/reference-error-codes> lists 700027
//!   as "Client assertion failed signature validation", and the same reason under 50012; it
//!   gives 700023 to an invalid scope); the 700027 reasons ("The key was not found.") from
//!   <https://github.com/Azure/azure-sdk-for-net/issues/29007>; 700024 and its text from
//!   <https://github.com/AzureAD/microsoft-authentication-library-for-dotnet/issues/4951>;
//!   "No certificate thumbprint specified in token header" (50027) from
//!   <https://github.com/AzureAD/microsoft-authentication-library-for-dotnet/issues/124>.
//!
//! A reused `jti` is accepted unless `EmulatorOptions::reject_reused_assertions` is set:
//! MSAL Python (msal/oauth2cli/assertion.py, `create_regenerative_assertion`) sends the same
//! assertion for up to 9 minutes, so Entra evidently accepts a repeat within its lifetime.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, DecodePem};

use crate::state::State;
use crate::token::{TokenAnswer, aad_error};
use crate::util::graph_datetime;

/// `client_assertion_type` of a JWT assertion (client-credentials page).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Clock skew allowed on `nbf` and `exp`. UNVERIFIED: Entra's tolerance is not published;
/// 5 min is the default of Microsoft.IdentityModel's `TokenValidationParameters.ClockSkew`.
const SKEW: Duration = Duration::from_secs(300);

const DOCS: &str = "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .";

/// A certificate registered for an app (a key credential): what an assertion is checked with.
#[derive(Debug, Clone)]
pub(crate) struct KeyCredential {
    sha1: [u8; 20],
    sha256: [u8; 32],
    /// The RSA public key (PKCS#1 DER, the certificate's subjectPublicKey).
    public_key: Vec<u8>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl KeyCredential {
    /// Reads a PEM (or DER) X.509 certificate.
    pub(crate) fn from_certificate(cert: &[u8]) -> Result<KeyCredential, String> {
        let parsed = Certificate::from_pem(cert)
            .or_else(|_| Certificate::from_der(cert))
            .map_err(|e| format!("not an X.509 certificate (PEM or DER): {e}"))?;
        let der = x509_cert::der::Encode::to_der(&parsed).map_err(|e| e.to_string())?;
        let tbs = parsed.tbs_certificate();
        Ok(KeyCredential {
            sha1: Sha1::digest(&der).into(),
            sha256: Sha256::digest(&der).into(),
            public_key: tbs
                .subject_public_key_info()
                .subject_public_key
                .raw_bytes()
                .to_vec(),
            not_before: tbs.validity().not_before.to_system_time(),
            not_after: tbs.validity().not_after.to_system_time(),
        })
    }

    /// base64url SHA-256 of the DER: the `x5t#S256` an assertion names it by.
    pub(crate) fn x5t_s256(&self) -> String {
        b64url(&self.sha256)
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[derive(Deserialize)]
struct Claims {
    aud: Option<String>,
    iss: Option<String>,
    sub: Option<String>,
    jti: Option<String>,
    /// NumericDate: seconds, possibly with a fraction (RFC 7519 section 2; MSAL Python sends
    /// fractions).
    nbf: Option<f64>,
    exp: Option<f64>,
}

fn invalid_client(st: &State, code: u32, text: &str) -> TokenAnswer {
    aad_error(st, 401, "invalid_client", code, text)
}

fn malformed(st: &State, why: &str) -> TokenAnswer {
    invalid_client(
        st,
        50_027,
        &format!("JWT token is invalid or malformed. {why}"),
    )
}

/// Checks the client assertion of a client-credentials request for `client_id` sent to
/// `tenant`. Err is Entra's answer.
pub(crate) fn verify(
    st: &mut State,
    tenant: &str,
    client_id: &str,
    form: &HashMap<String, String>,
) -> Result<(), TokenAnswer> {
    let jwt = form.get("client_assertion").map_or("", String::as_str);
    match form.get("client_assertion_type") {
        Some(t) if t == ASSERTION_TYPE => {}
        Some(t) => {
            // UNVERIFIED: Entra's answer to another assertion type is not published.
            return Err(aad_error(
                st,
                400,
                "invalid_request",
                50_027,
                &format!("Invalid JWT token. The client_assertion_type '{t}' is not supported."),
            ));
        }
        None => {
            return Err(aad_error(
                st,
                400,
                "invalid_request",
                900_144,
                "The request body must contain the following parameter: 'client_assertion_type'.",
            ));
        }
    }
    let claims = signed_claims(st, client_id, jwt)?;
    check_claims(st, tenant, client_id, &claims)?;
    check_reuse(st, &claims)
}

/// The header's thumbprint names a registered certificate whose key verifies the signature.
fn signed_claims(st: &State, client_id: &str, jwt: &str) -> Result<Claims, TokenAnswer> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| malformed(st, &e.to_string()))?;
    if !matches!(header.alg, Algorithm::PS256 | Algorithm::RS256) {
        // UNVERIFIED: the code Entra gives another `alg` is not published.
        return Err(malformed(
            st,
            &format!("Unsupported alg '{:?}'.", header.alg),
        ));
    }
    let wanted = match (&header.x5t_s256, &header.x5t) {
        (Some(s256), _) => Thumbprint::Sha256(s256.clone()),
        (None, Some(sha1)) => Thumbprint::Sha1(sha1.clone()),
        (None, None) => {
            return Err(malformed(
                st,
                "No certificate thumbprint specified in token header.",
            ));
        }
    };
    let app = st.apps.get(&client_id.to_lowercase());
    let keys = app.map(|a| a.certificates.as_slice()).unwrap_or_default();
    let Some(key) = keys.iter().find(|k| wanted.matches(k)) else {
        return Err(invalid_client(
            st,
            700_027,
            &format!(
                "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]",
                wanted.hex()
            ),
        ));
    };
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let decoded = jsonwebtoken::decode::<Claims>(
        jwt,
        &DecodingKey::from_rsa_der(&key.public_key),
        &validation,
    );
    match decoded {
        Ok(data) => Ok(data.claims),
        Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) => {
            Err(invalid_client(
                st,
                700_027,
                &format!(
                    "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{}', Found key 'Start={}, End={}']",
                    wanted.hex(),
                    graph_datetime(key.not_before),
                    graph_datetime(key.not_after)
                ),
            ))
        }
        Err(e) => Err(malformed(st, &e.to_string())),
    }
}

/// A thumbprint as the header gives it (base64url).
enum Thumbprint {
    Sha256(String),
    Sha1(String),
}

impl Thumbprint {
    /// The digest; base64url with or without `=` padding (MSAL Python pads it).
    fn bytes(&self) -> Option<Vec<u8>> {
        let (Thumbprint::Sha256(t) | Thumbprint::Sha1(t)) = self;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.trim_end_matches('='))
            .ok()
    }

    fn matches(&self, k: &KeyCredential) -> bool {
        let digest: &[u8] = match self {
            Thumbprint::Sha256(_) => &k.sha256,
            Thumbprint::Sha1(_) => &k.sha1,
        };
        self.bytes().is_some_and(|b| b == digest)
    }

    /// Hex, as Entra quotes it in messages (undecodable: as given).
    fn hex(&self) -> String {
        let (Thumbprint::Sha256(t) | Thumbprint::Sha1(t)) = self;
        self.bytes()
            .map(|b| hex_upper(&b))
            .unwrap_or_else(|| t.chars().take(64).collect())
    }
}

fn check_claims(st: &State, tenant: &str, client_id: &str, c: &Claims) -> Result<(), TokenAnswer> {
    let names_app = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(client_id))
    };
    if !names_app(&c.iss) || !names_app(&c.sub) {
        return Err(invalid_client(
            st,
            700_021,
            &format!(
                "Client assertion application identifier doesn't match 'client_id' parameter. {DOCS}"
            ),
        ));
    }
    if !c
        .aud
        .as_deref()
        .is_some_and(|aud| audience_ok(st, tenant, aud))
    {
        return Err(invalid_client(
            st,
            700_023,
            &format!("Client assertion audience claim does not match Realm issuer. {DOCS}"),
        ));
    }
    let now = st.wall();
    let (nbf, exp) = (numeric_date(c.nbf), numeric_date(c.exp));
    if c.exp.is_none() || exp + SKEW < now || nbf > now + SKEW {
        return Err(invalid_client(
            st,
            700_024,
            &format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. {DOCS}",
                graph_datetime(now),
                graph_datetime(nbf),
                graph_datetime(exp)
            ),
        ));
    }
    Ok(())
}

/// A NumericDate as a time; absent, negative or not a number: the epoch.
fn numeric_date(secs: Option<f64>) -> SystemTime {
    let secs = secs.filter(|s| s.is_finite() && *s >= 0.0).unwrap_or(0.0);
    UNIX_EPOCH + Duration::from_secs_f64(secs.min(1e11))
}

/// `aud` must be this tenant's token endpoint (v2 or v1) or its v2 issuer. The host is not
/// compared: the emulator cannot know every name it is reached by (a TLS front, a container
/// name), and MSAL takes it from the OpenID configuration the client was shown.
fn audience_ok(st: &State, tenant: &str, aud: &str) -> bool {
    let Ok(url) = url::Url::parse(aud.trim_end_matches('/')) else {
        return false;
    };
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    matches!(
        segments.as_slice(),
        [t, "oauth2", "v2.0", "token"] | [t, "oauth2", "token"] | [t, "v2.0"]
            if crate::token::tenant_known(st, t) && crate::token::tenant_known(st, tenant)
    )
}

/// With `reject_reused_assertions`: each `jti` once while its assertion is valid.
/// UNVERIFIED: Entra's code for a replay is not published (see the module doc); AADSTS50013
/// ("InvalidAssertion", AADSTS reference) is used.
fn check_reuse(st: &mut State, c: &Claims) -> Result<(), TokenAnswer> {
    if !st.opts.reject_reused_assertions {
        return Ok(());
    }
    let now = st.wall();
    st.used_assertions.retain(|_, until| *until > now);
    let Some(jti) = c.jti.clone().filter(|j| !j.is_empty()) else {
        return Err(malformed(st, "The client assertion has no 'jti' claim."));
    };
    if st.used_assertions.contains_key(&jti) {
        let shown: String = jti.chars().take(64).collect();
        return Err(invalid_client(
            st,
            50_013,
            &format!(
                "Assertion is invalid: the client assertion with jti '{shown}' was already used."
            ),
        ));
    }
    // Kept until the assertion expires (at most a day: a far `exp` must not pin memory).
    let exp = numeric_date(c.exp);
    let until = exp.min(now + Duration::from_secs(86_400)) + SKEW;
    st.used_assertions.insert(jti, until);
    Ok(())
}
