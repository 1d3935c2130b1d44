//! Presence change-notification subscriptions, made with a subscription account's delegated token:
//! create, renew (PATCH), delete, list, reauthorize. Sources: the presence notifications page
//! <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>, the subscription
//! resource <https://learn.microsoft.com/en-us/graph/api/resources/subscription>, webhook delivery
//! <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks> and lifecycle
//! events <https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>.

use std::time::SystemTime;

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
        token: &Bearer,
        method: Method,
        path: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, GraphError> {
        let url = join(&self.inner.api_root, path)?;
        let request = Request {
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
            .with_account(token, Method::POST, &["subscriptions"], Some(&body))
            .await?;
        parse(&bytes, "create subscription")
    }

    /// Extend a subscription (webhook delivery page); `NotFound` once it expired or was deleted
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
            .with_account(token, Method::PATCH, &["subscriptions", id], Some(&body))
            .await?;
        parse(&bytes, "renew subscription")
    }

    /// Delete a subscription; one that is already gone counts as deleted.
    pub async fn delete_subscription(&self, token: &Bearer, id: &str) -> Result<(), GraphError> {
        match self
            .with_account(token, Method::DELETE, &["subscriptions", id], None)
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
        let bytes = self.with_account(token, Method::GET, &["me"], None).await?;
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
            .with_account(token, Method::GET, &["subscriptions"], None)
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
}
