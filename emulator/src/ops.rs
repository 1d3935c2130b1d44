//! Test-facing operations on the state, shared by the Rust API ([`crate::Emulator`]) and the
//! HTTP control API (`/_control`).

use std::collections::HashSet;
use std::time::Duration;

use crate::assertion::KeyCredential;
use crate::model::{AppSession, Delivery, Fault, LoggedRequest, SubscriptionInfo, User};
use crate::presence::Preferred;
use crate::state::{App, Shared};

impl Shared {
    pub(crate) fn add_app(&self, client_id: &str, secret: &str, roles: &[&str]) {
        let roles: HashSet<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let app = App {
            secret: secret.to_owned(),
            certificates: Vec::new(),
            roles,
        };
        self.lock().apps.insert(client_id.to_lowercase(), app);
    }

    /// Registers a certificate (PEM or DER) for the app; its `x5t#S256`, or why not.
    pub(crate) fn add_app_certificate(
        &self,
        client_id: &str,
        cert: &[u8],
    ) -> Result<String, String> {
        let key = KeyCredential::from_certificate(cert)?;
        let thumbprint = key.x5t_s256();
        let mut st = self.lock();
        let app = st
            .apps
            .get_mut(&client_id.to_lowercase())
            .ok_or_else(|| format!("no app {client_id}"))?;
        app.certificates.push(key);
        Ok(thumbprint)
    }

    pub(crate) fn add_user(&self, user: User) -> String {
        self.lock().directory.add(user)
    }

    /// The user's own Teams client session; availability `Offline` signs the client out.
    pub(crate) fn set_user_presence(&self, id: &str, availability: &str, activity: &str) -> bool {
        let mut st = self.lock();
        let Some(id) = st.directory.resolve(id).map(str::to_owned) else {
            return false;
        };
        let signed_in = !availability.eq_ignore_ascii_case("Offline");
        st.presence_mut(&id).client =
            signed_in.then(|| (availability.to_owned(), activity.to_owned()));
        true
    }

    /// The status the user picks in the Teams client: their preferred presence (it beats every
    /// session), without expiry; `None` resets it ("Reset status").
    pub(crate) fn set_user_preferred(&self, id: &str, pair: Option<(&str, &str)>) -> bool {
        let mut st = self.lock();
        let Some(id) = st.directory.resolve(id).map(str::to_owned) else {
            return false;
        };
        let expires_at = st.now() + Duration::from_secs(365 * 86_400);
        st.presence_mut(&id).preferred = pair.map(|(availability, activity)| Preferred {
            availability: availability.to_owned(),
            activity: activity.to_owned(),
            expires_at,
        });
        true
    }

    /// The user's preferred presence, while it has not expired.
    pub(crate) fn preferred(&self, id: &str) -> Option<(String, String)> {
        let st = self.lock();
        let id = st.directory.resolve(id)?;
        let now = st.now();
        let p = st.presence.get(id)?.preferred.as_ref()?;
        (p.expires_at > now).then(|| (p.availability.clone(), p.activity.clone()))
    }

    pub(crate) fn presence(&self, id: &str) -> Option<(String, String)> {
        let st = self.lock();
        let id = st.directory.resolve(id)?;
        let now = st.now();
        Some(st.presence.get(id).map_or_else(
            || ("Offline".into(), "Offline".into()),
            |p| p.aggregate(now),
        ))
    }

    pub(crate) fn app_session(&self, id: &str, client_id: &str) -> Option<AppSession> {
        let st = self.lock();
        let id = st.directory.resolve(id)?;
        let now = st.now();
        let s = st
            .presence
            .get(id)?
            .sessions
            .get(&client_id.to_lowercase())?;
        (s.expires_at > now).then(|| AppSession {
            availability: s.availability.clone(),
            activity: s.activity.clone(),
            expires_in: s.expires_at - now,
        })
    }

    pub(crate) fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.iter().cloned().collect()
    }

    pub(crate) fn clear_requests(&self) {
        self.lock().log.clear();
    }

    pub(crate) fn inject(&self, fault: Fault) {
        self.lock().add_fault(fault);
    }

    pub(crate) fn advance_clock(&self, d: Duration) {
        self.lock().advance(d);
    }

    pub(crate) fn expire_tokens(&self) {
        self.lock().expire_tokens();
    }

    pub(crate) fn set_token_lifetime(&self, d: Duration) {
        self.lock().opts.token_lifetime = d;
    }

    /// Approves (`Some(upn or id)`) or declines (`None`) a pending device code.
    pub(crate) fn approve_device_code(&self, user_code: &str, user: Option<&str>) -> bool {
        let mut st = self.lock();
        let user = match user {
            Some(u) => match st.directory.resolve(u) {
                Some(id) => Some(id.to_owned()),
                None => return false,
            },
            None => None,
        };
        crate::delegated::decide(&mut st, user_code, user)
    }

    pub(crate) fn revoke_refresh_tokens(&self, user: &str) -> Option<usize> {
        let mut st = self.lock();
        let id = st.directory.resolve(user)?.to_owned();
        Some(crate::delegated::revoke(&mut st, &id))
    }

    /// Removes a live subscription without telling anybody (as an admin, or Graph itself,
    /// may); false when there is none with that id.
    pub(crate) fn remove_subscription(&self, id: &str) -> bool {
        let mut st = self.lock();
        crate::subscriptions::prune(&mut st);
        st.subscriptions.remove(id).is_some()
    }

    pub(crate) fn set_subscription_grant(&self, most: Option<Duration>) {
        self.lock().opts.subscription_grant = most;
    }

    pub(crate) fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut st = self.lock();
        crate::subscriptions::prune(&mut st);
        let mut subs: Vec<_> = st.subscriptions.values().collect();
        subs.sort_by_key(|s| s.created);
        subs.iter().map(|s| s.info()).collect()
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.iter().cloned().collect()
    }
}
