//! GET /users (filter, select, top, paging, count) and GET /users/{id | upn}. Sources: List
//! users <https://learn.microsoft.com/en-us/graph/api/user-list>, `$filter`
//! <https://learn.microsoft.com/en-us/graph/filter-query-parameter>, JSON batching (for paging)
//! <https://learn.microsoft.com/en-us/graph/json-batching>, and the 404 report
//! <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3331>.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::directory::{DEFAULT_PROPS, canonical_prop, user_json};
use crate::filter::{self, FilterError};
use crate::graph::GraphRequest;
use crate::odata::GraphResponse;
use crate::state::State;

/// Default page size (UNVERIFIED: no published source gives the default 100 or the maximum
/// `$top` 999 for users).
const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 999;
/// Values per `in` without advanced query headers (`$filter` page).
const MAX_IN_VALUES: usize = 15;
/// URL length limit with advanced queries (`$filter` page, 2024 ja-jp version).
const MAX_ADVANCED_URL: usize = 2048;

/// Query options by lowercase name without `$` (Graph accepts both spellings).
pub(crate) fn options(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.trim_start_matches('$').to_lowercase(), v.into_owned()))
        .collect()
}

/// The selected names, each checked by `known` (canonical spelling), or `defaults`.
pub(crate) fn selection(
    opts: &HashMap<String, String>,
    defaults: &[&'static str],
    known: impl Fn(&str) -> Option<&'static str>,
    on_type: &str,
) -> Result<Vec<&'static str>, GraphResponse> {
    let Some(sel) = opts.get("select") else {
        return Ok(defaults.to_vec());
    };
    let mut out: Vec<&'static str> = Vec::new();
    for name in sel.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let p = known(name).ok_or_else(|| {
            GraphResponse::error(
                400,
                "Request_BadRequest",
                &format!("Could not find a property named '{name}' on type '{on_type}'."),
            )
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

fn context(base: &str, props: &[&str], opts: &HashMap<String, String>, entity: bool) -> String {
    let sel = if opts.contains_key("select") {
        format!("({})", props.join(","))
    } else {
        String::new()
    };
    let tail = if entity { "/$entity" } else { "" };
    format!("{base}/v1.0/$metadata#users{sel}{tail}")
}

fn advanced(req: &GraphRequest) -> bool {
    req.header("consistencylevel")
        .is_some_and(|v| v.eq_ignore_ascii_case("eventual"))
}

/// Positions of the filtered users, or None for "all users".
fn filtered(
    st: &State,
    req: &GraphRequest,
    opts: &HashMap<String, String>,
) -> Result<Option<Vec<usize>>, GraphResponse> {
    let Some(f) = opts.get("filter") else {
        return Ok(None);
    };
    let clauses = filter::parse(f).map_err(|e| match e {
        FilterError::Syntax(m) => {
            GraphResponse::error(400, "BadRequest", &format!("Invalid filter clause: {m}"))
        }
        FilterError::Unsupported(m) => GraphResponse::error(
            400,
            "Request_UnsupportedQuery",
            &format!("Unsupported query: {m}"),
        )
        .with_header("x-emulator-unsupported", "1"),
    })?;
    if advanced(req) && opts.get("count").is_some_and(|c| c == "true") {
        // With advanced query capabilities the limit is the URL length (`$filter` page).
        let len = "https://graph.microsoft.com".len() + req.raw_path.len() + 1 + req.query.len();
        if len > MAX_ADVANCED_URL {
            return Err(GraphResponse::error(
                400,
                "Request_UnsupportedQuery",
                "The request URL is too long (over 2048 characters).",
            ));
        }
    } else if let Some(c) = clauses
        .iter()
        .find(|c| c.is_in && c.values.len() > MAX_IN_VALUES)
    {
        // 15 expressions per `in` (`$filter` page); the message wording is UNVERIFIED.
        return Err(GraphResponse::error(
            400,
            "Request_UnsupportedQuery",
            &format!(
                "Too many child clauses specified in search filter expression containing 'OR' operators: {}. Max allowed: {MAX_IN_VALUES}.",
                c.values.len()
            ),
        ));
    }
    Ok(Some(st.directory.matching(&clauses)))
}

pub(crate) fn next_link(base: &str, req: &GraphRequest, next: usize) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(req.query.as_bytes()) {
        if k.trim_start_matches('$').to_lowercase() != "skiptoken" {
            ser.append_pair(&k, &v);
        }
    }
    ser.append_pair("$skiptoken", &format!("emu{next}"));
    format!("{base}{}?{}", req.raw_path, ser.finish())
}

/// Where the page a [`next_link`] names starts (0 without `$skiptoken`).
pub(crate) fn skip_token(opts: &HashMap<String, String>) -> Result<usize, GraphResponse> {
    match opts.get("skiptoken") {
        None => Ok(0),
        Some(t) => t
            .strip_prefix("emu")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| GraphResponse::bad_request("Invalid $skiptoken.")),
    }
}

/// GET /users (List users): `$filter` (see [`crate::filter`]), `$select`, `$top` +
/// `@odata.nextLink` (JSON batching), `$count=true` with `ConsistencyLevel: eventual` ->
/// `@odata.count` (List users).
pub(crate) fn list(st: &State, base: &str, req: &GraphRequest) -> GraphResponse {
    match try_list(st, base, req) {
        Ok(r) | Err(r) => r,
    }
}

fn try_list(st: &State, base: &str, req: &GraphRequest) -> Result<GraphResponse, GraphResponse> {
    let opts = options(&req.query);
    if opts.contains_key("skip") {
        return Err(GraphResponse::error(
            400,
            "Request_BadRequest",
            "'$skip' is not supported by the service.",
        ));
    }
    if opts.contains_key("search") || opts.contains_key("orderby") || opts.contains_key("expand") {
        return Err(GraphResponse::error(
            400,
            "Request_UnsupportedQuery",
            "The emulator does not support $search, $orderby or $expand.",
        )
        .with_header("x-emulator-unsupported", "1"));
    }
    let props = selection(&opts, DEFAULT_PROPS, canonical_prop, "microsoft.graph.user")?;
    let top = match opts.get("top") {
        None => DEFAULT_TOP,
        Some(t) => t.parse::<usize>().ok().filter(|t| (1..=MAX_TOP).contains(t)).ok_or_else(|| {
            GraphResponse::error(400, "Request_BadRequest", &format!("Invalid page size specified: '{t}'. Must be between 1 and {MAX_TOP} inclusive."))
        })?,
    };
    let count = opts
        .get("count")
        .is_some_and(|c| c.eq_ignore_ascii_case("true"));
    if count && !advanced(req) {
        // $count is an advanced query: it needs ConsistencyLevel: eventual (List users). Wording
        // UNVERIFIED.
        return Err(GraphResponse::error(
            400,
            "Request_BadRequest",
            "$count is not currently supported.",
        ));
    }
    let skip = skip_token(&opts)?;
    let hits = filtered(st, req, &opts)?;
    let total = hits.as_ref().map_or(st.directory.len(), Vec::len);
    let end = (skip + top).min(total);
    let value: Vec<Value> = (skip.min(end)..end)
        .filter_map(|i| st.directory.at(hits.as_ref().map_or(i, |h| h[i])))
        .map(|u| user_json(u, &props))
        .collect();
    let mut body = json!({"@odata.context": context(base, &props, &opts, false), "value": value});
    if count {
        body["@odata.count"] = json!(total);
    }
    if end < total {
        body["@odata.nextLink"] = json!(next_link(base, req, end));
    }
    Ok(GraphResponse::json(200, body))
}

/// GET /users/{id | userPrincipalName} (List users); 404 `Request_ResourceNotFound` (the 404
/// report).
pub(crate) fn get(st: &State, base: &str, key: &str, req: &GraphRequest) -> GraphResponse {
    let opts = options(&req.query);
    let props = match selection(&opts, DEFAULT_PROPS, canonical_prop, "microsoft.graph.user") {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(u) = st.directory.get(key) else {
        return GraphResponse::not_found(key);
    };
    let mut body = user_json(u, &props);
    body["@odata.context"] = json!(context(base, &props, &opts, true));
    GraphResponse::json(200, body)
}
