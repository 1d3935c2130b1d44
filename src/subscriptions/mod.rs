//! Change-notification subscriptions, decided purely: inputs and `now` in, commands out; no
//! I/O, no clock reads, no tokio. It imports only `std` and the time type of the sync core.
//!
//! Each subscription account (an Entra user signed in with `login`) holds at most one presence
//! subscription, of at most 650 users
//! (<https://learn.microsoft.com/en-us/graph/changenotifications-for-presence>). The
//! [`Planner`] owns every account's state ([`AccountState`]), assigns users to accounts
//! ([`shards`]), renews before the expiry Graph granted, looks up subscriptions Graph may have
//! dropped, answers lifecycle events, judges whether a subscription still announces its users'
//! changes, adopts what the last run left, pauses after failures, and says which users are
//! covered. `service::notify` carries out its [`Command`]s and feeds
//! the answers back.

mod answers;
mod planner;
pub mod shards;
mod state;
mod types;
mod upkeep;

#[cfg(test)]
mod tests;

pub use planner::Planner;
pub use state::{AccountState, Backoff, Health, Holding, Session, Sub, same_ids};
pub use types::{
    CHECK_EVERY, Command, Coverage, Fact, Failure, Input, LIFETIME, LifecycleEvent, Listed,
    MISSED_AFTER, Made, RENEW_BEFORE, RETRY_BASE, RETRY_MAX, Record, Settings, TOKEN_MARGIN,
};
