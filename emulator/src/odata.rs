//! Graph responses: JSON bodies, OData error bodies, and the headers every answer carries.
//! Error body and ids: <https://learn.microsoft.com/en-us/graph/errors>; a real 401 body with
//! its headers: <https://github.com/besscroft/diyfile/issues/1>.

use serde_json::{Value, json};

/// Content type Graph answers JSON with.
pub(crate) const JSON_CT: &str = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8";

/// An answer from the Graph part, before it becomes HTTP (or a $batch item).
#[derive(Debug, Clone)]
pub(crate) struct GraphResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

/// Per-request identifiers that go into headers and `innerError` (errors page, 401 report).
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub request_id: String,
    pub client_request_id: String,
    pub date: String,
}

impl GraphResponse {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// 200 with no body: setPresence, clearPresence, ...
    /// (<https://learn.microsoft.com/en-us/graph/api/presence-setpresence>,
    /// <https://learn.microsoft.com/en-us/graph/api/presence-clearpresence>)
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// An OData error `{"error":{"code","message","innerError":{..}}}`; innerError's ids and
    /// date are filled by [`GraphResponse::finish`] (errors page).
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            json!({"error": {"code": code, "message": message, "innerError": {}}}),
        )
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// 400 BadRequest with a message.
    pub fn bad_request(message: &str) -> Self {
        Self::error(400, "BadRequest", message)
    }

    /// 404 `Request_ResourceNotFound`
    /// (<https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3331>).
    pub fn not_found(key: &str) -> Self {
        Self::error(
            404,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// 403 `Authorization_RequestDenied` (<https://learn.microsoft.com/en-us/graph/json-batching>,
    /// <https://learn.microsoft.com/en-us/answers/questions/6019739>). For presence the exact
    /// 403 body is UNVERIFIED (no published example); the same body is used.
    pub fn forbidden() -> Self {
        Self::error(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// 401 `InvalidAuthenticationToken` with Graph's www-authenticate header (401 report).
    pub fn unauthorized(message: &str) -> Self {
        Self::error(401, "InvalidAuthenticationToken", message).with_header(
            "www-authenticate",
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
        )
    }

    /// 429 with `Retry-After` and the documented body
    /// (<https://learn.microsoft.com/en-us/graph/throttling>).
    pub fn throttled(retry_after_secs: u64) -> Self {
        Self::json(
            429,
            json!({"error": {"code": "TooManyRequests", "message": "Please retry again later.",
                "innerError": {"code": "429", "message": "Please retry after", "status": "429"}}}),
        )
        .with_header("Retry-After", &retry_after_secs.to_string())
    }

    /// 501 for endpoints the emulator does not implement yet; the header tells probes so.
    pub fn unsupported(what: &str) -> Self {
        Self::error(
            501,
            "NotImplemented",
            &format!("The emulator does not implement {what} yet."),
        )
        .with_header("x-emulator-unsupported", "1")
    }

    /// Adds request-id/client-request-id headers (401 report) and innerError ids/date (errors
    /// page).
    pub fn finish(mut self, ctx: &Ctx) -> Self {
        if let Some(inner) = self
            .body
            .as_mut()
            .and_then(|b| b.get_mut("error"))
            .and_then(|e| e.get_mut("innerError"))
            .and_then(Value::as_object_mut)
        {
            inner.insert("date".into(), json!(ctx.date));
            inner.insert("request-id".into(), json!(ctx.request_id));
            inner.insert("client-request-id".into(), json!(ctx.client_request_id));
        }
        self.headers
            .push(("request-id".into(), ctx.request_id.clone()));
        self.headers
            .push(("client-request-id".into(), ctx.client_request_id.clone()));
        if self.body.is_some() {
            self.headers.push(("Content-Type".into(), JSON_CT.into()));
        }
        self
    }
}
