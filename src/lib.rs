//! pbx-teams-presence: keeps presence in sync between a PBX and Microsoft Teams, both ways.
//!
//! # Layout
//! - Pure cores, no I/O and no clock (time is a parameter):
//!   - [`sync`]: PBX events and Teams presences in, commands out.
//!   - [`subscriptions`]: change-notification accounts, shards and subscription life cycles.
//! - Adapters, one per outside system:
//!   - [`graph`]: Microsoft Graph and the Entra token endpoint.
//!   - [`pbx`]: PBX connectors (`http` for any PBX that can run a script, `asterisk`; the
//!     pure parts of `sip`, dialog subscriptions, so far).
//!   - [`store`]: the SQLite state database, on its own thread.
//!   - [`config`]: the TOML config file and the users file, validated, watched for changes.
//! - Shared plumbing: [`clock`] (the only place time is read), [`backoff`], [`secret`],
//!   [`listener`] (the HTTP accept loop), [`logging`], [`metrics`] (what Prometheus reads).
//! - [`service`]: the only place where the parts meet: the main loop, the tasks, the
//!   channels, the ordered shutdown, systemd.
//!
//! The cores import no adapter; the adapters never import each other or `service` (they use
//! `sync` types, the shared plumbing, and `pbx` the config types of its own section).
//! `docs/architecture.md` has the whole tree (a test keeps it true), who owns which task, and
//! how one event travels.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod backoff;
pub mod clock;
pub mod config;
pub mod fence;
pub mod graph;
pub mod ha;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod pbx;
pub mod secret;
pub mod service;
pub mod store;
pub mod subscriptions;
pub mod sync;
pub mod trust;
