//! The vocabulary of the dialog-subscription core ([`super::watch::Watch`]): what comes in
//! ([`Input`]), what goes out ([`Command`], [`Fact`]), how it is set up ([`Settings`]).
//! Plain data, no I/O.

use std::sync::Arc;
use std::time::Duration;

use super::dialog_info::DialogInfo;
use crate::sync::types::CallState;

/// One subscription attempt (a SUBSCRIBE dialog), numbered by the core. Answers and NOTIFYs
/// naming an attempt the core has given up are ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubId(pub u64);

/// A user to watch: the extension the users file names and the SIP URI subscribed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub extension: Arc<str>,
    pub uri: Arc<str>,
}

/// How the core is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The `Expires` asked for in each SUBSCRIBE (the issue's `subscribe_expires`, 600 s).
    pub expires: Duration,
    /// A subscription is refreshed once this share (in percent) of the granted expiry is gone.
    pub refresh_percent: u8,
    /// SUBSCRIBEs (new ones and refreshes) sent per second at most, on average...
    pub rate: u32,
    /// ...and at most this many at once after a quiet time (the token bucket's size).
    pub burst: u32,
    /// The first wait before a new try after a failure; it doubles per failure in a row...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_max: Duration,
    /// The wait after the PBX refused the subscription itself (403, 404, 489, or
    /// `Subscription-State: terminated;reason=rejected|noresource`): no retry storm.
    pub refused_wait: Duration,
    /// How long a SUBSCRIBE may go unanswered before it counts as timed out (the SIP stack's
    /// own transaction timeout, 32 s, normally answers first).
    pub answer_wait: Duration,
    /// How long a granted subscription may stay without its first NOTIFY before it counts as
    /// failed and is made again: a 2xx means the notifier sends one at once (RFC 6665 section
    /// 4.2.1.1), and by 64*T1 (32 s) its retransmissions over UDP are over.
    pub notify_wait: Duration,
    /// Seed of the jitter (the adapter passes a random one; tests a fixed one).
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            expires: Duration::from_secs(600),
            refresh_percent: 80,
            rate: 50,
            burst: 50,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
            refused_wait: Duration::from_secs(3600),
            answer_wait: Duration::from_secs(40),
            notify_wait: Duration::from_secs(32),
            seed: 0,
        }
    }
}

/// Why a SUBSCRIBE (new or refresh) did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A final answer other than 2xx (after the stack's digest authentication).
    Status(u16),
    /// No answer (transaction timeout).
    Timeout,
    /// The message could not be sent or the connection broke.
    Transport,
}

/// The `Subscription-State` of a NOTIFY (RFC 6665 section 8.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubState {
    Active {
        expires: Option<Duration>,
    },
    Pending,
    Terminated {
        reason: Option<String>,
        retry_after: Option<Duration>,
    },
}

/// What the core is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The users to watch (the whole set; new ones are subscribed, gone ones unsubscribed).
    Users(Vec<Watched>),
    /// Time passed (the adapter wakes at [`super::watch::Watch::next_deadline`]).
    Tick,
    /// A 2xx to a SUBSCRIBE or a refresh, with the `Expires` the PBX granted.
    Accepted { id: SubId, expires: Duration },
    /// A SUBSCRIBE or refresh failed.
    Failed { id: SubId, failure: Failure },
    /// A NOTIFY in a subscription's dialog (already answered 200 by the adapter). `body`:
    /// the parsed dialog-info, `None` when the NOTIFY had no body. A malformed body never
    /// gets here: the adapter answers it and drops it.
    Notified {
        id: SubId,
        state: SubState,
        body: Option<DialogInfo>,
    },
    /// The PBX restarted or was unreachable (keep-alives lost, then back): every
    /// subscription is made again.
    PbxRestarted,
    /// Shutting down: every subscription is ended, nothing new is sent.
    Stop,
}

/// What the core asks the adapter to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send a new SUBSCRIBE (`Event: dialog`, `Accept: application/dialog-info+xml`).
    Subscribe {
        id: SubId,
        extension: Arc<str>,
        uri: Arc<str>,
        expires: Duration,
    },
    /// Refresh the subscription within its dialog.
    Refresh { id: SubId, expires: Duration },
    /// End the subscription (SUBSCRIBE with `Expires: 0`), then forget it.
    Unsubscribe { id: SubId },
    /// Forget a subscription the core gave up (its dialog, if any, is left to expire).
    Forget { id: SubId },
    /// The user's call state changed (or is known for the first time since the start).
    CallState {
        extension: Arc<str>,
        state: CallState,
    },
    /// Something for the log, once.
    Fact(Fact),
}

/// Things worth a log line, each said once by the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// The PBX refuses to let us watch this user (WARN, naming the extension and what to set
    /// up on the PBX: a hint / BLF permission for the daemon's account).
    Refused {
        extension: Arc<str>,
        uri: Arc<str>,
        why: Refusal,
    },
    /// A granted subscription brought no NOTIFY within [`Settings::notify_wait`]; it is made
    /// again (said once until the user's NOTIFYs come).
    Unheard { extension: Arc<str>, uri: Arc<str> },
}

/// How the PBX refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A final answer (403, 404, 489; 603 is Asterisk's answer under `allow_subscribe = no`).
    Status(u16),
    /// `Subscription-State: terminated` with this reason (`rejected`, `noresource`).
    Terminated(String),
}
