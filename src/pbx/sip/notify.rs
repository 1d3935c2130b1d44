//! A NOTIFY's headers and body as the core takes them, pure: `Subscription-State` (RFC 6665
//! section 8.2.3), `Event`, and the dialog-info body. Anything malformed is a typed
//! [`NotifyError`]: the NOTIFY is answered and nothing changes.

use std::time::Duration;

use super::dialog_info::{self, DialogInfo, DialogInfoError};
use super::watch::SubState;

/// Why a NOTIFY was ignored.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotifyError {
    #[error("no Subscription-State header")]
    NoState,
    #[error("Subscription-State {0:?} is not active, pending or terminated")]
    BadState(String),
    #[error("Event {0:?} is not dialog")]
    Event(String),
    #[error("not a SIP message: {0}")]
    Message(String),
    #[error("not a NOTIFY")]
    NotNotify,
    #[error("body: {0}")]
    Body(#[from] DialogInfoError),
}

/// What a NOTIFY tells the core.
#[derive(Debug, PartialEq)]
pub struct Notice {
    pub state: SubState,
    pub body: Option<DialogInfo>,
}

/// Read a NOTIFY from its `Subscription-State` and `Event` values and its body.
pub fn read(state: Option<&str>, event: Option<&str>, body: &[u8]) -> Result<Notice, NotifyError> {
    if let Some(event) = event {
        let package = event.split(';').next().unwrap_or("").trim();
        if !package.eq_ignore_ascii_case("dialog") {
            return Err(NotifyError::Event(event.chars().take(40).collect()));
        }
    }
    let state = sub_state(state.ok_or(NotifyError::NoState)?)?;
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(dialog_info::parse(body)?)
    };
    Ok(Notice { state, body })
}

/// A NOTIFY request as the SIP stack parsed it.
pub fn read_request(request: &rsipstack::sip::Request) -> Result<Notice, NotifyError> {
    let state = super::stack::header_value(&request.headers, "Subscription-State");
    let event = super::stack::header_value(&request.headers, "Event");
    read(state, event, &request.body)
}

/// A whole SIP message off the wire, parsed by the SIP stack and read as a NOTIFY (the path
/// a datagram takes; for the fuzz target).
pub fn read_message(bytes: &[u8]) -> Result<Notice, NotifyError> {
    match rsipstack::sip::parser::parse_message(bytes) {
        Ok(rsipstack::sip::SipMessage::Request(r))
            if r.method == rsipstack::sip::Method::Notify =>
        {
            read_request(&r)
        }
        Ok(_) => Err(NotifyError::NotNotify),
        Err(e) => Err(NotifyError::Message(
            e.to_string().chars().take(80).collect(),
        )),
    }
}

/// `active;expires=600`, `pending`, `terminated;reason=noresource;retry-after=30`.
pub fn sub_state(value: &str) -> Result<SubState, NotifyError> {
    let mut parts = value.split(';').map(str::trim);
    let kind = parts.next().unwrap_or("").to_ascii_lowercase();
    let mut expires = None;
    let mut reason = None;
    let mut retry_after = None;
    for param in parts {
        let (name, val) = param.split_once('=').unwrap_or((param, ""));
        let val = val.trim().trim_matches('"');
        match name.trim().to_ascii_lowercase().as_str() {
            "expires" => expires = seconds(val),
            "retry-after" => retry_after = seconds(val),
            "reason" => reason = Some(val.to_ascii_lowercase()),
            _ => {}
        }
    }
    match kind.as_str() {
        "active" => Ok(SubState::Active { expires }),
        "pending" => Ok(SubState::Pending),
        "terminated" => Ok(SubState::Terminated {
            reason,
            retry_after,
        }),
        _ => Err(NotifyError::BadState(value.chars().take(40).collect())),
    }
}

/// An `Expires` header value (delta-seconds).
pub fn seconds(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .map(|s| Duration::from_secs(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_states_are_read_with_their_parameters() {
        assert_eq!(
            sub_state("active;expires=600"),
            Ok(SubState::Active {
                expires: Some(Duration::from_secs(600))
            })
        );
        assert_eq!(sub_state("Pending"), Ok(SubState::Pending));
        assert_eq!(
            sub_state("terminated; reason=noresource ; retry-after=30"),
            Ok(SubState::Terminated {
                reason: Some("noresource".into()),
                retry_after: Some(Duration::from_secs(30)),
            })
        );
        assert_eq!(
            sub_state("terminated"),
            Ok(SubState::Terminated {
                reason: None,
                retry_after: None
            })
        );
        assert!(matches!(sub_state("bogus"), Err(NotifyError::BadState(_))));
        assert_eq!(
            sub_state("active;expires=abc"),
            Ok(SubState::Active { expires: None })
        );
    }

    #[test]
    fn a_notify_without_state_or_of_another_event_is_refused() {
        assert_eq!(read(None, Some("dialog"), b""), Err(NotifyError::NoState));
        assert!(matches!(
            read(Some("active"), Some("presence"), b""),
            Err(NotifyError::Event(_))
        ));
        let empty = read(Some("active;expires=60"), Some("dialog;id=1"), b"\r\n").unwrap();
        assert_eq!(empty.body, None);
    }

    #[test]
    fn a_malformed_body_is_an_error_not_a_state() {
        let bad = read(Some("active"), Some("dialog"), b"<dialog-info><oops");
        assert!(matches!(bad, Err(NotifyError::Body(_))));
    }
}
