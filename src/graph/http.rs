//! One Graph request, with the token, the presence budget and the retries.

use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use url::Url;
use uuid::Uuid;

use super::auth::Bearer;
use super::budget::parse_retry_after;
use super::error::{ErrorBody, error_chain};
use super::{Counters, GraphError, Inner};
use crate::backoff::Backoff;
use crate::metrics::GraphStatus;

/// What to send. Built by the endpoint modules.
pub(crate) struct Request<'a> {
    /// The operation, as `graph_requests_total{op}` counts it (Graph's name for it, e.g.
    /// `getPresencesByUserId`).
    pub op: &'static str,
    pub method: Method,
    pub url: Url,
    /// JSON body, if any.
    pub body: Option<&'a serde_json::Value>,
    /// Spends the presence budget (every presence endpoint shares one limit:
    /// <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>,
    /// <https://learn.microsoft.com/en-us/graph/api/presence-get>).
    pub presence: bool,
    /// The user concerned, for the logs only.
    pub user: Option<&'a str>,
    /// A delegated token (a subscription account's) instead of the app token. A 401 is then
    /// the caller's to handle (refresh that account's token); it is not retried here.
    pub token: Option<&'a Bearer>,
}

impl Request<'static> {
    /// A plain GET outside the presence budget (directory reads).
    pub fn get(op: &'static str, url: Url) -> Request<'static> {
        Request {
            op,
            method: Method::GET,
            url,
            body: None,
            presence: false,
            user: None,
            token: None,
        }
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Graph answered with a non-2xx status.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        body: ErrorBody,
    },
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed.
    Transport(String),
}

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Wait, then send again.
    Retry(Duration),
    /// Drop the token, fetch a new one and send again, once (an expired token gets 401
    /// `InvalidAuthenticationToken`: <https://github.com/besscroft/diyfile/issues/1>).
    Reauth,
    /// Give up with this error.
    Fail(GraphError),
}

/// The retry policy, as a pure function of the failure and the attempt count (1-based).
pub(crate) fn next_step(
    failure: Failure,
    attempt: u32,
    max_attempts: u32,
    reauthed: bool,
    backoff: &Backoff,
) -> Next {
    let more = attempt < max_attempts;
    match failure {
        Failure::Status { status: 401, .. } if !reauthed => Next::Reauth,
        // 429: wait Retry-After if given, else back off exponentially
        // (https://learn.microsoft.com/en-us/graph/throttling); 509 likewise.
        Failure::Status {
            status: 429 | 509,
            retry_after,
            ..
        } => {
            let wait = retry_after.unwrap_or_else(|| backoff.delay(attempt));
            if more {
                Next::Retry(wait)
            } else {
                Next::Fail(GraphError::Throttled { retry_after: wait })
            }
        }
        // 5xx (but 501, which will not change) may carry Retry-After, e.g. 503
        // (https://learn.microsoft.com/en-us/graph/errors).
        Failure::Status {
            status: status @ 500..=599,
            retry_after,
            ..
        } if status != 501 && more => {
            Next::Retry(retry_after.unwrap_or_else(|| backoff.delay(attempt)))
        }
        Failure::Status { status, body, .. } => Next::Fail(body.into_error(status)),
        Failure::Timeout if more => Next::Retry(backoff.delay(attempt)),
        Failure::Timeout => Next::Fail(GraphError::Timeout),
        Failure::Transport(_) if more => Next::Retry(backoff.delay(attempt)),
        Failure::Transport(what) => Next::Fail(GraphError::Transport(what)),
    }
}

/// Whether `req` changes something in Graph (a presence, a subscription): only the leader
/// sends those. `$batch` POSTs carry lookups only.
fn changes_graph(req: &Request<'_>) -> bool {
    req.method != Method::GET && req.op != "batch"
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl Inner {
    /// Sends `req` until it succeeds or the policy gives up; returns the 2xx body.
    pub(crate) async fn send(&self, req: &Request<'_>) -> Result<Vec<u8>, GraphError> {
        // One id per logical request, echoed by Graph, to find it in Microsoft's logs (Dev
        // Proxy's GraphClientRequestIdGuidancePlugin page advises sending one:
        // https://learn.microsoft.com/en-us/microsoft-cloud/dev/dev-proxy/technical-reference/graphclientrequestidguidanceplugin).
        let client_request_id = Uuid::new_v4().to_string();
        let mut attempt = 1;
        let mut reauthed = req.token.is_some();
        loop {
            if req.presence {
                self.budget.acquire().await;
            }
            let token = match req.token {
                Some(t) => t.clone(),
                None => self.auth.token().await?,
            };
            if changes_graph(req) {
                // The last moment before the request leaves (the budget may have waited).
                self.fence.check()?;
            }
            Counters::bump(&self.counters.requests, 1);
            let failure = match self
                .send_once(req, token.secret(), &client_request_id)
                .await
            {
                Ok(body) => {
                    if req.presence {
                        self.budget.succeeded();
                    }
                    return Ok(body);
                }
                Err(failure) => failure,
            };
            if req.presence {
                // Any 4xx (429 included: the pause handles it) is an answer: Graph is up.
                match &failure {
                    Failure::Status { status, .. } if *status < 500 => self.budget.succeeded(),
                    _ => self.budget.failed(),
                }
            }
            let throttled = matches!(failure, Failure::Status { status: 429, .. });
            if throttled {
                Counters::bump(&self.counters.throttled, 1);
                self.metrics.graph_throttled(1);
            }
            match next_step(failure, attempt, self.max_attempts, reauthed, &self.backoff) {
                Next::Reauth => {
                    tracing::info!("Graph refused the token; fetching a new one");
                    self.auth.invalidate(&token).await;
                    reauthed = true;
                }
                Next::Retry(wait) => {
                    if throttled && req.presence {
                        self.budget.pause(wait);
                    }
                    tracing::debug!(attempt, wait_ms = wait.as_millis(), "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Next::Fail(error) => {
                    if !matches!(error, GraphError::NotFound { .. }) {
                        Counters::bump(&self.counters.errors, 1);
                    }
                    return Err(error);
                }
            }
            Counters::bump(&self.counters.retries, 1);
        }
    }

    /// One attempt. Logs failures with Graph's `request-id`.
    async fn send_once(
        &self,
        req: &Request<'_>,
        token: &str,
        client_request_id: &str,
    ) -> Result<Vec<u8>, Failure> {
        let mut builder = self
            .http
            .request(req.method.clone(), req.url.clone())
            .bearer_auth(token)
            .header("client-request-id", client_request_id)
            .header(reqwest::header::USER_AGENT, self.fence.user_agent());
        if let Some(body) = req.body {
            builder = builder.json(body);
        }
        let teams_user = req.user;
        let path = req.url.path();
        let response = builder.send().await.map_err(|e| {
            let error = error_chain(&e);
            tracing::warn!(teams_user, path, client_request_id, error = %error,
                "Graph request {path}{} failed: {error}", for_user(teams_user));
            transport_failure(&e)
        });
        let response = response.inspect_err(|f| self.metrics.graph_request(req.op, f.label()))?;
        let status = response.status().as_u16();
        self.metrics
            .graph_request(req.op, GraphStatus::Code(status));
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| transport_failure(&e))?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        let body = ErrorBody::parse(&body);
        let request_id = header(&headers, "request-id").or(body.request_id.as_deref());
        // 404 is often the expected answer (clearPresence without a session:
        // https://learn.microsoft.com/en-us/graph/api/presence-clearpresence).
        if status == 404 {
            tracing::debug!(teams_user, path, status, request_id, client_request_id, code = %body.code,
                "Graph request {path}{}: not found", for_user(teams_user));
        } else {
            tracing::warn!(teams_user, path, status, request_id, client_request_id, code = %body.code,
                graph_message = %body.message, "Graph request {path}{} failed: {status} {}: {}",
                for_user(teams_user), body.code, body.message);
        }
        Err(Failure::Status {
            status,
            retry_after: header(&headers, RETRY_AFTER.as_str()).and_then(parse_retry_after),
            body,
        })
    }
}

impl Failure {
    /// The `status` label of a request that got no answer.
    fn label(&self) -> GraphStatus {
        match self {
            Failure::Status { status, .. } => GraphStatus::Code(*status),
            Failure::Timeout => GraphStatus::Timeout,
            Failure::Transport(_) => GraphStatus::Network,
        }
    }
}

fn transport_failure(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Transport(error_chain(e))
    }
}

/// ` for user <id>` when a request is about one user, for messages.
fn for_user(teams_user: Option<&str>) -> String {
    teams_user.map_or_else(String::new, |u| format!(" for user {u}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Backoff = Backoff::ZERO;

    fn status(status: u16, retry_after: Option<u64>) -> Failure {
        Failure::Status {
            status,
            retry_after: retry_after.map(Duration::from_secs),
            body: ErrorBody {
                code: "Code".into(),
                message: "msg".into(),
                request_id: None,
            },
        }
    }

    #[test]
    fn throttling_waits_retry_after_then_gives_up() {
        let s = |n| next_step(status(429, Some(7)), n, 3, false, &NO_WAIT);
        assert_eq!(s(1), Next::Retry(Duration::from_secs(7)));
        assert_eq!(s(2), Next::Retry(Duration::from_secs(7)));
        assert_eq!(
            s(3),
            Next::Fail(GraphError::Throttled {
                retry_after: Duration::from_secs(7)
            })
        );
        // Without Retry-After: backoff (zero here).
        assert_eq!(
            next_step(status(429, None), 1, 3, false, &NO_WAIT),
            Next::Retry(Duration::ZERO)
        );
    }

    #[test]
    fn server_errors_and_network_are_retried_until_the_last_attempt() {
        assert_eq!(
            next_step(status(503, Some(2)), 1, 2, false, &NO_WAIT),
            Next::Retry(Duration::from_secs(2))
        );
        assert_eq!(
            next_step(status(500, None), 2, 2, false, &NO_WAIT),
            Next::Fail(GraphError::Unavailable { status: 500 })
        );
        assert!(matches!(
            next_step(status(501, None), 1, 5, false, &NO_WAIT),
            Next::Fail(GraphError::Rejected { status: 501, .. })
        ));
        assert_eq!(
            next_step(Failure::Timeout, 1, 2, false, &NO_WAIT),
            Next::Retry(Duration::ZERO)
        );
        assert_eq!(
            next_step(Failure::Timeout, 2, 2, false, &NO_WAIT),
            Next::Fail(GraphError::Timeout)
        );
        assert_eq!(
            next_step(Failure::Transport("refused".into()), 2, 2, false, &NO_WAIT),
            Next::Fail(GraphError::Transport("refused".into()))
        );
    }

    #[test]
    fn client_errors_are_not_retried() {
        for code in [400, 403, 404, 409, 422] {
            assert!(matches!(
                next_step(status(code, None), 1, 5, false, &NO_WAIT),
                Next::Fail(_)
            ));
        }
    }

    #[test]
    fn unauthorized_reauths_once_even_on_the_last_attempt() {
        assert_eq!(
            next_step(status(401, None), 1, 1, false, &NO_WAIT),
            Next::Reauth
        );
        assert!(matches!(
            next_step(status(401, None), 1, 5, true, &NO_WAIT),
            Next::Fail(GraphError::Unauthorized { .. })
        ));
    }
}
