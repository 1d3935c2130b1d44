//! Presence of one user: the sessions that feed it and how Graph aggregates them. Pure: every
//! function takes `now` (emulator time).
//!
//! Sources, cited below by name:
//! - setPresence: <https://learn.microsoft.com/en-us/graph/api/presence-setpresence> (the
//!   five-pair list is on its `?view=graph-rest-beta` version)
//! - managing presence state:
//!   <https://learn.microsoft.com/en-us/graph/cloud-communications-manage-presence-state>
//! - clearPresence: <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence>
//! - setUserPreferredPresence:
//!   <https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>
//! - setStatusMessage: <https://learn.microsoft.com/en-us/graph/api/presence-setstatusmessage>
//! - presence resource: <https://learn.microsoft.com/en-us/graph/api/resources/presence>
//! - get presence: <https://learn.microsoft.com/en-us/graph/api/presence-get>
//! - sessionId = the app's id:
//!   <https://github.com/microsoftgraph/microsoft-graph-docs/issues/18837>
//!
//! Modelled:
//! - each app holds at most one session per user (sessionId = its client id); the user's own
//!   Teams client is one more session (set by the test through the Rust API);
//! - an app session ends when its `expirationDuration` passes (setPresence);
//! - an app session set to Available fades: Available/AvailableInactive after 5 min without a
//!   refresh, Away/Away after another 5 min (setPresence, managing presence state);
//! - user-preferred presence beats every session, but only while some session exists;
//!   with no session the user is Offline/Offline (setUserPreferredPresence, clearPresence);
//! - among sessions DoNotDisturb > Busy > Available > Away (setPresence, managing presence
//!   state); BeRightBack ranks with Away (UNVERIFIED); ties go to the user's own client, then
//!   the most recent session.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

/// setPresence (availability, activity) pairs (setPresence; newer page: 5 pairs with
/// DoNotDisturb/Presenting; the older copy lists 4).
pub(crate) const SESSION_PAIRS: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// setUserPreferredPresence pairs (setUserPreferredPresence).
pub(crate) const PREFERRED_PAIRS: &[(&str, &str)] = &[
    ("Available", "Available"),
    ("Busy", "Busy"),
    ("DoNotDisturb", "DoNotDisturb"),
    ("BeRightBack", "BeRightBack"),
    ("Away", "Away"),
    ("Offline", "OffWork"),
];

/// How long an Available app session stays Available without a refresh (setPresence, managing
/// presence state).
const FADE_STEP: Duration = Duration::from_secs(300);

/// Finds `(a, b)` in `pairs` case-insensitively (UNVERIFIED whether Graph is case-sensitive)
/// and returns the canonical spelling.
pub(crate) fn canonical_pair(pairs: &[(&str, &str)], a: &str, b: &str) -> Option<(String, String)> {
    pairs
        .iter()
        .find(|(x, y)| x.eq_ignore_ascii_case(a) && y.eq_ignore_ascii_case(b))
        .map(|(x, y)| ((*x).to_owned(), (*y).to_owned()))
}

/// One app's setPresence session for one user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub availability: String,
    pub activity: String,
    pub set_at: Instant,
    pub expires_at: Instant,
}

impl Session {
    /// What this session contributes now, after Available fading (setPresence, managing
    /// presence state).
    fn effective(&self, now: Instant) -> (String, String) {
        let age = now.saturating_duration_since(self.set_at);
        if self.availability != "Available" || age < FADE_STEP {
            (self.availability.clone(), self.activity.clone())
        } else if age < FADE_STEP * 2 {
            ("Available".into(), "AvailableInactive".into())
        } else {
            ("Away".into(), "Away".into())
        }
    }
}

/// A user-preferred presence (setUserPreferredPresence).
#[derive(Debug, Clone)]
pub(crate) struct Preferred {
    pub availability: String,
    pub activity: String,
    pub expires_at: Instant,
}

/// A status message (setStatusMessage).
#[derive(Debug, Clone)]
pub(crate) struct StatusMessage {
    pub content: String,
    pub content_type: String,
    /// Wall-clock expiry (`expiryDateTime`, UTC only); None = until cleared.
    pub expires_at: Option<SystemTime>,
}

/// Everything that feeds one user's presence.
#[derive(Debug, Clone, Default)]
pub(crate) struct PresenceState {
    /// The user's own Teams client session, if signed in.
    pub client: Option<(String, String)>,
    /// App sessions by client id (lowercase).
    pub sessions: HashMap<String, Session>,
    pub preferred: Option<Preferred>,
    pub status: Option<StatusMessage>,
    /// Bumped on every change: `sequenceNumber` (presence resource; format UNVERIFIED).
    pub seq: u64,
}

fn rank(availability: &str) -> u8 {
    match availability {
        "DoNotDisturb" => 4,
        "Busy" | "BusyIdle" => 3,
        "Available" | "AvailableIdle" => 2,
        "Away" | "BeRightBack" => 1,
        _ => 0,
    }
}

impl PresenceState {
    /// Drops expired sessions and an expired preferred presence.
    pub fn prune(&mut self, now: Instant) {
        self.sessions.retain(|_, s| s.expires_at > now);
        if self.preferred.as_ref().is_some_and(|p| p.expires_at <= now) {
            self.preferred = None;
        }
    }

    /// The aggregated (availability, activity) Graph would report now.
    pub fn aggregate(&self, now: Instant) -> (String, String) {
        let mut live: Vec<(&Session, (String, String))> = self
            .sessions
            .values()
            .filter(|s| s.expires_at > now)
            .map(|s| (s, s.effective(now)))
            .collect();
        if self.client.is_none() && live.is_empty() {
            return ("Offline".into(), "Offline".into());
        }
        if let Some(p) = self.preferred.as_ref().filter(|p| p.expires_at > now) {
            return (p.availability.clone(), p.activity.clone());
        }
        // Most recent first, so that `max_by_key` (last max wins) is not what decides ties.
        live.sort_by_key(|(s, _)| std::cmp::Reverse(s.set_at));
        let mut best = self.client.clone();
        for (_, eff) in live {
            let better = best.as_ref().is_none_or(|b| rank(&eff.0) > rank(&b.0));
            if better {
                best = Some(eff);
            }
        }
        best.unwrap_or_else(|| ("Offline".into(), "Offline".into()))
    }

    /// The presence resource as Graph returns it (presence resource, get presence).
    /// `statusMessage` carries only `message`: expiryDateTime/publishedDateTime are omitted
    /// when reading another user (setStatusMessage). `workLocation` is not modelled.
    pub fn to_json(&self, id: &str, now: Instant, wall: SystemTime) -> Value {
        let (availability, activity) = self.aggregate(now);
        let status = self
            .status
            .as_ref()
            .filter(|m| m.expires_at.is_none_or(|e| e > wall))
            .map(|m| json!({"message": {"content": m.content, "contentType": m.content_type}}));
        json!({
            "id": id,
            "availability": availability,
            "activity": activity,
            "statusMessage": status,
            "outOfOfficeSettings": {"message": null, "isOutOfOffice": false},
            "sequenceNumber": format!("{:016X}", self.seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(a: &str, b: &str, now: Instant, mins: u64) -> Session {
        Session {
            availability: a.into(),
            activity: b.into(),
            set_at: now,
            expires_at: now + Duration::from_secs(mins * 60),
        }
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.into(), b.into())
    }

    #[test]
    fn no_session_is_offline_even_with_preferred() {
        let now = Instant::now();
        let mut p = PresenceState::default();
        assert_eq!(p.aggregate(now), pair("Offline", "Offline"));
        p.preferred = Some(Preferred {
            availability: "Busy".into(),
            activity: "Busy".into(),
            expires_at: now + Duration::from_secs(60),
        });
        assert_eq!(p.aggregate(now), pair("Offline", "Offline"));
        p.client = Some(pair("Available", "Available"));
        assert_eq!(p.aggregate(now), pair("Busy", "Busy"));
    }

    #[test]
    fn ranking_and_expiry() {
        let now = Instant::now();
        let mut p = PresenceState {
            client: Some(pair("Away", "Away")),
            ..Default::default()
        };
        p.sessions
            .insert("a".into(), session("Busy", "InACall", now, 10));
        assert_eq!(p.aggregate(now), pair("Busy", "InACall"));
        p.sessions
            .insert("b".into(), session("DoNotDisturb", "Presenting", now, 5));
        assert_eq!(p.aggregate(now), pair("DoNotDisturb", "Presenting"));
        let later = now + Duration::from_secs(6 * 60);
        assert_eq!(p.aggregate(later), pair("Busy", "InACall"));
        let much_later = now + Duration::from_secs(11 * 60);
        assert_eq!(p.aggregate(much_later), pair("Away", "Away"));
    }

    #[test]
    fn available_fades() {
        let now = Instant::now();
        let mut p = PresenceState::default();
        p.sessions
            .insert("a".into(), session("Available", "Available", now, 60));
        assert_eq!(p.aggregate(now), pair("Available", "Available"));
        let t1 = now + Duration::from_secs(301);
        assert_eq!(p.aggregate(t1), pair("Available", "AvailableInactive"));
        let t2 = now + Duration::from_secs(601);
        assert_eq!(p.aggregate(t2), pair("Away", "Away"));
    }
}
