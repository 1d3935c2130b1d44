//! GET /groups (`$filter=mailNickname eq '…'`, `$select`, `$top`, paging) and
//! GET /groups/{id}/transitiveMembers (`$select`, `$top`, paging). Sources:
//! - List groups: <https://learn.microsoft.com/en-us/graph/api/group-list> (default and
//!   maximum page sizes 100 and 999, `$skip` not supported)
//! - group resource: <https://learn.microsoft.com/en-us/graph/api/resources/group>
//!   (`mailNickname` supports `$filter` with `eq`)
//! - List group transitive members:
//!   <https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers> (a flat list of
//!   directoryObjects, each with `@odata.type`; filtering by type needs advanced queries)
//! - page sizes of the directoryObject relationships (100 and 999):
//!   <https://learn.microsoft.com/en-us/graph/api/group-list-transitivememberof>; that
//!   transitiveMembers pages the same way is UNVERIFIED
//! - limited information for members the app may not read (only `@odata.type` and `id`, other
//!   properties null):
//!   <https://learn.microsoft.com/en-us/graph/permissions-overview#limited-information-returned-for-inaccessible-member-objects>

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::directory::{DEFAULT_PROPS, canonical_prop, user_json};
use crate::graph::GraphRequest;
use crate::groups::Member;
use crate::model::Group;
use crate::odata::GraphResponse;
use crate::state::State;
use crate::users_api::{next_link, options, selection, skip_token};

const DEFAULT_TOP: usize = 100;
const MAX_TOP: usize = 999;

/// Group properties the emulator answers (the others Graph has are not modelled).
const GROUP_PROPS: &[&str] = &["id", "displayName", "mail", "mailNickname"];

const USER_TYPE: &str = "#microsoft.graph.user";
const GROUP_TYPE: &str = "#microsoft.graph.group";

fn unsupported(what: &str) -> GraphResponse {
    GraphResponse::error(
        400,
        "Request_UnsupportedQuery",
        &format!("The emulator does not support {what} here."),
    )
    .with_header("x-emulator-unsupported", "1")
}

fn group_prop(name: &str) -> Option<&'static str> {
    GROUP_PROPS
        .iter()
        .find(|p| p.eq_ignore_ascii_case(name))
        .copied()
}

fn group_json(g: &Group, props: &[&str]) -> Value {
    let mut m = Map::new();
    for p in props {
        let v = match *p {
            "id" => json!(g.id),
            "displayName" => json!(g.display_name),
            "mail" => json!(g.mail),
            "mailNickname" => json!(g.mail_nickname),
            _ => Value::Null,
        };
        m.insert((*p).to_owned(), v);
    }
    Value::Object(m)
}

/// `$skiptoken` position and `$top` (List groups: default 100, at most 999; `$skip` refused).
fn paging(opts: &HashMap<String, String>) -> Result<(usize, usize), GraphResponse> {
    if opts.contains_key("skip") {
        return Err(GraphResponse::error(
            400,
            "Request_BadRequest",
            "'$skip' is not supported by the service.",
        ));
    }
    let top = match opts.get("top") {
        None => DEFAULT_TOP,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|t| (1..=MAX_TOP).contains(t))
            .ok_or_else(|| {
                GraphResponse::error(
                    400,
                    "Request_BadRequest",
                    &format!(
                        "Invalid page size specified: '{t}'. Must be between 1 and {MAX_TOP} inclusive."
                    ),
                )
            })?,
    };
    let skip = skip_token(opts)?;
    Ok((skip, top))
}

/// `mailNickname eq 'x'` (quotes doubled inside) -> `x`; None for anything else.
fn nickname_filter(filter: &str) -> Option<String> {
    let (prop, rest) = filter.trim().split_once(char::is_whitespace)?;
    let (op, literal) = rest.trim_start().split_once(char::is_whitespace)?;
    if !prop.eq_ignore_ascii_case("mailNickname") || !op.eq_ignore_ascii_case("eq") {
        return None;
    }
    let inner = literal.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    if inner.replace("''", "").contains('\'') {
        return None;
    }
    Some(inner.replace("''", "'"))
}

/// One page of `entries` as an OData collection, with `@odata.nextLink` when more follow.
fn page(
    base: &str,
    req: &GraphRequest,
    context: String,
    entries: Vec<Value>,
    (skip, top): (usize, usize),
) -> GraphResponse {
    let total = entries.len();
    let end = (skip + top).min(total);
    let value: Vec<Value> = entries
        .into_iter()
        .skip(skip.min(end))
        .take(end.saturating_sub(skip))
        .collect();
    let mut body = json!({"@odata.context": context, "value": value});
    if end < total {
        body["@odata.nextLink"] = json!(next_link(base, req, end));
    }
    GraphResponse::json(200, body)
}

fn context(base: &str, set: &str, props: &[&str], opts: &HashMap<String, String>) -> String {
    let sel = if opts.contains_key("select") {
        format!("({})", props.join(","))
    } else {
        String::new()
    };
    format!("{base}/v1.0/$metadata#{set}{sel}")
}

/// GET /groups: all groups, or those `$filter=mailNickname eq '…'` names (List groups).
pub(crate) fn list(st: &State, base: &str, req: &GraphRequest) -> GraphResponse {
    match try_list(st, base, req) {
        Ok(r) | Err(r) => r,
    }
}

fn try_list(st: &State, base: &str, req: &GraphRequest) -> Result<GraphResponse, GraphResponse> {
    let opts = options(&req.query);
    if ["search", "orderby", "expand", "count"]
        .iter()
        .any(|k| opts.contains_key(*k))
    {
        return Err(unsupported("$search, $orderby, $expand or $count"));
    }
    let bounds = paging(&opts)?;
    let props = selection(&opts, GROUP_PROPS, group_prop, "microsoft.graph.group")?;
    let hits: Vec<usize> = match opts.get("filter") {
        None => (0..st.groups.len()).collect(),
        Some(f) => {
            let nick = nickname_filter(f).ok_or_else(|| unsupported("this $filter"))?;
            st.groups.with_nickname(&[nick])
        }
    };
    let entries = hits
        .into_iter()
        .filter_map(|i| st.groups.at(i))
        .map(|g| group_json(g, &props))
        .collect();
    let ctx = context(base, "groups", &props, &opts);
    Ok(page(base, req, ctx, entries, bounds))
}

/// GET /groups/{id}/transitiveMembers (List group transitive members). `read_users`: whether
/// the caller may read user properties; without it users come with `@odata.type` and `id`
/// only, the other selected properties null (limited information, module doc).
pub(crate) fn transitive_members(
    st: &State,
    base: &str,
    key: &str,
    req: &GraphRequest,
    read_users: bool,
) -> GraphResponse {
    match try_transitive(st, base, key, req, read_users) {
        Ok(r) | Err(r) => r,
    }
}

fn try_transitive(
    st: &State,
    base: &str,
    key: &str,
    req: &GraphRequest,
    read_users: bool,
) -> Result<GraphResponse, GraphResponse> {
    let opts = options(&req.query);
    if ["search", "orderby", "expand", "count", "filter"]
        .iter()
        .any(|k| opts.contains_key(*k))
    {
        return Err(unsupported("$search, $orderby, $expand, $count or $filter"));
    }
    let bounds = paging(&opts)?;
    let known = |n: &str| canonical_prop(n).or_else(|| group_prop(n));
    let mut defaults = DEFAULT_PROPS.to_vec();
    defaults.extend(GROUP_PROPS.iter().filter(|p| !DEFAULT_PROPS.contains(p)));
    let props = selection(&opts, &defaults, known, "microsoft.graph.directoryObject")?;
    let Some(idx) = st.groups.position(key) else {
        return Err(missing_group(key));
    };
    let entries = st
        .groups
        .transitive(idx, |id| st.directory.contains_id(id))
        .into_iter()
        .filter_map(|m| member_json(st, &m, &props, opts.contains_key("select"), read_users))
        .collect();
    let ctx = context(base, "directoryObjects", &props, &opts);
    Ok(page(base, req, ctx, entries, bounds))
}

/// 404 `Request_ResourceNotFound` for an unknown group id (the body Graph gives for unknown
/// users: <https://github.com/microsoftgraph/microsoft-graph-docs-contrib/issues/3331>; the
/// same body for groups is UNVERIFIED), 400 for an id that is not a GUID (Graph's "Invalid
/// object identifier" wording is UNVERIFIED).
fn missing_group(key: &str) -> GraphResponse {
    if uuid_shaped(key) {
        GraphResponse::not_found(key)
    } else {
        GraphResponse::error(
            400,
            "Request_BadRequest",
            &format!("Invalid object identifier '{key}'."),
        )
    }
}

fn uuid_shaped(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// One transitive member as JSON: `@odata.type` first, then the selected properties its type
/// has (without `$select`: that type's defaults).
fn member_json(
    st: &State,
    m: &Member,
    props: &[&'static str],
    selected: bool,
    read_users: bool,
) -> Option<Value> {
    let (kind, mut body) = match m {
        Member::User(id) => {
            let u = st.directory.get(id)?;
            let own: Vec<&str> = if selected {
                props
                    .iter()
                    .copied()
                    .filter(|p| canonical_prop(p).is_some())
                    .collect()
            } else {
                DEFAULT_PROPS.to_vec()
            };
            let mut body = user_json(u, &own);
            if !read_users {
                for (k, v) in body.as_object_mut()?.iter_mut() {
                    if k != "id" {
                        *v = Value::Null;
                    }
                }
            }
            (USER_TYPE, body)
        }
        Member::Group(idx) => {
            let g = st.groups.at(*idx)?;
            let own: Vec<&str> = if selected {
                props
                    .iter()
                    .copied()
                    .filter(|p| group_prop(p).is_some())
                    .collect()
            } else {
                GROUP_PROPS.to_vec()
            };
            (GROUP_TYPE, group_json(g, &own))
        }
    };
    let mut out = Map::new();
    out.insert("@odata.type".into(), json!(kind));
    out.append(body.as_object_mut()?);
    Some(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nickname_filter_reads_eq_with_doubled_quotes_only() {
        assert_eq!(
            nickname_filter("mailNickname eq 'pbx-users'").as_deref(),
            Some("pbx-users")
        );
        assert_eq!(
            nickname_filter(" MAILNICKNAME  EQ  'o''brien' ").as_deref(),
            Some("o'brien")
        );
        assert_eq!(nickname_filter("mailNickname ne 'a'"), None);
        assert_eq!(nickname_filter("displayName eq 'a'"), None);
        assert_eq!(nickname_filter("mailNickname eq 'a'b'"), None);
        assert_eq!(nickname_filter("mailNickname eq a"), None);
    }

    #[test]
    fn guid_shape() {
        assert!(uuid_shaped("02bd9fd6-8f93-4758-87c3-1fb73740a315"));
        assert!(!uuid_shaped("pbx-users"));
        assert!(!uuid_shaped("02bd9fd6-8f93-4758-87c3-1fb73740a31"));
    }
}
