//! The public value types of the emulator API: options, users, faults, the request log.
//!
//! Sources cited below by name:
//! - getPresencesByUserId:
//!   <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>
//! - get presence: <https://learn.microsoft.com/en-us/graph/api/presence-get>
//! - throttling limits: <https://learn.microsoft.com/en-us/graph/throttling-limits>
//! - client credentials:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>
//! - token lifetimes:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/configurable-token-lifetimes>
//! - device code:
//!   <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code>
//! - webhook delivery:
//!   <https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks>

use std::time::{Duration, Instant};

/// How an [`crate::Emulator`] behaves where Graph's behaviour is configurable or uncertain.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Presence requests allowed per app per 30 s before 429. Default 1,500 as on the API
    /// pages (getPresencesByUserId, get presence); the sources disagree: the current throttling
    /// limits page says 10,000.
    pub presence_limit_per_30s: u32,
    /// `expires_in` of issued tokens. Default 3599 s, the documented example (client
    /// credentials; real lifetimes are random 60–90 min: token lifetimes).
    pub token_lifetime: Duration,
    /// When true, GET /users with only `User.ReadBasic.All` answers 403, as reported in
    /// <https://learn.microsoft.com/en-us/answers/questions/6019739> (UNVERIFIED by Microsoft).
    /// Default false: User.ReadBasic.All may list users.
    pub strict_user_readbasic: bool,
    /// Fixed tenant id for the default app (None: a random GUID). Lets a demo keep its config.
    pub tenant_id: Option<String>,
    /// Fixed client id for the default app (None: a random GUID).
    pub client_id: Option<String>,
    /// Fixed client secret for the default app (None: random).
    pub client_secret: Option<String>,
    /// Most recent requests kept in the log (default 4096); older ones are dropped so long
    /// runs stay flat in memory. Benchmarks may set 0 to keep none.
    pub request_log_limit: usize,
    /// `interval` the device-code endpoint answers (seconds; Entra says 5: device code). Tests
    /// may use 0 or 1. Polling faster is not punished (`slow_down` is not modelled).
    pub device_code_interval: u64,
    /// Accept `http://` notificationUrl/lifecycleNotificationUrl. Graph requires HTTPS (webhook
    /// delivery; 400 `InvalidRequest` "NotificationUrl scheme='http' is not supported.":
    /// <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/7821>); tests and
    /// demos on loopback set this to true. Default false.
    pub allow_http_notification_urls: bool,
    /// How long the validation handshake may take (Graph: 10 s, webhook delivery).
    pub validation_timeout: Duration,
    /// Client timeout of one notification POST (Graph: 3 s, webhook delivery).
    pub notification_timeout: Duration,
    /// Retries after a failed notification POST (non-2xx or timeout). Graph retries for up to
    /// 4 hours (same page); the emulator compresses that to `notification_retries` tries
    /// `notification_retry_delay` apart (defaults 5 and 1 s).
    pub notification_retries: u32,
    /// Pause between notification retries.
    pub notification_retry_delay: Duration,
    /// Refuse a client assertion whose `jti` was already accepted (while it is valid).
    /// Default false: Entra evidently accepts a repeat, since MSAL Python re-sends one
    /// assertion for up to 9 minutes (see `assertion.rs`).
    pub reject_reused_assertions: bool,
    /// The longest lifetime a create or a renewal (PATCH) is granted; the answer's
    /// `expirationDateTime` says what was granted. Graph was reported to extend a presence
    /// subscription by 5 minutes only
    /// (<https://learn.microsoft.com/en-us/answers/questions/1037466/facing-issue-in-expriration-time-using-update-subs>);
    /// when and why it grants less than asked is not documented (UNVERIFIED). Default `None`:
    /// what is asked (up to the 60-minute maximum).
    pub subscription_grant: Option<Duration>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            presence_limit_per_30s: 1500,
            token_lifetime: Duration::from_secs(3599),
            strict_user_readbasic: false,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            request_log_limit: 4096,
            device_code_interval: 5,
            allow_http_notification_urls: false,
            validation_timeout: Duration::from_secs(10),
            notification_timeout: Duration::from_secs(3),
            notification_retries: 5,
            notification_retry_delay: Duration::from_secs(1),
            reject_reused_assertions: false,
            subscription_grant: None,
        }
    }
}

/// A directory user, as a test or benchmark seeds it.
#[derive(Debug, Clone, Default)]
pub struct User {
    /// Object id; None makes the emulator generate a GUID.
    pub id: Option<String>,
    /// `displayName`.
    pub display_name: String,
    /// `userPrincipalName`; GET /users/{upn} and `$filter` match it case-insensitively.
    pub user_principal_name: String,
    /// `mail`; may be absent, as for users without a mailbox.
    pub mail: Option<String>,
    /// `proxyAddresses`, e.g. `SMTP:a@contoso.com`, `smtp:alias@contoso.com`.
    pub proxy_addresses: Vec<String>,
    /// `businessPhones`: a string collection that holds one number at most (user resource:
    /// <https://learn.microsoft.com/en-us/graph/api/resources/user>).
    pub business_phones: Vec<String>,
    /// `mobilePhone`, the primary cellular number (user resource).
    pub mobile_phone: Option<String>,
    /// `employeeId`, returned only on `$select` (user resource).
    pub employee_id: Option<String>,
    /// `onPremisesExtensionAttributes.extensionAttribute1..15`: index 0 is extensionAttribute1
    /// (<https://learn.microsoft.com/en-us/graph/api/resources/onpremisesextensionattributes>).
    pub extension_attributes: [Option<String>; 15],
}

/// A directory group, as a test seeds it with [`crate::Emulator::add_group`]
/// (group resource: <https://learn.microsoft.com/en-us/graph/api/resources/group>).
#[derive(Debug, Clone, Default)]
pub struct Group {
    /// Object id; None makes the emulator generate a GUID.
    pub id: Option<String>,
    /// `displayName`.
    pub display_name: String,
    /// `mailNickname`, the mail alias; `$filter=mailNickname eq '…'` finds the group.
    pub mail_nickname: String,
    /// `mail`, for mail-enabled groups.
    pub mail: Option<String>,
    /// Direct members: object ids of users or of other groups (nested groups). Ids that name
    /// neither when a request comes are skipped, like deleted objects.
    pub members: Vec<String>,
}

/// The setPresence session an app holds for a user (one per app: sessionId = app id, see
/// <https://github.com/microsoftgraph/microsoft-graph-docs/issues/18837>).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSession {
    /// Availability as set (before any Available fading).
    pub availability: String,
    /// Activity as set.
    pub activity: String,
    /// Emulator time left until `expirationDuration` ends the session
    /// (<https://learn.microsoft.com/en-us/graph/api/presence-setpresence>).
    pub expires_in: Duration,
}

/// One request the emulator answered, for tests that assert on traffic.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path as received, e.g. `/v1.0/users`; inner $batch requests get `/v1.0` + their url.
    pub path: String,
    /// Raw query string without `?` ("" when none).
    pub query: String,
    /// JSON body, if the request had one (form bodies of the token endpoint are not kept).
    pub body: Option<serde_json::Value>,
    /// Status the emulator answered.
    pub status: u16,
    /// The app the bearer token (or token request) belongs to, if known.
    pub client_id: Option<String>,
    /// When the request arrived (real time).
    pub at: Instant,
    /// True for a request carried inside a `$batch`.
    pub in_batch: bool,
    /// The `User-Agent` header, when sent (the daemon names its node and leader epoch there).
    pub user_agent: Option<String>,
}

/// A fault to apply to the next `times` requests that match.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Only this method (case-insensitive); None = any.
    pub method: Option<String>,
    /// Substring of the path as received (e.g. `getPresencesByUserId`, `/presence`), or an
    /// operation name: `getPresence`, `getPresencesByUserId`, `setPresence`, `clearPresence`,
    /// `listUsers`, `getUser`, `batch`, `token`.
    pub path_contains: String,
    /// What to do instead of (or before) answering.
    pub kind: FaultKind,
    /// How many matching requests get the fault.
    pub times: u32,
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with an OData error body (AAD-style body on the token endpoint).
    Status(u16),
    /// Answer 429 `TooManyRequests` with `Retry-After`
    /// (<https://learn.microsoft.com/en-us/graph/throttling>).
    Throttle {
        /// Value of the Retry-After header, in seconds.
        retry_after_secs: u64,
    },
    /// Wait this long, then answer normally; lets clients hit their timeouts.
    Delay(std::time::Duration),
}

/// A change-notification subscription as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// Subscription id (a GUID).
    pub id: String,
    /// The app that created it.
    pub client_id: String,
    /// `userPrincipalName` of the delegated user who created it.
    pub creator_upn: String,
    /// Object id of that user (`creatorId`).
    pub creator_id: String,
    /// Watched user ids, in the order given (duplicates removed).
    pub ids: Vec<String>,
    /// `resource` as given.
    pub resource: String,
    /// `expirationDateTime` (emulator wall clock).
    pub expiration: std::time::SystemTime,
    /// `clientState`, if given.
    pub client_state: Option<String>,
    /// Rich notifications (`includeResourceData`).
    pub include_resource_data: bool,
    /// `notificationUrl`.
    pub notification_url: String,
    /// `lifecycleNotificationUrl`, if given.
    pub lifecycle_notification_url: Option<String>,
    /// True after a `reauthorizationRequired` lifecycle event until reauthorize/renew;
    /// notifications are paused meanwhile.
    pub reauthorization_required: bool,
}

/// What a notification POST carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// The `validationToken` handshake on create (webhook delivery).
    Validation,
    /// A basic change notification (no resource data:
    /// <https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>).
    Basic,
    /// A rich change notification with `encryptedContent`
    /// (<https://learn.microsoft.com/en-us/graph/change-notifications-with-resource-data>).
    Rich,
    /// A lifecycle notification
    /// (<https://learn.microsoft.com/en-us/graph/change-notifications-lifecycle-events>).
    Lifecycle,
}

/// One attempt to POST to a subscriber (validation, notification or lifecycle).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subscription (for a failed create's validation: the id it would have had).
    pub subscription_id: String,
    /// The URL posted to.
    pub url: String,
    /// What was posted.
    pub kind: DeliveryKind,
    /// User ids whose change the POST reports (empty for validation and lifecycle).
    pub ids: Vec<String>,
    /// HTTP status the subscriber answered, if it answered.
    pub status: Option<u16>,
    /// Transport error, timeout or injected failure, if any.
    pub error: Option<String>,
    /// 1 for the first try, 2.. for retries.
    pub attempt: u32,
    /// When the attempt finished (real time).
    pub at: Instant,
    /// When the attempt started, just before the POST was sent (real time).
    pub started: Instant,
}

impl Delivery {
    /// Whether the subscriber answered 2xx.
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}
