//! The `check` command's tour: token, user read, presence read, presence write, each with
//! advice a human can follow; with `users.entra_group`, reading the group's members too.

use serde::Deserialize;
use uuid::Uuid;

use super::http::Request;
use super::presence::ClearOutcome;
use super::{ExtensionAttribute, GraphClient, GraphError, GroupMember, consent_url, join};

/// One checked capability.
#[derive(Debug, Clone)]
pub struct ProbeStep {
    /// What was checked, e.g. "presence write (Presence.ReadWrite.All)".
    pub name: &'static str,
    /// What was seen when it works, or the error.
    pub result: Result<String, GraphError>,
    /// What to do about a failure; empty when the step passed.
    pub advice: String,
}

impl ProbeStep {
    fn new(name: &'static str, result: Result<String, GraphError>, advice: String) -> ProbeStep {
        let advice = if result.is_ok() {
            String::new()
        } else {
            advice
        };
        ProbeStep {
            name,
            result,
            advice,
        }
    }
}

/// The outcome of [`GraphClient::probe`].
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Client credentials accepted by Entra.
    pub token: ProbeStep,
    /// `GET /users` works (User.Read.All, needed to match e-mail addresses:
    /// <https://learn.microsoft.com/en-us/graph/api/user-list>; User.ReadBasic.All alone was
    /// reported to get 403: <https://learn.microsoft.com/en-us/answers/questions/6019739>).
    pub user_read: ProbeStep,
    /// getPresencesByUserId works (Presence.Read.All:
    /// <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>).
    pub presence_read: ProbeStep,
    /// clearPresence is allowed (Presence.ReadWrite.All:
    /// <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence>).
    pub presence_write: ProbeStep,
}

impl ProbeReport {
    /// The steps in the order they ran.
    pub fn steps(&self) -> [&ProbeStep; 4] {
        [
            &self.token,
            &self.user_read,
            &self.presence_read,
            &self.presence_write,
        ]
    }

    /// True when every step passed.
    pub fn all_ok(&self) -> bool {
        self.steps().iter().all(|s| s.result.is_ok())
    }
}

#[derive(Deserialize)]
struct IdPage {
    #[serde(default)]
    value: Vec<IdOnly>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl GraphClient {
    /// Checks the credentials and each permission the daemon needs, without changing anyone's
    /// presence: the write check clears the session of a user id that does not exist.
    pub async fn probe(&self) -> ProbeReport {
        let consent = consent_url(
            &self.inner.login_url,
            &self.inner.tenant_id,
            &self.inner.client_id,
        );
        let grant = |permission: &str| {
            format!(
                "grant the Application permission {permission} to the app and give admin \
                 consent: {consent}"
            )
        };
        let token = match self.ensure_token().await {
            Ok(()) => ProbeStep::new("token", Ok("Entra issued a token".into()), String::new()),
            Err(e) => {
                let advice = token_advice(&e);
                let skipped =
                    |name| ProbeStep::new(name, Err(e.clone()), "fix the token first".into());
                return ProbeReport {
                    user_read: skipped("user read (User.Read.All)"),
                    presence_read: skipped("presence read (Presence.Read.All)"),
                    presence_write: skipped("presence write (Presence.ReadWrite.All)"),
                    token: ProbeStep::new("token", Err(e), advice),
                };
            }
        };
        let first_user = self.first_user_id().await;
        let probe_id = first_user
            .as_ref()
            .ok()
            .and_then(Clone::clone)
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let user_read = ProbeStep::new(
            "user read (User.Read.All)",
            first_user.map(|_| "can list users".to_string()),
            grant("User.Read.All"),
        );
        let presence_read = ProbeStep::new(
            "presence read (Presence.Read.All)",
            match self.get_presences(std::slice::from_ref(&probe_id)).await {
                Ok(_) | Err(GraphError::NotFound { .. }) => Ok("can read presence".into()),
                Err(e) => Err(e),
            },
            grant("Presence.Read.All"),
        );
        let presence_write = ProbeStep::new(
            "presence write (Presence.ReadWrite.All)",
            // A user that does not exist: 404 means we were allowed to ask (clearPresence page).
            self.clear_presence(&Uuid::new_v4().to_string())
                .await
                .map(|outcome| match outcome {
                    ClearOutcome::NoSession | ClearOutcome::Cleared => {
                        "may set and clear presence".to_string()
                    }
                }),
            grant("Presence.ReadWrite.All"),
        );
        ProbeReport {
            token,
            user_read,
            presence_read,
            presence_write,
        }
    }

    /// Checks that the members of `group` (object id or mail nickname) can be read, as
    /// `users.entra_group` needs: GroupMember.Read.All, application
    /// (<https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>). On success
    /// the step says how many users the group holds and how many of them have `attribute`;
    /// the members come along for the caller to list (empty on failure).
    pub async fn probe_group(
        &self,
        group: &str,
        attribute: ExtensionAttribute,
    ) -> (ProbeStep, Vec<GroupMember>) {
        let consent = consent_url(
            &self.inner.login_url,
            &self.inner.tenant_id,
            &self.inner.client_id,
        );
        let result = self.group_members(group, attribute).await;
        let advice = match &result {
            Err(GraphError::Forbidden { code, .. }) if code == "LimitedInformation" => format!(
                "grant the Application permission User.Read.All to the app and give admin \
                 consent: {consent}"
            ),
            Err(GraphError::NotFound { .. } | GraphError::InvalidSettings(_)) => {
                "check users.entra_group: the group's object id, or a mail nickname only one \
                 group has"
                    .to_string()
            }
            _ => format!(
                "grant the Application permission GroupMember.Read.All to the app and give \
                 admin consent: {consent}"
            ),
        };
        let (result, members) = match result {
            Ok(members) => {
                let with = members
                    .iter()
                    .filter(|m| m.attribute_value.is_some())
                    .count();
                let seen = format!(
                    "{} users in group {group}, {with} with {attribute}",
                    members.len()
                );
                (Ok(seen), members)
            }
            Err(e) => (Err(e), Vec::new()),
        };
        let step = ProbeStep::new("group members (GroupMember.Read.All)", result, advice);
        (step, members)
    }

    /// `GET /users?$top=1&$select=id`: the id of some user, if the directory has any.
    async fn first_user_id(&self) -> Result<Option<String>, GraphError> {
        let mut url = join(&self.inner.api_root, &["users"])?;
        url.set_query(Some("$top=1&$select=id"));
        let request = Request::get("users", url);
        let page: IdPage = serde_json::from_slice(&self.inner.send(&request).await?)
            .map_err(|e| GraphError::InvalidResponse(format!("users: {e}")))?;
        Ok(page.value.into_iter().next().map(|u| u.id))
    }
}

/// What to do when no token comes.
fn token_advice(e: &GraphError) -> String {
    match e {
        GraphError::Credentials { hint, .. } => (*hint).to_string(),
        GraphError::InvalidResponse(_) => "check login_url".into(),
        _ => "check the network path to the login endpoint (proxy, firewall, DNS)".into(),
    }
}
