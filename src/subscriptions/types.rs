//! The planner's vocabulary: what comes in ([`Input`]), what goes out ([`Command`], [`Fact`]).
//! Plain data, no I/O.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::sync::types::Millis;

/// Lifetime asked for a new or renewed subscription. Presence subscriptions live at most 60
/// minutes (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>).
pub const LIFETIME: Duration = Duration::from_secs(55 * 60);
/// A subscription is renewed once this little of it is left (so about every 40 minutes), or
/// once a third of it is left when Graph granted less than three times this: the schedule
/// follows the `expirationDateTime` Graph returns, not the one asked for.
pub const RENEW_BEFORE: Duration = Duration::from_secs(15 * 60);
/// A subscription Graph has not confirmed (created, renewed, looked up) for this long is
/// looked up (`GET /subscriptions/{id}`): one deleted behind the daemon's back is noticed and
/// made again within [`RENEW_BEFORE`], not only at its next renewal.
pub const CHECK_EVERY: Duration = Duration::from_secs(10 * 60);
/// A change a poll found that no notification announced within this time makes the
/// subscription unhealthy. Presence notifications arrive within a minute at most
/// (latency table of
/// <https://learn.microsoft.com/en-us/graph/change-notifications-overview>).
pub const MISSED_AFTER: Duration = Duration::from_secs(90);
/// An access token is refreshed once this little of it is left.
pub const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);
/// The pause after the first failure is twice this; each further failure doubles it.
pub const RETRY_BASE: Duration = Duration::from_secs(5);
/// The longest pause between tries.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// What the planner is set up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The subscription accounts, in the order they are filled.
    pub accounts: Vec<String>,
    /// Most users one subscription names.
    pub capacity: usize,
    /// Rich notifications: subscriptions carry our encryption certificate.
    pub rich: bool,
    /// The certificate was made by this start: rich subscriptions the last run recorded name
    /// one whose key we no longer have, so they are made again.
    pub new_certificate: bool,
}

/// A subscription as the state database records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub account: String,
    /// The secret Graph repeats in every notification of this subscription.
    pub client_state: String,
    pub expires_at: Millis,
    /// How many users its filter names.
    pub users: usize,
    pub rich: bool,
}

/// One subscription Graph lists for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    /// The users its filter names.
    pub ids: Vec<Arc<str>>,
    /// `None` when Graph's date could not be read.
    pub expires_at: Option<Millis>,
    /// Its `notificationUrl` when that is not `notifications.public_url` (another node's,
    /// or the one before a change of the key): Graph would notify someone else.
    pub elsewhere: Option<String>,
}

/// Graph's answer to [`Command::Create`], with the secret the adapter made up for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub id: String,
    pub client_state: String,
    /// The `expirationDateTime` Graph granted (`None`: not readable; the one asked for is
    /// assumed).
    pub expires_at: Option<Millis>,
}

/// A lifecycle event (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).
/// For presence only `reauthorizationRequired` is documented; the other two are handled all
/// the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// Renew (which reauthorizes) at once; the users are polled meanwhile.
    ReauthorizationRequired,
    /// Graph dropped the subscription: it is made again at once.
    SubscriptionRemoved,
    /// Graph could not deliver some notifications: the users' presences are read at once.
    Missed,
    /// Anything else: answered like `reauthorizationRequired` (a renewal does no harm).
    Other,
}

impl LifecycleEvent {
    pub fn parse(event: &str) -> LifecycleEvent {
        match event {
            "reauthorizationRequired" => LifecycleEvent::ReauthorizationRequired,
            "subscriptionRemoved" => LifecycleEvent::SubscriptionRemoved,
            "missed" => LifecycleEvent::Missed,
            _ => LifecycleEvent::Other,
        }
    }
}

/// How a Graph request failed, as far as the planner cares; each carries the error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 404: the subscription expired or was deleted at Graph.
    Gone(String),
    /// 401 even with a fresh access token.
    Unauthorized(String),
    /// Anything else (network, throttling, a refused handshake, 409).
    Other(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Failure::Gone(m) | Failure::Unauthorized(m) | Failure::Other(m) => m,
        }
    }
}

/// What the planner is told. `now` comes with each (the service clock, epoch milliseconds).
///
/// Protocol: the answer to a command that asks for one (`ReadTokens`, `RefreshToken`, `List`,
/// `Create`, `Renew`, `Check`) is fed back before any other input. An operation that needed a
/// token refresh on the way ends with that refresh's failure (`TokenRefused`, `TokenFailed`)
/// instead of its own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed: judge suspects, look for tokens, renew, retry.
    Tick,
    /// Every matched user (the poller's list), in a stable order.
    Users(Arc<Vec<Arc<str>>>),
    /// The answer to [`Command::ReadTokens`]: the accounts with a stored refresh token.
    TokensRead(Vec<String>),
    /// A new access token, good until `valid_until`.
    TokenRefreshed {
        account: String,
        valid_until: Millis,
    },
    /// Entra refused the account's refresh token (revoked, expired): it must sign in again.
    TokenRefused { account: String, error: String },
    /// The refresh failed for a passing reason (network, Entra unavailable).
    TokenFailed { account: String, error: String },
    Listed {
        account: String,
        result: Result<Vec<Listed>, Failure>,
    },
    Created {
        account: String,
        result: Result<Made, Failure>,
    },
    /// `Ok`: the `expirationDateTime` Graph granted (`None`: not readable; the one asked for
    /// is assumed).
    Renewed {
        account: String,
        result: Result<Option<Millis>, Failure>,
    },
    /// The answer to [`Command::Check`]: the expiry Graph holds (`None`: not readable).
    Checked {
        account: String,
        result: Result<Option<Millis>, Failure>,
    },
    /// A lifecycle notification, e.g. `reauthorizationRequired`
    /// (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).
    Lifecycle { subscription: String, event: String },
    /// A notification announced this user's change.
    Notified(String),
    /// A poll found a change of this covered user (a notification should announce it).
    Suspect(Arc<str>),
    /// The encryption certificate was replaced: every subscription is made again.
    CertificateRotated,
    /// The daemon stops and deletes its subscriptions (`notifications.delete_on_shutdown`).
    DeleteAll,
}

/// Which users are covered, per account and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Each account's covered users (none for one without a healthy subscription).
    pub accounts: Vec<(String, Vec<Arc<str>>)>,
    /// Their union: the users the poller leaves to notifications.
    pub covered: HashSet<Arc<str>>,
    /// Users no account has room for.
    pub polled: usize,
}

/// What the planner asks the adapter to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Read the refresh tokens `login` stored; answer [`Input::TokensRead`].
    ReadTokens,
    /// Take the refresh token just read for this account.
    UseToken { account: String },
    /// Get an access token from the refresh token; answer `TokenRefreshed`, `TokenRefused`
    /// or `TokenFailed`.
    RefreshToken { account: String },
    /// Entra refused the refresh token: forget it, here and in the store.
    ForgetToken { account: String },
    /// List the account's subscriptions; answer [`Input::Listed`].
    List { account: String },
    /// Make a subscription for `ids` with a new secret; answer [`Input::Created`].
    Create {
        account: String,
        ids: Vec<Arc<str>>,
        expires_at: Millis,
    },
    /// Extend a subscription (this also reauthorizes it); answer [`Input::Renewed`].
    Renew {
        account: String,
        id: String,
        expires_at: Millis,
    },
    /// Look a subscription up at Graph (is it still there, until when); answer
    /// [`Input::Checked`].
    Check { account: String, id: String },
    /// Read these users' presences now: notifications about them were lost.
    Read { ids: Vec<Arc<str>> },
    /// Delete a subscription at Graph. No answer: a failure is only logged, and an
    /// unrenewed subscription ends at its expiry anyway.
    Delete { account: String, id: String },
    /// Record a subscription in the state database.
    Save(Record),
    /// Forget a recorded subscription.
    Drop { id: String },
    /// The subscriptions the webhook accepts now: id -> secret.
    Known(HashMap<String, String>),
    /// Who is covered now (sent only when it changed).
    Publish(Coverage),
    /// Something worth a log line.
    Report(Fact),
}

/// What happened, for the log (and for `status` errors where said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    TokenFound {
        account: String,
    },
    /// No refresh token is stored (said once until one is).
    NotSignedIn {
        account: String,
    },
    /// Entra refused the refresh token; its subscription was forgotten.
    SignedOut {
        account: String,
        error: String,
    },
    TokenNotRefreshed {
        account: String,
        error: String,
    },
    ListFailed {
        account: String,
        error: String,
    },
    /// A subscription the last run recorded, adopted.
    Kept {
        account: String,
        subscription: String,
        users: usize,
    },
    /// A subscription nobody recorded, deleted.
    UnknownDeleted {
        account: String,
        subscription: String,
    },
    /// A subscription that notifies another URL, deleted (a new one is made).
    ElsewhereDeleted {
        account: String,
        subscription: String,
        url: String,
    },
    Created {
        account: String,
        subscription: String,
        users: usize,
        /// Until when Graph granted it.
        expires_at: Millis,
    },
    /// `first`: the first failure in a row (the later ones are not logged, only recorded).
    CreateFailed {
        account: String,
        users: usize,
        error: String,
        first: bool,
    },
    Renewed {
        account: String,
        subscription: String,
        /// Until when Graph granted it.
        expires_at: Millis,
    },
    /// 404 at a renewal or a check (expired or deleted at Graph): a new subscription is made.
    Gone {
        account: String,
        subscription: String,
    },
    /// A check failed for another reason than 404; the subscription stays.
    CheckFailed {
        account: String,
        subscription: String,
        error: String,
    },
    RenewFailed {
        account: String,
        subscription: String,
        error: String,
    },
    /// `account`: the holder, when the subscription is one of ours.
    Lifecycle {
        account: Option<String>,
        subscription: String,
        event: String,
    },
    /// A change a poll found was never notified: the subscription is made again.
    Unhealthy {
        account: String,
        subscription: String,
        user: Arc<str>,
    },
}
