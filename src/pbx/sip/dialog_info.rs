//! RFC 4235 `application/dialog-info+xml` bodies, as NOTIFYs of the `dialog` event package
//! carry them (<https://www.rfc-editor.org/rfc/rfc4235>, section 4), parsed into a
//! [`DialogInfo`] with quick-xml.
//!
//! What the servers we target send, read from their public sources (the samples in
//! `tests/fuzz/corpus/dialog_info/` follow them):
//! - Asterisk PJSIP (`res/res_pjsip_dialog_info_body_generator.c` in asterisk/asterisk on
//!   GitHub; set-up:
//!   <https://docs.asterisk.org/Configuration/Channel-Drivers/SIP/Configuring-res_pjsip/Configuring-res_pjsip-for-Presence-Subscriptions/>):
//!   one `<dialog id="{exten}">` per
//!   hint, always `state="full"`, `terminated` / `early` (with `direction="recipient"` and
//!   `local`/`remote` identities) / `confirmed`; a held call stays `confirmed` with a local
//!   target whose `+sip.rendering` param is `no`. Versions count from 0 per subscription.
//! - Kamailio `presence_dialoginfo` aggregating `pua_dialoginfo` publications
//!   (<https://www.kamailio.org/docs/modules/stable/modules/presence_dialoginfo.html>): several
//!   dialogs per entity with `call-id`, tags, direction and identities; with
//!   `force_dummy_dialog` an idle user is one `terminated` dialog, without it the NOTIFY has no
//!   body at all (which the adapter reports as "no dialogs", not through this parser).
//! - FreeSWITCH `mod_sofia` (`src/mod/endpoints/mod_sofia/sofia_presence.c` in
//!   signalwire/freeswitch): dialogs keyed by channel UUID; a held call is sent as `early`
//!   with a local target `+sip.rendering` = `no` ([`Dialog::is_held`]).
//! - Old Asterisk `chan_sip`: the same one-dialog bodies, sometimes `state="partial"`.
//!
//! Namespaces are honoured: an element belongs to the package when it is in
//! `urn:ietf:params:xml:ns:dialog-info` (default or prefixed); elements in other namespaces
//! and unknown elements or attributes are skipped (RFC 4235 section 4.1 allows extensions).
//! A document without any namespace at all is read as the package too (old devices).
//! Everything is bounded ([`MAX_BODY`], [`MAX_DIALOGS`], [`MAX_TEXT`], [`MAX_DEPTH`]) and every
//! malformed input is a [`DialogInfoError`], never a panic.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::dialog_read as read;

/// The XML namespace of the package (RFC 4235 section 4.1).
pub const NAMESPACE: &str = "urn:ietf:params:xml:ns:dialog-info";
/// The largest body read. Asterisk's hint bodies are under 1 KiB; an aggregate of many
/// dialogs from Kamailio stays well under this.
pub const MAX_BODY: usize = 64 * 1024;
/// The most dialogs one document may list.
pub const MAX_DIALOGS: usize = 64;
/// The longest attribute value or text kept (URIs, ids, display names).
pub const MAX_TEXT: usize = 1024;
/// The deepest element nesting accepted (the package itself needs 5).
pub const MAX_DEPTH: usize = 32;

/// One dialog-info document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    /// The watched resource (`entity`), e.g. `sip:1001@pbx`.
    pub entity: String,
    /// Increments by one per NOTIFY of a subscription (RFC 4235 section 4.1.1).
    pub version: u32,
    /// The document gave `version=""` (FreeSWITCH does when its event has no count): it
    /// cannot be ordered, so only a full state of it is taken (`version` is then 0).
    pub unversioned: bool,
    pub state: DocState,
    pub dialogs: Vec<Dialog>,
}

/// Whether the document is the whole state or changes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocState {
    Full,
    Partial,
}

/// One dialog of the entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub id: String,
    pub call_id: Option<String>,
    pub local_tag: Option<String>,
    pub remote_tag: Option<String>,
    pub direction: Option<Direction>,
    pub state: DialogState,
    pub local: Option<Participant>,
    pub remote: Option<Participant>,
}

/// The dialog state machine of RFC 4235 section 3.7.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DialogState {
    Trying,
    Proceeding,
    Early,
    Confirmed,
    Terminated,
}

/// Who sent the INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Initiator,
    Recipient,
}

/// A `<local>` or `<remote>` element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Participant {
    pub identity: Option<String>,
    pub display: Option<String>,
    pub target: Option<String>,
    /// The target's `+sip.rendering` param: `Some(false)` when the media is on hold.
    pub rendering: Option<bool>,
}

impl Dialog {
    /// The local side has put the media on hold (`+sip.rendering` = `no`, RFC 4235 section
    /// 4.1.6.2 with RFC 3840's feature tag).
    pub fn is_held(&self) -> bool {
        self.local.as_ref().and_then(|p| p.rendering) == Some(false)
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogInfoError {
    #[error("body of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("empty body")]
    Empty,
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("document type declarations are not accepted")]
    DocType,
    #[error("the root element is not <dialog-info> of {NAMESPACE}")]
    NotDialogInfo,
    #[error("<{element}> has no {attribute} attribute")]
    Missing {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("version {0:?} is not a number from 0 to 4294967295")]
    BadVersion(String),
    #[error("document state {0:?} is neither full nor partial")]
    BadDocState(String),
    #[error("dialog state {0:?} is not one of RFC 4235's")]
    BadDialogState(String),
    #[error("direction {0:?} is neither initiator nor recipient")]
    BadDirection(String),
    #[error("dialog {0:?} has no <state>")]
    NoState(String),
    #[error("more than {0} dialogs")]
    TooManyDialogs(usize),
    #[error("a value is longer than {0} bytes")]
    TooLong(usize),
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    #[error("the document ends before </dialog-info>")]
    Truncated,
}

/// Parse one body.
pub fn parse(body: &[u8]) -> Result<DialogInfo, DialogInfoError> {
    if body.len() > MAX_BODY {
        return Err(DialogInfoError::TooLarge {
            size: body.len(),
            limit: MAX_BODY,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| DialogInfoError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(DialogInfoError::Empty);
    }
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.trim_text(true);
    config.check_end_names = true;
    let root = read_root(&mut reader)?;
    read::Body::new(root).run(&mut reader)
}

/// What the root element says, before its children are read.
pub(super) struct Root {
    pub(super) entity: String,
    pub(super) version: u32,
    pub(super) unversioned: bool,
    pub(super) state: DocState,
    /// `<dialog-info/>`: no children will follow.
    pub(super) empty: bool,
    /// The document uses no namespace at all.
    pub(super) unbound: bool,
}

fn read_root(reader: &mut NsReader<&[u8]>) -> Result<Root, DialogInfoError> {
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(read::xml_error)?;
        let unbound = matches!(ns, ResolveResult::Unbound);
        let ours = unbound || matches!(ns, ResolveResult::Bound(n) if n.0 == NAMESPACE);
        let (start, empty) = match event {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::Text(_) => continue,
            Event::DocType(_) => return Err(DialogInfoError::DocType),
            Event::Start(s) => (s, false),
            Event::Empty(s) => (s, true),
            Event::Eof => return Err(DialogInfoError::Empty),
            _ => return Err(DialogInfoError::NotDialogInfo),
        };
        if !ours || start.local_name().as_ref() != "dialog-info" {
            return Err(DialogInfoError::NotDialogInfo);
        }
        return root_attributes(reader, &start, empty, unbound);
    }
}

fn root_attributes(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    empty: bool,
    unbound: bool,
) -> Result<Root, DialogInfoError> {
    let mut entity = None;
    let mut version = None;
    let mut state = None;
    for (name, value) in read::attributes(reader, start)? {
        match name.as_str() {
            "entity" => entity = Some(value),
            "version" => version = Some(value),
            "state" => state = Some(value),
            _ => {}
        }
    }
    let missing = |attribute| DialogInfoError::Missing {
        element: "dialog-info",
        attribute,
    };
    let version = version.ok_or(missing("version"))?;
    let unversioned = version.trim().is_empty();
    let version = match unversioned {
        true => 0,
        false => version
            .trim()
            .parse::<u32>()
            .map_err(|_| DialogInfoError::BadVersion(version.clone()))?,
    };
    let state = match state.ok_or(missing("state"))?.trim() {
        "full" => DocState::Full,
        "partial" => DocState::Partial,
        other => return Err(DialogInfoError::BadDocState(other.to_owned())),
    };
    Ok(Root {
        entity: entity.ok_or(missing("entity"))?,
        version,
        unversioned,
        state,
        empty,
        unbound,
    })
}

impl DialogState {
    /// Any case: Kamailio's pua_dialoginfo writes `Trying` for a call it is setting up.
    pub(super) fn parse(text: &str) -> Result<DialogState, DialogInfoError> {
        Ok(match text.trim().to_ascii_lowercase().as_str() {
            "trying" => DialogState::Trying,
            "proceeding" => DialogState::Proceeding,
            "early" => DialogState::Early,
            "confirmed" => DialogState::Confirmed,
            "terminated" => DialogState::Terminated,
            _ => return Err(DialogInfoError::BadDialogState(text.trim().to_owned())),
        })
    }
}

impl Direction {
    pub(super) fn parse(text: &str) -> Result<Direction, DialogInfoError> {
        match text.trim() {
            "initiator" => Ok(Direction::Initiator),
            "recipient" => Ok(Direction::Recipient),
            other => Err(DialogInfoError::BadDirection(other.to_owned())),
        }
    }
}

#[cfg(test)]
#[path = "dialog_info_tests.rs"]
mod tests;
