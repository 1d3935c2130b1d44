//! What `status` prints: the store's snapshot, shaped for admins (text) and scripts (JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::store::{MetaKey, Snapshot};
use crate::sync::types::{MatchStatus, Millis};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub users: Vec<UserStatus>,
    pub counters: BTreeMap<String, i64>,
    pub errors: Vec<ErrorStatus>,
    pub last_poll_at: Option<String>,
    /// The poll interval in effect, in seconds, and the share of the Graph budget (percent)
    /// polling uses at it.
    pub poll_interval_s: Option<f64>,
    pub poll_budget_used_pct: Option<f64>,
    /// Connectors that keep a connection (Asterisk): `connected` or `disconnected: why`.
    pub pbx_link: Option<String>,
    pub pbx_link_since: Option<String>,
    /// Where `POST /pbx/events` is bound (HTTP connector), and the notification webhook.
    pub pbx_listen: Option<String>,
    pub webhook_listen: Option<String>,
    /// Where `GET /metrics` is bound (`[metrics] listen`).
    pub metrics_listen: Option<String>,
    /// When the daemon that wrote this last started (its listeners bound).
    pub started_at: Option<String>,
    /// Change-notification subscriptions held.
    pub subscriptions: Vec<SubscriptionStatus>,
    /// Subscription accounts signed in (holding a refresh token).
    pub accounts_signed_in: Vec<String>,
    /// Members of `users.entra_group` without a usable extension (not synced).
    pub group_unusable: Option<String>,
    /// `[ha]`: who leads, and every node; `None` when no node ever took the lease.
    pub ha: Option<HaStatus>,
}

#[derive(Debug, Serialize)]
pub struct HaStatus {
    pub leader: String,
    pub epoch: i64,
    /// When the leader took the lease, and when it runs out unless renewed (the database's
    /// clock).
    pub leader_since: String,
    pub lease_expires_at: String,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    pub node: String,
    /// `leader`, `standby` or `stopped`, as the node last said.
    pub role: String,
    pub epoch: i64,
    pub seen_at: String,
    pub started_at: String,
    /// Where the node takes `POST /pbx/events`, and its version.
    pub pbx_listen: Option<String>,
    pub version: Option<String>,
    /// A standby's own link to Asterisk (`connecting`, `connected`, `lost`), and the calls
    /// it follows there.
    pub pbx_link: Option<String>,
    pub pbx_calls: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct UserStatus {
    pub extension: String,
    pub email: String,
    pub teams_id: Option<String>,
    /// "matched", or why not: "not_found", "duplicate", "pending" (not looked up yet).
    #[serde(rename = "match")]
    pub match_status: String,
    pub match_detail: Option<String>,
    pub direction: String,
    pub teams: Option<TeamsStatus>,
    pub pushed_state: Option<String>,
    pub pbx_state: Option<String>,
    pub dnd: Option<bool>,
    pub in_call_session: bool,
    pub session_expires_at: Option<String>,
    /// The subscription account covering the user; `None`: polled.
    pub covered_by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SubscriptionStatus {
    pub id: String,
    pub account: String,
    pub users: i64,
    pub expires_at: String,
    pub rich: bool,
}

#[derive(Debug, Serialize)]
pub struct TeamsStatus {
    pub availability: String,
    pub activity: String,
    pub at: String,
}

#[derive(Debug, Serialize)]
pub struct ErrorStatus {
    pub at: String,
    pub component: String,
    pub user: Option<String>,
    pub message: String,
}

pub fn status_report(s: &Snapshot) -> StatusReport {
    let users = s
        .users
        .iter()
        .map(|u| UserStatus {
            extension: u.extension.clone(),
            email: u.email.clone(),
            teams_id: u.teams_id.clone(),
            match_status: u
                .match_status
                .map_or("pending", MatchStatus::as_str)
                .to_owned(),
            match_detail: u.match_detail.clone(),
            direction: u.direction.clone(),
            teams: u.teams.as_ref().map(|t| TeamsStatus {
                availability: t.availability.clone(),
                activity: t.activity.clone(),
                at: time(t.at),
            }),
            pushed_state: u.pushed.as_ref().map(|p| p.state.clone()),
            pbx_state: u.pbx_state.clone(),
            dnd: u.dnd,
            in_call_session: u.session_expires_at.is_some(),
            session_expires_at: u.session_expires_at.map(time),
            covered_by: u.covered_by.clone(),
        })
        .collect();
    let errors = s
        .errors
        .iter()
        .map(|e| ErrorStatus {
            at: time(e.at),
            component: e.component.clone(),
            user: e.user.clone(),
            message: e.message.clone(),
        })
        .collect();
    let meta_time = |key| s.meta_time(key).map(time);
    let meta = |key| s.meta(key).map(str::to_owned);
    StatusReport {
        users,
        counters: s.counters.clone(),
        errors,
        last_poll_at: meta_time(MetaKey::LastPollAt),
        poll_interval_s: meta_number(s, MetaKey::PollIntervalMs).map(|ms| ms / 1000.0),
        poll_budget_used_pct: meta_number(s, MetaKey::PollBudgetUsedPct),
        pbx_link: meta(MetaKey::PbxLink),
        group_unusable: meta(MetaKey::GroupUnusable),
        pbx_link_since: meta_time(MetaKey::PbxLinkSince),
        pbx_listen: meta(MetaKey::PbxListen),
        webhook_listen: meta(MetaKey::WebhookListen),
        metrics_listen: meta(MetaKey::MetricsListen),
        started_at: s.meta_time(MetaKey::StartedAt).map(time_ms),
        subscriptions: s
            .subscriptions
            .iter()
            .map(|r| SubscriptionStatus {
                id: r.id.clone(),
                account: r.account.clone(),
                users: r.users,
                expires_at: time(r.expires_at),
                rich: r.rich,
            })
            .collect(),
        accounts_signed_in: s.accounts.iter().map(|a| a.account.clone()).collect(),
        ha: ha_status(s),
    }
}

fn ha_status(s: &Snapshot) -> Option<HaStatus> {
    let lease = s.lease.as_ref()?;
    let detail = |d: &str, key: &str| {
        d.split(' ')
            .find_map(|kv| kv.strip_prefix(key).map(str::to_owned))
    };
    let nodes = s
        .nodes
        .iter()
        .map(|n| NodeStatus {
            node: n.node.clone(),
            role: n.role.clone(),
            epoch: n.epoch,
            seen_at: time_ms(n.seen_at),
            started_at: time(n.started_at),
            pbx_listen: detail(&n.detail, "pbx="),
            version: detail(&n.detail, "version="),
            pbx_link: detail(&n.detail, "pbx_link="),
            pbx_calls: detail(&n.detail, "pbx_calls=").and_then(|c| c.parse().ok()),
        })
        .collect();
    Some(HaStatus {
        leader: lease.holder.clone(),
        epoch: lease.epoch,
        leader_since: time(lease.since),
        lease_expires_at: time_ms(lease.expires_at),
        nodes,
    })
}

/// `[ha]`: the lease and one line per node.
fn ha_lines(out: &mut String, ha: &HaStatus) {
    let _ = writeln!(
        out,
        "leader: {} (epoch {}) since {}, lease until {}",
        ha.leader, ha.epoch, ha.leader_since, ha.lease_expires_at
    );
    for n in &ha.nodes {
        let listen = n
            .pbx_listen
            .as_deref()
            .map_or(String::new(), |a| format!(", PBX events on {a}"));
        let version = n.version.as_deref().unwrap_or("?");
        let link = match (&n.pbx_link, n.pbx_calls) {
            (Some(l), Some(c)) => format!(", Asterisk {l} ({c} in a call)"),
            (Some(l), None) => format!(", Asterisk {l}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "node {}: {} (epoch {}), seen {}{listen}{link}, version {version}",
            n.node, n.role, n.epoch, n.seen_at
        );
    }
}

pub fn status_text(r: &StatusReport) -> String {
    let mut out = String::new();
    users_table(&mut out, &r.users);
    footer(&mut out, r);
    out
}

/// One line per user.
fn users_table(out: &mut String, users: &[UserStatus]) {
    let _ = writeln!(
        out,
        "{:<8} {:<32} {:<11} {:<28} {:<9} {:<8} VIA",
        "EXT", "E-MAIL", "MATCH", "TEAMS", "PBX", "IN-CALL"
    );
    for u in users {
        let teams = u
            .teams
            .as_ref()
            .map_or("-".into(), |t| format!("{}/{}", t.availability, t.activity));
        // The phone's DND shows with its call state: `idle+dnd`.
        let pbx = match (u.pbx_state.as_deref(), u.dnd) {
            (Some(state), Some(true)) => format!("{state}+dnd"),
            (state, _) => state.unwrap_or("-").to_owned(),
        };
        let via = u
            .covered_by
            .as_deref()
            .map_or("poll".to_owned(), |a| format!("notify:{a}"));
        let _ = writeln!(
            out,
            "{:<8} {:<32} {:<11} {:<28} {:<9} {:<8} {via}",
            u.extension,
            u.email,
            u.match_status,
            teams,
            pbx,
            if u.in_call_session { "yes" } else { "no" }
        );
    }
}

/// The last poll, subscriptions, the PBX link, listeners, counters and recent errors.
fn footer(out: &mut String, r: &StatusReport) {
    let _ = write!(
        out,
        "\nlast poll: {}",
        r.last_poll_at.as_deref().unwrap_or("never")
    );
    match (r.poll_interval_s, r.poll_budget_used_pct) {
        (Some(every), Some(pct)) => {
            let _ = writeln!(out, ", every {every:.1} s ({pct:.1} % of the Graph budget)");
        }
        _ => out.push('\n'),
    }
    for sub in &r.subscriptions {
        let _ = writeln!(
            out,
            "subscription {} ({}): {} users, expires {}{}",
            sub.id,
            sub.account,
            sub.users,
            sub.expires_at,
            if sub.rich { ", rich" } else { "" }
        );
    }
    if let Some(names) = &r.group_unusable {
        let _ = writeln!(
            out,
            "Entra group members without a usable extension (not synced): {names}"
        );
    }
    if let Some(ha) = &r.ha {
        ha_lines(out, ha);
    }
    if let Some(link) = &r.pbx_link {
        let since = r.pbx_link_since.as_deref().unwrap_or("?");
        let _ = writeln!(out, "PBX: {link} (since {since})");
    }
    for (what, addr) in [
        ("PBX events", &r.pbx_listen),
        ("webhook", &r.webhook_listen),
        ("metrics", &r.metrics_listen),
    ] {
        if let Some(addr) = addr {
            let _ = writeln!(out, "{what} listening on {addr}");
        }
    }
    if !r.counters.is_empty() {
        let c: Vec<String> = r.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "counters: {}", c.join(" "));
    }
    for e in &r.errors {
        let user = e
            .user
            .as_deref()
            .map_or(String::new(), |u| format!(" [{u}]"));
        let _ = writeln!(out, "error {} {}{}: {}", e.at, e.component, user, e.message);
    }
}

/// A number kept under `key`.
fn meta_number(s: &Snapshot, key: MetaKey) -> Option<f64> {
    s.meta(key).and_then(|v| v.parse().ok())
}

/// RFC 3339 UTC, to the millisecond (tells two quick restarts apart).
fn time_ms(ms: Millis) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// RFC 3339 UTC, to the second.
fn time(ms: Millis) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
