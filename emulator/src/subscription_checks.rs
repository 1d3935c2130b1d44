//! What `POST /v1.0/subscriptions` checks before a subscription is made, and the error answers
//! of the subscription endpoints. The sources are those of [`crate::subscriptions`].

use std::time::SystemTime;

use base64::Engine;
use rsa::PublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};
use x509_cert::der::{Decode, Encode};

use crate::odata::GraphResponse;
use crate::state::{Caller, State};
use crate::subscriptions::{EncCert, MAX_CERT_ID, MAX_CLIENT_STATE, MAX_IDS, MAX_LIFETIME};
use crate::util::parse_datetime;

pub(crate) fn invalid(message: &str) -> GraphResponse {
    // Code for malformed subscription bodies: UNVERIFIED ("InvalidRequest" as in the
    // validation-failure and http reports).
    GraphResponse::error(400, "InvalidRequest", message)
}

/// 403 for app-only tokens or missing delegated scope. Graph's body for presence is
/// UNVERIFIED; this wording was reported for a presence subscription:
/// <https://github.com/microsoftgraph/nodejs-webhooks-sample/issues/175>.
pub(crate) fn forbidden() -> GraphResponse {
    GraphResponse::error(
        403,
        "ExtensionError",
        "Operation: Create; Exception: [Status Code: Forbidden; Reason: The request is not authorized for this user or application.]",
    )
}

/// 404 for unknown, deleted or expired subscriptions (expired subscriptions; code and message
/// UNVERIFIED).
pub(crate) fn not_found(id: &str) -> GraphResponse {
    GraphResponse::error(
        404,
        "ResourceNotFound",
        &format!("The object was not found. Subscription '{id}' does not exist."),
    )
}

/// <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/7726> (other
/// resources); the presence wording is UNVERIFIED.
pub(crate) fn too_long() -> GraphResponse {
    GraphResponse::error(
        400,
        "ExtensionError",
        "Subscription expiration can only be 60 minutes in the future.",
    )
}

/// Parses `resource` into ids (presence notifications).
pub(crate) fn parse_resource(resource: &str) -> Result<Vec<String>, GraphResponse> {
    let bad = || {
        invalid(&format!(
            "Resource '{resource}' is not supported for presence subscriptions. Use communications/presences/{{id}} or /communications/presences?$filter=id in ('{{id}}',...)."
        ))
    };
    let r = resource.trim().trim_start_matches('/');
    let prefix = "communications/presences";
    let head = r.get(..prefix.len()).ok_or_else(bad)?;
    if !head.eq_ignore_ascii_case(prefix) {
        return Err(bad());
    }
    let rest = &r[prefix.len()..];
    if let Some(id) = rest.strip_prefix('/') {
        if id.is_empty() || id.contains(['/', '?']) {
            return Err(bad());
        }
        return Ok(vec![id.to_owned()]);
    }
    let query = rest.strip_prefix('?').ok_or_else(bad)?;
    let filter = query
        .split('&')
        .find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
            (k == "$filter").then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
        .ok_or_else(bad)?;
    let f = filter.trim();
    let after_id = f
        .get(..2)
        .filter(|h| h.eq_ignore_ascii_case("id"))
        .map(|_| f[2..].trim_start())
        .ok_or_else(bad)?;
    let list = after_id
        .get(..2)
        .filter(|h| h.eq_ignore_ascii_case("in"))
        .map(|_| after_id[2..].trim())
        .and_then(|l| l.strip_prefix('('))
        .and_then(|l| l.strip_suffix(')'))
        .ok_or_else(bad)?;
    let mut ids: Vec<String> = Vec::new();
    for item in list.split(',') {
        let id = item
            .trim()
            .strip_prefix('\'')
            .and_then(|x| x.strip_suffix('\''))
            .filter(|x| !x.is_empty())
            .ok_or_else(bad)?;
        if !ids.iter().any(|x| x.eq_ignore_ascii_case(id)) {
            ids.push(id.to_owned());
        }
    }
    if ids.len() > MAX_IDS {
        // "at most 650" (presence notifications); code and message UNVERIFIED.
        return Err(GraphResponse::error(
            400,
            "ExtensionError",
            &format!(
                "The number of ids in the filter ({}) exceeds the maximum of {MAX_IDS}.",
                ids.len()
            ),
        ));
    }
    Ok(ids)
}

pub(crate) fn check_url(st: &State, field: &str, url: &str) -> Result<(), GraphResponse> {
    let Ok(u) = url::Url::parse(url) else {
        return Err(invalid(&format!(
            "{field} '{url}' is not a valid absolute URL."
        )));
    };
    match u.scheme() {
        "https" => Ok(()),
        "http" if st.opts.allow_http_notification_urls => Ok(()),
        // The http report's wording; the lifecycle variant's wording is UNVERIFIED.
        other => Err(invalid(&format!(
            "{}{} scheme='{other}' is not supported.",
            field[..1].to_uppercase(),
            &field[1..]
        ))),
    }
}

/// Parses and checks the encryption certificate (rich notifications).
pub(crate) fn parse_cert(b64: &str, id: Option<&str>) -> Result<EncCert, GraphResponse> {
    let id = id.filter(|i| !i.is_empty()).ok_or_else(|| {
        invalid("encryptionCertificateId is required when includeResourceData is true.")
    })?;
    if id.chars().count() > MAX_CERT_ID {
        return Err(invalid(&format!(
            "encryptionCertificateId must be at most {MAX_CERT_ID} characters."
        )));
    }
    let cleaned: String = b64
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    let bad =
        || invalid("The encryptionCertificate is not a valid base64-encoded X.509 certificate.");
    let der = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|_| bad())?;
    let cert = x509_cert::Certificate::from_der(&der).map_err(|_| bad())?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|_| bad())?;
    let key = PublicKey::from_public_key_der(&spki)
        .map_err(|_| invalid("The encryptionCertificate must carry an RSA public key."))?;
    let bits = key.size() * 8;
    if !(2048..=4096).contains(&bits) {
        return Err(invalid(&format!(
            "The encryptionCertificate key is {bits} bits; RSA keys of 2048 to 4096 bits are supported."
        )));
    }
    let thumbprint = Sha1::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    Ok(EncCert {
        id: id.to_owned(),
        b64: cleaned,
        thumbprint,
        key,
    })
}

/// Checks an expiry against now and the 60-minute cap.
pub(crate) fn check_expiry(st: &State, raw: Option<&Value>) -> Result<SystemTime, GraphResponse> {
    let raw = raw
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("expirationDateTime is required."))?;
    let t = parse_datetime(raw)
        .ok_or_else(|| invalid(&format!("expirationDateTime '{raw}' is not a valid date.")))?;
    let wall = st.wall();
    if t <= wall {
        // UNVERIFIED wording.
        return Err(GraphResponse::error(
            400,
            "ExtensionError",
            "Subscription expiration must be in the future.",
        ));
    }
    if t > wall + MAX_LIFETIME {
        return Err(too_long());
    }
    Ok(st
        .opts
        .subscription_grant
        .map_or(t, |most| t.min(wall + most)))
}

/// A checked create request, before the validation handshake.
pub(crate) struct NewSub {
    pub(crate) resource: String,
    pub(crate) ids: Vec<String>,
    pub(crate) notification_url: String,
    pub(crate) lifecycle_url: Option<String>,
    pub(crate) client_state: Option<String>,
    pub(crate) expires: SystemTime,
    pub(crate) cert: Option<EncCert>,
    pub(crate) tls: String,
}

pub(crate) fn str_of<'a>(b: &'a Value, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str)
}

pub(crate) fn check_create(
    st: &State,
    caller: &Caller,
    body: Option<&Value>,
) -> Result<NewSub, GraphResponse> {
    let empty = json!({});
    let b = body.unwrap_or(&empty);
    let change = str_of(b, "changeType").ok_or_else(|| invalid("changeType is required."))?;
    if !change.eq_ignore_ascii_case("updated") {
        // Presence supports `updated` only (presence notifications); wording UNVERIFIED.
        return Err(invalid(&format!(
            "changeType '{change}' is not supported for presence; only 'updated' is."
        )));
    }
    let resource = str_of(b, "resource").ok_or_else(|| invalid("resource is required."))?;
    let ids = parse_resource(resource)?;
    let notification_url =
        str_of(b, "notificationUrl").ok_or_else(|| invalid("notificationUrl is required."))?;
    check_url(st, "notificationUrl", notification_url)?;
    let lifecycle_url = str_of(b, "lifecycleNotificationUrl").filter(|u| !u.is_empty());
    if let Some(u) = lifecycle_url {
        check_url(st, "lifecycleNotificationUrl", u)?;
    }
    let client_state = str_of(b, "clientState").map(str::to_owned);
    if client_state
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_CLIENT_STATE)
    {
        // Limit CONFLICT (see module doc); wording UNVERIFIED.
        return Err(invalid(&format!(
            "clientState must be at most {MAX_CLIENT_STATE} characters."
        )));
    }
    let expires = check_expiry(st, b.get("expirationDateTime"))?;
    let rich = b
        .get("includeResourceData")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let cert = if rich {
        let c = str_of(b, "encryptionCertificate")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                // Rich notifications; wording UNVERIFIED.
                invalid("encryptionCertificate is required when includeResourceData is true.")
            })?;
        Some(parse_cert(c, str_of(b, "encryptionCertificateId"))?)
    } else {
        None
    };
    let tls = str_of(b, "latestSupportedTlsVersion").unwrap_or("v1_2");
    if !["v1_0", "v1_1", "v1_2", "v1_3"].contains(&tls) {
        return Err(invalid(&format!(
            "latestSupportedTlsVersion '{tls}' is not supported."
        )));
    }
    let _ = caller;
    let ids = ids
        .into_iter()
        .map(|i| st.directory.resolve(&i).map_or(i, str::to_owned))
        .collect();
    Ok(NewSub {
        resource: resource.to_owned(),
        ids,
        notification_url: notification_url.to_owned(),
        lifecycle_url: lifecycle_url.map(str::to_owned),
        client_state,
        expires,
        cert,
        tls: tls.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources() {
        assert_eq!(
            parse_resource("/communications/presences?$filter=id in ('a','b','a')").ok(),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_resource("communications/presences/x").ok(),
            Some(vec!["x".to_owned()])
        );
        assert_eq!(
            parse_resource("/communications/presences?%24filter=id%20in%20(%27a%27)").ok(),
            Some(vec!["a".to_owned()])
        );
        assert!(parse_resource("/users/x/presence").is_err());
        assert!(parse_resource("/communications/presences?$filter=id eq 'a'").is_err());
        assert!(parse_resource("/communications/presences?$filter=id in ()").is_err());
    }
}
