//! Users from an Entra group (`users.entra_group`): its transitive members become directory
//! entries, the extension read from the configured attribute. The users file and the
//! voicemail boxes win on conflicts; members without a usable extension are named once per
//! change in the journal and kept for `status`.

use std::collections::HashSet;
use std::sync::Arc;

use crate::config::{Config, Directory, EntraGroupConfig, UserEntry};
use crate::graph::{GraphClient, GraphError, GroupMember, extension_of};
use crate::store::Snapshot;
use crate::sync::types::Direction;

/// What one read of the group gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupUsers {
    /// One entry per usable member, sorted by extension.
    pub entries: Vec<UserEntry>,
    /// Members without a usable extension (no value, or none the regex could cut), and
    /// members whose extension another member already has: their UPNs, sorted.
    pub unusable: Vec<String>,
}

/// Reads the group's members; `None` when no group is configured.
pub async fn fetch(config: &Config, graph: &GraphClient) -> Option<Result<GroupUsers, GraphError>> {
    let g = config.users.entra_group.as_ref()?;
    let read = graph.group_members(&g.group, g.extension_attribute).await;
    Some(read.map(|members| users_of(&members, g)))
}

/// The members as directory entries (e-mail: `mail`, else the UPN). Two members with one
/// extension: the first by UPN keeps it.
pub fn users_of(members: &[GroupMember], g: &EntraGroupConfig) -> GroupUsers {
    let regex = g.extension_regex.as_ref().map(|r| r.regex());
    let mut sorted: Vec<&GroupMember> = members.iter().collect();
    sorted.sort_by(|a, b| a.upn.cmp(&b.upn));
    let mut taken = HashSet::new();
    let mut out = GroupUsers::default();
    for m in sorted {
        let extension = m
            .attribute_value
            .as_deref()
            .and_then(|v| extension_of(v, regex));
        match extension {
            Some(ext) if taken.insert(ext.clone()) => out.entries.push(UserEntry {
                extension: ext.into(),
                email: m
                    .mail
                    .as_deref()
                    .unwrap_or(&m.upn)
                    .trim()
                    .to_lowercase()
                    .into(),
                direction: Direction::Both,
                line: 0,
            }),
            _ => out.unusable.push(m.upn.clone()),
        }
    }
    out.entries.sort_by(|a, b| a.extension.cmp(&b.extension));
    out.unusable.sort();
    out
}

/// `dir` plus every group entry whose extension `dir` does not have (the users file and the
/// voicemail boxes win). Returns the merged directory and how many entries lost a conflict.
pub fn merge(dir: Directory, group: &[UserEntry]) -> (Directory, usize) {
    if group.is_empty() {
        return (dir, 0);
    }
    let mut taken: HashSet<Arc<str>> = dir.entries.iter().map(|e| e.extension.clone()).collect();
    let mut entries = dir.entries;
    let mut conflicts = 0;
    for e in group {
        if taken.insert(e.extension.clone()) {
            entries.push(e.clone());
        } else {
            conflicts += 1;
        }
    }
    (Directory { entries }, conflicts)
}

/// The group's entries a previous run recorded: the store's users that `dir` (the users file
/// and the voicemail boxes) does not have. Used when the group cannot be read at start, so a
/// Graph outage does not drop its members (and clear their calls) until a read succeeds.
pub fn remembered(snapshot: &Snapshot, dir: &Directory) -> Vec<UserEntry> {
    let taken: HashSet<&str> = dir.entries.iter().map(|e| &*e.extension).collect();
    snapshot
        .users
        .iter()
        .filter(|u| !taken.contains(u.extension.as_str()))
        .map(|u| UserEntry {
            extension: u.extension.as_str().into(),
            email: u.email.as_str().into(),
            direction: Direction::Both,
            line: 0,
        })
        .collect()
}

/// The journal's line for a read, said when what it found changed; `conflicts` is what
/// [`merge`] returned for it.
pub fn say(config: &Config, users: &GroupUsers, conflicts: usize) {
    let group = config
        .users
        .entra_group
        .as_ref()
        .map_or("", |g| g.group.as_str());
    let n = users.entries.len();
    tracing::info!(
        group,
        users = n,
        conflicts,
        "Entra group {group}: {n} members with an extension ({conflicts} left to the users file or voicemail boxes)"
    );
    if !users.unusable.is_empty() {
        let count = users.unusable.len();
        let names = shown(&users.unusable);
        tracing::warn!(group, count, members = %names,
            "Entra group {group}: {count} members without a usable extension, not synced: {names}; set the attribute in Entra or users.extension_attribute / users.extension_regex");
    }
}

/// At most 20 names, then how many more.
pub fn shown(names: &[String]) -> String {
    const MAX: usize = 20;
    let head = names[..names.len().min(MAX)].join(", ");
    match names.len().saturating_sub(MAX) {
        0 => head,
        more => format!("{head} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::ExtensionAttribute;

    fn member(upn: &str, mail: Option<&str>, phone: Option<&str>) -> GroupMember {
        GroupMember {
            id: format!("id-{upn}"),
            mail: mail.map(str::to_owned),
            upn: upn.to_owned(),
            attribute_value: phone.map(str::to_owned),
        }
    }

    fn config(regex: Option<&str>) -> EntraGroupConfig {
        let toml = format!(
            "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[users]\nentra_group = \"sales\"\n{}[pbx]\nkind = \"http\"\ntoken = \"t\"\n",
            regex.map_or(String::new(), |r| format!("extension_regex = '{r}'\n"))
        );
        let env: crate::config::EnvLookup<'_> = &|_| None;
        let c = Config::from_str_with(&toml, std::path::Path::new("/c.toml"), env).unwrap();
        c.users.entra_group.unwrap()
    }

    #[test]
    fn extensions_are_cut_from_the_phone_and_clashes_and_blanks_are_named() {
        let g = config(Some(r"(\d{4})$"));
        assert_eq!(g.extension_attribute, ExtensionAttribute::BusinessPhones);
        let users = users_of(
            &[
                member("bob@x.com", None, Some("+49 30 1234-1002")),
                member("ann@x.com", Some("Ann@X.com"), Some("+49 30 1234-1001")),
                member("zed@x.com", None, Some("+49 30 9999-1001")),
                member("eve@x.com", None, None),
            ],
            &g,
        );
        let got: Vec<(&str, &str)> = users
            .entries
            .iter()
            .map(|e| (&*e.extension, &*e.email))
            .collect();
        assert_eq!(got, [("1001", "ann@x.com"), ("1002", "bob@x.com")]);
        assert_eq!(users.unusable, ["eve@x.com", "zed@x.com"]);
    }

    #[test]
    fn the_users_file_wins_on_conflicts() {
        let file =
            crate::config::parse_users("1001,file@x.com\n", std::path::Path::new("/u")).unwrap();
        let g = config(None);
        let users = users_of(
            &[
                member("a@x.com", None, Some("1001")),
                member("b@x.com", None, Some("1002")),
            ],
            &g,
        );
        let (dir, conflicts) = merge(file, &users.entries);
        let got: Vec<&str> = dir.entries.iter().map(|e| &*e.email).collect();
        assert_eq!((got, conflicts), (vec!["file@x.com", "b@x.com"], 1));
    }

    #[test]
    fn long_lists_are_cut_short() {
        let names: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
        assert!(shown(&names).ends_with("u19 and 5 more"));
    }
}
