//! What goes into the store ([`Write`]) and what comes out ([`Snapshot`]).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::sync::types::{MatchStatus, Millis};

/// One change to the state database. Writes are applied in the order they were sent.
///
/// Everything per user is keyed by extension, and a write for an extension that has not
/// been upserted yet is kept: it shows up in the snapshot once the user is upserted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// A user from the users file: add it, or update its e-mail and direction. A changed
    /// e-mail forgets the user's match (it was the old address's).
    UpsertUser {
        /// PBX extension, the key of everything per user (shared with the directory: a start
        /// with 250,000 new users queues one of these per user).
        extension: Arc<str>,
        /// E-mail / UPN used to find the Teams account.
        email: Arc<str>,
        /// Which way presence flows for this user, as the config spells it.
        direction: Cow<'static, str>,
    },
    /// The user left the users file: forget it and everything about it (match, states, its
    /// errors). An open "In a call" session row stays until `CloseSession`, so that a crash
    /// before Teams confirmed the clear still finds it at the next start.
    RemoveUser {
        /// PBX extension of the user.
        extension: String,
    },
    /// Result of looking the e-mail up in Entra.
    SetMatch {
        /// PBX extension of the user (shared with the directory).
        extension: Arc<str>,
        /// The Entra object id, when found (shared with the daemon's match: the first lookup
        /// round queues one of these per user).
        teams_id: Option<Arc<str>>,
        /// Found, or why not.
        status: MatchStatus,
        /// Why, when it is not `matched`.
        detail: Option<Cow<'static, str>>,
        /// When the lookup finished.
        at: Millis,
    },
    /// The last Teams presence seen for the user.
    SetTeams {
        /// PBX extension of the user.
        extension: String,
        /// Graph availability, e.g. `Busy` (documented values are not allocated).
        availability: Cow<'static, str>,
        /// Graph activity, e.g. `InACall`.
        activity: Cow<'static, str>,
        /// When it was read.
        at: Millis,
    },
    /// The last state delivered to the PBX; `teams` differing from `pushed` means a push is
    /// still pending.
    SetPushed {
        /// PBX extension of the user.
        extension: String,
        /// The PBX state that was delivered.
        state: String,
        /// The Teams availability it came from.
        availability: Cow<'static, str>,
        /// The Teams activity it came from.
        activity: Cow<'static, str>,
        /// When the PBX accepted it.
        at: Millis,
    },
    /// The last call state the PBX reported.
    SetPbx {
        /// PBX extension of the user.
        extension: String,
        /// `idle`, `ringing`, `speaking`.
        state: String,
        /// Do-not-disturb, when the connector knows it.
        dnd: Option<bool>,
        /// When it was reported.
        at: Millis,
    },
    /// An "In a call" setPresence session is active (replaces an earlier one). Kept so a
    /// restart after a crash can clear it.
    OpenSession {
        /// PBX extension of the user.
        extension: String,
        /// The Entra object id the session was set on.
        teams_id: String,
        /// When Graph lets it expire on its own.
        expires_at: Millis,
    },
    /// The session of this Teams user was cleared (or expired): every row for it goes, under
    /// whichever extension it was opened (the user may have left the users file since).
    CloseSession {
        /// The Entra object id the session was set on.
        teams_id: String,
    },
    /// A preferred DND was set on this Teams user by us (replaces an earlier one). Kept so a
    /// restart after a crash can clear it.
    OpenPreferred {
        /// PBX extension of the user.
        extension: String,
        /// The Entra object id.
        teams_id: String,
        /// When Graph lets it expire on its own.
        expires_at: Millis,
    },
    /// The preferred DND of this Teams user is no longer ours to clear (cleared, or the user
    /// changed their status since).
    ClosePreferred {
        /// The Entra object id.
        teams_id: String,
    },
    /// Something went wrong; shown by `status`. Only the last [`ERRORS_KEPT`] are kept.
    RecordError {
        /// Which part failed, e.g. `graph`, `pbx`.
        component: String,
        /// The user it concerns (extension or e-mail), if any.
        user: Option<String>,
        /// What happened.
        message: String,
        /// When.
        at: Millis,
    },
    /// Add `delta` to a named counter (created at 0).
    AddCounter {
        /// Counter name, e.g. `graph_requests`.
        name: String,
        /// Amount to add (may be negative).
        delta: i64,
    },
    /// Set one of the daemon's facts for `status` (the last poll, the PBX link...).
    SetMeta {
        /// Which fact.
        key: MetaKey,
        /// Value.
        value: String,
    },
    /// A subscription account's refresh token (after `login`, or rotated by a refresh).
    SetAccountToken {
        /// The account (lowercased UPN).
        account: String,
        /// The refresh token; never logged, never in a [`Snapshot`].
        refresh_token: crate::secret::Secret,
        /// When.
        at: Millis,
    },
    /// The account's refresh token is revoked or expired: forget it (`login` again).
    RemoveAccountToken {
        /// The account.
        account: String,
    },
    /// A subscription the daemon holds (created or renewed).
    SaveSubscription(SubscriptionRow),
    /// A subscription that is gone (deleted, expired or replaced).
    DropSubscription {
        /// Graph's subscription id.
        id: String,
    },
    /// The users an account's healthy subscription covers now (replaces its earlier list;
    /// empty: none).
    SetCoverage {
        /// The account.
        account: String,
        /// Entra object ids.
        teams_ids: Vec<String>,
    },
}

/// A change-notification subscription held by one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionRow {
    /// Graph's subscription id.
    pub id: String,
    /// The account holding it.
    pub account: String,
    /// The secret Graph echoes in every notification; checked by the receiver.
    #[serde(skip)]
    pub client_state: String,
    /// When Graph deletes it unless renewed.
    pub expires_at: Millis,
    /// How many users its filter names.
    pub users: i64,
    /// Rich (encrypted resource data) or basic notifications.
    pub rich: bool,
}

/// An account that holds a refresh token (the token itself is not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountRow {
    /// The account.
    pub account: String,
    /// When its token was last written.
    pub updated_at: Millis,
}

/// How many errors the database keeps.
pub const ERRORS_KEPT: i64 = 100;
/// How many errors a snapshot returns.
pub const ERRORS_SHOWN: i64 = 20;

impl Write {
    /// The variant name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Write::UpsertUser { .. } => "upsert_user",
            Write::RemoveUser { .. } => "remove_user",
            Write::SetMatch { .. } => "set_match",
            Write::SetTeams { .. } => "set_teams",
            Write::SetPushed { .. } => "set_pushed",
            Write::SetPbx { .. } => "set_pbx",
            Write::OpenSession { .. } => "open_session",
            Write::CloseSession { .. } => "close_session",
            Write::OpenPreferred { .. } => "open_preferred",
            Write::ClosePreferred { .. } => "close_preferred",
            Write::RecordError { .. } => "record_error",
            Write::AddCounter { .. } => "add_counter",
            Write::SetMeta { .. } => "set_meta",
            Write::SetAccountToken { .. } => "set_account_token",
            Write::RemoveAccountToken { .. } => "remove_account_token",
            Write::SaveSubscription(_) => "save_subscription",
            Write::DropSubscription { .. } => "drop_subscription",
            Write::SetCoverage { .. } => "set_coverage",
        }
    }

    /// The extension the write is about, for logs.
    pub fn extension(&self) -> Option<&str> {
        match self {
            Write::UpsertUser { extension, .. } | Write::SetMatch { extension, .. } => {
                Some(extension)
            }
            Write::RemoveUser { extension }
            | Write::SetTeams { extension, .. }
            | Write::SetPushed { extension, .. }
            | Write::SetPbx { extension, .. }
            | Write::OpenSession { extension, .. }
            | Write::OpenPreferred { extension, .. } => Some(extension),
            Write::CloseSession { .. }
            | Write::ClosePreferred { .. }
            | Write::RecordError { .. }
            | Write::AddCounter { .. }
            | Write::SetMeta { .. }
            | Write::SetAccountToken { .. }
            | Write::RemoveAccountToken { .. }
            | Write::SaveSubscription(_)
            | Write::DropSubscription { .. }
            | Write::SetCoverage { .. } => None,
        }
    }
}

/// Everything the `status` command and the status endpoint show, read in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Every upserted user with what is known about it, ordered by extension.
    pub users: Vec<UserRow>,
    /// Every open "In a call" session, including those of users no longer upserted (a
    /// restart must still clear them), ordered by extension.
    pub sessions: Vec<SessionRow>,
    /// Every preferred DND we set and still answer for, ordered by extension.
    pub preferred: Vec<SessionRow>,
    /// Named counters.
    pub counters: BTreeMap<String, i64>,
    /// The newest errors first, at most [`ERRORS_SHOWN`].
    pub errors: Vec<ErrorRow>,
    /// The facts set with [`Write::SetMeta`], by their [`MetaKey::as_str`] name; read them
    /// with [`Snapshot::meta`].
    pub meta: BTreeMap<String, String>,
    /// Subscriptions held, ordered by account.
    pub subscriptions: Vec<SubscriptionRow>,
    /// Accounts that hold a refresh token, ordered by name.
    pub accounts: Vec<AccountRow>,
    /// `[ha]`: the leader lease, once a node took it.
    pub lease: Option<LeaseRow>,
    /// `[ha]`: every node seen, ordered by name.
    pub nodes: Vec<NodeRow>,
}

/// `[ha]`: the leader lease (times: ms since the Unix epoch, the database's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRow {
    pub holder: String,
    pub epoch: i64,
    pub expires_at: i64,
    /// When this holder took it.
    pub since: i64,
}

/// `[ha]`: one node as it last said (role `leader`, `standby` or `stopped`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRow {
    pub node: String,
    pub role: String,
    pub epoch: i64,
    pub seen_at: i64,
    pub started_at: i64,
    /// `version=... pbx=host:port`.
    pub detail: String,
}

/// One user and everything known about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    /// PBX extension.
    pub extension: String,
    /// E-mail / UPN from the users file.
    pub email: String,
    /// Sync direction from the users file.
    pub direction: String,
    /// Entra object id, once matched.
    pub teams_id: Option<String>,
    /// Last match status, if a lookup ran.
    pub match_status: Option<MatchStatus>,
    /// Why the match is not `matched`.
    pub match_detail: Option<String>,
    /// Last Teams presence seen.
    pub teams: Option<StateAt>,
    /// Last state delivered to the PBX.
    pub pushed: Option<PushedRow>,
    /// Last PBX call state.
    pub pbx_state: Option<String>,
    /// Last PBX do-not-disturb flag.
    pub dnd: Option<bool>,
    /// When the PBX state was reported.
    pub pbx_at: Option<Millis>,
    /// Expiry of the open "In a call" session, if one is open.
    pub session_expires_at: Option<Millis>,
    /// The account whose subscription covers the user; `None`: polled.
    pub covered_by: Option<String>,
}

/// A Teams presence and when it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateAt {
    /// Graph availability.
    pub availability: String,
    /// Graph activity.
    pub activity: String,
    /// When it was read.
    pub at: Millis,
}

/// The last state delivered to the PBX.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushedRow {
    /// PBX state delivered.
    pub state: String,
    /// Teams availability it came from.
    pub availability: String,
    /// Teams activity it came from.
    pub activity: String,
    /// When the PBX accepted it.
    pub at: Millis,
}

/// An open "In a call" session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    /// PBX extension.
    pub extension: String,
    /// Entra object id the session is on.
    pub teams_id: String,
    /// When Graph expires it on its own.
    pub expires_at: Millis,
}

/// A recorded error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorRow {
    /// Which part failed.
    pub component: String,
    /// The user concerned, if any.
    pub user: Option<String>,
    /// What happened.
    pub message: String,
    /// When.
    pub at: Millis,
}

/// The facts the daemon keeps in the `meta` table for `status`. Values are text; times are
/// epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaKey {
    /// When the last poll cycle ended.
    LastPollAt,
    /// Users read by the last poll cycle.
    LastPollUsers,
    /// getPresencesByUserId requests of the last poll cycle.
    LastPollRequests,
    /// How long the last poll cycle took, in milliseconds.
    LastPollMs,
    /// The poll interval in effect (`auto` or fixed), in milliseconds.
    PollIntervalMs,
    /// The share of the Graph budget polling uses at that interval, in percent.
    PollBudgetUsedPct,
    /// The PBX link (connectors that keep one): `connecting`, `connected`,
    /// `disconnected: why`; empty for connectors without a link.
    PbxLink,
    /// Since when the PBX link is what `PbxLink` says.
    PbxLinkSince,
    /// Where `POST /pbx/events` is bound (HTTP connector); empty otherwise.
    PbxListen,
    /// Where the change-notification webhook is bound; empty when off.
    WebhookListen,
    /// Where `GET /metrics` is bound; empty when off.
    MetricsListen,
    /// When this run of the daemon was up (its listeners bound), epoch milliseconds: tells
    /// one run from the next.
    StartedAt,
    /// When the last full lookup round (every address) went through, epoch milliseconds.
    LookedUpAt,
    /// The directory that round read: the tenant and the Graph URL. A start with another
    /// one looks every address up at once.
    LookedUpIn,
    /// Members of `users.entra_group` without a usable extension (their UPNs, at most 20
    /// named); empty when there are none.
    GroupUnusable,
    /// Under `[ha]`: the id of the last inbox row (PBX events any node accepted) the leader
    /// has applied; the next leader goes on after it.
    InboxApplied,
}

impl MetaKey {
    /// Every key, for tests and tools.
    pub const ALL: [MetaKey; 16] = [
        MetaKey::LastPollAt,
        MetaKey::LastPollUsers,
        MetaKey::LastPollRequests,
        MetaKey::LastPollMs,
        MetaKey::PollIntervalMs,
        MetaKey::PollBudgetUsedPct,
        MetaKey::PbxLink,
        MetaKey::PbxLinkSince,
        MetaKey::PbxListen,
        MetaKey::WebhookListen,
        MetaKey::MetricsListen,
        MetaKey::StartedAt,
        MetaKey::LookedUpAt,
        MetaKey::LookedUpIn,
        MetaKey::GroupUnusable,
        MetaKey::InboxApplied,
    ];

    /// The key's name in the `meta` table.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaKey::LastPollAt => "last_poll_at",
            MetaKey::LastPollUsers => "last_poll_users",
            MetaKey::LastPollRequests => "last_poll_requests",
            MetaKey::LastPollMs => "last_poll_ms",
            MetaKey::PollIntervalMs => "poll_interval_ms",
            MetaKey::PollBudgetUsedPct => "poll_budget_used_pct",
            MetaKey::PbxLink => "pbx_link",
            MetaKey::PbxLinkSince => "pbx_link_since",
            MetaKey::PbxListen => "pbx_listen",
            MetaKey::WebhookListen => "webhook_listen",
            MetaKey::MetricsListen => "metrics_listen",
            MetaKey::StartedAt => "started_at",
            MetaKey::LookedUpAt => "looked_up_at",
            MetaKey::LookedUpIn => "looked_up_in",
            MetaKey::GroupUnusable => "group_unusable",
            MetaKey::InboxApplied => "inbox_applied",
        }
    }
}

impl Snapshot {
    /// The value of `key`, if set and not empty.
    pub fn meta(&self, key: MetaKey) -> Option<&str> {
        self.meta
            .get(key.as_str())
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A time kept under `key` (epoch milliseconds).
    pub fn meta_time(&self, key: MetaKey) -> Option<Millis> {
        self.meta(key).and_then(|v| v.parse().ok())
    }
}
