//! A Teams change for one user -> the dialplan functions to set in Asterisk. Pure.
//!
//! `DEVICE_STATE(Custom:teams-1001)` takes a device state; `PRESENCE_STATE(CustomPresence:1001)`
//! takes `value,subtype,message[,e]`. The message is sent base64 with the `e` option: a comma
//! in it would otherwise make Asterisk refuse the whole value (verified, tests/pbx/README.md).

use base64::Engine as _;

use crate::config::AsteriskPbxConfig;
use crate::pbx::PbxUpdate;

/// One variable write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarWrite {
    pub variable: String,
    pub value: String,
}

/// The writes for `update`; `None` when its state is not in `[pbx.states]` (the config
/// check makes sure every mapped state is, so this is only a guard).
pub fn writes_for(config: &AsteriskPbxConfig, update: &PbxUpdate) -> Option<Vec<VarWrite>> {
    let state = config.states.get(&update.state)?;
    let mut out = Vec::with_capacity(2);
    if let Some(t) = &config.device_state {
        out.push(VarWrite {
            variable: format!("DEVICE_STATE({})", t.expand(&update.extension)),
            value: state.device.clone(),
        });
    }
    if let Some(t) = &config.presence_state {
        let message = human(&update.activity);
        let value = if message.is_empty() {
            format!("{},,", state.presence)
        } else {
            let b64 = base64::engine::general_purpose::STANDARD.encode(message.as_bytes());
            format!("{},,{b64},e", state.presence)
        };
        out.push(VarWrite {
            variable: format!("PRESENCE_STATE({})", t.expand(&update.extension)),
            value,
        });
    }
    Some(out)
}

/// A Graph activity as people write it: `InAMeeting` -> `In a meeting`.
pub fn human(activity: &str) -> String {
    let mut out = String::with_capacity(activity.len() + 4);
    for (i, c) in activity.chars().enumerate() {
        if i > 0 && c.is_uppercase() {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn config(extra: &str) -> AsteriskPbxConfig {
        let text = format!(
            "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[pbx]\nkind = \"asterisk\"\nari_password = \"p\"\n{extra}"
        );
        Config::from_str_with(&text, Path::new("/c.toml"), &|_| None)
            .unwrap()
            .pbx
            .asterisk
            .expect("kind = \"asterisk\"")
    }

    fn update(state: &str, activity: &str) -> PbxUpdate {
        PbxUpdate {
            extension: "1001".into(),
            email: "a@x".into(),
            availability: "Busy".into(),
            activity: activity.to_owned().into(),
            state: state.into(),
            read_at: None,
        }
    }

    #[test]
    fn activities_read_like_teams_shows_them() {
        assert_eq!(human("InAMeeting"), "In a meeting");
        assert_eq!(human("InAConferenceCall"), "In a conference call");
        assert_eq!(human("DoNotDisturb"), "Do not disturb");
        assert_eq!(human("Available"), "Available");
        assert_eq!(human(""), "");
    }

    #[test]
    fn a_meeting_lights_the_lamp_and_sets_dnd_with_the_activity() {
        let w = writes_for(&config(""), &update("in_meeting", "InAMeeting")).unwrap();
        assert_eq!(w[0].variable, "DEVICE_STATE(Custom:teams-1001)");
        assert_eq!(w[0].value, "INUSE");
        assert_eq!(w[1].variable, "PRESENCE_STATE(CustomPresence:1001)");
        // base64("In a meeting")
        assert_eq!(w[1].value, "dnd,,SW4gYSBtZWV0aW5n,e");
    }

    #[test]
    fn disabled_targets_and_overrides_are_honoured() {
        let c = config("presence_state = \"\"\n[pbx.states.in_meeting]\ndevice = \"not_inuse\"\n");
        let w = writes_for(&c, &update("in_meeting", "InAMeeting")).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].value, "NOT_INUSE");
        assert!(writes_for(&c, &update("no_such_state", "X")).is_none());
    }
}
