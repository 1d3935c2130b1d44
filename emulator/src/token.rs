//! Entra token endpoint (client credentials, v2.0) and its OpenID configuration. Client
//! assertions (certificate credentials) are checked in `assertion.rs`. Sources:
//! the client-credentials page
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//! and the AADSTS page
//! <https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>.

use std::collections::HashMap;

use base64::Engine;
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};

use crate::state::State;
use crate::util::{aad_timestamp, guid};

/// Resource ids that mean Microsoft Graph in a `.default` scope.
pub(crate) const GRAPH_RESOURCES: &[&str] = &[
    "https://graph.microsoft.com",
    "00000003-0000-0000-c000-000000000000",
];

/// A token endpoint answer: status, JSON body, and the app it was for (for the log).
pub(crate) struct TokenAnswer {
    pub status: u16,
    pub body: Value,
    pub client_id: Option<String>,
}

/// An Entra error body (both pages above): `error`, `error_description` with AADSTS code, trace
/// and correlation ids and timestamp, `error_codes`, `timestamp`, `trace_id`, `correlation_id`,
/// `error_uri`.
pub(crate) fn aad_error(
    st: &State,
    status: u16,
    error: &str,
    code: u32,
    text: &str,
) -> TokenAnswer {
    let (trace, corr, ts) = (guid(), guid(), aad_timestamp(st.wall()));
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} Timestamp: {ts}"),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    TokenAnswer {
        status,
        body,
        client_id: None,
    }
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

/// Whether `tenant` names this tenant (GUID or a domain name: client-credentials page).
pub(crate) fn tenant_known(st: &State, tenant: &str) -> bool {
    st.tenant_id.eq_ignore_ascii_case(tenant)
        || st.domains.iter().any(|d| d.eq_ignore_ascii_case(tenant))
}

/// AADSTS90002 (AADSTS page; <https://github.com/vippsas/vipps-ecom-api/issues/183>);
/// `invalid_request` is the older token-endpoint form (which one the v2 endpoint sends today is
/// UNVERIFIED).
pub(crate) fn unknown_tenant(st: &State, tenant: &str) -> TokenAnswer {
    aad_error(
        st,
        400,
        "invalid_request",
        90_002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        ),
    )
}

/// `client_id:secret` from HTTP Basic auth (RFC 6749 2.3.1, both form-url-encoded; accepted
/// per the client-credentials page).
fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let (scheme, b64) = header?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((dec(id), dec(secret)))
}

/// Checks the scope: every scope `{resource}/.default`, one resource, and that resource is
/// Graph (both pages above).
fn check_scope(st: &State, scope: &str, tenant: &str) -> Result<(), TokenAnswer> {
    let mut resources = Vec::new();
    for s in scope.split_whitespace() {
        let Some(res) = s.strip_suffix("/.default") else {
            return Err(aad_error(
                st,
                400,
                "invalid_scope",
                70_011,
                &format!(
                    "The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
                ),
            ));
        };
        resources.push(res.trim_end_matches('/'));
    }
    resources.dedup();
    if resources.len() != 1 {
        return Err(aad_error(
            st,
            400,
            "invalid_scope",
            70_011,
            &format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid. Scopes for several resources cannot be requested together."
            ),
        ));
    }
    graph_resource(st, tenant, resources[0])
}

/// A scope's resource must be Graph (or this emulator standing in for it); otherwise Entra's
/// AADSTS500011 answer. Shared by the app and the delegated grants.
pub(crate) fn graph_resource(st: &State, tenant: &str, resource: &str) -> Result<(), TokenAnswer> {
    let is_graph = GRAPH_RESOURCES
        .iter()
        .chain(std::iter::once(&st.self_url.as_str()))
        .any(|g| g.eq_ignore_ascii_case(resource));
    if is_graph {
        return Ok(());
    }
    Err(aad_error(
        st,
        400,
        "invalid_resource",
        500_011,
        &format!(
            "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
        ),
    ))
}

/// POST /{tenant}/oauth2/v2.0/token with a form body (client-credentials page).
pub(crate) fn token(
    st: &mut State,
    tenant: &str,
    authorization: Option<&str>,
    form: &HashMap<String, String>,
) -> TokenAnswer {
    match try_token(st, tenant, authorization, form) {
        Ok(a) | Err(a) => a,
    }
}

fn try_token(
    st: &mut State,
    tenant: &str,
    authorization: Option<&str>,
    form: &HashMap<String, String>,
) -> Result<TokenAnswer, TokenAnswer> {
    if !tenant_known(st, tenant) {
        return Err(unknown_tenant(st, tenant));
    }
    let grant = form
        .get("grant_type")
        .ok_or_else(|| missing(st, "grant_type"))?;
    let delegated = grant == crate::delegated::DEVICE_GRANT || grant == "refresh_token";
    if !delegated && grant != "client_credentials" {
        return Err(aad_error(
            st,
            400,
            "unsupported_grant_type",
            70_003,
            &format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let basic = basic_credentials(authorization);
    let client_id = basic
        .as_ref()
        .map(|(c, _)| c.clone())
        .or_else(|| form.get("client_id").cloned());
    let client_id = client_id.ok_or_else(|| missing(st, "client_id"))?;
    if delegated {
        let secret = basic
            .as_ref()
            .map(|(_, s)| s.clone())
            .or_else(|| form.get("client_secret").cloned());
        return if grant == "refresh_token" {
            crate::delegated::redeem_refresh_token(st, tenant, &client_id, secret.as_ref(), form)
        } else {
            crate::delegated::redeem_device_code(st, tenant, &client_id, secret.as_ref(), form)
        };
    }
    let Some(app) = st.apps.get(&client_id.to_lowercase()).cloned() else {
        let mut a = aad_error(
            st,
            400,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        );
        a.client_id = Some(client_id);
        return Err(a);
    };
    let scope = form.get("scope").ok_or_else(|| missing(st, "scope"))?;
    check_scope(st, scope, tenant)?;
    let secret = basic
        .map(|(_, s)| s)
        .or_else(|| form.get("client_secret").cloned());
    let with_id = |mut a: TokenAnswer| {
        a.client_id = Some(client_id.clone());
        a
    };
    if form.contains_key("client_assertion") {
        crate::assertion::verify(st, tenant, &client_id, form).map_err(with_id)?;
        return Ok(issue(st, client_id));
    }
    let Some(secret) = secret else {
        return Err(with_id(aad_error(
            st,
            401,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )));
    };
    if secret != app.secret {
        return Err(with_id(aad_error(
            st,
            401,
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )));
    }
    Ok(issue(st, client_id))
}

/// The app token. Issued even without roles: no admin consent means no `roles` claim, and
/// Graph answers 403 (client-credentials page).
fn issue(st: &mut State, client_id: String) -> TokenAnswer {
    let (token, lifetime) = st.issue_token(&client_id.to_lowercase());
    let secs = lifetime.as_secs();
    // `ext_expires_in` is not on the official page but is seen in real responses and in SDK
    // and tool docs.
    let body = json!({"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token});
    TokenAnswer {
        status: 200,
        body,
        client_id: Some(client_id),
    }
}

/// GET /{tenant}/v2.0/.well-known/openid-configuration (what MSAL reads first).
pub(crate) fn openid_configuration(base: &str, tenant_id: &str) -> Value {
    let b = format!("{base}/{tenant_id}");
    json!({
        "issuer": format!("https://login.microsoftonline.com/{tenant_id}/v2.0"),
        "authorization_endpoint": format!("{b}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{b}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{b}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/{tenant_id}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EU",
    })
}
