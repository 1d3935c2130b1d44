//! The Graph part (`/v1.0/...`): one entry point shared by HTTP and `$batch`, which applies
//! faults, authentication, permissions and presence rate limits, then routes.
//!
//! Sources, cited below by name:
//! - List users: <https://learn.microsoft.com/en-us/graph/api/user-list>
//! - the User.ReadBasic.All report: <https://learn.microsoft.com/en-us/answers/questions/6019739>
//! - getPresencesByUserId:
//!   <https://learn.microsoft.com/en-us/graph/api/cloudcommunications-getpresencesbyuserid>
//! - get presence: <https://learn.microsoft.com/en-us/graph/api/presence-get>
//! - setPresence, clearPresence, setUserPreferredPresence, clearUserPreferredPresence: the
//!   pages linked from `presence_api`
//! - List groups: <https://learn.microsoft.com/en-us/graph/api/group-list>
//! - List group transitive members:
//!   <https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>
//! - the 401 report (request-id = client-request-id when the client sent none):
//!   <https://github.com/besscroft/diyfile/issues/1>

use std::time::Instant;

use percent_encoding::percent_decode_str;
use serde_json::Value;

use crate::model::{FaultKind, LoggedRequest};
use crate::odata::{Ctx, GraphResponse};
use crate::state::{Caller, Shared, State, TokenProblem};
use crate::util::{graph_date, guid};
use crate::{batch, groups_api, presence_api, users_api};

/// Application roles that may read users (List users); `User.ReadBasic.All` is added unless
/// `strict_user_readbasic` (the User.ReadBasic.All report, UNVERIFIED).
const USERS_READ: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Application roles that may list group transitive members (least privileged first; the
/// page names no Directory.ReadWrite.All): List group transitive members.
const GROUP_MEMBERS_READ: &[&str] = &[
    "GroupMember.Read.All",
    "Directory.Read.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "GroupMember.ReadWrite.All",
];
/// Application roles that may list groups: List groups.
const GROUPS_READ: &[&str] = &[
    "GroupMember.Read.All",
    "Group.Read.All",
    "Directory.Read.All",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
];
/// Application roles that may read presence (getPresencesByUserId, get presence).
const PRESENCE_READ: &[&str] = &["Presence.Read.All", "Presence.ReadWrite.All"];
/// Application roles that may write presence (the write pages linked from `presence_api`).
const PRESENCE_WRITE: &[&str] = &["Presence.ReadWrite.All"];

/// A Graph request, from HTTP or from inside a `$batch`.
#[derive(Debug, Clone)]
pub(crate) struct GraphRequest {
    pub method: String,
    /// Path as received, starting with `/v1.0`.
    pub raw_path: String,
    pub query: String,
    /// Headers with lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    /// True when a body was sent but is not JSON.
    pub body_invalid: bool,
    pub in_batch: bool,
}

impl GraphRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn bearer(&self) -> Option<&str> {
        let v = self.header("authorization")?;
        let (scheme, token) = v.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    ListUsers,
    GetUser(String),
    ListGroups,
    GroupTransitiveMembers(String),
    GetPresence(String),
    PresenceAction(String, String),
    GetPresencesByUserId,
    Batch,
    Subscriptions(crate::subscriptions::SubOp),
    Unsupported(String),
    BadSegment(String),
    MethodNotAllowed,
}

impl Route {
    /// Operation name faults can match on ([`crate::Fault::path_contains`]).
    pub fn op(&self) -> &str {
        match self {
            Route::ListUsers => "listUsers",
            Route::GetUser(_) => "getUser",
            Route::ListGroups => "listGroups",
            Route::GroupTransitiveMembers(_) => "groupTransitiveMembers",
            Route::GetPresence(_) => "getPresence",
            Route::PresenceAction(_, a) => a,
            Route::GetPresencesByUserId => "getPresencesByUserId",
            Route::Batch => "batch",
            Route::Subscriptions(op) => op.name(),
            _ => "",
        }
    }
}

const ACTIONS: &[&str] = &[
    "setPresence",
    "clearPresence",
    "setUserPreferredPresence",
    "clearUserPreferredPresence",
    "setStatusMessage",
];

/// Routes a method and the decoded segments after `/v1.0`.
pub(crate) fn route(method: &str, segs: &[String]) -> Route {
    let mut s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = method == "GET";
    let post = method == "POST";
    if let Some(r) = crate::subscriptions::route(method, &s) {
        return r.map_or(Route::MethodNotAllowed, Route::Subscriptions);
    }
    // `/me` is `/users/me`; `dispatch` resolves `me` to the signed-in user (get presence,
    // List users).
    if s.first() == Some(&"me") {
        s.insert(0, "users");
    }
    match s.as_slice() {
        ["users"] if get => Route::ListUsers,
        ["users", "delta"] => Route::Unsupported(format!("/{}", s.join("/"))),
        ["users", k] if get => Route::GetUser((*k).to_owned()),
        ["groups"] if get => Route::ListGroups,
        // Segment names are matched regardless of case (the page's OData-cast example writes
        // `transitivemembers`); a cast segment after it is not modelled.
        ["groups", k, t] if get && t.eq_ignore_ascii_case("transitiveMembers") => {
            Route::GroupTransitiveMembers((*k).to_owned())
        }
        ["groups", _, t, _] if get && t.eq_ignore_ascii_case("transitiveMembers") => {
            Route::Unsupported(format!("/{}", s.join("/")))
        }
        ["users", k, "presence"] | ["communications", "presences", k] if get => {
            Route::GetPresence((*k).to_owned())
        }
        ["users", k, "presence", a] | ["communications", "presences", k, a]
            if post && ACTIONS.contains(a) =>
        {
            Route::PresenceAction((*k).to_owned(), (*a).to_owned())
        }
        ["communications", "getPresencesByUserId"] if post => Route::GetPresencesByUserId,
        ["$batch"] if post => Route::Batch,
        _ if known_shape(&s) => Route::MethodNotAllowed,
        _ => Route::BadSegment(s.last().copied().unwrap_or("").to_owned()),
    }
}

/// Paths the emulator serves with some method (so another method is 405, not 400).
fn known_shape(s: &[&str]) -> bool {
    match s {
        ["users"]
        | ["users", _]
        | ["users", _, "presence"]
        | ["communications", "presences", _]
        | ["groups"] => true,
        ["groups", _, t] => t.eq_ignore_ascii_case("transitiveMembers"),
        ["communications", "getPresencesByUserId"] | ["$batch"] => true,
        ["users", _, "presence", a] | ["communications", "presences", _, a] => ACTIONS.contains(a),
        _ => false,
    }
}

/// Decoded path segments after the `/v1.0` prefix.
pub(crate) fn segments(raw_path: &str) -> Vec<String> {
    raw_path
        .trim_start_matches("/v1.0")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

fn make_ctx(st: &State, req: &GraphRequest) -> Ctx {
    let request_id = guid();
    // Echo the client's id; without one it equals request-id (the 401 report; Dev Proxy's
    // GraphClientRequestIdGuidancePlugin page advises clients to send one).
    let client_request_id = req
        .header("client-request-id")
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    Ctx {
        request_id,
        client_request_id,
        date: graph_date(st.wall()),
    }
}

/// Answers one Graph request (top-level or inside a batch) and logs it.
pub(crate) async fn handle(shared: &Shared, req: GraphRequest) -> GraphResponse {
    let at = Instant::now();
    let route = route(&req.method, &segments(&req.raw_path));
    let (ctx, fault) = {
        let mut st = shared.lock();
        (
            make_ctx(&st, &req),
            st.take_fault(&req.method, &req.raw_path, route.op()),
        )
    };
    let (resp, client_id) = match fault {
        Some(FaultKind::Status(s)) => (fault_status(s), token_owner(shared, &req)),
        Some(FaultKind::Throttle { retry_after_secs }) => (
            GraphResponse::throttled(retry_after_secs),
            token_owner(shared, &req),
        ),
        Some(FaultKind::Delay(d)) => {
            tokio::time::sleep(d).await;
            process(shared, &req, route).await
        }
        None => process(shared, &req, route).await,
    };
    let resp = resp.finish(&ctx);
    let user_agent = req.header("user-agent").map(str::to_owned);
    let entry = LoggedRequest {
        method: req.method,
        path: req.raw_path,
        query: req.query,
        body: req.body,
        status: resp.status,
        client_id,
        at,
        in_batch: req.in_batch,
        user_agent,
    };
    shared.lock().push_log(entry);
    resp
}

fn token_owner(shared: &Shared, req: &GraphRequest) -> Option<String> {
    shared.lock().check_token(req.bearer()).ok()
}

/// An injected status as an OData error.
fn fault_status(status: u16) -> GraphResponse {
    let code = match status {
        400 => "BadRequest",
        401 => return GraphResponse::unauthorized("Access token validation failure."),
        403 => return GraphResponse::forbidden(),
        404 => "Request_ResourceNotFound",
        429 => return GraphResponse::throttled(1),
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "UnknownError",
    };
    GraphResponse::error(status, code, "Injected fault.")
}

async fn process(
    shared: &Shared,
    req: &GraphRequest,
    route: Route,
) -> (GraphResponse, Option<String>) {
    let caller = match shared.lock().check_caller(req.bearer()) {
        Ok(c) => c,
        Err(p) => return (auth_error(p), None),
    };
    let client = caller.client_id.clone();
    if let Route::Subscriptions(op) = route {
        return (
            crate::subscriptions::handle(shared, req, op, &caller).await,
            Some(client),
        );
    }
    if route == Route::Batch {
        if req.in_batch {
            return (
                GraphResponse::bad_request("Nested batch requests are not supported."),
                Some(client),
            );
        }
        return (batch::handle(shared, req).await, Some(client));
    }
    let mut st = shared.lock();
    (
        dispatch(&mut st, &shared.base_url, req, route, &caller),
        Some(client),
    )
}

/// 401 for a missing, unknown or expired token (the 401 report).
fn auth_error(p: TokenProblem) -> GraphResponse {
    GraphResponse::unauthorized(match p {
        TokenProblem::Missing => "Access token is empty.",
        TokenProblem::Unknown => "CompactToken parsing failed with error code: 80049217",
        TokenProblem::Expired => "Access token has expired or is not yet valid.",
    })
}

fn required_roles(st: &State, route: &Route) -> Vec<&'static str> {
    match route {
        Route::ListUsers | Route::GetUser(_) => {
            let mut r = USERS_READ.to_vec();
            if !st.opts.strict_user_readbasic {
                r.push("User.ReadBasic.All");
            }
            r
        }
        Route::ListGroups => GROUPS_READ.to_vec(),
        Route::GroupTransitiveMembers(_) => GROUP_MEMBERS_READ.to_vec(),
        Route::GetPresence(_) | Route::GetPresencesByUserId => PRESENCE_READ.to_vec(),
        Route::PresenceAction(..) => PRESENCE_WRITE.to_vec(),
        _ => Vec::new(),
    }
}

/// Resolves `me` to the signed-in user; app-only tokens get Graph's 400 (wording as seen
/// in Graph answers; UNVERIFIED: the get presence page only says `/me` needs delegated auth).
fn resolve_me(route: Route, caller: &Caller) -> Result<Route, GraphResponse> {
    let me = |k: &String| k.eq_ignore_ascii_case("me");
    let needs = match &route {
        Route::GetUser(k) | Route::GetPresence(k) | Route::PresenceAction(k, _) => me(k),
        _ => false,
    };
    if !needs {
        return Ok(route);
    }
    let Some(user) = caller.user.clone() else {
        return Err(GraphResponse::bad_request(
            "/me request is only valid with delegated authentication flow.",
        ));
    };
    Ok(match route {
        Route::GetUser(_) => Route::GetUser(user),
        Route::GetPresence(_) => Route::GetPresence(user),
        Route::PresenceAction(_, a) => Route::PresenceAction(user, a),
        other => other,
    })
}

/// Whether the caller holds one of `roles`: app roles for app-only tokens, delegated scopes
/// (same names; plus `User.Read`/`Presence.Read` for the user's own object) for delegated
/// ones (delegated permission table simplified, UNVERIFIED).
fn permitted(st: &State, caller: &Caller, route: &Route, roles: &[&str]) -> bool {
    let Some(user) = &caller.user else {
        return st.has_any_role(&caller.client_id, roles);
    };
    let has = |r: &str| caller.scopes.iter().any(|s| s.eq_ignore_ascii_case(r));
    let own = match route {
        Route::GetUser(k) | Route::GetPresence(k) => {
            st.directory.resolve(k).is_some_and(|id| id == user)
        }
        _ => false,
    };
    roles.iter().any(|r| has(r))
        || (own && (has("User.Read") || has("Presence.Read")))
        || (matches!(route, Route::ListUsers | Route::GetUser(_)) && has("User.ReadBasic.All"))
}

fn dispatch(
    st: &mut State,
    base: &str,
    req: &GraphRequest,
    route: Route,
    caller: &Caller,
) -> GraphResponse {
    let route = match resolve_me(route, caller) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let client = caller.client_id.as_str();
    let roles = required_roles(st, &route);
    if !roles.is_empty() && !permitted(st, caller, &route, &roles) {
        return GraphResponse::forbidden();
    }
    let presence = matches!(
        route,
        Route::GetPresence(_) | Route::PresenceAction(..) | Route::GetPresencesByUserId
    );
    if let Err(retry_after) = if presence {
        st.rate_check(client)
    } else {
        Ok(())
    } {
        return GraphResponse::throttled(retry_after);
    }
    if req.body_invalid {
        return GraphResponse::bad_request(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        );
    }
    match route {
        Route::ListUsers => users_api::list(st, base, req),
        Route::GetUser(k) => users_api::get(st, base, &k, req),
        Route::ListGroups => groups_api::list(st, base, req),
        Route::GroupTransitiveMembers(k) => {
            // Members the caller may not read come with limited information (groups_api).
            let user_roles = required_roles(st, &Route::ListUsers);
            let read_users = permitted(st, caller, &Route::ListUsers, &user_roles);
            groups_api::transitive_members(st, base, &k, req, read_users)
        }
        Route::GetPresence(k) => presence_api::get(st, base, &k),
        Route::GetPresencesByUserId => presence_api::get_many(st, req.body.as_ref()),
        Route::PresenceAction(k, a) => presence_api::action(st, &k, &a, client, req.body.as_ref()),
        Route::Unsupported(what) => GraphResponse::unsupported(&what),
        Route::BadSegment(s) => {
            GraphResponse::bad_request(&format!("Resource not found for the segment '{s}'."))
        }
        Route::MethodNotAllowed => GraphResponse::error(
            405,
            "Request_BadRequest",
            "Specified HTTP method is not allowed for the request target.",
        ),
        Route::Batch => GraphResponse::bad_request("Nested batch requests are not supported."),
        Route::Subscriptions(_) => GraphResponse::bad_request("Unexpected subscriptions route."),
    }
}
