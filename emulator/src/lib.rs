//! graph-emulator: an in-process Microsoft Graph + Entra token emulator for the
//! pbx-teams-presence tests, demo and benchmarks. It serves real HTTP on loopback, so the
//! daemon talks to it exactly as it talks to Graph. Behaviour follows Microsoft's published
//! documentation and public issue reports: each module cites the pages its behaviour rests on,
//! and `README.md` lists them all. UNVERIFIED marks a choice no published source confirms.
//!
//! # Layout
//! - [`Emulator`]: the handle tests use (start, seed, steer, inspect, shut down).
//! - `server`: axum routes: `/{tenant}/oauth2/v2.0/token`, `/v1.0/...`, `/_control/...`.
//! - `token`: the client-credentials token endpoint and its errors; `assertion`: certificate
//!   credentials (client assertions checked against the app's registered certificates).
//! - `graph`: one entry point for every Graph request (HTTP or `$batch`): faults, auth,
//!   permissions, rate limits, routing. `users_api`, `presence_api`, `batch` answer.
//! - `directory`, `filter`, `presence`: users with indexes, the `$filter` subset, and the
//!   pure presence aggregation. `groups` holds groups with nested members; `groups_api`
//!   answers `/groups` and `/groups/{id}/transitiveMembers`.
//! - `state`: all state behind one mutex; `ops`: operations shared with `control`.
//! - `delegated`: the device-code and refresh-token grants; `subscriptions`: `/subscriptions`;
//!   `notify`: validation handshake, change/lifecycle notifications, encryption, delivery;
//!   `trust`: rich notifications' signed validation tokens and the published signing keys.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod assertion;
mod batch;
mod control;
mod delegated;
mod directory;
mod filter;
mod graph;
mod groups;
mod groups_api;
mod model;
mod notify;
mod odata;
mod ops;
mod presence;
mod presence_api;
mod server;
mod state;
mod subscription_checks;
mod subscriptions;
mod token;
mod trust;
mod users_api;
mod util;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use model::{
    AppSession, Delivery, DeliveryKind, EmulatorOptions, Fault, FaultKind, Group, LoggedRequest,
    SubscriptionInfo, User,
};
pub use trust::TokenForgery;

use state::{Shared, State};

/// Roles of the default app: everything the daemon needs (GroupMember.Read.All for users
/// from an Entra group).
pub const DEFAULT_ROLES: &[&str] = &[
    "Presence.ReadWrite.All",
    "User.ReadBasic.All",
    "User.Read.All",
    "GroupMember.Read.All",
];

/// Stops the server when the last [`Emulator`] clone is dropped or `shutdown` is called.
struct ServerCtl {
    stop: StdMutex<Option<oneshot::Sender<()>>>,
    task: StdMutex<Option<JoinHandle<()>>>,
}

/// A running emulator. Cheap to clone; all clones share one server and state.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
    ctl: Arc<ServerCtl>,
    tenant_id: String,
    client_id: String,
    client_secret: String,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.shared.base_url)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts on 127.0.0.1 with a free port and default options.
    pub async fn start() -> std::io::Result<Emulator> {
        Self::start_with(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            EmulatorOptions::default(),
        )
        .await
    }

    /// Starts on `addr` (port 0 = any free port) with `opts`.
    pub async fn start_with(addr: SocketAddr, opts: EmulatorOptions) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let tenant_id = opts.tenant_id.clone().unwrap_or_else(util::guid);
        let client_id = opts.client_id.clone().unwrap_or_else(util::guid);
        let client_secret = opts
            .client_secret
            .clone()
            .unwrap_or_else(|| util::random_string(40));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new_cyclic(|me| Shared {
            state: Mutex::new({
                let mut state = State::new(opts, tenant_id.clone());
                state.self_url = format!("http://{local}");
                state
            }),
            base_url: format!("http://{local}"),
            http,
            signing: trust::SigningKeys::load(),
            me: me.clone(),
        });
        shared.add_app(&client_id, &client_secret, DEFAULT_ROLES);
        let (tx, rx) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = rx.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "graph emulator server stopped");
            }
        });
        // The notification watcher holds only a Weak: it ends with the emulator.
        tokio::spawn(notify::watch(Arc::downgrade(&shared)));
        let ctl = Arc::new(ServerCtl {
            stop: StdMutex::new(Some(tx)),
            task: StdMutex::new(Some(task)),
        });
        Ok(Emulator {
            shared,
            ctl,
            tenant_id,
            client_id,
            client_secret,
        })
    }

    /// `http://127.0.0.1:PORT`: both the login authority (`/{tenant}/oauth2/v2.0/token`) and
    /// Graph (`/v1.0/...`) live here.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The tenant id (a GUID); `contoso.com` and `contoso.onmicrosoft.com` also name it.
    pub fn tenant_id(&self) -> String {
        self.tenant_id.clone()
    }

    /// Client id of the default app (roles: [`DEFAULT_ROLES`]).
    pub fn client_id(&self) -> String {
        self.client_id.clone()
    }

    /// Client secret of the default app.
    pub fn client_secret(&self) -> String {
        self.client_secret.clone()
    }

    /// Registers (or replaces) an app. Empty `roles` = no admin consent: the token is issued
    /// and Graph answers 403
    /// (<https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).
    pub fn add_app(&self, client_id: &str, secret: &str, roles: &[&str]) {
        self.shared.add_app(client_id, secret, roles);
    }

    /// Registers a certificate (PEM or DER X.509) for the app `client_id`, as uploading it under
    /// "Certificates & secrets" does: the app may then sign in with client assertions signed by
    /// its key (<https://learn.microsoft.com/entra/identity-platform/certificate-credentials>).
    /// Returns its `x5t#S256` thumbprint, or why it was refused (unknown app, not a certificate).
    pub fn add_app_certificate(
        &self,
        client_id: &str,
        certificate: &[u8],
    ) -> Result<String, String> {
        self.shared.add_app_certificate(client_id, certificate)
    }

    /// Adds a user (or replaces the one with the same id); returns its id, generated when
    /// `user.id` is None.
    pub fn add_user(&self, user: User) -> String {
        self.shared.add_user(user)
    }

    /// Adds a group (or replaces the one with the same id); returns its id, generated when
    /// `group.id` is None. Members may name users or groups added later.
    pub fn add_group(&self, group: Group) -> String {
        self.shared.lock().groups.add(group)
    }

    /// Makes `member` (a user or group id) a direct member of group `group`; false for an
    /// unknown group.
    pub fn add_group_member(&self, group: &str, member: &str) -> bool {
        self.shared.lock().groups.add_member(group, member)
    }

    /// Removes `member` from the direct members of group `group`; false when it was none.
    pub fn remove_group_member(&self, group: &str, member: &str) -> bool {
        self.shared.lock().groups.remove_member(group, member)
    }

    /// Sets what the user's own Teams client session shows (one session in the aggregation:
    /// <https://learn.microsoft.com/en-us/graph/cloud-communications-manage-presence-state>);
    /// availability `Offline` signs the client out. Unknown users are ignored.
    pub fn set_user_presence(&self, id: &str, availability: &str, activity: &str) {
        self.shared.set_user_presence(id, availability, activity);
    }

    /// Sets the status the user picks in their Teams client (their preferred presence, which
    /// beats every session); `None` is "Reset status". Unknown users are ignored.
    pub fn set_user_preferred(&self, id: &str, pair: Option<(&str, &str)>) {
        self.shared.set_user_preferred(id, pair);
    }

    /// The user's preferred presence (set by setUserPreferredPresence or by the user), if any.
    pub fn preferred(&self, id: &str) -> Option<(String, String)> {
        self.shared.preferred(id)
    }

    /// The aggregated (availability, activity) Graph would report now; None for unknown users.
    pub fn presence(&self, id: &str) -> Option<(String, String)> {
        self.shared.presence(id)
    }

    /// The live setPresence session of app `client_id` for user `id`, if any.
    pub fn app_session(&self, id: &str, client_id: &str) -> Option<AppSession> {
        self.shared.app_session(id, client_id)
    }

    /// Requests answered so far (oldest first), including inner `$batch` requests.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.requests()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Applies `fault` to the next `fault.times` matching requests.
    pub fn inject(&self, fault: Fault) {
        self.shared.inject(fault);
    }

    /// Applies `fault` to `share` percent of the matching requests (evenly: 30 is 3 in 10),
    /// `fault.times` times in all.
    pub fn inject_share(&self, fault: Fault, share: u32) {
        self.shared.lock().add_fault_share(fault, share);
    }

    /// Removes every injected fault (Graph is healthy again).
    pub fn clear_faults(&self) {
        self.shared.lock().clear_faults();
    }

    /// Moves emulator time forward: tokens, sessions and rate windows age without sleeping.
    pub fn advance_clock(&self, d: Duration) {
        self.shared.advance_clock(d);
    }

    /// Emulator wall-clock time (real time plus `advance_clock`): compute
    /// `expirationDateTime`s from this after advancing the clock.
    pub fn now_utc(&self) -> std::time::SystemTime {
        self.shared.lock().wall()
    }

    /// Approves the pending device code with `user_code` for the user `upn` (or id), as if
    /// the user signed in at the verification page
    /// (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>).
    /// False when no pending, unexpired code has that user code or the user is unknown.
    pub fn approve_device_code(&self, user_code: &str, upn: &str) -> bool {
        self.shared.approve_device_code(user_code, Some(upn))
    }

    /// Declines the pending device code with `user_code`: polling then answers
    /// `authorization_declined` (device-code page above).
    pub fn decline_device_code(&self, user_code: &str) -> bool {
        self.shared.approve_device_code(user_code, None)
    }

    /// Revokes every refresh token issued so far to the user `upn` (or id), like resetting
    /// refreshTokensValidFromDateTime (as `Revoke-EntraUserAllRefreshToken` does): they answer
    /// `invalid_grant` AADSTS50173 (<https://login.microsoftonline.com/error?code=50173>).
    /// Returns how many were revoked; None for an unknown user.
    pub fn revoke_refresh_tokens(&self, upn: &str) -> Option<usize> {
        self.shared.revoke_refresh_tokens(upn)
    }

    /// Live subscriptions (expired ones are gone), oldest first.
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.shared.subscriptions()
    }

    /// Removes subscription `id` behind its owner's back (no lifecycle event): its next
    /// renewal or look-up answers 404. False when no live subscription has that id.
    pub fn remove_subscription(&self, id: &str) -> bool {
        self.shared.remove_subscription(id)
    }

    /// The longest lifetime creates and renewals are granted from now on (`None`: what is
    /// asked); see [`EmulatorOptions::subscription_grant`].
    pub fn set_subscription_grant(&self, most: Option<Duration>) {
        self.shared.set_subscription_grant(most);
    }

    /// Notification POST attempts so far (validation, notifications, lifecycle), oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries()
    }

    /// Empties the delivery log.
    pub fn clear_deliveries(&self) {
        self.shared.lock().deliveries.clear();
    }

    /// Makes the next `n` notification POST attempts fail without being sent (they are
    /// recorded with an error and retried like real failures).
    pub fn fail_deliveries(&self, n: u32) {
        self.shared.lock().fail_deliveries = n;
    }

    /// Sends lifecycle event `event` for subscription `id` to its lifecycleNotificationUrl
    /// (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).
    /// `reauthorizationRequired` (the only one documented for presence) pauses its
    /// notifications until reauthorize or renew; `subscriptionRemoved` removes it (after the
    /// event is queued); `missed` only tells. Ok(false): the subscription has no
    /// lifecycleNotificationUrl, so nothing was sent (same page; the effect applies all the
    /// same). Err: unknown subscription or event.
    pub fn send_lifecycle(&self, id: &str, event: &str) -> Result<bool, String> {
        notify::send_lifecycle(&mut self.shared.lock(), id, event)
    }

    /// Sends a rich notification on subscription `id` saying that user `user` (named by the
    /// subscription or not) is now (`availability`, `activity`), whatever the emulator's
    /// presence says; its validation token is good, or forged as `forgery` says. Err: unknown
    /// subscription, or one without resource data.
    pub fn send_rich_notification(
        &self,
        id: &str,
        user: &str,
        availability: &str,
        activity: &str,
        forgery: Option<TokenForgery>,
    ) -> Result<(), String> {
        let presence = (availability, activity);
        trust::send_change(&mut self.shared.lock(), id, user, presence, forgery)
    }

    /// The body of the last rich notification sent on subscription `id`, for
    /// [`Emulator::resend_notification`].
    pub fn last_rich_notification(&self, id: &str) -> Option<Vec<u8>> {
        trust::last_rich(&self.shared.lock(), id)
    }

    /// Sends `body` (one sent before: a replay) on subscription `id`, byte for byte. Err:
    /// unknown subscription.
    pub fn resend_notification(&self, id: &str, body: Vec<u8>) -> Result<(), String> {
        trust::resend(&mut self.shared.lock(), id, body)
    }

    /// Rolls the signing keys over: a second key is published at
    /// `/common/discovery/v2.0/keys` and signs every validation token from now on.
    pub fn rotate_signing_key(&self) {
        self.shared.lock().trust.rotated = true;
    }

    /// Makes every issued token expired (next Graph call answers 401).
    pub fn expire_tokens(&self) {
        self.shared.expire_tokens();
    }

    /// Lifetime (`expires_in`) of tokens issued from now on.
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared.set_token_lifetime(d);
    }

    /// Stops the server (for every clone) and waits for it to finish.
    pub async fn shutdown(self) {
        let tx = self
            .ctl
            .stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(tx) = tx {
            let _ = tx.send(());
        }
        let task = self
            .ctl
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
