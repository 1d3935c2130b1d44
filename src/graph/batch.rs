//! `$batch` (JSON batching): up to 20 relative GETs in one POST, each answered on its own;
//! inner 429/5xx are sent again after their Retry-After, `@odata.nextLink` pages followed.
//! Source: <https://learn.microsoft.com/en-us/graph/json-batching>.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::budget::parse_retry_after;
use super::error::ErrorBody;
use super::http::Request;
use super::users::{BATCH_MAX, DirUser, Index};
use super::{Counters, GraphClient, GraphError, join};

#[derive(Deserialize)]
struct UserPage {
    #[serde(default)]
    value: Vec<DirUser>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    responses: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: String,
    status: u16,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    body: Value,
}

impl BatchItem {
    fn retry_after(&self) -> Option<Duration> {
        let (_, value) = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))?;
        match value {
            Value::String(s) => parse_retry_after(s),
            Value::Number(n) => parse_retry_after(&n.to_string()),
            _ => None,
        }
    }
}

/// One `$batch` round, sorted out.
#[derive(Default)]
struct Round {
    pages: Vec<UserPage>,
    /// Indexes (into the URL list) to send again.
    retry: Vec<usize>,
    /// Indexes whose lookup was refused (tolerant mode only).
    rejected: Vec<usize>,
    wait: Duration,
    throttled: u64,
    last_status: u16,
}

impl GraphClient {
    /// Runs the relative GET `urls` in `$batch`es of 20 and indexes the users found, one batch
    /// at a time (nothing of a batch is kept once indexed).
    pub(super) async fn query_all(
        &self,
        urls: &[String],
        tolerant: bool,
        index: &mut Index,
    ) -> Result<Vec<usize>, GraphError> {
        let mut rejected = Vec::new();
        for (n, chunk) in urls.chunks(BATCH_MAX).enumerate() {
            let (users, refused) = self.run_batch(chunk, tolerant).await?;
            for user in users {
                index.add(&user);
            }
            rejected.extend(refused.into_iter().map(|i| n * BATCH_MAX + i));
        }
        Ok(rejected)
    }

    /// One `$batch` of up to 20 GETs; inner 429/5xx are sent again after Retry-After (JSON
    /// batching page).
    async fn run_batch(
        &self,
        urls: &[String],
        tolerant: bool,
    ) -> Result<(Vec<DirUser>, Vec<usize>), GraphError> {
        let inner = &self.inner;
        let batch_url = join(&inner.api_root, &["$batch"])?;
        let mut pending: Vec<usize> = (0..urls.len()).collect();
        let mut users = Vec::new();
        let mut rejected = Vec::new();
        let mut round_no = 1;
        while !pending.is_empty() {
            let requests: Vec<Value> = pending
                .iter()
                .map(|&i| json!({"id": i.to_string(), "method": "GET", "url": urls[i]}))
                .collect();
            let body = json!({ "requests": requests });
            let request = Request {
                op: "batch",
                method: Method::POST,
                url: batch_url.clone(),
                body: Some(&body),
                presence: false,
                user: None,
                token: None,
            };
            let bytes = inner.send(&request).await?;
            let answer: BatchAnswer = serde_json::from_slice(&bytes)
                .map_err(|e| GraphError::InvalidResponse(format!("$batch: {e}")))?;
            let round = self.sort_round(answer, &pending, round_no, tolerant)?;
            Counters::bump(&inner.counters.throttled, round.throttled);
            inner.metrics.graph_throttled(round.throttled);
            rejected.extend(&round.rejected);
            for page in round.pages {
                users.extend(page.value);
                if let Some(link) = page.next_link {
                    users.extend(self.follow(&link).await?);
                }
            }
            if !round.retry.is_empty() {
                if round_no >= inner.max_attempts {
                    Counters::bump(&inner.counters.errors, 1);
                    return Err(match round.throttled {
                        0 => GraphError::Unavailable {
                            status: round.last_status,
                        },
                        _ => GraphError::Throttled {
                            retry_after: round.wait,
                        },
                    });
                }
                tracing::debug!(
                    count = round.retry.len(),
                    wait_ms = round.wait.as_millis(),
                    "retrying inner $batch requests"
                );
                Counters::bump(&inner.counters.retries, round.retry.len() as u64);
                tokio::time::sleep(round.wait).await;
                round_no += 1;
            }
            pending = round.retry;
        }
        Ok((users, rejected))
    }

    /// Sorts one batch answer into pages, requests to retry, and errors.
    fn sort_round(
        &self,
        answer: BatchAnswer,
        pending: &[usize],
        round_no: u32,
        tolerant: bool,
    ) -> Result<Round, GraphError> {
        let mut round = Round::default();
        let mut seen = 0;
        for item in answer.responses {
            let Some(index) = item.id.parse().ok().filter(|i| pending.contains(i)) else {
                continue;
            };
            seen += 1;
            match item.status {
                200..=299 => round.pages.push(
                    serde_json::from_value(item.body)
                        .map_err(|e| GraphError::InvalidResponse(format!("users page: {e}")))?,
                ),
                status @ (429 | 500..=599) if status != 501 => {
                    let wait = item
                        .retry_after()
                        .unwrap_or_else(|| self.inner.backoff.delay(round_no));
                    round.wait = round.wait.max(wait);
                    round.throttled += u64::from(status == 429);
                    round.last_status = status;
                    round.retry.push(index);
                }
                400 if tolerant => {
                    let error = ErrorBody::from_value(&item.body);
                    tracing::warn!(code = %error.code, graph_message = %error.message,
                        "proxyAddresses lookup rejected ({}: {}); skipping it", error.code, error.message);
                    round.rejected.push(index);
                }
                status => {
                    Counters::bump(&self.inner.counters.errors, 1);
                    return Err(ErrorBody::from_value(&item.body).into_error(status));
                }
            }
        }
        if seen != pending.len() {
            return Err(GraphError::InvalidResponse(format!(
                "$batch answered {seen} of {} requests",
                pending.len()
            )));
        }
        Ok(round)
    }

    /// Follows `@odata.nextLink` pages (List users page); only on the Graph host, so the token
    /// stays there.
    async fn follow(&self, first: &str) -> Result<Vec<DirUser>, GraphError> {
        let mut users = Vec::new();
        let mut next = Some(first.to_string());
        while let Some(link) = next {
            let url = Url::parse(&link)
                .ok()
                .filter(|u| u.origin() == self.inner.graph_origin)
                .ok_or_else(|| {
                    GraphError::InvalidResponse(format!("nextLink off the Graph host: {link}"))
                })?;
            let request = Request::get("users", url);
            let page: UserPage = serde_json::from_slice(&self.inner.send(&request).await?)
                .map_err(|e| GraphError::InvalidResponse(format!("users page: {e}")))?;
            users.extend(page.value);
            next = page.next_link;
        }
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_items_read_retry_after_in_any_case() {
        let item: BatchItem = serde_json::from_str(
            r#"{"id":"1","status":429,"headers":{"retry-after":"3","Content-Type":"application/json"},"body":{}}"#,
        )
        .unwrap();
        assert_eq!(item.retry_after(), Some(Duration::from_secs(3)));
        let item: BatchItem =
            serde_json::from_str(r#"{"id":"1","status":429,"headers":{"Retry-After":5}}"#).unwrap();
        assert_eq!(item.retry_after(), Some(Duration::from_secs(5)));
        let item: BatchItem = serde_json::from_str(r#"{"id":"1","status":200}"#).unwrap();
        assert_eq!(item.retry_after(), None);
    }

    #[test]
    fn user_page_reads_next_link_and_missing_fields() {
        let page: UserPage = serde_json::from_str(
            r#"{"@odata.context":"x","value":[{"id":"1","mail":null,"userPrincipalName":"a@x.com"}],
                "@odata.nextLink":"https://graph.microsoft.com/v1.0/users?$skiptoken=abc"}"#,
        )
        .unwrap();
        assert_eq!(page.value.len(), 1);
        assert!(page.value[0].proxy_addresses.is_empty());
        assert_eq!(
            page.next_link.as_deref(),
            Some("https://graph.microsoft.com/v1.0/users?$skiptoken=abc")
        );
    }
}
