//! Device states -> each user's call state. Pure: the listener feeds it what ARI says and
//! sends the [`PbxEvent`]s it returns.
//!
//! A user is *speaking* when any of their devices is in use (`INUSE`, `BUSY`, `ONHOLD`: the
//! held party is still in a call; `RINGINUSE`: a call waiting while in a call, Asterisk's
//! `devicestate.h` says "ringing *and* in use"), *ringing* when one rings (`RINGING`), idle
//! otherwise (`NOT_INUSE`, `UNAVAILABLE`, `UNKNOWN`, `INVALID`).
//!
//! A user's phone is in DND while its DND device (`pbx.dnd_device`, FreePBX's
//! `Custom:DND{extension}`) is `INUSE` or `BUSY`; its events carry `dnd` then.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sync::types::{CallState, PbxEvent};

/// Whether a DND device's state means DND on.
pub fn dnd_of(device_state: &str) -> bool {
    matches!(device_state, "INUSE" | "BUSY")
}

/// What one device state means for its user.
pub fn call_state_of(device_state: &str) -> CallState {
    match device_state {
        "INUSE" | "BUSY" | "ONHOLD" | "RINGINUSE" => CallState::Speaking,
        "RINGING" => CallState::Ringing,
        _ => CallState::Idle,
    }
}

fn rank(s: CallState) -> u8 {
    match s {
        CallState::Idle => 0,
        CallState::Ringing => 1,
        CallState::Speaking => 2,
    }
}

/// Which devices belong to whom, their last known states, and what each user was last
/// reported as.
#[derive(Debug, Default)]
pub struct DeviceBook {
    /// Device name -> extensions it counts for (a shared device may count for several).
    owners: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// Extension -> its devices.
    devices: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// Last known state per device (absent: never read, counts as idle).
    states: HashMap<Arc<str>, CallState>,
    /// What each user was last reported as.
    reported: HashMap<Arc<str>, (CallState, Option<bool>)>,
    /// DND device -> the extension it is the DND of.
    dnd_owner: HashMap<Arc<str>, Arc<str>>,
    /// Extension -> DND on, for users with a DND device (absent until read: off).
    dnd: HashMap<Arc<str>, bool>,
}

impl DeviceBook {
    /// A book for `users` (extension, its device names). States start unknown.
    pub fn new(users: impl IntoIterator<Item = (String, Vec<String>)>) -> DeviceBook {
        let mut book = DeviceBook::default();
        for (extension, names) in users {
            let extension: Arc<str> = Arc::from(extension);
            let mut list = Vec::with_capacity(names.len());
            for name in names {
                let name = match book.owners.get_key_value(name.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => Arc::from(name),
                };
                let owners = book.owners.entry(name.clone()).or_default();
                if !owners.contains(&extension) {
                    owners.push(extension.clone());
                }
                if !list.contains(&name) {
                    list.push(name);
                }
            }
            book.devices.insert(extension, list);
        }
        book
    }

    /// The book with a DND device per user (`(extension, device)`; extensions not in the book
    /// are skipped).
    pub fn with_dnd(mut self, devices: impl IntoIterator<Item = (String, String)>) -> DeviceBook {
        for (extension, device) in devices {
            if let Some((ext, _)) = self.devices.get_key_value(extension.as_str()) {
                let ext = ext.clone();
                self.dnd_owner.insert(Arc::from(device), ext.clone());
                self.dnd.insert(ext, false);
            }
        }
        self
    }

    /// Carry over what an older book knew (after a users change): device states and reports.
    pub fn adopt(&mut self, old: DeviceBook) {
        for (extension, on) in old.dnd {
            if let Some(v) = self.dnd.get_mut(&extension) {
                *v = on;
            }
        }
        for (name, state) in old.states {
            if let Some((k, _)) = self.owners.get_key_value(&name) {
                self.states.insert(k.clone(), state);
            }
        }
        for (extension, state) in old.reported {
            if let Some((k, _)) = self.devices.get_key_value(&extension) {
                self.reported.insert(k.clone(), state);
            }
        }
    }

    /// Every device name (DND devices too), for subscribing and reading.
    pub fn device_names(&self) -> impl Iterator<Item = &str> {
        self.owners
            .keys()
            .chain(
                self.dnd_owner
                    .keys()
                    .filter(|d| !self.owners.contains_key(*d)),
            )
            .map(|k| &**k)
    }

    /// Devices not in `old` (to subscribe after a users change).
    pub fn new_devices<'a>(&'a self, old: &'a DeviceBook) -> impl Iterator<Item = &'a str> {
        self.device_names().filter(|d| !old.knows_device(d))
    }

    /// Every extension in the book.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.devices.keys().map(|k| &**k)
    }

    pub fn knows_device(&self, name: &str) -> bool {
        self.owners.contains_key(name) || self.dnd_owner.contains_key(name)
    }

    /// A device changed. Returns an event per user whose call state or DND changed; devices
    /// that are not ours are ignored (nothing changes).
    pub fn on_device(&mut self, name: &str, device_state: &str) -> Vec<PbxEvent> {
        let mut touched: Vec<Arc<str>> = Vec::new();
        if let Some(ext) = self.dnd_owner.get(name).cloned() {
            self.dnd.insert(ext.clone(), dnd_of(device_state));
            touched.push(ext);
        }
        if let Some((name, owners)) = self.owners.get_key_value(name) {
            let (name, owners) = (name.clone(), owners.clone());
            self.states.insert(name, call_state_of(device_state));
            touched.extend(owners);
        }
        touched
            .iter()
            .filter_map(|ext| self.report_if_changed(ext))
            .collect()
    }

    /// Every user's current call state, reported or not (after a (re)connect: the core
    /// ignores repeats, and a user left "speaking" by a lost event is corrected).
    pub fn full_report(&mut self) -> Vec<PbxEvent> {
        let extensions: Vec<Arc<str>> = self.devices.keys().cloned().collect();
        extensions.iter().map(|ext| self.report(ext)).collect()
    }

    /// The given users' current state (new users after a reload).
    pub fn report_users<'a>(
        &mut self,
        extensions: impl IntoIterator<Item = &'a str>,
    ) -> Vec<PbxEvent> {
        let mut out = Vec::new();
        for ext in extensions {
            let Some((ext, _)) = self.devices.get_key_value(ext) else {
                continue;
            };
            let ext = ext.clone();
            out.push(self.report(&ext));
        }
        out
    }

    /// Record a device state read without an event (resync); reports nothing by itself.
    pub fn set_state(&mut self, name: &str, device_state: &str) {
        if let Some(ext) = self.dnd_owner.get(name).cloned() {
            self.dnd.insert(ext, dnd_of(device_state));
        }
        if let Some((k, _)) = self.owners.get_key_value(name) {
            self.states.insert(k.clone(), call_state_of(device_state));
        }
    }

    fn user_state(&self, extension: &str) -> CallState {
        self.devices
            .get(extension)
            .into_iter()
            .flatten()
            .filter_map(|d| self.states.get(d).copied())
            .max_by_key(|s| rank(*s))
            .unwrap_or(CallState::Idle)
    }

    fn report_if_changed(&mut self, extension: &Arc<str>) -> Option<PbxEvent> {
        let now = self.now(extension);
        (self.reported.get(extension) != Some(&now)).then(|| self.report_as(extension, now))
    }

    /// The user's call state and DND now.
    fn now(&self, extension: &str) -> (CallState, Option<bool>) {
        (self.user_state(extension), self.dnd.get(extension).copied())
    }

    /// The user's state now, remembered as reported.
    fn report(&mut self, extension: &Arc<str>) -> PbxEvent {
        let now = self.now(extension);
        self.report_as(extension, now)
    }

    fn report_as(&mut self, extension: &Arc<str>, now: (CallState, Option<bool>)) -> PbxEvent {
        let (state, dnd) = now;
        self.reported.insert(extension.clone(), now);
        PbxEvent {
            extension: extension.to_string(),
            state,
            dnd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book() -> DeviceBook {
        DeviceBook::new([
            (
                "1001".to_owned(),
                vec!["PJSIP/1001".to_owned(), "PJSIP/1011".to_owned()],
            ),
            ("1002".to_owned(), vec!["PJSIP/1002".to_owned()]),
        ])
    }

    fn states(events: &[PbxEvent]) -> Vec<(String, CallState)> {
        events
            .iter()
            .map(|e| (e.extension.to_string(), e.state))
            .collect()
    }

    #[test]
    fn held_and_call_waiting_are_still_a_call() {
        for s in ["INUSE", "BUSY", "ONHOLD", "RINGINUSE"] {
            assert_eq!(call_state_of(s), CallState::Speaking, "{s}");
        }
        assert_eq!(call_state_of("RINGING"), CallState::Ringing);
        for s in ["NOT_INUSE", "UNAVAILABLE", "UNKNOWN", "INVALID", "garbage"] {
            assert_eq!(call_state_of(s), CallState::Idle, "{s}");
        }
    }

    #[test]
    fn any_device_in_use_makes_the_user_speaking_until_all_are_idle() {
        let mut b = book();
        assert_eq!(
            states(&b.on_device("PJSIP/1001", "RINGING")),
            [("1001".into(), CallState::Ringing)]
        );
        // The softphone answers, the desk phone stops ringing (Asterisk's order).
        assert_eq!(
            states(&b.on_device("PJSIP/1011", "INUSE")),
            [("1001".into(), CallState::Speaking)]
        );
        assert!(b.on_device("PJSIP/1001", "NOT_INUSE").is_empty());
        assert_eq!(
            states(&b.on_device("PJSIP/1011", "NOT_INUSE")),
            [("1001".into(), CallState::Idle)]
        );
    }

    #[test]
    fn repeats_and_foreign_devices_report_nothing() {
        let mut b = book();
        assert_eq!(b.on_device("PJSIP/1002", "INUSE").len(), 1);
        assert!(b.on_device("PJSIP/1002", "ONHOLD").is_empty());
        assert!(b.on_device("PJSIP/9999", "INUSE").is_empty());
        assert!(b.on_device("Custom:teams-1002", "INUSE").is_empty());
    }

    #[test]
    fn full_report_names_every_user_and_adopt_keeps_states() {
        let mut b = book();
        b.set_state("PJSIP/1002", "INUSE");
        let mut all = states(&b.full_report());
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            all,
            [
                ("1001".into(), CallState::Idle),
                ("1002".into(), CallState::Speaking)
            ]
        );
        let mut wider = DeviceBook::new([
            ("1002".to_owned(), vec!["PJSIP/1002".to_owned()]),
            ("1003".to_owned(), vec!["PJSIP/1003".to_owned()]),
        ]);
        let old = std::mem::take(&mut b);
        let fresh: Vec<String> = wider.new_devices(&old).map(str::to_owned).collect();
        assert_eq!(fresh, ["PJSIP/1003"]);
        wider.adopt(old);
        assert!(
            wider.on_device("PJSIP/1002", "INUSE").is_empty(),
            "still speaking"
        );
        assert_eq!(
            states(&wider.report_users(["1003"])),
            [("1003".into(), CallState::Idle)]
        );
    }

    #[test]
    fn a_shared_device_counts_for_each_owner() {
        let mut b = DeviceBook::new([
            ("1001".to_owned(), vec!["PJSIP/lobby".to_owned()]),
            ("1002".to_owned(), vec!["PJSIP/lobby".to_owned()]),
        ]);
        let mut got = states(&b.on_device("PJSIP/lobby", "INUSE"));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn a_dnd_device_in_use_or_busy_is_dnd_reported_with_the_call_state() {
        let mut b = book().with_dnd([
            ("1002".to_owned(), "Custom:DND1002".to_owned()),
            ("9999".to_owned(), "Custom:DND9999".to_owned()),
        ]);
        let names: Vec<&str> = b.device_names().collect();
        assert!(names.contains(&"Custom:DND1002") && !names.contains(&"Custom:DND9999"));
        b.on_device("PJSIP/1002", "INUSE");
        let e = b.on_device("Custom:DND1002", "BUSY");
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].state, e[0].dnd), (CallState::Speaking, Some(true)));
        assert!(
            b.on_device("Custom:DND1002", "INUSE").is_empty(),
            "still DND"
        );
        let e = b.on_device("Custom:DND1002", "NOT_INUSE");
        assert_eq!(e[0].dnd, Some(false));
        // Users without a DND device say nothing about DND.
        let all = b.full_report();
        let dnd: Vec<_> = all.iter().map(|e| (e.extension.as_str(), e.dnd)).collect();
        assert!(dnd.contains(&("1001", None)) && dnd.contains(&("1002", Some(false))));
    }
}
