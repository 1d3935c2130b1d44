//! ARI WebSocket messages: only `DeviceStateChanged` matters; anything else, or anything
//! unreadable, is skipped (and said so at debug level) without touching any state.
//!
//! Shape (captured from Asterisk 22, `tests/pbx/README.md`):
//! `{"type":"DeviceStateChanged","application":"…","device_state":{"name":"PJSIP/1001","state":"INUSE"},…}`

use serde::Deserialize;

/// One device changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange {
    pub name: String,
    pub state: String,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    device_state: Option<DeviceStateBody>,
}

#[derive(Deserialize)]
struct DeviceStateBody {
    name: String,
    state: String,
}

/// What one text frame says.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Device(DeviceChange),
    /// Another event type (e.g. `ApplicationReplaced`), named for the log.
    Other(String),
    /// Not an ARI event.
    Invalid(String),
}

pub fn parse(text: &str) -> Parsed {
    match serde_json::from_str::<Message>(text) {
        Ok(Message {
            kind,
            device_state: Some(d),
        }) if kind == "DeviceStateChanged" => Parsed::Device(DeviceChange {
            name: d.name,
            state: d.state,
        }),
        Ok(m) => Parsed::Other(m.kind),
        Err(e) => Parsed::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_device_state_changes_parse() {
        let line = r#"{"type":"DeviceStateChanged","application":"pbx-teams-presence","timestamp":"2026-11-24T05:54:57.223+0000","device_state":{"name":"PJSIP/1002","state":"ONHOLD"},"asterisk_id":"02:fc:00:00:00:01"}"#;
        assert_eq!(
            parse(line),
            Parsed::Device(DeviceChange {
                name: "PJSIP/1002".into(),
                state: "ONHOLD".into()
            })
        );
    }

    #[test]
    fn other_and_bad_messages_are_not_device_changes() {
        assert_eq!(
            parse(r#"{"type":"ApplicationReplaced","application":"x"}"#),
            Parsed::Other("ApplicationReplaced".into())
        );
        assert!(matches!(parse("not json"), Parsed::Invalid(_)));
        assert!(matches!(
            parse(r#"{"type":"DeviceStateChanged","device_state":{"name":1}}"#),
            Parsed::Invalid(_)
        ));
        assert_eq!(
            parse(r#"{"type":"DeviceStateChanged"}"#),
            Parsed::Other("DeviceStateChanged".into())
        );
    }
}
