//! Teams presence -> PBX state name, from a table that admins can override in the config.
//!
//! Rules keyed by `activity` win over rules keyed by `availability`; a presence that matches
//! neither maps to [`UNKNOWN_STATE`]. The value lists come from the Graph presence resource
//! <https://learn.microsoft.com/en-us/graph/api/resources/presence>; `Focusing` and
//! `AvailableInactive` from the setPresence pages
//! (<https://learn.microsoft.com/en-us/graph/api/presence-setpresence?view=graph-rest-beta>,
//! <https://learn.microsoft.com/en-us/graph/cloud-communications-manage-presence-state>).

use std::collections::BTreeMap;

use super::types::TeamsPresence;

/// Documented values of `presence.availability` (presence resource page above).
pub const KNOWN_AVAILABILITIES: &[&str] = &[
    "Available",
    "AvailableIdle",
    "Away",
    "BeRightBack",
    "Busy",
    "BusyIdle",
    "DoNotDisturb",
    "Offline",
    "PresenceUnknown",
];

/// Documented values of `presence.activity` (presence resource page above, plus `Focusing`
/// from the beta setPresence permutation table and `AvailableInactive` from the setPresence
/// timeout text).
pub const KNOWN_ACTIVITIES: &[&str] = &[
    "Available",
    "AvailableInactive",
    "Away",
    "BeRightBack",
    "Busy",
    "DoNotDisturb",
    "Focusing",
    "InACall",
    "InAConferenceCall",
    "Inactive",
    "InAMeeting",
    "Offline",
    "OffWork",
    "OutOfOffice",
    "PresenceUnknown",
    "Presenting",
    "UrgentInterruptionsOnly",
];

/// The PBX-side state names the default table produces. Admins may map to other names.
pub const DEFAULT_STATES: &[&str] = &[
    "available",
    "busy",
    "in_call",
    "in_meeting",
    "dnd",
    "away",
    "offline",
    "unknown",
];

/// What a presence maps to when no rule matches.
pub const UNKNOWN_STATE: &str = "unknown";

/// The mapped value that pushes nothing: the PBX keeps what it shows (e.g. `Offline = "keep"`
/// for a user signed out of Teams but at their desk phone). No default rule uses it.
pub const KEEP: &str = "keep";

/// Default rules by activity. Chosen after a survey of other PBX-Teams presence products: calls
/// and conference calls are a call; presenting and focusing are do-not-disturb (Swyx maps
/// Focusing to DND, XPhone Connect and estos ProCall map screen sharing to DND); meetings stay
/// distinct so a PBX can treat them like a call or not.
const DEFAULT_BY_ACTIVITY: &[(&str, &str)] = &[
    ("InACall", "in_call"),
    ("InAConferenceCall", "in_call"),
    ("InAMeeting", "in_meeting"),
    ("Presenting", "dnd"),
    ("Focusing", "dnd"),
    ("UrgentInterruptionsOnly", "dnd"),
    ("DoNotDisturb", "dnd"),
    ("OutOfOffice", "away"),
    ("BeRightBack", "away"),
    ("Away", "away"),
    ("OffWork", "offline"),
    ("Offline", "offline"),
    ("PresenceUnknown", "unknown"),
];

/// Default rules by availability, used when no activity rule matched.
const DEFAULT_BY_AVAILABILITY: &[(&str, &str)] = &[
    ("Available", "available"),
    ("AvailableIdle", "available"),
    ("Busy", "busy"),
    ("BusyIdle", "busy"),
    ("DoNotDisturb", "dnd"),
    ("Away", "away"),
    ("BeRightBack", "away"),
    ("Offline", "offline"),
    ("PresenceUnknown", "unknown"),
];

/// The effective mapping: defaults overlaid with the admin's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    by_activity: BTreeMap<String, String>,
    by_availability: BTreeMap<String, String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::with_overrides(&BTreeMap::new(), &BTreeMap::new())
    }
}

impl Mapping {
    /// Defaults overlaid with `activity` and `availability` rules (key: Teams value, value: PBX
    /// state name). Keys are validated by the config layer against the known lists.
    pub fn with_overrides(
        activity: &BTreeMap<String, String>,
        availability: &BTreeMap<String, String>,
    ) -> Mapping {
        let table = |defaults: &[(&str, &str)], overrides: &BTreeMap<String, String>| {
            let mut t: BTreeMap<String, String> = defaults
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            t.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
            t
        };
        Mapping {
            by_activity: table(DEFAULT_BY_ACTIVITY, activity),
            by_availability: table(DEFAULT_BY_AVAILABILITY, availability),
        }
    }

    /// The PBX state for a Teams presence.
    pub fn state_for(&self, presence: &TeamsPresence) -> &str {
        self.by_activity
            .get(presence.activity.as_ref())
            .or_else(|| self.by_availability.get(presence.availability.as_ref()))
            .map_or(UNKNOWN_STATE, String::as_str)
    }

    /// Whether a presence maps to [`KEEP`].
    pub fn keeps(&self, presence: &TeamsPresence) -> bool {
        self.state_for(presence) == KEEP
    }

    /// Every rule, activity rules first, for docs and `check`.
    pub fn rules(&self) -> impl Iterator<Item = (&'static str, &str, &str)> {
        let act = self
            .by_activity
            .iter()
            .map(|(k, v)| ("activity", k.as_str(), v.as_str()));
        let avail = self
            .by_availability
            .iter()
            .map(|(k, v)| ("availability", k.as_str(), v.as_str()));
        act.chain(avail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(availability: &str, activity: &str) -> TeamsPresence {
        TeamsPresence::new(availability, activity)
    }

    #[test]
    fn activity_rules_win_over_availability() {
        let m = Mapping::default();
        assert_eq!(m.state_for(&p("Busy", "InACall")), "in_call");
        assert_eq!(m.state_for(&p("Busy", "InAMeeting")), "in_meeting");
        assert_eq!(m.state_for(&p("Busy", "Busy")), "busy");
        assert_eq!(m.state_for(&p("DoNotDisturb", "Presenting")), "dnd");
        assert_eq!(m.state_for(&p("Available", "Available")), "available");
        assert_eq!(m.state_for(&p("Offline", "OffWork")), "offline");
    }

    #[test]
    fn unknown_values_map_to_unknown() {
        let m = Mapping::default();
        assert_eq!(m.state_for(&p("Sleeping", "Dreaming")), UNKNOWN_STATE);
    }

    #[test]
    fn overrides_replace_defaults() {
        let act = BTreeMap::from([("InAMeeting".to_owned(), "busy".to_owned())]);
        let avail = BTreeMap::from([("Away".to_owned(), "xa".to_owned())]);
        let m = Mapping::with_overrides(&act, &avail);
        assert_eq!(m.state_for(&p("Busy", "InAMeeting")), "busy");
        assert_eq!(m.state_for(&p("Away", "Inactive")), "xa");
        assert_eq!(m.state_for(&p("Busy", "InACall")), "in_call");
    }

    #[test]
    fn keep_is_a_rule_like_any_other_and_no_default() {
        let avail = BTreeMap::from([("Offline".to_owned(), KEEP.to_owned())]);
        let m = Mapping::with_overrides(&BTreeMap::new(), &avail);
        // Offline/Offline: the activity rule wins; Offline/Inactive falls to availability.
        assert!(!m.keeps(&p("Offline", "Offline")));
        assert!(m.keeps(&p("Offline", "Inactive")));
        assert!(
            Mapping::default()
                .rules()
                .all(|(_, _, state)| state != KEEP)
        );
    }

    #[test]
    fn default_table_uses_documented_values_and_states() {
        for (k, v) in DEFAULT_BY_ACTIVITY {
            assert!(KNOWN_ACTIVITIES.contains(k), "{k}");
            assert!(DEFAULT_STATES.contains(v), "{v}");
        }
        for (k, v) in DEFAULT_BY_AVAILABILITY {
            assert!(KNOWN_AVAILABILITIES.contains(k), "{k}");
            assert!(DEFAULT_STATES.contains(v), "{v}");
        }
    }
}
