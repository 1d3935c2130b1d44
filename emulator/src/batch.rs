//! POST /v1.0/$batch (<https://learn.microsoft.com/en-us/graph/json-batching>): at most 20
//! requests, unique ids, relative urls, `dependsOn` (dependents of a failed request get 424).
//! Inner requests go through the same entry point as HTTP ones, so faults, permissions and rate
//! limits apply to each separately (same page). They run one after another in request order
//! (Graph may reorder; clients must not rely on order).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value, json};

use crate::graph::{self, GraphRequest};
use crate::odata::{Ctx, GraphResponse};
use crate::state::Shared;
use crate::util::{graph_date, guid};

/// Most requests in one batch (JSON batching page).
const MAX_REQUESTS: usize = 20;

struct Item {
    id: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    depends_on: Vec<String>,
}

fn parse(body: Option<&Value>) -> Result<Vec<Item>, GraphResponse> {
    let bad = |m: &str| Err(GraphResponse::bad_request(m));
    let Some(reqs) = body
        .and_then(|b| b.get("requests"))
        .and_then(Value::as_array)
    else {
        return bad("Invalid batch payload format.");
    };
    if reqs.len() > MAX_REQUESTS {
        // The limit is documented (JSON batching page); wording UNVERIFIED.
        return bad(&format!(
            "The number of batch requests ({}) exceeds the limit of {MAX_REQUESTS}.",
            reqs.len()
        ));
    }
    let mut items = Vec::with_capacity(reqs.len());
    let mut ids = HashSet::new();
    for r in reqs {
        let s = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        let (Some(id), Some(method), Some(url)) = (s("id"), s("method"), s("url")) else {
            return bad("Every batch request needs id, method and url.");
        };
        if !ids.insert(id.clone()) {
            return bad(&format!(
                "Batch request ids must be unique; '{id}' is repeated."
            )); // unique ids: JSON batching page
        }
        let headers: Vec<(String, String)> = r
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let body = r.get("body").filter(|b| !b.is_null()).cloned();
        if body.is_some() && !headers.iter().any(|(k, _)| k == "content-type") {
            // A body needs a Content-Type header (JSON batching page).
            return bad(&format!(
                "Write request id : {id} does not contain Content-Type header or body."
            ));
        }
        let depends_on = r
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|d| {
                d.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        items.push(Item {
            id,
            method: method.to_uppercase(),
            url,
            headers,
            body,
            depends_on,
        });
    }
    for it in &items {
        if let Some(d) = it.depends_on.iter().find(|d| !ids.contains(*d)) {
            return bad(&format!(
                "Request '{}' depends on unknown request '{d}'.",
                it.id
            ));
        }
    }
    Ok(items)
}

fn inner_request(outer: &GraphRequest, it: &Item) -> Result<GraphRequest, GraphResponse> {
    if it.url.starts_with("http://") || it.url.starts_with("https://") {
        // Inner urls must be relative (JSON batching page); absolute ones are answered 400 per
        // item.
        return Err(GraphResponse::bad_request(
            "Invalid request URL: batch request urls must be relative, e.g. /users.",
        ));
    }
    let (path, query) = it.url.split_once('?').unwrap_or((it.url.as_str(), ""));
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let mut headers = it.headers.clone();
    if let Some(auth) = outer.header("authorization") {
        headers.retain(|(k, _)| k != "authorization");
        headers.push(("authorization".into(), auth.to_owned()));
    }
    Ok(GraphRequest {
        method: it.method.clone(),
        raw_path: format!("/v1.0{path}"),
        query: query.to_owned(),
        headers,
        body: it.body.clone(),
        body_invalid: false,
        in_batch: true,
    })
}

fn item_json(id: &str, resp: GraphResponse) -> Value {
    let mut headers = Map::new();
    for (k, v) in resp.headers {
        headers.insert(k, json!(v));
    }
    let mut out = json!({"id": id, "status": resp.status, "headers": headers});
    if let Some(b) = resp.body {
        out["body"] = b;
    }
    out
}

/// Ids and date for answers made here rather than by the Graph entry point.
fn local_finish(shared: &Shared, resp: GraphResponse) -> GraphResponse {
    let request_id = guid();
    let date = graph_date(shared.lock().wall());
    resp.finish(&Ctx {
        client_request_id: request_id.clone(),
        request_id,
        date,
    })
}

type Boxed<'a> = Pin<Box<dyn Future<Output = GraphResponse> + Send + 'a>>;

fn run_inner<'a>(shared: &'a Shared, req: GraphRequest) -> Boxed<'a> {
    Box::pin(graph::handle(shared, req))
}

/// Answers a `$batch`: 200 with `responses` even when inner requests fail; 400 when the
/// batch itself is malformed (JSON batching page).
pub(crate) async fn handle(shared: &Shared, outer: &GraphRequest) -> GraphResponse {
    let items = match parse(outer.body.as_ref()) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::with_capacity(items.len());
    for it in &items {
        let failed_dep = it
            .depends_on
            .iter()
            .any(|d| statuses.get(d).is_none_or(|s| *s >= 400));
        let resp = if failed_dep {
            GraphResponse::error(
                424,
                "FailedDependency",
                "The request depends on a request that failed.",
            )
        } else {
            match inner_request(outer, it) {
                Ok(req) => run_inner(shared, req).await,
                Err(r) => r,
            }
        };
        // Answers made here (424, absolute url) still get request ids and a date.
        let resp = if resp.headers.is_empty() {
            local_finish(shared, resp)
        } else {
            resp
        };
        statuses.insert(it.id.clone(), resp.status);
        responses.push(item_json(&it.id, resp));
    }
    GraphResponse::json(200, json!({"responses": responses}))
}
