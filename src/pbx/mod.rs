//! PBX connectors: what a connector is, and the generic HTTP one.
//!
//! A connector turns the PBX's view of calls into [`PbxEvent`]s for the service, and delivers
//! [`PbxUpdate`]s (Teams presence, mapped to a PBX state name) back to the PBX.
//!
//! [`PbxEvent`]: crate::sync::types::PbxEvent

use std::borrow::Cow;

pub mod asterisk;
pub mod http;
pub mod push;

/// One Teams presence change for the PBX, as the push body carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PbxUpdate {
    pub extension: String,
    pub email: String,
    /// Teams availability; documented values are static strings (no allocation per update).
    pub availability: Cow<'static, str>,
    pub activity: Cow<'static, str>,
    /// The PBX-side state name from the mapping table (e.g. `in_meeting`).
    pub state: String,
}

/// Whether a connector that keeps a connection to the PBX has it (shown by `status`; a
/// `Connected` after a loss makes the daemon write every user's Teams state again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    Connected,
    /// Why it was lost.
    Disconnected(String),
}
