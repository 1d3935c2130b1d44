//! What changed between two loaded configs, as a short list the service can act on (style
//! habit 7, rathole's `calculate_events`). Pure: no I/O, table-tested below.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Config, Directory, UserEntry};

/// One thing the service must do after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Start syncing these extensions (resolve their Teams ids).
    UsersAdded(Vec<String>),
    /// Stop syncing these extensions (clear any session we own for them).
    UsersRemoved(Vec<String>),
    /// E-mail or direction changed for these extensions: re-resolve / re-evaluate them.
    UsersChanged(Vec<String>),
    /// `sync.poll_interval` or the budget keys that pace it changed: the poller plans anew.
    PollInterval,
    /// `sync.in_call_expiration` changed: use it for the next setPresence.
    InCallExpiration,
    /// `sync.pbx_dnd_to_teams` changed: write or clear the DND of phones in DND now.
    DndToTeams,
    /// `sync.resolve_interval` changed: reset the resolve timer.
    ResolveInterval,
    /// The mapping table changed: re-map the last known Teams states and push what differs.
    Mapping,
    /// `[azure]` or `sync.request_timeout` changed: rebuild the Graph client (new token).
    Azure,
    /// `[pbx]` changed: restart the connector.
    Pbx,
    /// `log.level` changed: swap the tracing filter.
    LogLevel,
    /// `[users]` changed: `users.file` points elsewhere (watch the new file), or the Entra
    /// group keys (`entra_group`, `extension_attribute`, `extension_regex`) changed.
    UsersFile,
    /// A key that only takes effect on restart changed (e.g. `sync.state_db`): warn.
    RestartRequired(&'static str),
}

/// The changes from `old` to `new`, in a fixed order: restart warnings, then clients,
/// then timings, then users. `sync.shutdown_timeout` and `sync.recovery_grace` produce
/// nothing: the service reads them from the current config when it needs them.
pub fn diff(old: (&Config, &Directory), new: (&Config, &Directory)) -> Vec<Change> {
    let ((o, od), (n, nd)) = (old, new);
    let mut changes = Vec::new();
    let mut when = |cond: bool, change: Change| {
        if cond {
            changes.push(change);
        }
    };
    when(
        o.sync.state_db != n.sync.state_db,
        Change::RestartRequired("sync.state_db"),
    );
    let request_timeout = o.sync.request_timeout != n.sync.request_timeout;
    // The Graph client's request bucket is sized by the budget.
    let budget = (o.sync.graph_budget, o.sync.graph_budget_window)
        != (n.sync.graph_budget, n.sync.graph_budget_window);
    when(
        o.azure != n.azure || request_timeout || budget,
        Change::Azure,
    );
    when(o.pbx != n.pbx, Change::Pbx);
    when(
        o.notifications != n.notifications,
        Change::RestartRequired("notifications"),
    );
    when(o.ha != n.ha, Change::RestartRequired("ha"));
    when(o.store != n.store, Change::RestartRequired("store"));
    when(o.metrics != n.metrics, Change::RestartRequired("metrics"));
    when(o.log != n.log, Change::LogLevel);
    when(o.sync.pacing() != n.sync.pacing(), Change::PollInterval);
    when(
        o.sync.in_call_expiration != n.sync.in_call_expiration,
        Change::InCallExpiration,
    );
    when(
        o.sync.pbx_dnd_to_teams != n.sync.pbx_dnd_to_teams,
        Change::DndToTeams,
    );
    when(
        o.sync.resolve_interval != n.sync.resolve_interval,
        Change::ResolveInterval,
    );
    when(o.mapping != n.mapping, Change::Mapping);
    when(o.users != n.users, Change::UsersFile);
    changes.extend(user_changes(od, nd));
    changes
}

fn user_changes(old: &Directory, new: &Directory) -> Vec<Change> {
    let index = |d: &Directory| -> BTreeMap<Arc<str>, UserEntry> {
        d.entries
            .iter()
            .map(|e| (e.extension.clone(), e.clone()))
            .collect()
    };
    let (old, new) = (index(old), index(new));
    let added: Vec<String> = new
        .keys()
        .filter(|k| !old.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let removed: Vec<String> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| k.to_string())
        .collect();
    let changed: Vec<String> = new
        .iter()
        .filter(|(k, n)| {
            old.get(*k)
                .is_some_and(|o| o.email != n.email || o.direction != n.direction)
        })
        .map(|(k, _)| k.to_string())
        .collect();
    [
        (added, Change::UsersAdded as fn(_) -> _),
        (removed, Change::UsersRemoved),
        (changed, Change::UsersChanged),
    ]
    .into_iter()
    .filter(|(list, _)| !list.is_empty())
    .map(|(list, make)| make(list))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{
        AzureCredential, HostPort, PollInterval, Secret, SipPbxConfig, parse_users,
    };
    use crate::sync::mapping::Mapping;
    use crate::sync::types::Direction;

    const TEXT: &str = r#"
[azure]
tenant_id = "t"
client_id = "c"
client_secret = "s"
[pbx]
token = "p"
"#;

    fn base() -> (Config, Directory) {
        let config = Config::from_str_with(TEXT, Path::new("/etc/p/config.toml"), &|_| None);
        let users = "1001,a@example.com\n1002,b@example.com\n1003,c@example.com\n";
        (
            config.unwrap(),
            parse_users(users, Path::new("/u")).unwrap(),
        )
    }

    fn sip() -> SipPbxConfig {
        let registrar = HostPort {
            host: "pbx.example.com".into(),
            port: 5060,
        };
        SipPbxConfig::new(registrar, "teams-sync")
    }

    /// A change of any one sip key is a `[pbx]` change: the connector restarts.
    #[test]
    fn every_sip_key_is_a_pbx_change() {
        let edits: Vec<Edit> = vec![
            |x| x.0.pbx.sip.as_mut().unwrap().registrar.port = 5080,
            |x| x.0.pbx.sip.as_mut().unwrap().username = "other".into(),
            |x| x.0.pbx.sip.as_mut().unwrap().password = Some(Secret::new("new")),
            |x| x.0.pbx.sip.as_mut().unwrap().subscribe_expires *= 2,
            |x| x.0.pbx.sip.as_mut().unwrap().subscribe_rate = 7,
            |x| {
                let watch = &mut x.0.pbx.sip.as_mut().unwrap().watch;
                watch.insert("1001".into(), "sip:desk-1001@pbx".into());
            },
        ];
        for (i, edit) in edits.into_iter().enumerate() {
            let mut old = base();
            old.0.pbx.sip = Some(sip());
            let mut new = old.clone();
            edit(&mut new);
            assert_eq!(
                diff((&old.0, &old.1), (&new.0, &new.1)),
                vec![Change::Pbx],
                "edit {i}"
            );
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    type Edit = fn(&mut (Config, Directory));

    #[test]
    fn diff_table() {
        let cases: Vec<(&str, Edit, Vec<Change>)> = vec![
            ("nothing", |_| {}, vec![]),
            (
                "poll",
                |x| x.0.sync.poll_interval = PollInterval::Every(Duration::from_secs(5)),
                vec![Change::PollInterval],
            ),
            (
                "share",
                |x| x.0.sync.poll_budget_share = 0.25,
                vec![Change::PollInterval],
            ),
            (
                "budget",
                |x| x.0.sync.graph_budget = 10_000,
                vec![Change::Azure, Change::PollInterval],
            ),
            (
                "expiry",
                |x| x.0.sync.in_call_expiration *= 2,
                vec![Change::InCallExpiration],
            ),
            (
                "resolve",
                |x| x.0.sync.resolve_interval *= 2,
                vec![Change::ResolveInterval],
            ),
            (
                "dnd",
                |x| x.0.sync.pbx_dnd_to_teams = crate::sync::types::DndToTeams::Session,
                vec![Change::DndToTeams],
            ),
            ("shutdown only", |x| x.0.sync.shutdown_timeout /= 2, vec![]),
            ("grace only", |x| x.0.sync.recovery_grace *= 2, vec![]),
            (
                "state db",
                |x| x.0.sync.state_db = "/x.db".into(),
                vec![Change::RestartRequired("sync.state_db")],
            ),
            (
                "secret",
                |x| x.0.azure.credential = AzureCredential::Secret(Secret::new("new")),
                vec![Change::Azure],
            ),
            (
                "request timeout",
                |x| x.0.sync.request_timeout *= 2,
                vec![Change::Azure],
            ),
            (
                "metrics",
                |x| {
                    x.0.metrics = Some(crate::config::MetricsConfig {
                        listen: "127.0.0.1:9790".parse().unwrap(),
                    })
                },
                vec![Change::RestartRequired("metrics")],
            ),
            (
                "log",
                |x| x.0.log.level = "debug".into(),
                vec![Change::LogLevel],
            ),
            (
                "pbx",
                |x| {
                    if let Some(h) = &mut x.0.pbx.http {
                        h.push_timeout *= 2;
                    }
                },
                vec![Change::Pbx],
            ),
            (
                "sip added",
                |x| x.0.pbx.sip = Some(sip()),
                vec![Change::Pbx],
            ),
            (
                "mapping",
                |x| {
                    let act = BTreeMap::from([("InAMeeting".to_owned(), "busy".to_owned())]);
                    x.0.mapping = Mapping::with_overrides(&act, &BTreeMap::new());
                },
                vec![Change::Mapping],
            ),
            (
                "users file",
                |x| x.0.users.file = "/other.csv".into(),
                vec![Change::UsersFile],
            ),
            (
                "entra group",
                |x| {
                    x.0.users.entra_group = Some(crate::config::EntraGroupConfig {
                        group: "pbx-users".into(),
                        extension_attribute: crate::graph::ExtensionAttribute::MobilePhone,
                        extension_regex: None,
                    })
                },
                vec![Change::UsersFile],
            ),
            (
                "user added",
                |x| {
                    x.1.entries
                        .push(entry("1004", "d@example.com", Direction::Both))
                },
                vec![Change::UsersAdded(s(&["1004"]))],
            ),
            (
                "user removed",
                |x| {
                    x.1.entries.remove(0);
                },
                vec![Change::UsersRemoved(s(&["1001"]))],
            ),
            (
                "email changed",
                |x| x.1.entries[1].email = "z@example.com".into(),
                vec![Change::UsersChanged(s(&["1002"]))],
            ),
            (
                "direction changed",
                |x| x.1.entries[2].direction = Direction::Off,
                vec![Change::UsersChanged(s(&["1003"]))],
            ),
            (
                "line moved only",
                |x| x.1.entries.iter_mut().for_each(|e| e.line += 1),
                vec![],
            ),
            (
                "many at once",
                |x| {
                    x.0.sync.poll_interval = PollInterval::Every(Duration::from_secs(60));
                    x.0.azure.tenant_id = "other".into();
                    x.0.sync.state_db = "/y.db".into();
                    x.1.entries.remove(2);
                    x.1.entries[0].direction = Direction::PbxToTeams;
                    x.1.entries
                        .push(entry("2000", "e@example.com", Direction::Both));
                    x.1.entries
                        .push(entry("0999", "f@example.com", Direction::Both));
                },
                vec![
                    Change::RestartRequired("sync.state_db"),
                    Change::Azure,
                    Change::PollInterval,
                    Change::UsersAdded(s(&["0999", "2000"])),
                    Change::UsersRemoved(s(&["1003"])),
                    Change::UsersChanged(s(&["1001"])),
                ],
            ),
        ];
        for (name, edit, want) in cases {
            let old = base();
            let mut new = base();
            edit(&mut new);
            assert_eq!(diff((&old.0, &old.1), (&new.0, &new.1)), want, "{name}");
        }
    }

    fn entry(ext: &str, email: &str, direction: Direction) -> UserEntry {
        UserEntry {
            extension: ext.into(),
            email: email.into(),
            direction,
            line: 99,
        }
    }
}
