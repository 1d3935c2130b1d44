//! Fixtures for subscription-lifecycle scenarios: those of [`super::notify`] (the world, the
//! accounts, `login` through the real binary), plus moving both clocks and counting what the
//! emulator was asked about subscriptions.

use std::time::Duration;

use graph_emulator::EmulatorOptions;

use super::World;
#[allow(unused_imports)] // each test crate uses a part of the fixtures
pub use super::notify::{SYNC1, SYNC2, covered, login, options, subscriptions_of};

/// A world on `emulator` options whose daemon has `[notifications]` for `accounts` (`extra`
/// appended to that section): [`super::notify::world_with`].
pub async fn world(accounts: &[&str], extra: &str, emulator: EmulatorOptions) -> World {
    super::notify::world_with(emulator, accounts, extra).await
}

/// Move the emulator's clock, then the daemon's (so the daemon never asks for an expiry the
/// emulator would take as more than 60 minutes ahead).
pub fn advance(w: &World, by: Duration) {
    w.graph.advance_clock(by);
    w.clock.advance(by);
}

/// Graph requests on `/subscriptions/{id}` with `method` that were answered `status`.
pub fn calls(w: &World, method: &str, id: &str, status: u16) -> usize {
    w.graph_requests(&format!("/subscriptions/{id}"))
        .iter()
        .filter(|r| r.method == method && r.status == status)
        .count()
}

/// Subscriptions made (`POST /subscriptions` answered 201) since the log was last cleared.
pub fn creates(w: &World) -> usize {
    w.graph_requests("/subscriptions")
        .iter()
        .filter(|r| r.method == "POST" && r.status == 201)
        .count()
}
