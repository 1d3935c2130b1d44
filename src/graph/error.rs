//! What can go wrong talking to Graph, named for what the caller does next, and the parser
//! for Graph's error body (<https://learn.microsoft.com/en-us/graph/errors>).

use std::time::Duration;

use serde::Deserialize;

/// A failed Graph or token request, after the retries this client does by itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// Entra refused the app's credentials: fix tenant id, client id or secret in the config.
    #[error("Entra refused the app credentials ({error}{}): {hint}", aadsts_suffix(*aadsts))]
    Credentials {
        /// The AADSTS number, when Entra sent one
        /// (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes>).
        aadsts: Option<u32>,
        /// The OAuth `error` field, e.g. `invalid_client`.
        error: String,
        /// What to change, from [`crate::graph::explain_aadsts`].
        hint: &'static str,
    },
    /// Graph refused a freshly issued token too: check that graph_url and login_url belong
    /// to the same cloud and tenant.
    #[error("Graph refused a fresh token ({code}): {message}")]
    Unauthorized {
        /// Graph's error code, e.g. `InvalidAuthenticationToken`
        /// (<https://github.com/besscroft/diyfile/issues/1>).
        code: String,
        /// Graph's message, for the log.
        message: String,
    },
    /// The app lacks an application permission or admin consent: grant it in Entra.
    #[error("permission missing ({code}): {message}")]
    Forbidden {
        /// Graph's error code, e.g. `Authorization_RequestDenied`
        /// (<https://learn.microsoft.com/en-us/graph/json-batching>).
        code: String,
        /// Graph's message, for the log.
        message: String,
    },
    /// The user or session does not exist: re-resolve the user or drop the request.
    #[error("not found ({code}): {message}")]
    NotFound {
        /// Graph's error code, e.g. `Request_ResourceNotFound`.
        code: String,
        /// Graph's message, for the log.
        message: String,
    },
    /// Not sent: this node is not (or no longer surely) the leader (`[ha]`).
    #[error(transparent)]
    NotLeader(#[from] crate::fence::Fenced),
    /// Graph kept answering 429: slow down and try again after `retry_after`.
    #[error("throttled by Graph; retry after {retry_after:?}")]
    Throttled {
        /// How long Graph asked to wait (or the last backoff step).
        retry_after: Duration,
    },
    /// Graph (or Entra) kept failing with 5xx: try again later.
    #[error("Graph unavailable (HTTP {status})")]
    Unavailable {
        /// The last status seen.
        status: u16,
    },
    /// The connection failed (DNS, TCP, TLS): check the network and proxy, try again later.
    #[error("cannot reach Graph: {0}")]
    Transport(String),
    /// No answer within `request_timeout`: try again later.
    #[error("Graph did not answer in time")]
    Timeout,
    /// Graph rejected the request as malformed or inapplicable: do not retry it as is.
    #[error("Graph rejected the request (HTTP {status}, {code}): {message}")]
    Rejected {
        /// The HTTP status, e.g. 400.
        status: u16,
        /// Graph's error code, e.g. `InvalidArgument`.
        code: String,
        /// Graph's message, for the log.
        message: String,
    },
    /// Graph answered success with a body this client cannot read: report it as a bug.
    #[error("unexpected answer from Graph: {0}")]
    InvalidResponse(String),
    /// The settings cannot work (bad URL, empty id): fix the config.
    #[error("invalid Graph settings: {0}")]
    InvalidSettings(String),
}

fn aadsts_suffix(code: Option<u32>) -> String {
    code.map(|c| format!(", AADSTS{c}")).unwrap_or_default()
}

impl GraphError {
    /// True when the same request may succeed later without any change (throttling, outage,
    /// network); the caller may schedule it again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. }
                | GraphError::Unavailable { .. }
                | GraphError::Transport(_)
                | GraphError::Timeout
        )
    }
}

/// The useful part of a Graph error body
/// `{"error":{"code","message","innerError":{"request-id",...}}}` (errors page above).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ErrorBody {
    /// `error.code`; code against this, never against the message (errors page above).
    pub code: String,
    /// `error.message`, or the start of the raw body when it is not Graph's JSON.
    pub message: String,
    /// `error.innerError.request-id`, for Microsoft support.
    pub request_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Inner,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default, rename = "innerError", alias = "innererror")]
    inner: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(default, rename = "request-id")]
    request_id: Option<String>,
}

impl ErrorBody {
    /// Parses Graph's error JSON; anything else becomes a short message with an empty code.
    pub(crate) fn parse(body: &[u8]) -> ErrorBody {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => ErrorBody {
                code: error.code,
                message: error.message,
                request_id: error.inner.and_then(|i| i.request_id),
            },
            Err(_) => ErrorBody {
                code: String::new(),
                message: String::from_utf8_lossy(body).chars().take(200).collect(),
                request_id: None,
            },
        }
    }

    /// Same as [`ErrorBody::parse`], for a body already decoded (inner `$batch` answers).
    pub(crate) fn from_value(body: &serde_json::Value) -> ErrorBody {
        match serde_json::to_vec(body) {
            Ok(bytes) => ErrorBody::parse(&bytes),
            Err(_) => ErrorBody::default(),
        }
    }

    /// The final error for a non-retried (or no longer retried) status.
    pub(crate) fn into_error(self, status: u16) -> GraphError {
        let ErrorBody { code, message, .. } = self;
        match status {
            401 => GraphError::Unauthorized { code, message },
            403 => GraphError::Forbidden { code, message },
            404 => GraphError::NotFound { code, message },
            500..=599 if status != 501 => GraphError::Unavailable { status },
            _ => GraphError::Rejected {
                status,
                code,
                message,
            },
        }
    }
}

/// `e` and its sources, joined, for one readable log line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_error_body() {
        // The 429 sample from https://learn.microsoft.com/en-us/graph/throttling.
        let body = br#"{"error":{"code":"TooManyRequests","message":"Please retry again later.",
            "innerError":{"code":"429","date":"2020-08-18T12:51:51","message":"Please retry after",
            "request-id":"94fb3b52-452a-4535-a601-69e0a90e3aa2","status":"429"}}}"#;
        let e = ErrorBody::parse(body);
        assert_eq!(e.code, "TooManyRequests");
        assert_eq!(e.message, "Please retry again later.");
        assert_eq!(
            e.request_id.as_deref(),
            Some("94fb3b52-452a-4535-a601-69e0a90e3aa2")
        );
    }

    #[test]
    fn parses_error_without_inner_error_and_junk() {
        let e = ErrorBody::parse(br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#);
        assert_eq!(e.code, "Authorization_RequestDenied");
        assert_eq!(e.request_id, None);
        let junk = ErrorBody::parse(b"<html>Bad Gateway</html>");
        assert_eq!(junk.code, "");
        assert_eq!(junk.message, "<html>Bad Gateway</html>");
        let long = ErrorBody::parse(&[b'x'; 1000]);
        assert_eq!(long.message.len(), 200);
    }

    #[test]
    fn status_maps_to_the_callers_next_action() {
        let body = || ErrorBody {
            code: "C".into(),
            message: "M".into(),
            request_id: None,
        };
        assert!(matches!(
            body().into_error(403),
            GraphError::Forbidden { .. }
        ));
        assert!(matches!(
            body().into_error(404),
            GraphError::NotFound { .. }
        ));
        assert!(matches!(
            body().into_error(401),
            GraphError::Unauthorized { .. }
        ));
        assert_eq!(
            body().into_error(503),
            GraphError::Unavailable { status: 503 }
        );
        assert!(matches!(
            body().into_error(501),
            GraphError::Rejected { status: 501, .. }
        ));
        assert!(matches!(
            body().into_error(400),
            GraphError::Rejected { status: 400, .. }
        ));
    }

    #[test]
    fn credentials_error_reads_well() {
        let e = GraphError::Credentials {
            aadsts: Some(7000215),
            error: "invalid_client".into(),
            hint: "the client secret is wrong",
        };
        assert_eq!(
            e.to_string(),
            "Entra refused the app credentials (invalid_client, AADSTS7000215): the client secret is wrong"
        );
        assert!(!e.is_transient());
        assert!(GraphError::Timeout.is_transient());
    }
}
