//! Groups with members (users and nested groups), and the transitive expansion that
//! `GET /groups/{id}/transitiveMembers` lists: every nested member once, nested groups included
//! as entries of their own (List group transitive members:
//! <https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>, whose OData-cast
//! example lists the groups among the transitive members).

use std::collections::{HashMap, HashSet};

use crate::model::Group;
use crate::util::guid;

/// A member as the expansion finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    /// A user's object id (as the group lists it).
    User(String),
    /// A nested group's position in [`Groups`].
    Group(usize),
}

/// The groups in insertion order, indexed by id.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    groups: Vec<Group>,
    by_id: HashMap<String, usize>,
}

impl Groups {
    /// Adds a group, or replaces the one with the same id. Returns the id.
    pub fn add(&mut self, mut group: Group) -> String {
        let id = group.id.clone().unwrap_or_else(guid);
        group.id = Some(id.clone());
        match self.by_id.get(&id.to_lowercase()) {
            Some(&idx) => self.groups[idx] = group,
            None => {
                self.by_id.insert(id.to_lowercase(), self.groups.len());
                self.groups.push(group);
            }
        }
        id
    }

    /// Position of the group with this id (case-insensitive).
    pub fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(&id.to_lowercase()).copied()
    }

    pub fn at(&self, idx: usize) -> Option<&Group> {
        self.groups.get(idx)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Adds `member` (a user or group id) to the group `group` unless it is there already.
    /// False for an unknown group.
    pub fn add_member(&mut self, group: &str, member: &str) -> bool {
        let Some(idx) = self.position(group) else {
            return false;
        };
        let members = &mut self.groups[idx].members;
        if !members.iter().any(|m| m.eq_ignore_ascii_case(member)) {
            members.push(member.to_owned());
        }
        true
    }

    /// Removes `member` from the group `group`; false when it was not a direct member.
    pub fn remove_member(&mut self, group: &str, member: &str) -> bool {
        let Some(idx) = self.position(group) else {
            return false;
        };
        let members = &mut self.groups[idx].members;
        let before = members.len();
        members.retain(|m| !m.eq_ignore_ascii_case(member));
        members.len() != before
    }

    /// Positions of the groups whose `mailNickname` equals one of `nicknames`
    /// (case-insensitive: UNVERIFIED, directory string comparisons are assumed to ignore case
    /// as they do for users), in insertion order.
    pub fn with_nickname(&self, nicknames: &[String]) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&i| {
                nicknames
                    .iter()
                    .any(|n| self.groups[i].mail_nickname.eq_ignore_ascii_case(n))
            })
            .collect()
    }

    /// Every member of group `idx`, nested ones included, each once, depth-first in member
    /// order; a group nested in itself (a cycle) is expanded once. `is_user` says whether an
    /// id names a user; ids naming neither a user nor a group are skipped.
    pub fn transitive(&self, idx: usize, is_user: impl Fn(&str) -> bool) -> Vec<Member> {
        let mut out = Vec::new();
        let mut seen_users: HashSet<String> = HashSet::new();
        let mut seen_groups: HashSet<usize> = HashSet::from([idx]);
        let mut stack: Vec<(usize, usize)> = vec![(idx, 0)];
        while let Some((g, next)) = stack.pop() {
            let Some(member) = self.groups[g].members.get(next) else {
                continue;
            };
            stack.push((g, next + 1));
            if let Some(sub) = self.position(member) {
                if seen_groups.insert(sub) {
                    out.push(Member::Group(sub));
                    stack.push((sub, 0));
                }
            } else if is_user(member) && seen_users.insert(member.to_lowercase()) {
                out.push(Member::User(member.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str, members: &[&str]) -> Group {
        Group {
            id: Some(id.into()),
            display_name: id.into(),
            mail_nickname: id.into(),
            mail: None,
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn nested_members_are_listed_once_and_cycles_end() {
        let mut g = Groups::default();
        g.add(group("top", &["u1", "inner", "u2", "ghost"]));
        g.add(group("inner", &["u2", "u3", "top"]));
        let users = ["u1", "u2", "u3"];
        let got = g.transitive(0, |id| users.contains(&id));
        assert_eq!(
            got,
            vec![
                Member::User("u1".into()),
                Member::Group(1),
                Member::User("u2".into()),
                Member::User("u3".into()),
            ]
        );
    }

    #[test]
    fn members_are_added_once_and_removed() {
        let mut g = Groups::default();
        g.add(group("top", &[]));
        assert!(g.add_member("TOP", "u1"));
        assert!(g.add_member("top", "U1"));
        assert_eq!(g.at(0).map(|x| x.members.len()), Some(1));
        assert!(g.remove_member("top", "u1"));
        assert!(!g.remove_member("top", "u1"));
        assert!(!g.add_member("nope", "u1"));
        assert_eq!(g.with_nickname(&["ToP".into()]), vec![0]);
    }
}
