//! The SIP connector's foundations (issue 11): call state from RFC 4235 dialog subscriptions
//! ("busy lamp field"), for any SIP PBX, with nothing installed on the PBX.
//!
//! Here so far, all pure (no network, no clock, no tokio):
//! - [`dialog_info`]: `application/dialog-info+xml` NOTIFY bodies -> [`dialog_info::DialogInfo`].
//! - [`watch`]: the subscription core, one per connector: when to SUBSCRIBE, refresh and
//!   subscribe again (rate-limited, with backoff), how NOTIFYs change each user's dialogs,
//!   and which call state that gives ([`watch::Command::CallState`]).
//!
//! Not here yet: the network side (a SIP stack sending the SUBSCRIBEs the core asks for and
//! feeding it the answers and NOTIFYs), its `[pbx] kind = "sip"` config keys, and its wiring
//! into the daemon. Until then nothing uses this module outside its tests.

pub mod dialog_info;
mod dialog_read;
pub mod watch;
mod watch_state;
mod watch_types;
