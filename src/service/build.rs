//! Building the parts from the config and the store, at start and on reload: plain functions
//! of the config, the directory and the store's snapshot.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::error::ServiceError;
use super::matching::{MatchInfo, Matches};
use super::outbox::Outbox;
use crate::config::{AzureCredential, Config, Directory};
use crate::fence::Fence;
use crate::graph::{ClientCredential, GraphSettings};
use crate::metrics::Metrics;
use crate::pbx::http::ExtensionSet;
use crate::store::{Snapshot, Store};
use crate::sync::engine::{Engine, EngineSettings, Restored};
use crate::sync::types::{Direction, Millis, TeamsPresence};

/// The Graph client's settings for `check` and `login` (their requests are counted nowhere).
pub fn graph_settings_for(config: &Config) -> GraphSettings {
    graph_settings(config, &Metrics::default(), &Fence::open())
}

/// The daemon's Graph client settings: every request counted in `metrics`, every write
/// checked against `fence`.
pub fn graph_settings(config: &Config, metrics: &Metrics, fence: &Fence) -> GraphSettings {
    let azure = &config.azure;
    GraphSettings {
        login_url: azure.login_url.clone(),
        graph_url: azure.graph_url.clone(),
        tenant_id: azure.tenant_id.clone(),
        client_id: azure.client_id.clone(),
        credential: match &azure.credential {
            AzureCredential::Secret(secret) => ClientCredential::Secret(secret.expose().to_owned()),
            AzureCredential::Certificate(c) => {
                ClientCredential::Certificate(Arc::clone(&c.certificate))
            }
        },
        request_timeout: config.sync.request_timeout,
        max_attempts: 5,
        backoff_base: Duration::from_millis(250),
        backoff_cap: Duration::from_secs(30),
        presence_budget_per_30s: budget_per_30s(&config.sync),
        metrics: metrics.clone(),
        fence: fence.clone(),
    }
}

/// `sync.graph_budget` per `sync.graph_budget_window`, as the Graph client's bucket counts it
/// (per 30 s).
fn budget_per_30s(sync: &crate::config::SyncConfig) -> u32 {
    let per_sec = f64::from(sync.graph_budget) / sync.graph_budget_window.as_secs_f64().max(1.0);
    (per_sec * 30.0).round().clamp(1.0, f64::from(u32::MAX)) as u32
}

/// The token endpoint for subscription accounts (same tenant and app as [`graph_settings`]).
pub fn delegated_settings(config: &Config) -> crate::graph::delegated::DelegatedSettings {
    let azure = &config.azure;
    crate::graph::delegated::DelegatedSettings {
        login_url: azure.login_url.clone(),
        graph_url: azure.graph_url.clone(),
        tenant_id: azure.tenant_id.clone(),
        client_id: azure.client_id.clone(),
        request_timeout: config.sync.request_timeout,
    }
}

pub fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        in_call_expiration: config.sync.in_call_expiration,
        recovery_grace: config.sync.recovery_grace,
        dnd_to_teams: config.sync.pbx_dnd_to_teams,
    }
}

/// Open the state database off the runtime's worker threads; under `[ha]` its writes are
/// fenced by `fence`'s term.
pub async fn open_store(
    config: &Config,
    fence: Option<crate::store::postgres::StoreFence>,
) -> Result<Store, ServiceError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || Store::open_configured(&config, fence))
        .await
        .map_err(ServiceError::join("opening the state database"))?
        .map_err(ServiceError::from)
}

/// Matches remembered by the store, for e-mails still in the directory: the daemon works with
/// them at once, before Graph has answered.
pub fn cached_matches(snapshot: &Snapshot, directory: &Directory) -> Matches {
    let wanted: HashSet<&str> = directory.entries.iter().map(|e| &*e.email).collect();
    let mut pairs = Vec::new();
    for row in &snapshot.users {
        let Some(status) = &row.match_status else {
            continue;
        };
        if wanted.contains(row.email.as_str()) {
            let info =
                MatchInfo::from_store(row.teams_id.clone(), *status, row.match_detail.clone());
            pairs.push((row.email.clone(), info));
        }
    }
    Matches::from_pairs(pairs)
}

/// The extensions of `before` that `directory` no longer lists, each removed from the store
/// (their session rows stay until the sessions are cleared).
pub fn remove_departed<'a>(
    out: &mut Outbox,
    before: impl IntoIterator<Item = &'a str>,
    directory: &Directory,
) -> Vec<&'a str> {
    let present: HashSet<&str> = directory.entries.iter().map(|e| &*e.extension).collect();
    let departed: Vec<&str> = before
        .into_iter()
        .filter(|ext| !present.contains(ext))
        .collect();
    for extension in &departed {
        out.write(crate::store::Write::RemoveUser {
            extension: (*extension).to_owned(),
        });
    }
    departed
}

/// Users the store knows but the users file no longer lists (removed while the daemon was
/// down) are forgotten.
pub fn forget_departed(out: &mut Outbox, snapshot: &Snapshot, directory: &Directory) {
    let known = snapshot.users.iter().map(|r| r.extension.as_str());
    for extension in remove_departed(out, known, directory) {
        tracing::info!(%extension, "{extension}: no longer in the users file, forgotten");
    }
}

/// Put back what the store knew: last states on both sides and sessions left by a crash (or,
/// `take_over` under `[ha]`, by the last leader: said in one line, not one per session).
pub fn restore(engine: &mut Engine, snapshot: &Snapshot, now: Millis, take_over: bool) {
    for row in &snapshot.users {
        let pushed = row
            .pushed
            .as_ref()
            .map(|p| TeamsPresence::new(&p.availability, &p.activity));
        let teams = row
            .teams
            .as_ref()
            .map(|t| TeamsPresence::new(&t.availability, &t.activity));
        engine.restore(&row.extension, Restored { pushed, teams });
    }
    let mut seen = HashSet::new();
    for s in &snapshot.sessions {
        if seen.insert(s.teams_id.clone()) {
            if !take_over {
                tracing::warn!(extension = %s.extension, teams_user = %s.teams_id,
                    "{}: an In a call session survived the last run; it is cleared unless the PBX reports a call",
                    s.extension);
            }
            engine.restore_session(&s.teams_id, now);
        }
    }
    for p in &snapshot.preferred {
        if !take_over {
            tracing::warn!(extension = %p.extension, teams_user = %p.teams_id,
                "{}: a Do not disturb set in Teams survived the last run; it is cleared unless the PBX reports the phone in DND",
                p.extension);
        }
        engine.restore_preferred(&p.teams_id, now);
    }
    if take_over {
        let (sessions, dnd) = (seen.len(), snapshot.preferred.len());
        tracing::info!(
            sessions,
            dnd,
            "take-over: the last leader left {sessions} In a call sessions and {dnd} Do not disturb statuses in Teams; each is kept while the PBX reports its call (or DND), else cleared"
        );
    }
}

pub fn known_extensions(directory: &Directory) -> Arc<ExtensionSet> {
    Arc::new(ExtensionSet::new(
        directory.entries.iter().map(|e| &*e.extension),
    ))
}

/// The extensions a connector that watches each user needs (the Asterisk listener, SIP: the
/// list costs memory at 50,000 users, so other kinds get none).
pub fn user_extensions(config: &Config, directory: &Directory) -> Arc<Vec<String>> {
    if !config.pbx.watches_users() {
        return Arc::new(Vec::new());
    }
    let mut list: Vec<String> = directory
        .entries
        .iter()
        .map(|e| e.extension.to_string())
        .collect();
    list.sort_unstable();
    list.dedup();
    Arc::new(list)
}

pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Both => "both",
        Direction::TeamsToPbx => "teams-to-pbx",
        Direction::PbxToTeams => "pbx-to-teams",
        Direction::Off => "off",
    }
}
