//! Presence endpoints, each after its page:
//! - GET presence: <https://learn.microsoft.com/en-us/graph/api/presence-get>
//! - getPresencesByUserId:
//!   <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>
//! - setPresence: <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>
//! - clearPresence: <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence>
//! - setUserPreferredPresence:
//!   <https://learn.microsoft.com/en-us/graph/api/presence-setuserpreferredpresence>
//! - clearUserPreferredPresence:
//!   <https://learn.microsoft.com/en-us/graph/api/presence-clearuserpreferredpresence>
//! - setStatusMessage: <https://learn.microsoft.com/en-us/graph/api/presence-setstatusmessage>
//!
//! Issue reports: `sessionId` is the app's own id
//! (<https://github.com/microsoftgraph/microsoft-graph-docs/issues/18837>); large id lists get
//! a bare 400 (<https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/777>); the
//! out-of-range message (<https://github.com/microsoftgraph/msgraph-sdk-dotnet/issues/1186>).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::odata::GraphResponse;
use crate::presence::{
    PREFERRED_PAIRS, Preferred, PresenceState, SESSION_PAIRS, Session, StatusMessage,
    canonical_pair,
};
use crate::state::State;
use crate::util::{parse_iso_duration, parse_utc};

/// Most ids in one getPresencesByUserId (its page).
const MAX_IDS: usize = 650;
/// setPresence expirationDuration range and default (its page).
const MIN_SESSION: Duration = Duration::from_secs(5 * 60);
const MAX_SESSION: Duration = Duration::from_secs(4 * 3600);

/// GET /users/{id}/presence and /communications/presences/{id} (GET presence). The single
/// object is not wrapped in `value` (the older doc example's wrapper is UNVERIFIED).
pub(crate) fn get(st: &mut State, base: &str, key: &str) -> GraphResponse {
    let Some(id) = st.directory.resolve(key).map(str::to_owned) else {
        return GraphResponse::not_found(key);
    };
    let (now, wall) = (st.now(), st.wall());
    let mut body = presence_json(st, &id, now, wall);
    body["@odata.context"] = json!(format!(
        "{base}/v1.0/$metadata#users('{id}')/presence/$entity"
    ));
    GraphResponse::json(200, body)
}

/// POST /communications/getPresencesByUserId (its page). At most 650 ids. Unknown ids are left out
/// of `value` and duplicates answered once (both UNVERIFIED; Graph's behaviour is undocumented).
pub(crate) fn get_many(st: &mut State, body: Option<&Value>) -> GraphResponse {
    let Some(ids) = body.and_then(|b| b.get("ids")).and_then(Value::as_array) else {
        return GraphResponse::bad_request("The request body must contain 'ids'.");
    };
    if ids.is_empty() {
        return GraphResponse::bad_request("The 'ids' collection must not be empty.");
    }
    if ids.len() > MAX_IDS {
        // The limit is documented; the error code/message is UNVERIFIED ("a bare 400", see the
        // module doc).
        return GraphResponse::bad_request(&format!(
            "The number of ids ({}) exceeds the maximum of {MAX_IDS}.",
            ids.len()
        ));
    }
    let (now, wall) = (st.now(), st.wall());
    let mut seen = HashSet::new();
    let mut value = Vec::with_capacity(ids.len());
    for v in ids {
        let Some(id) = v.as_str() else {
            return GraphResponse::bad_request("Every entry of 'ids' must be a string.");
        };
        if !st.directory.contains_id(id) {
            continue;
        }
        let Some(id) = st.directory.resolve(id) else {
            continue;
        };
        if !seen.insert(id.to_owned()) {
            continue;
        }
        value.push(presence_json(st, id, now, wall));
    }
    GraphResponse::json(200, json!({"value": value}))
}

/// A user's presence JSON; users never touched are Offline (no session: clearPresence page).
fn presence_json(st: &State, id: &str, now: Instant, wall: SystemTime) -> Value {
    match st.presence.get(id) {
        Some(p) => p.to_json(id, now, wall),
        None => PresenceState::default().to_json(id, now, wall),
    }
}

fn str_field<'a>(body: Option<&'a Value>, name: &str) -> Option<&'a str> {
    body?.get(name)?.as_str()
}

fn invalid_argument(what: &str) -> GraphResponse {
    GraphResponse::error(
        400,
        "InvalidArgument",
        &format!("The provided [{what}] is invalid."),
    )
}

/// Parses `expirationDuration`; None in the body gives `default`.
fn duration(body: Option<&Value>, default: Duration) -> Result<Duration, GraphResponse> {
    match body
        .and_then(|b| b.get("expirationDuration"))
        .filter(|v| !v.is_null())
    {
        None => Ok(default),
        Some(v) => v
            .as_str()
            .and_then(parse_iso_duration)
            .ok_or_else(|| invalid_argument("ExpirationDuration")),
    }
}

/// POST .../presence/{action}.
pub(crate) fn action(
    st: &mut State,
    key: &str,
    action: &str,
    client: &str,
    body: Option<&Value>,
) -> GraphResponse {
    let Some(id) = st.directory.resolve(key).map(str::to_owned) else {
        return GraphResponse::not_found(key);
    };
    let result = match action {
        "setPresence" => set_presence(st, &id, client, body),
        "clearPresence" => clear_presence(st, &id, client, body),
        "setUserPreferredPresence" => set_preferred(st, &id, body),
        "clearUserPreferredPresence" => {
            st.presence_mut(&id).preferred = None; // clearUserPreferredPresence
            Ok(())
        }
        "setStatusMessage" => set_status(st, &id, body),
        _ => Err(GraphResponse::bad_request("Unknown action.")),
    };
    match result {
        Ok(()) => GraphResponse::empty(200),
        Err(r) => r,
    }
}

/// sessionId must be the caller's own app id (setPresence, see the module doc); the error for
/// another id is UNVERIFIED.
fn session_id(body: Option<&Value>, client: &str) -> Result<String, GraphResponse> {
    let sid = str_field(body, "sessionId").ok_or_else(|| invalid_argument("SessionId"))?;
    if !sid.eq_ignore_ascii_case(client) {
        return Err(invalid_argument("SessionId"));
    }
    Ok(sid.to_lowercase())
}

/// setPresence: documented pairs only; expirationDuration PT5M..PT4H, default PT5M; out of
/// range -> 400 InvalidArgument "The provided \[ExpirationDuration\] is out of range." (as
/// reported, see the module doc; status 400 UNVERIFIED). One session per app per user,
/// replaced by each call.
fn set_presence(
    st: &mut State,
    id: &str,
    client: &str,
    body: Option<&Value>,
) -> Result<(), GraphResponse> {
    let sid = session_id(body, client)?;
    let (a, b) = (
        str_field(body, "availability").unwrap_or(""),
        str_field(body, "activity").unwrap_or(""),
    );
    let (availability, activity) = canonical_pair(SESSION_PAIRS, a, b).ok_or_else(|| {
        GraphResponse::error(
            400,
            "InvalidArgument",
            &format!("The provided availability/activity pair [{a}/{b}] is not supported."),
        )
    })?;
    let d = duration(body, MIN_SESSION)?;
    if !(MIN_SESSION..=MAX_SESSION).contains(&d) {
        return Err(GraphResponse::error(
            400,
            "InvalidArgument",
            "The provided [ExpirationDuration] is out of range.",
        ));
    }
    let now = st.now();
    let session = Session {
        availability,
        activity,
        set_at: now,
        expires_at: now + d,
    };
    st.presence_mut(id).sessions.insert(sid, session);
    Ok(())
}

/// clearPresence: 200, or 404 when the app has no live session for the user (code
/// UNVERIFIED).
fn clear_presence(
    st: &mut State,
    id: &str,
    client: &str,
    body: Option<&Value>,
) -> Result<(), GraphResponse> {
    let sid = session_id(body, client)?;
    let now = st.now();
    let alive = st
        .presence
        .get(id)
        .and_then(|p| p.sessions.get(&sid))
        .is_some_and(|s| s.expires_at > now);
    if !alive {
        return Err(GraphResponse::error(
            404,
            "NotFound",
            &format!("The presence session [{sid}] was not found."),
        ));
    }
    st.presence_mut(id).sessions.remove(&sid);
    Ok(())
}

/// setUserPreferredPresence: its pairs; expirationDuration optional, default 1 day for
/// DoNotDisturb/Busy, 7 days otherwise.
fn set_preferred(st: &mut State, id: &str, body: Option<&Value>) -> Result<(), GraphResponse> {
    let (a, b) = (
        str_field(body, "availability").unwrap_or(""),
        str_field(body, "activity").unwrap_or(""),
    );
    let (availability, activity) = canonical_pair(PREFERRED_PAIRS, a, b).ok_or_else(|| {
        GraphResponse::error(
            400,
            "InvalidArgument",
            &format!("The provided availability/activity pair [{a}/{b}] is not supported."),
        )
    })?;
    let days = if matches!(availability.as_str(), "DoNotDisturb" | "Busy") {
        1
    } else {
        7
    };
    let d = duration(body, Duration::from_secs(days * 86_400))?;
    let expires_at = st.now() + d;
    st.presence_mut(id).preferred = Some(Preferred {
        availability,
        activity,
        expires_at,
    });
    Ok(())
}

/// setStatusMessage: `statusMessage.message.content`; `expiryDateTime` honoured when
/// its timeZone is UTC (other zones: kept without expiry, an emulator simplification).
fn set_status(st: &mut State, id: &str, body: Option<&Value>) -> Result<(), GraphResponse> {
    let sm = body
        .and_then(|b| b.get("statusMessage"))
        .ok_or_else(|| GraphResponse::bad_request("statusMessage is required."))?;
    let msg = sm.get("message");
    let content = msg
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let content_type = msg
        .and_then(|m| m.get("contentType"))
        .and_then(Value::as_str)
        .unwrap_or("text")
        .to_owned();
    let expiry = sm.get("expiryDateTime");
    let utc = expiry
        .and_then(|e| e.get("timeZone"))
        .and_then(Value::as_str)
        .is_some_and(|z| z.eq_ignore_ascii_case("utc"));
    let expires_at = expiry
        .and_then(|e| e.get("dateTime"))
        .and_then(Value::as_str)
        .filter(|_| utc)
        .and_then(parse_utc);
    let p = st.presence_mut(id);
    p.status = (!content.is_empty()).then_some(StatusMessage {
        content,
        content_type,
        expires_at,
    });
    Ok(())
}
