//! Microsoft Graph's published limits, one constant each, with the page that states it.

use std::time::Duration;

/// Ids per getPresencesByUserId request
/// (<https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>).
pub const PRESENCE_IDS_PER_REQUEST: usize = 650;

/// Ids in one presence subscription's `id in (...)` filter
/// (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>).
pub const SUBSCRIPTION_MAX_IDS: usize = 650;

/// Presence requests per app and tenant in 30 s: the lower of the published figures (the
/// getPresencesByUserId page above says 1,500;
/// <https://learn.microsoft.com/en-us/graph/throttling-limits> says 10,000 in some locales).
pub const PRESENCE_REQUESTS_PER_30S: u32 = 1500;

/// Longest lifetime of a presence subscription
/// (<https://learn.microsoft.com/en-us/graph/api/resources/subscription>).
pub const SUBSCRIPTION_MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Requests inside one JSON `$batch` (<https://learn.microsoft.com/en-us/graph/json-batching>).
pub const BATCH_MAX_REQUESTS: usize = 20;

/// Values in one `in (...)` filter, by default
/// (<https://learn.microsoft.com/en-us/graph/filter-query-parameter>).
pub const FILTER_IN_MAX_VALUES: usize = 15;
