//! The per-user state of the dialog-subscription core, its dialogs and the call state they
//! give; the token bucket that paces SUBSCRIBEs; the seeded jitter.

use std::sync::Arc;

use super::dialog_info::{DialogInfo, DialogState, DocState, MAX_DIALOGS};
use super::watch_types::SubId;
use crate::sync::types::{CallState, Millis};

/// Where a user's subscription is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// None: a SUBSCRIBE goes out at the user's `due` time.
    Idle,
    /// A SUBSCRIBE went out; no answer yet.
    Asking { id: SubId },
    /// Granted until `expires_at`; refreshed at the user's `due` time.
    Active { id: SubId, expires_at: Millis },
    /// A refresh went out; no answer yet.
    Refreshing { id: SubId, expires_at: Millis },
}

impl Sub {
    pub fn id(self) -> Option<SubId> {
        match self {
            Sub::Idle => None,
            Sub::Asking { id } | Sub::Active { id, .. } | Sub::Refreshing { id, .. } => Some(id),
        }
    }
}

/// One dialog of a user, as far as the call state needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub state: DialogState,
    /// The local side holds the call (`+sip.rendering=no`).
    pub held: bool,
}

/// One watched user.
#[derive(Debug, Clone)]
pub struct User {
    pub uri: Arc<str>,
    pub sub: Sub,
    /// When the next SUBSCRIBE or refresh is due, or (asking, refreshing) when the answer
    /// counts as timed out. Mirrored in the core's agenda.
    pub due: Option<Millis>,
    /// Failures in a row (reset by a granted subscription).
    pub failures: u32,
    /// The refusal was reported (reset by a granted subscription).
    pub warned: bool,
    /// The dialogs the PBX announced (terminated ones are dropped).
    pub dialogs: Vec<Known>,
    /// The last version applied in the current subscription.
    pub version: Option<u32>,
    /// A full state was applied in the current subscription.
    pub settled: bool,
    /// The call state last reported (`None`: none yet since the start).
    pub reported: Option<CallState>,
    /// A NOTIFY came in the current subscription.
    pub heard: bool,
    /// Granted but not heard from: when to refresh once it is (the agenda holds the
    /// deadline of the first NOTIFY meanwhile).
    pub refresh_at: Option<Millis>,
    /// [`super::watch::Fact::Unheard`] was said (reset by a NOTIFY).
    pub unheard_said: bool,
}

impl User {
    pub fn new(uri: Arc<str>) -> User {
        User {
            uri,
            sub: Sub::Idle,
            due: None,
            failures: 0,
            warned: false,
            dialogs: Vec::new(),
            version: None,
            settled: false,
            reported: None,
            heard: false,
            refresh_at: None,
            unheard_said: false,
        }
    }

    /// A new subscription starts: its versions count afresh and its first full state settles
    /// the user. The dialogs known so far stay until then (no flapping to idle meanwhile).
    pub fn restart(&mut self, sub: Sub) {
        self.sub = sub;
        self.version = None;
        self.settled = false;
        self.heard = false;
        self.refresh_at = None;
    }

    /// Apply a NOTIFY body of the current subscription. Returns false when it was ignored:
    /// a partial state not newer than the last version applied, or before any full one (RFC
    /// 4235 section 4.1: the first NOTIFY of a subscription carries the full state).
    pub fn apply(&mut self, info: &DialogInfo) -> bool {
        let full = info.state == DocState::Full;
        // A full state is the whole truth whatever its version: Asterisk killed mid-call and
        // started again renumbers from an equal or lower version in the same dialog, and its
        // call's end must not be lost. A partial state must be newer than the last applied;
        // unversioned (FreeSWITCH's version="") it cannot be ordered at all.
        let stale = match (full, info.unversioned) {
            (true, _) => false,
            (false, true) => true,
            (false, false) => self.version.is_some_and(|v| info.version <= v),
        };
        if stale || (!full && !self.settled) {
            return false;
        }
        if !info.unversioned {
            self.version = Some(info.version);
        }
        if full {
            self.dialogs.clear();
            self.settled = true;
        }
        for d in &info.dialogs {
            self.dialogs.retain(|k| k.id != d.id);
            if d.state != DialogState::Terminated && self.dialogs.len() < MAX_DIALOGS {
                self.dialogs.push(Known {
                    id: d.id.clone(),
                    state: d.state,
                    held: d.is_held(),
                });
            }
        }
        true
    }

    /// A full state without dialogs (a NOTIFY without body in an active subscription).
    pub fn clear(&mut self) {
        self.dialogs.clear();
        self.settled = true;
    }

    /// The call state the dialogs give: a confirmed dialog is a call, and so is a held one
    /// (Asterisk keeps it confirmed; FreeSWITCH sends it as early with rendering off); else
    /// a dialog being set up rings; else idle.
    pub fn call_state(&self) -> CallState {
        let call = |k: &Known| {
            k.state == DialogState::Confirmed || (k.state == DialogState::Early && k.held)
        };
        if self.dialogs.iter().any(call) {
            CallState::Speaking
        } else if self.dialogs.is_empty() {
            CallState::Idle
        } else {
            CallState::Ringing
        }
    }
}

/// A token bucket in thousandths of a token: `rate` tokens a second, at most `burst` kept.
#[derive(Debug, Clone)]
pub struct Bucket {
    milli: u64,
    cap: u64,
    rate: u64,
    at: Millis,
}

const TOKEN: u64 = 1000;

impl Bucket {
    /// Full at `now`. A rate of 0 is taken as 1 (nothing would ever be sent).
    pub fn new(rate: u32, burst: u32, now: Millis) -> Bucket {
        let cap = u64::from(burst.max(1)) * TOKEN;
        Bucket {
            milli: cap,
            cap,
            rate: u64::from(rate.max(1)),
            at: now,
        }
    }

    fn refill(&mut self, now: Millis) {
        let elapsed = u64::try_from(now.saturating_sub(self.at)).unwrap_or(0);
        // One millisecond adds `rate` thousandths of a token.
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.cap);
        self.at = self.at.max(now);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Millis) -> bool {
        self.refill(now);
        if self.milli >= TOKEN {
            self.milli -= TOKEN;
            true
        } else {
            false
        }
    }

    /// When the next whole token is there.
    pub fn next_token(&self, now: Millis) -> Millis {
        let mut copy = self.clone();
        copy.refill(now);
        let missing = TOKEN.saturating_sub(copy.milli);
        let wait = missing.div_ceil(copy.rate);
        now.saturating_add(Millis::try_from(wait).unwrap_or(Millis::MAX))
    }
}

/// A seeded source of jitter (splitmix64): the same seed gives the same waits.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A wait in `ceiling/2 ..= ceiling` ("equal jitter": spread, yet never next to nothing,
    /// so a PBX that keeps failing is not asked again at once).
    pub fn wait(&mut self, ceiling: Millis) -> Millis {
        let ceiling = u64::try_from(ceiling.max(0)).unwrap_or(0);
        let half = ceiling / 2;
        let spread = ceiling - half;
        let extra = if spread == 0 {
            0
        } else {
            self.next() % (spread + 1)
        };
        Millis::try_from(half + extra).unwrap_or(Millis::MAX)
    }
}
