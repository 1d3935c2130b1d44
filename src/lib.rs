//! pbx-teams-presence: keeps presence in sync between a PBX and Microsoft Teams, both ways.
//!
//! # Layout
//! - [`sync`]: the pure core. PBX events and Teams presence in, commands out; no I/O, no clock.
//! - [`graph`]: Microsoft Graph and the Entra token endpoint (client credentials).
//! - [`pbx`]: PBX connectors; `http` is the generic one for any PBX that can run a script.
//! - [`store`]: the SQLite state database, on its own thread.
//! - [`config`]: the TOML config file and the users file, validated, watched for changes.
//! - [`backoff`]: exponential backoff with jitter, shared by every adapter that retries.
//! - [`service`]: the only place where the parts meet: tasks, channels, shutdown, systemd.
//!
//! Adapters (`graph`, `pbx`, `store`, `config`) never import each other; `sync` imports none
//! of them. See `docs/architecture.md` for how one event travels.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod backoff;
pub mod clock;
pub mod config;
pub mod graph;
pub mod listener;
pub mod logging;
pub mod pbx;
pub mod secret;
pub mod service;
pub mod store;
pub mod subscriptions;
pub mod sync;
