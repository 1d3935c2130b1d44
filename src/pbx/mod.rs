//! PBX connectors: what a connector is, and the generic HTTP one.
//!
//! A connector turns the PBX's view of calls into [`PbxEvent`]s for the service, and delivers
//! [`PbxUpdate`]s (Teams presence, mapped to a PBX state name) back to the PBX.
//!
//! [`PbxEvent`]: crate::sync::types::PbxEvent

use std::borrow::Cow;

pub mod asterisk;
pub mod http;
pub mod mailbox;
pub mod push;
pub mod sip;
pub mod tls;

/// One Teams presence change for the PBX, as the push body carries it. Two updates are equal
/// when they tell the PBX the same (`read_at` aside).
#[derive(Debug, Clone, Eq, serde::Serialize)]
pub struct PbxUpdate {
    pub extension: String,
    pub email: String,
    /// Teams availability; documented values are static strings (no allocation per update).
    pub availability: Cow<'static, str>,
    pub activity: Cow<'static, str>,
    /// The PBX-side state name from the mapping table (e.g. `in_meeting`).
    pub state: String,
    /// When the main loop read the Teams change (`None`: a state pushed again): the PBX's
    /// acknowledgement is measured from then (`teams_to_pbx_seconds`). Not sent.
    #[serde(skip)]
    pub read_at: Option<tokio::time::Instant>,
}

impl PartialEq for PbxUpdate {
    fn eq(&self, other: &PbxUpdate) -> bool {
        (
            &self.extension,
            &self.email,
            &self.availability,
            &self.activity,
            &self.state,
        ) == (
            &other.extension,
            &other.email,
            &other.availability,
            &other.activity,
            &other.state,
        )
    }
}

/// Whether a connector that keeps a connection to the PBX has it (shown by `status`; a
/// `Connected` after a loss makes the daemon write every user's Teams state again).
#[derive(Debug)]
pub enum LinkState {
    Connected,
    /// Why it was lost.
    Disconnected(LinkLost),
}

/// Why a connector lost (or could not make) its connection to the PBX.
#[derive(Debug, thiserror::Error)]
pub enum LinkLost {
    /// The WebSocket could not be opened, or failed.
    #[error("WebSocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The PBX's TLS certificate was refused.
    #[error("TLS certificate refused: {0}")]
    Certificate(tls::CertProblem),
    /// Nothing answered the WebSocket upgrade in time.
    #[error("WebSocket: no answer within {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// The PBX closed the connection.
    #[error("the PBX closed the WebSocket")]
    Closed,
    /// The PBX stopped answering pings.
    #[error("no answer to pings for {0:?}")]
    Silent(std::time::Duration),
    /// A request to the PBX's API failed (resync, subscription).
    #[error(transparent)]
    Api(#[from] asterisk::AriError),
    /// The SIP server stopped answering (the SIP connector's keep-alive).
    #[error("SIP: {0}")]
    Sip(String),
    /// The connection cannot even be described (a bad URL).
    #[error("{0}")]
    Request(String),
}

impl LinkLost {
    /// The certificate problem, when that is why.
    pub fn certificate(&self) -> Option<&tls::CertProblem> {
        match self {
            LinkLost::Certificate(p) | LinkLost::Api(asterisk::AriError::Certificate(p)) => Some(p),
            _ => None,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for LinkLost {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> LinkLost {
        match tls::certificate_problem(&e) {
            Some(problem) => LinkLost::Certificate(problem),
            None => LinkLost::WebSocket(Box::new(e)),
        }
    }
}
