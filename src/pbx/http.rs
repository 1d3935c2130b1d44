//! The generic HTTP connector, inbound side: `POST /pbx/events` from any PBX that can run a
//! script (see `docs/http-connector.md`).
//!
//! A batch is validated as a whole before anything of it is applied: one bad item and the PBX
//! gets a 400 naming it, and no state changes. The bearer token is checked before the body is
//! read; refusals are counted per cause and logged at most once a minute each
//! ([`crate::listener::Refusals`]), with strings from the request cut short.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::listener::{Cause, Refusals, truncate_for_log};
use crate::sync::types::{CallState, PbxEvent};

/// Bodies above this are refused with 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// The extensions in the directory, kept current by the service (hot reload).
pub type KnownExtensions = watch::Receiver<Arc<ExtensionSet>>;

/// The extensions of the directory, kept as 64-bit digests: the listener only asks "is this
/// one of ours?", and a second copy of 50,000 extension strings would cost more memory than
/// the rest of the listener. A digest collision (odds about 1 in 10^10 for a stray extension
/// at 50,000 users) only counts an unknown extension as accepted; the core still ignores it.
#[derive(Debug, Default)]
pub struct ExtensionSet(HashSet<u64>);

impl ExtensionSet {
    pub fn new<'a>(extensions: impl IntoIterator<Item = &'a str>) -> ExtensionSet {
        ExtensionSet(extensions.into_iter().map(digest).collect())
    }

    pub fn contains(&self, extension: &str) -> bool {
        self.0.contains(&digest(extension))
    }
}

/// SipHash with fixed keys: the same digest for the same extension on every call.
fn digest(extension: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    extension.hash(&mut h);
    h.finish()
}

/// Errors of the HTTP connector.
#[derive(Debug, thiserror::Error)]
pub enum HttpPbxError {
    /// The listen address is taken or not ours: fix `pbx.listen`.
    #[error("cannot listen on {addr} (pbx.listen): {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Shared {
    /// The current bearer token; replaced in place when `pbx.token` changes (no restart).
    token: watch::Receiver<Arc<str>>,
    known: KnownExtensions,
    events: Sink,
    refusals: Refusals,
}

/// Where accepted events go.
#[derive(Clone)]
pub enum Sink {
    /// Straight to the main loop.
    Direct(mpsc::Sender<Vec<PbxEvent>>),
    /// `[ha]`: to be stored for the leader; the answer waits until they are (the sender
    /// says `true`), so a 202 means the events survive this node.
    Stored(mpsc::Sender<(Vec<PbxEvent>, oneshot::Sender<bool>)>),
}

impl From<mpsc::Sender<Vec<PbxEvent>>> for Sink {
    fn from(tx: mpsc::Sender<Vec<PbxEvent>>) -> Sink {
        Sink::Direct(tx)
    }
}

/// How long a POST waits for its events to be stored (`Sink::Stored`) before a 503.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Sink {
    /// Hands the events over; false when they could not be (shutting down, or not stored
    /// in time).
    async fn send(&self, events: Vec<PbxEvent>) -> bool {
        match self {
            Sink::Direct(tx) => tx.send(events).await.is_ok(),
            Sink::Stored(tx) => {
                let (done, stored) = oneshot::channel();
                if tx.send((events, done)).await.is_err() {
                    return false;
                }
                matches!(tokio::time::timeout(STORE_WAIT, stored).await, Ok(Ok(true)))
            }
        }
    }
}

static UNAUTHORIZED: Cause = Cause {
    key: "pbx_unauthorized",
    verb: "refused",
    one: "a PBX request with a missing or wrong bearer token (pbx.token_file)",
    many: "PBX requests with a missing or wrong bearer token (pbx.token_file)",
};
static BAD_BODY: Cause = Cause {
    key: "pbx_body_unread",
    verb: "refused",
    one: "a PBX request whose body was too large, too slow or cut short",
    many: "PBX requests whose body was too large, too slow or cut short",
};
static BAD_BATCH: Cause = Cause {
    key: "pbx_bad_batch",
    verb: "refused",
    one: "a PBX event batch, nothing of it applied",
    many: "PBX event batches, nothing of them applied",
};

/// Bind the listener (separate from [`serve`] so a bad address fails at start-up).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpPbxError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpPbxError::Bind { addr, source })
}

/// Serve `POST /pbx/events` until `cancel` fires. Accepted batches go to `events`.
pub async fn serve(
    listener: TcpListener,
    token: watch::Receiver<Arc<str>>,
    known: KnownExtensions,
    events: impl Into<Sink>,
    cancel: CancellationToken,
) {
    let refusals = Refusals::new("pbx");
    let shared = Shared {
        token,
        known,
        events: events.into(),
        refusals: refusals.clone(),
    };
    let app = Router::new()
        .route("/pbx/events", post(post_events))
        .with_state(shared);
    let options = crate::listener::Options::new("pbx", refusals);
    crate::listener::serve(listener, app, options, cancel).await;
}

async fn post_events(State(shared): State<Shared>, headers: HeaderMap, body: Body) -> Response {
    let token = shared.token.borrow().clone();
    if !authorized(&headers, &token) {
        let given = headers.contains_key(header::AUTHORIZATION);
        shared.refusals.refused(&UNAUTHORIZED, || {
            if given { "wrong" } else { "missing" }.to_owned()
        });
        return reject(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    }
    let body = match crate::listener::read_body(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => {
            shared.refusals.refused(&BAD_BODY, || e.to_string());
            return reject(e.status(), &e.to_string());
        }
    };
    let events = match parse_batch(&body) {
        Ok(events) => events,
        Err(why) => {
            shared.refusals.refused(&BAD_BATCH, || why.clone());
            return reject(StatusCode::BAD_REQUEST, &why);
        }
    };
    let known = shared.known.borrow().clone();
    let (accepted, ignored): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| known.contains(&e.extension));
    for e in &ignored {
        tracing::debug!(extension = %e.extension, "PBX event for an extension not in the users file, ignored");
    }
    let counts = json!({"accepted": accepted.len(), "ignored": ignored.len()});
    if !accepted.is_empty() && !shared.events.send(accepted).await {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "not taken: the daemon is shutting down, or its state database does not answer",
        );
    }
    (StatusCode::ACCEPTED, axum::Json(counts)).into_response()
}

fn reject(status: StatusCode, why: &str) -> Response {
    (status, axum::Json(json!({ "error": why }))).into_response()
}

/// Bearer token check in constant time (the token is a shared secret).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    // The scheme name is case-insensitive (RFC 7235 section 2.1).
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
    else {
        return false;
    };
    crate::secret::same_secret(crate::secret::trimmed(given).as_bytes(), token.as_bytes())
}

/// Parse one event object or an array of them. Every item must be valid, or none is taken.
/// The error names the first bad item; what it quotes of the input is cut short.
pub fn parse_batch(body: &[u8]) -> Result<Vec<PbxEvent>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not valid JSON: {e}"))?;
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_event(item).map_err(|e| format!("item {i}: {e}")))
            .collect(),
        item @ Value::Object(_) => Ok(vec![parse_event(&item)?]),
        _ => Err("body must be an event object or an array of them".into()),
    }
}

fn parse_event(item: &Value) -> Result<PbxEvent, String> {
    let obj = item.as_object().ok_or("an event must be a JSON object")?;
    let extension = match obj.get("extension") {
        Some(Value::String(s)) if valid_extension(s) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(other) => {
            let other = truncate_for_log(&other.to_string());
            return Err(format!("\"extension\" is not a valid extension: {other}"));
        }
        None => return Err("\"extension\" is missing".into()),
    };
    let state = match obj.get("state") {
        Some(Value::String(s)) => CallState::parse(s).ok_or_else(|| {
            let s = truncate_for_log(s);
            format!("\"state\" must be \"idle\", \"ringing\" or \"speaking\", not \"{s}\"")
        })?,
        Some(other) => {
            let other = truncate_for_log(&other.to_string());
            return Err(format!("\"state\" must be a string, not {other}"));
        }
        None => return Err("\"state\" is missing".into()),
    };
    let dnd = match obj.get("dnd") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            let other = truncate_for_log(&other.to_string());
            return Err(format!("\"dnd\" must be true or false, not {other}"));
        }
    };
    Ok(PbxEvent {
        extension,
        state,
        dnd,
    })
}

/// Extensions are short tokens of digits, letters and `*#+-_.`: what dialplans use.
fn valid_extension(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*#+-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_or_an_array() {
        let one = parse_batch(br#"{"extension":"1001","state":"speaking"}"#).unwrap();
        assert_eq!(
            one,
            vec![PbxEvent {
                extension: "1001".into(),
                state: CallState::Speaking,
                dnd: None
            }]
        );
        let many = parse_batch(
            br#"[{"extension":"1001","state":"idle","dnd":true},{"extension":1002,"state":"ringing"}]"#,
        )
        .unwrap();
        assert_eq!(many.len(), 2);
        assert_eq!(many[0].dnd, Some(true));
        assert_eq!(many[1].extension, "1002");
    }

    #[test]
    fn one_bad_item_rejects_the_batch_and_names_it() {
        let err = parse_batch(
            br#"[{"extension":"1001","state":"idle"},{"extension":"1002","state":"talking"}]"#,
        )
        .unwrap_err();
        assert!(err.starts_with("item 1:"), "{err}");
        assert!(err.contains("talking"), "{err}");
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for body in [
            &b"not json"[..],
            br#""speaking""#,
            br#"{"state":"idle"}"#,
            br#"{"extension":"","state":"idle"}"#,
            br#"{"extension":"10 01","state":"idle"}"#,
            br#"{"extension":"1001"}"#,
            br#"{"extension":"1001","state":"idle","dnd":"yes"}"#,
            br#"[1]"#,
        ] {
            assert!(
                parse_batch(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn quoted_input_is_cut_short_in_the_error() {
        let long = "x".repeat(100_000);
        for body in [
            format!(r#"{{"extension":"1001","state":"{long}"}}"#),
            format!(r#"{{"extension":["{long}"],"state":"idle"}}"#),
            format!(r#"{{"extension":"1001","state":{{"{long}":1}}}}"#),
            format!(r#"{{"extension":"1001","state":"idle","dnd":"{long}"}}"#),
        ] {
            let err = parse_batch(body.as_bytes()).unwrap_err();
            assert!(err.len() < 200, "{err}");
            assert!(err.contains("bytes)"), "says how long it was: {err}");
        }
    }

    #[test]
    fn extension_set_knows_exactly_its_members() {
        let set = ExtensionSet::new(["1001", "1002"]);
        assert!(set.contains("1001") && set.contains("1002"));
        assert!(!set.contains("1003") && !set.contains("100") && !set.contains(""));
    }

    #[test]
    fn bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(&h, "s3cret"));
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(authorized(&h, "s3cret"));
    }
}
