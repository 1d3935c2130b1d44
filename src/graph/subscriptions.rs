//! Presence change-notification subscriptions, made with a subscription account's delegated token:
//! create, renew (PATCH), delete, list, reauthorize. Sources: the presence notifications page
//! <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>, the subscription
//! resource <https://learn.microsoft.com/en-us/graph/api/resources/subscription>, webhook delivery
//! <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks> and lifecycle
//! events <https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>.

use std::time::{Duration, SystemTime};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use url::Url;

use super::auth::Bearer;
use super::http::Request;
use super::{GraphClient, GraphError, join};

/// Most ids one presence subscription may name.
pub const MAX_IDS: usize = super::limits::SUBSCRIPTION_MAX_IDS;

/// What a new subscription is for.
pub struct NewSubscription<'a> {
    /// Entra object ids (at most [`MAX_IDS`]).
    pub ids: &'a [&'a str],
    pub notification_url: &'a Url,
    pub lifecycle_url: &'a Url,
    pub client_state: &'a str,
    pub expires: SystemTime,
    /// For rich notifications: base64 DER certificate and its id.
    pub certificate: Option<(&'a str, &'a str)>,
}

/// A subscription as Graph returns it (the fields the daemon uses).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub resource: String,
    pub expiration_date_time: String,
    #[serde(default)]
    pub client_state: Option<String>,
    #[serde(default)]
    pub notification_url: Option<String>,
}

impl Subscription {
    /// Its `expirationDateTime`: what Graph granted, which may be sooner than what was asked
    /// for (a renewal was reported to extend a presence subscription by 5 minutes only:
    /// <https://learn.microsoft.com/en-us/answers/questions/1037466/facing-issue-in-expriration-time-using-update-subs>).
    /// `None` when it cannot be read.
    pub fn expires(&self) -> Option<SystemTime> {
        parse_datetime(&self.expiration_date_time)
    }
}

/// An ISO 8601 date-time as Graph writes it: `2016-11-20T18:23:45.9356913Z` (any number of
/// fraction digits), with `Z`, an offset (`+02:00`), or no zone (UTC).
pub fn parse_datetime(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (local, offset) = split_zone(text)?;
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = Duration::from_secs(offset.unsigned_abs());
    // Local time = UTC + offset.
    if offset >= 0 {
        t.checked_sub(shift)
    } else {
        t.checked_add(shift)
    }
}

/// The date-time without its zone, and the zone's offset from UTC in seconds.
fn split_zone(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let at = text.len().checked_sub(6)?;
    let (local, zone) = (text.get(..at)?, text.get(at..)?);
    let sign = match zone.as_bytes() {
        [b'+', _, _, b':', _, _] => 1,
        [b'-', _, _, b':', _, _] => -1,
        _ => return Some((text, 0)),
    };
    let hours: i64 = zone.get(1..3)?.parse().ok()?;
    let minutes: i64 = zone.get(4..6)?.parse().ok()?;
    Some((local, sign * (hours * 3600 + minutes * 60)))
}

#[derive(Deserialize)]
struct Page {
    value: Vec<Subscription>,
}

/// The filter for `ids`: `/communications/presences?$filter=id in ('a','b')` (presence
/// notifications page).
pub fn presence_resource(ids: &[&str]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    format!(
        "/communications/presences?$filter=id in ({})",
        quoted.join(",")
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl GraphClient {
    async fn with_account(
        &self,
        op: &'static str,
        token: &Bearer,
        method: Method,
        path: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, GraphError> {
        let url = join(&self.inner.api_root, path)?;
        let request = Request {
            op,
            method,
            url,
            body,
            presence: false,
            user: None,
            token: Some(token),
        };
        self.inner.send(&request).await
    }

    pub async fn create_subscription(
        &self,
        token: &Bearer,
        new: &NewSubscription<'_>,
    ) -> Result<Subscription, GraphError> {
        let mut body = json!({
            "changeType": "updated",
            "notificationUrl": new.notification_url.as_str(),
            "lifecycleNotificationUrl": new.lifecycle_url.as_str(),
            "resource": presence_resource(new.ids),
            "expirationDateTime": rfc3339(new.expires),
            "clientState": new.client_state,
            "includeResourceData": new.certificate.is_some(),
        });
        if let Some((certificate, id)) = new.certificate {
            body["encryptionCertificate"] = json!(certificate);
            body["encryptionCertificateId"] = json!(id);
        }
        let bytes = self
            .with_account(
                "createSubscription",
                token,
                Method::POST,
                &["subscriptions"],
                Some(&body),
            )
            .await?;
        parse(&bytes, "create subscription")
    }

    /// Extend a subscription (webhook delivery page), with an explicit UTC expiry (`…Z`);
    /// the answer says until when Graph extended it. `NotFound` once it expired or was deleted
    /// (<https://github.com/microsoftgraph/microsoft-graph-docs/issues/20356>,
    /// <https://learn.microsoft.com/en-us/answers/questions/5948601>).
    pub async fn renew_subscription(
        &self,
        token: &Bearer,
        id: &str,
        expires: SystemTime,
    ) -> Result<Subscription, GraphError> {
        let body = json!({ "expirationDateTime": rfc3339(expires) });
        let bytes = self
            .with_account(
                "renewSubscription",
                token,
                Method::PATCH,
                &["subscriptions", id],
                Some(&body),
            )
            .await?;
        parse(&bytes, "renew subscription")
    }

    /// Look a subscription up (is it still there, until when); `NotFound` once it expired or
    /// was deleted.
    pub async fn get_subscription(
        &self,
        token: &Bearer,
        id: &str,
    ) -> Result<Subscription, GraphError> {
        let bytes = self
            .with_account(
                "getSubscription",
                token,
                Method::GET,
                &["subscriptions", id],
                None,
            )
            .await?;
        parse(&bytes, "get subscription")
    }

    /// Delete a subscription; one that is already gone counts as deleted.
    pub async fn delete_subscription(&self, token: &Bearer, id: &str) -> Result<(), GraphError> {
        match self
            .with_account(
                "deleteSubscription",
                token,
                Method::DELETE,
                &["subscriptions", id],
                None,
            )
            .await
        {
            Ok(_) | Err(GraphError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Who the token belongs to (`GET /me`, its `userPrincipalName`): `login` checks that the
    /// admin signed in as the account named.
    pub async fn me(&self, token: &Bearer) -> Result<String, GraphError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Me {
            user_principal_name: String,
        }
        let bytes = self
            .with_account("me", token, Method::GET, &["me"], None)
            .await?;
        let me: Me = serde_json::from_slice(&bytes)
            .map_err(|e| GraphError::InvalidResponse(format!("GET /me: {e}")))?;
        Ok(me.user_principal_name)
    }

    /// The account's subscriptions (to reuse or clean up at start).
    pub async fn list_subscriptions(
        &self,
        token: &Bearer,
    ) -> Result<Vec<Subscription>, GraphError> {
        let bytes = self
            .with_account(
                "listSubscriptions",
                token,
                Method::GET,
                &["subscriptions"],
                None,
            )
            .await?;
        let page: Page = serde_json::from_slice(&bytes)
            .map_err(|e| GraphError::InvalidResponse(format!("list subscriptions: {e}")))?;
        Ok(page.value)
    }
}

fn parse(bytes: &[u8], what: &str) -> Result<Subscription, GraphError> {
    serde_json::from_slice(bytes).map_err(|e| GraphError::InvalidResponse(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_names_every_id_quoted() {
        assert_eq!(
            presence_resource(&["a-1", "b-2"]),
            "/communications/presences?$filter=id in ('a-1','b-2')"
        );
    }

    #[test]
    fn graph_dates_are_read_with_any_fraction_and_zone() {
        let at = |secs: u64, nanos: u32| Some(std::time::UNIX_EPOCH + Duration::new(secs, nanos));
        // 2026-12-04T10:00:00Z
        let ten = 1_796_378_400;
        assert_eq!(parse_datetime("2026-12-04T10:00:00Z"), at(ten, 0));
        assert_eq!(
            parse_datetime("2026-12-04T10:00:00.9356913Z"),
            at(ten, 935_691_300)
        );
        assert_eq!(parse_datetime("2026-12-04T12:00:00+02:00"), at(ten, 0));
        assert_eq!(
            parse_datetime("2026-12-04T05:30:00.5-04:30"),
            at(ten, 500_000_000)
        );
        assert_eq!(parse_datetime("2026-12-04T10:00:00"), at(ten, 0));
        for bad in [
            "",
            "soon",
            "2026-12-04T10:00:00+2:00",
            "2026-13-04T10:00:00Z",
            "é",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}
