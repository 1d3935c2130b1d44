//! `[ha]`: two (or more) nodes sharing one PostgreSQL state database elect one leader through
//! a lease row in it (docs/high-availability.md).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::validate::Ctx;

/// Default `ha.lease`: a dead leader is replaced within about 11 s, plus the first poll.
pub const DEFAULT_LEASE: &str = "10s";

/// `[ha]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HaSection {
    pub enabled: bool,
    pub node: Option<String>,
    pub lease: Option<String>,
}

/// The validated section; `Config::ha` is `None` unless `ha.enabled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// This node's name: unique among the nodes, shown by `status` and in the logs.
    pub node: String,
    /// How long the leader's lease lasts without a renewal.
    pub lease: Duration,
}

/// Longest node name (it goes into logs, metrics labels and the User-Agent).
const MAX_NODE: usize = 63;

pub(super) fn ha(ctx: &Ctx<'_>, h: &HaSection) -> Result<Option<HaConfig>, ConfigError> {
    if !h.enabled {
        return Ok(None);
    }
    let Some(node) = &h.node else {
        let reason = "must be set when ha.enabled is true: this node's name, e.g. \"pbx1\" (each node its own)";
        return Err(ctx.invalid("ha.node", reason));
    };
    let node = node.trim();
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if node.is_empty() || node.len() > MAX_NODE || !node.chars().all(fine) {
        let reason = format!(
            "{node:?} is not a node name: 1 to {MAX_NODE} letters, digits, '-', '_' or '.', e.g. \"pbx1\""
        );
        return Err(ctx.invalid("ha.node", reason));
    }
    let lease = h.lease.as_deref().unwrap_or(DEFAULT_LEASE);
    let lease = ctx.duration(
        "ha.lease",
        lease,
        Duration::from_secs(2)..=Duration::from_secs(120),
    )?;
    Ok(Some(HaConfig {
        node: node.to_owned(),
        lease,
    }))
}
