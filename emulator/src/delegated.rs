//! Delegated tokens: the device authorization grant and the refresh-token grant.
//!
//! Sources, cited below by name:
//! - device-code page:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>
//! - auth-code page:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow>
//! - AADSTS page:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>
//! - client-credentials page:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//! - revocation: the AADSTS50173 error page <https://login.microsoftonline.com/error?code=50173>
//!   and `Revoke-EntraUserAllRefreshToken`, which resets refreshTokensValidFromDateTime:
//!   <https://learn.microsoft.com/en-us/powershell/module/microsoft.entra.authentication/revoke-entrauserallrefreshtoken>
//! - inactivity: AADSTS700082 and the 90-day MaxInactiveTime
//!   (<https://learn.microsoft.com/en-us/answers/questions/1158831>,
//!   <https://nango.dev/blog/microsoft-oauth-refresh-token-invalid-grant>)
//! - a real `authorization_pending` answer:
//!   <https://learn.microsoft.com/en-us/answers/questions/981553>
//! - AADSTS9002313 for a malformed grant:
//!   <https://learn.microsoft.com/en-us/answers/questions/1291600>
//!
//! Modelled:
//! - `POST /{tenant}/oauth2/v2.0/devicecode` (`client_id`, `scope`) answers `device_code`,
//!   `user_code`, `verification_uri`, `expires_in` (900: "the user has 15 minutes"),
//!   `interval` ([`crate::EmulatorOptions::device_code_interval`], Entra: 5) and `message`
//!   (device-code page); `verification_uri_complete` is not sent ("not included or
//!   supported", same page).
//! - the token endpoint's device-code grant answers 400 `authorization_pending` (AADSTS70016:
//!   AADSTS page, a real `authorization_pending` answer) until a test approves the code, then
//!   the tokens once; a declined code answers `authorization_declined`, an unknown one
//!   `bad_verification_code`, an old one `expired_token` (the four errors of the device-code
//!   page).
//! - success: `token_type` Bearer, `scope`, `expires_in`, `access_token`, `refresh_token` only
//!   when `offline_access` was requested, `id_token` only when `openid` was (device-code page);
//!   `client_info` when the client sends `client_info=1` (MSAL does; UNVERIFIED: not on the
//!   protocol pages).
//! - the refresh-token grant returns a new access token and a new refresh token; the old
//!   refresh token stays valid ("Refresh tokens aren't revoked when used to acquire new access
//!   tokens. You're expected to discard the old refresh token.", auth-code page).
//! - `revoke_refresh_tokens(upn)` works like resetting the user's
//!   refreshTokensValidFromDateTime (revocation): every refresh token issued before it answers
//!   `invalid_grant` AADSTS50173. Refresh tokens unused for 90 days answer AADSTS700082
//!   ("expired due to inactivity": inactivity). Access tokens already issued stay valid until
//!   they expire (revocation).
//! - consent: the user consents to whatever is requested at approval; the app always also holds
//!   `User.Read` (the default permission of an app registration), and `{graph}/.default` means
//!   `User.Read Presence.Read.All` (UNVERIFIED simplification of Entra's consent model).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::json;

use crate::state::State;
use crate::token::{TokenAnswer, aad_error, graph_resource};
use crate::util::random_string;

/// The device-code grant type (device-code page).
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Lifetime of a device code: 15 minutes (device-code page).
const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(900);
/// Where the user enters the code; Entra's (and the brief's) value.
const VERIFICATION_URI: &str = "https://microsoft.com/devicelogin";
/// Refresh tokens expire after 90 days without use (MaxInactiveTime default: inactivity).
const REFRESH_INACTIVE: Duration = Duration::from_secs(90 * 86_400);
/// OpenID Connect scopes: not Graph permissions.
const OIDC: &[&str] = &["openid", "profile", "email", "offline_access"];
/// What `{graph}/.default` grants a delegated token here (UNVERIFIED).
const DEFAULT_DELEGATED: &[&str] = &["User.Read", "Presence.Read.All"];

/// Where a device code stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    /// Approved by this user (canonical object id).
    Approved(String),
    Declined,
    /// Tokens were issued; the code cannot be redeemed again (UNVERIFIED: Entra then answers
    /// `invalid_grant`; the emulator answers `bad_verification_code`).
    Redeemed,
}

/// One device authorization request.
#[derive(Debug, Clone)]
pub(crate) struct DeviceCode {
    pub user_code: String,
    pub client_id: String,
    pub request: Scopes,
    pub expires_at: Instant,
    pub status: DeviceStatus,
}

/// One refresh token.
#[derive(Debug, Clone)]
pub(crate) struct RefreshGrant {
    pub client_id: String,
    pub user: String,
    pub request: Scopes,
    /// The user's token generation when issued; revocation bumps it.
    pub generation: u64,
    pub last_used: Instant,
}

/// A parsed delegated `scope` parameter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scopes {
    /// Graph permissions, short names (`Presence.Read.All`).
    pub graph: Vec<String>,
    /// OIDC scopes requested (`openid`, `profile`, `email`, `offline_access`).
    pub oidc: Vec<String>,
}

impl Scopes {
    fn has(&self, s: &str) -> bool {
        self.oidc.iter().any(|o| o == s)
    }

    /// Granted Graph scopes: the requested ones plus `User.Read` (see module doc).
    fn granted(&self) -> Vec<String> {
        let mut out = self.graph.clone();
        if !out.iter().any(|s| s.eq_ignore_ascii_case("User.Read")) {
            out.push("User.Read".into());
        }
        out
    }
}

/// Parses a delegated scope list: `offline_access`, `openid`, `profile`, `email`, Graph
/// permissions bare (`Presence.Read.All`, Graph is the default resource) or qualified
/// (`https://graph.microsoft.com/Presence.Read.All`), or `{graph}/.default`. Another resource
/// gives AADSTS500011 and several resources AADSTS70011 as for client credentials
/// (client-credentials and AADSTS pages).
fn parse_scopes(st: &State, scope: &str, tenant: &str) -> Result<Scopes, TokenAnswer> {
    let mut out = Scopes::default();
    for s in scope.split_whitespace() {
        if let Some(o) = OIDC.iter().find(|o| o.eq_ignore_ascii_case(s)) {
            out.oidc.push((*o).to_owned());
            continue;
        }
        let (resource, perm) = match s.rsplit_once('/') {
            Some((r, p)) => (Some(r.trim_end_matches('/')), p),
            None => (None, s),
        };
        if let Some(r) = resource {
            graph_resource(st, tenant, r)?;
        }
        if perm.is_empty() {
            return Err(invalid_scope(st, scope));
        }
        if perm == ".default" {
            out.graph
                .extend(DEFAULT_DELEGATED.iter().map(|s| (*s).to_owned()));
        } else {
            out.graph.push(perm.to_owned());
        }
    }
    out.graph.dedup();
    if out.graph.is_empty() && out.oidc.iter().all(|o| o == "offline_access") {
        return Err(invalid_scope(st, scope));
    }
    Ok(out)
}

fn invalid_scope(st: &State, scope: &str) -> TokenAnswer {
    aad_error(
        st,
        400,
        "invalid_scope",
        70_011,
        &format!(
            "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
        ),
    )
}

fn missing(st: &State, param: &str) -> TokenAnswer {
    aad_error(
        st,
        400,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{param}'."),
    )
}

fn unknown_app(st: &State, client_id: &str, tenant: &str) -> TokenAnswer {
    let mut a = aad_error(
        st,
        400,
        "unauthorized_client",
        700_016,
        &format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        ),
    );
    a.client_id = Some(client_id.to_owned());
    a
}

/// A user code as Entra shows them: 9 upper-case letters and digits (Entra's are 8–9).
fn user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..9)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// POST /{tenant}/oauth2/v2.0/devicecode (device-code page).
pub(crate) fn device_code(
    st: &mut State,
    tenant: &str,
    form: &HashMap<String, String>,
) -> TokenAnswer {
    match try_device_code(st, tenant, form) {
        Ok(a) | Err(a) => a,
    }
}

fn try_device_code(
    st: &mut State,
    tenant: &str,
    form: &HashMap<String, String>,
) -> Result<TokenAnswer, TokenAnswer> {
    if !crate::token::tenant_known(st, tenant) {
        return Err(crate::token::unknown_tenant(st, tenant));
    }
    let client_id = form
        .get("client_id")
        .ok_or_else(|| missing(st, "client_id"))?
        .clone();
    if !st.apps.contains_key(&client_id.to_lowercase()) {
        return Err(unknown_app(st, &client_id, tenant));
    }
    let scope = form.get("scope").ok_or_else(|| missing(st, "scope"))?;
    let request = parse_scopes(st, scope, tenant)?;
    let now = st.now();
    st.device_codes.retain(|_, d| d.expires_at > now);
    let device = random_string(120);
    let code = user_code();
    st.device_codes.insert(
        device.clone(),
        DeviceCode {
            user_code: code.clone(),
            client_id: client_id.to_lowercase(),
            request,
            expires_at: now + DEVICE_CODE_LIFETIME,
            status: DeviceStatus::Pending,
        },
    );
    let body = json!({
        "user_code": code,
        "device_code": device,
        "verification_uri": VERIFICATION_URI,
        "expires_in": DEVICE_CODE_LIFETIME.as_secs(),
        "interval": st.opts.device_code_interval,
        "message": format!("To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code {code} to authenticate."),
    });
    Ok(TokenAnswer {
        status: 200,
        body,
        client_id: Some(client_id),
    })
}

/// Approves (`Some(user id)`) or declines (`None`) the pending device code with `user_code`.
/// False when no pending, unexpired code has that user code.
pub(crate) fn decide(st: &mut State, user_code: &str, user: Option<String>) -> bool {
    let now = st.now();
    let wanted = user_code.replace('-', "");
    let Some(d) = st.device_codes.values_mut().find(|d| {
        d.user_code.eq_ignore_ascii_case(&wanted)
            && d.status == DeviceStatus::Pending
            && d.expires_at > now
    }) else {
        return false;
    };
    d.status = match user {
        Some(u) => DeviceStatus::Approved(u),
        None => DeviceStatus::Declined,
    };
    true
}

/// Checks an optional client secret: public clients send none; if one is sent it must be
/// right (AADSTS7000215, AADSTS page).
fn check_optional_secret(
    st: &State,
    client_id: &str,
    secret: Option<&String>,
) -> Result<(), TokenAnswer> {
    let Some(secret) = secret else {
        return Ok(());
    };
    let right = st
        .apps
        .get(&client_id.to_lowercase())
        .is_some_and(|a| &a.secret == secret);
    if right {
        return Ok(());
    }
    let mut a = aad_error(
        st,
        401,
        "invalid_client",
        7_000_215,
        &format!(
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
        ),
    );
    a.client_id = Some(client_id.to_owned());
    Err(a)
}

/// The device-code grant on the token endpoint (device-code page).
pub(crate) fn redeem_device_code(
    st: &mut State,
    tenant: &str,
    client_id: &str,
    secret: Option<&String>,
    form: &HashMap<String, String>,
) -> Result<TokenAnswer, TokenAnswer> {
    if !st.apps.contains_key(&client_id.to_lowercase()) {
        return Err(unknown_app(st, client_id, tenant));
    }
    check_optional_secret(st, client_id, secret)?;
    let code = form
        .get("device_code")
        .ok_or_else(|| missing(st, "device_code"))?;
    let now = st.now();
    let found = st
        .device_codes
        .get(code)
        .filter(|d| d.client_id.eq_ignore_ascii_case(client_id))
        .cloned();
    let Some(d) = found else {
        // Device-code page: "The device_code sent to the /token endpoint wasn't recognized.";
        // AADSTS70018 BadVerificationCode (AADSTS page; the code number for this case is
        // UNVERIFIED).
        return Err(aad_error(
            st,
            400,
            "bad_verification_code",
            70_018,
            "Invalid verification code. The device_code sent to the token endpoint wasn't recognized.",
        ));
    };
    if d.expires_at <= now {
        // AADSTS70019 CodeExpired (AADSTS page).
        return Err(aad_error(
            st,
            400,
            "expired_token",
            70_019,
            "Verification code expired. Have the user retry the sign-in.",
        ));
    }
    let user = match d.status {
        DeviceStatus::Pending => {
            // Wording of a real answer (a real `authorization_pending` answer, see module doc).
            return Err(aad_error(
                st,
                400,
                "authorization_pending",
                70_016,
                "The provided request has not yet been authorized by the user. The user must input their code.",
            ));
        }
        DeviceStatus::Declined => {
            // The device-code page names the error; the AADSTS number is UNVERIFIED (70017 is
            // the gap between 70016 AuthorizationPending and 70018 BadVerificationCode on the
            // AADSTS page).
            return Err(aad_error(
                st,
                400,
                "authorization_declined",
                70_017,
                "OAuth 2.0 device flow error. The end user denied the authorization request.",
            ));
        }
        DeviceStatus::Redeemed => {
            return Err(aad_error(
                st,
                400,
                "bad_verification_code",
                70_018,
                "Invalid verification code. The device_code was already redeemed.",
            ));
        }
        DeviceStatus::Approved(ref u) => u.clone(),
    };
    if let Some(x) = st.device_codes.get_mut(code) {
        x.status = DeviceStatus::Redeemed;
    }
    Ok(issue(st, tenant, client_id, &user, &d.request, form))
}

/// The refresh-token grant (auth-code page).
pub(crate) fn redeem_refresh_token(
    st: &mut State,
    tenant: &str,
    client_id: &str,
    secret: Option<&String>,
    form: &HashMap<String, String>,
) -> Result<TokenAnswer, TokenAnswer> {
    if !st.apps.contains_key(&client_id.to_lowercase()) {
        return Err(unknown_app(st, client_id, tenant));
    }
    check_optional_secret(st, client_id, secret)?;
    let rt = form
        .get("refresh_token")
        .ok_or_else(|| missing(st, "refresh_token"))?;
    let now = st.now();
    let Some(g) = st
        .refresh_tokens
        .get(rt)
        .filter(|g| g.client_id.eq_ignore_ascii_case(client_id))
        .cloned()
    else {
        // An unknown or foreign refresh token: AADSTS9002313 as seen for malformed grants (see
        // the module doc).
        return Err(aad_error(
            st,
            400,
            "invalid_grant",
            9_002_313,
            "Invalid request. Request is malformed or invalid.",
        ));
    };
    let generation = st.token_generation.get(&g.user).copied().unwrap_or(0);
    if g.generation < generation {
        // Wording of the AADSTS50173 error page (revocation, see the module doc).
        return Err(aad_error(
            st,
            400,
            "invalid_grant",
            50_173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. Either an admin or a user revoked the tokens for this user, causing subsequent token refreshes to fail and require reauthentication.",
        ));
    }
    if now.saturating_duration_since(g.last_used) >= REFRESH_INACTIVE {
        return Err(aad_error(
            st,
            400,
            "invalid_grant",
            700_082,
            "The refresh token has expired due to inactivity. The token was issued and was inactive for 90.00:00:00.",
        ));
    }
    if let Some(x) = st.refresh_tokens.get_mut(rt) {
        x.last_used = now;
    }
    // A narrower scope may be asked for; the emulator keeps the original request (Entra: the
    // refresh token is valid for every consented permission, auth-code page).
    let request = match form.get("scope") {
        Some(s) => {
            let mut r = parse_scopes(st, s, tenant)?;
            if !r.has("offline_access") {
                r.oidc.push("offline_access".into());
            }
            r
        }
        None => g.request.clone(),
    };
    Ok(issue(st, tenant, client_id, &g.user, &request, form))
}

#[path = "delegated_tokens.rs"]
mod tokens;
use tokens::issue;
pub(crate) use tokens::revoke;
