//! The tokens a delegated grant issues (access, refresh, id) and their revocation; see the
//! parent module for the sources.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Value, json};

use super::{RefreshGrant, Scopes};
use crate::state::State;
use crate::token::TokenAnswer;
use crate::util::{guid, random_string};

fn b64url(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// An unsigned JWT-shaped string (`alg: none`): clients must treat Graph tokens as opaque
/// (client-credentials page); the claims only help humans and tests read them.
fn jwt(claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "none"});
    format!("{}.{}.", b64url(&header), b64url(claims))
}

/// Issues access (+ refresh, + id) tokens for `user` and answers the token response
/// (device-code page).
pub(super) fn issue(
    st: &mut State,
    tenant: &str,
    client_id: &str,
    user: &str,
    request: &Scopes,
    form: &HashMap<String, String>,
) -> TokenAnswer {
    let granted = request.granted();
    let now_unix = st
        .wall()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let lifetime = st.opts.token_lifetime.as_secs();
    let (upn, name) = st
        .directory
        .get(user)
        .map(|u| (u.user_principal_name.clone(), u.display_name.clone()))
        .unwrap_or_default();
    let tid = st.tenant_id.clone();
    let claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{tid}/"),
        "iat": now_unix, "nbf": now_unix, "exp": now_unix + lifetime,
        "appid": client_id, "tid": tid, "oid": user, "upn": upn, "name": name,
        "scp": granted.join(" "),
        "uti": random_string(22),
    });
    let access = format!("{}{}", jwt(&claims), random_string(43));
    let mut scopes = granted.clone();
    if request.has("offline_access") {
        scopes.push("offline_access".into());
    }
    st.store_token(
        access.clone(),
        &client_id.to_lowercase(),
        Some(user.to_owned()),
        scopes,
    );
    // `scope` lists the Graph scopes plus the OIDC ones requested (the device-code example shows
    // "User.Read profile openid email"); offline_access listed when requested (UNVERIFIED).
    let mut scope_list = granted.clone();
    for o in ["profile", "openid", "email", "offline_access"] {
        if request.has(o) || (o == "email" && request.has("openid")) {
            scope_list.push(o.to_owned());
        }
    }
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope_list.join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access,
    });
    if request.has("offline_access") {
        let rt = format!("emu-rt.{}", random_string(120));
        let generation = st.token_generation.get(user).copied().unwrap_or(0);
        let last_used = st.now();
        st.refresh_tokens.insert(
            rt.clone(),
            RefreshGrant {
                client_id: client_id.to_lowercase(),
                user: user.to_owned(),
                request: request.clone(),
                generation,
                last_used,
            },
        );
        body["refresh_token"] = json!(rt);
    }
    if request.has("openid") {
        let id_claims = json!({
            "aud": client_id,
            "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
            "iat": now_unix, "nbf": now_unix, "exp": now_unix + lifetime,
            "name": name, "oid": user, "preferred_username": upn, "sub": guid(),
            "tid": tid, "ver": "2.0",
        });
        body["id_token"] = json!(jwt(&id_claims));
    }
    if form.get("client_info").is_some_and(|v| v == "1") {
        body["client_info"] = json!(b64url(&json!({"uid": user, "utid": tid})));
    }
    let _ = tenant;
    TokenAnswer {
        status: 200,
        body,
        client_id: Some(client_id.to_owned()),
    }
}

/// Revokes every refresh token of `user` issued so far (revocation, see the module doc);
/// returns how many were live.
pub(crate) fn revoke(st: &mut State, user: &str) -> usize {
    let g = st.token_generation.entry(user.to_owned()).or_insert(0);
    let old = *g;
    *g += 1;
    // Kept (not removed) so that they answer AADSTS50173 rather than "unknown".
    st.refresh_tokens
        .values()
        .filter(|r| r.user == user && r.generation <= old)
        .count()
}
