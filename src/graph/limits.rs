//! Microsoft Graph's published limits, one constant each, with the page that states it.

use std::time::Duration;

/// Ids per getPresencesByUserId request
/// (<https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>).
pub const PRESENCE_IDS_PER_REQUEST: usize = 650;

/// Ids in one presence subscription's `id in (...)` filter
/// (<https://learn.microsoft.com/en-us/graph/api/subscription-post-subscriptions>, presence).
pub const SUBSCRIPTION_MAX_IDS: usize = 650;

/// Presence requests per app and tenant in 30 s: the lower of the published figures
/// (<https://learn.microsoft.com/en-us/graph/throttling-limits>, Cloud communication service
/// limits).
pub const PRESENCE_REQUESTS_PER_30S: u32 = 1500;

/// Longest lifetime of a presence subscription
/// (<https://learn.microsoft.com/en-us/graph/api/resources/subscription>, maximum length of
/// subscription per resource type).
pub const SUBSCRIPTION_MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Requests inside one JSON `$batch` (<https://learn.microsoft.com/en-us/graph/json-batching>).
pub const BATCH_MAX_REQUESTS: usize = 20;

/// Values in one `in (...)` filter of a `/users` query
/// (<https://learn.microsoft.com/en-us/graph/aad-advanced-queries>; 15 is the limit for
/// `proxyAddresses` filters).
pub const FILTER_IN_MAX_VALUES: usize = 15;
