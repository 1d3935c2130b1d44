//! Reading presence in bulk and writing/clearing the app's presence session.
//!
//! Sources: getPresencesByUserId
//! <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>, the
//! presence resource <https://learn.microsoft.com/en-us/graph/api/resources/presence>, setPresence
//! <https://learn.microsoft.com/en-us/graph/api/presence-setpresence> (`sessionId` = the app's id,
//! also <https://github.com/microsoftgraph/microsoft-graph-docs/issues/18837>), clearPresence
//! <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence> and managing presence
//! state <https://learn.microsoft.com/en-us/graph/cloud-communications-manage-presence-state>.

use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::Request;
use super::{GraphClient, GraphError, join};

/// Ids per getPresencesByUserId request.
pub(crate) const PRESENCE_CHUNK: usize = super::limits::PRESENCE_IDS_PER_REQUEST;

/// The shortest and longest `expirationDuration` setPresence accepts: PT5M..PT4H (setPresence
/// page).
const MIN_EXPIRATION: Duration = Duration::from_secs(5 * 60);
const MAX_EXPIRATION: Duration = Duration::from_secs(4 * 60 * 60);

/// One user's Teams presence as Graph reports it (PascalCase values, e.g. `Busy`/`InACall`;
/// presence resource page).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Presence {
    /// The user's object id (the id we asked for).
    pub id: String,
    /// Coarse state: Available, Busy, DoNotDisturb, Away, Offline, ... (presence resource page)
    #[serde(default)]
    pub availability: String,
    /// Detailed state: InACall, InAMeeting, Presenting, ... (presence resource page)
    #[serde(default)]
    pub activity: String,
}

/// What clearPresence found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearOutcome {
    /// The app's session existed and is gone.
    Cleared,
    /// There was no session for this app (404, clearPresence page); nothing to do.
    NoSession,
}

#[derive(Deserialize)]
struct PresencePage {
    #[serde(default)]
    value: Vec<Presence>,
}

/// `d` as an ISO-8601 duration ("PT5M", "PT1H30M", "PT45S"), whole seconds.
pub(crate) fn iso8601(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0 || secs == 0 {
        out.push_str(&format!("{s}S"));
    }
    out
}

impl GraphClient {
    /// Presence of `ids` (Entra object ids), via `POST /communications/getPresencesByUserId`
    /// in requests of at most 650 ids (getPresencesByUserId page). Each request spends one unit
    /// of the presence budget.
    pub async fn get_presences<S: AsRef<str>>(
        &self,
        ids: &[S],
    ) -> Result<Vec<Presence>, GraphError> {
        let url = join(
            &self.inner.api_root,
            &["communications", "getPresencesByUserId"],
        )?;
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PRESENCE_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            let body = json!({ "ids": ids });
            let request = Request {
                op: "getPresencesByUserId",
                method: Method::POST,
                url: url.clone(),
                body: Some(&body),
                presence: true,
                user: None,
                token: None,
            };
            let bytes = self.inner.send(&request).await?;
            let page: PresencePage = serde_json::from_slice(&bytes)
                .map_err(|e| GraphError::InvalidResponse(format!("getPresencesByUserId: {e}")))?;
            all.extend(page.value);
        }
        Ok(all)
    }

    /// Sets the app's presence session for `user_id` (`sessionId` = our client id, setPresence
    /// page). `expiration` is clamped to PT5M..PT4H, the range Graph accepts; refresh it before
    /// the 5-minute Available timeout (managing presence state page).
    pub async fn set_presence(
        &self,
        user_id: &str,
        availability: &str,
        activity: &str,
        expiration: Duration,
    ) -> Result<(), GraphError> {
        let clamped = expiration.clamp(MIN_EXPIRATION, MAX_EXPIRATION);
        if clamped != expiration {
            tracing::debug!(
                user = user_id,
                ?expiration,
                "expiration clamped to PT5M..PT4H"
            );
        }
        let body = json!({
            "sessionId": self.inner.client_id,
            "availability": availability,
            "activity": activity,
            "expirationDuration": iso8601(clamped),
        });
        self.presence_post(user_id, "setPresence", &body).await?;
        tracing::debug!(user = user_id, availability, activity, "presence set");
        Ok(())
    }

    /// Removes the app's presence session for `user_id` (clearPresence page). A 404 means there
    /// was none.
    pub async fn clear_presence(&self, user_id: &str) -> Result<ClearOutcome, GraphError> {
        let body = json!({ "sessionId": self.inner.client_id });
        match self.presence_post(user_id, "clearPresence", &body).await {
            Ok(()) => Ok(ClearOutcome::Cleared),
            Err(GraphError::NotFound { .. }) => Ok(ClearOutcome::NoSession),
            Err(e) => Err(e),
        }
    }

    /// Sets the user's preferred presence, which beats every session, for `expiration`
    /// (<https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>: its
    /// pairs include DoNotDisturb/DoNotDisturb; it shows only while the user has a session).
    pub async fn set_preferred_presence(
        &self,
        user_id: &str,
        availability: &str,
        activity: &str,
        expiration: Duration,
    ) -> Result<(), GraphError> {
        let body = json!({
            "availability": availability,
            "activity": activity,
            "expirationDuration": iso8601(expiration),
        });
        self.presence_post(user_id, "setUserPreferredPresence", &body)
            .await?;
        tracing::debug!(
            user = user_id,
            availability,
            activity,
            "preferred presence set"
        );
        Ok(())
    }

    /// Removes the user's preferred presence, whoever set it
    /// (<https://learn.microsoft.com/en-us/graph/api/presence-clearuserpreferredpresence>).
    pub async fn clear_preferred_presence(&self, user_id: &str) -> Result<(), GraphError> {
        self.presence_post(user_id, "clearUserPreferredPresence", &json!({}))
            .await
    }

    /// `POST /users/{id}/presence/{action}`; the answer has no body (setPresence page).
    async fn presence_post(
        &self,
        user_id: &str,
        action: &'static str,
        body: &serde_json::Value,
    ) -> Result<(), GraphError> {
        let url = join(
            &self.inner.api_root,
            &["users", user_id, "presence", action],
        )?;
        let request = Request {
            op: action,
            method: Method::POST,
            url,
            body: Some(body),
            presence: true,
            user: Some(user_id),
            token: None,
        };
        self.inner.send(&request).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations() {
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(iso8601(min(5)), "PT5M");
        assert_eq!(iso8601(min(60)), "PT1H");
        assert_eq!(iso8601(min(90)), "PT1H30M");
        assert_eq!(iso8601(min(240)), "PT4H");
        assert_eq!(iso8601(Duration::from_secs(3725)), "PT1H2M5S");
        assert_eq!(iso8601(Duration::from_secs(45)), "PT45S");
        assert_eq!(iso8601(Duration::ZERO), "PT0S");
        assert_eq!(iso8601(Duration::from_millis(300_999)), "PT5M");
    }

    #[test]
    fn presence_page_keeps_the_fields_we_use() {
        let body = r#"{"value":[{"id":"a","availability":"Busy","activity":"InACall",
            "statusMessage":null,"outOfOfficeSettings":{"isOutOfOffice":false},"sequenceNumber":"C1"}]}"#;
        let page: PresencePage = serde_json::from_str(body).unwrap();
        assert_eq!(
            page.value,
            vec![Presence {
                id: "a".into(),
                availability: "Busy".into(),
                activity: "InACall".into()
            }]
        );
    }

    #[test]
    fn chunk_size_is_650() {
        let ids: Vec<String> = (0..1301).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = ids.chunks(PRESENCE_CHUNK).map(<[String]>::len).collect();
        assert_eq!(sizes, vec![650, 650, 1]);
    }
}
