//! The user directory: users in insertion order with hash indexes on id, UPN, mail and
//! proxy addresses, so lookups and filters stay O(matches) at 50,000 users.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::filter::{Clause, Field};
use crate::model::User;
use crate::util::guid;

/// Properties GET /users returns without `$select`
/// (<https://learn.microsoft.com/en-us/graph/api/user-list>).
pub(crate) const DEFAULT_PROPS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
];

/// Properties `$select` may name besides the defaults; the emulator answers null/[] for the
/// ones it does not model. Other names give 400 like Graph's "Could not find a property".
const OTHER_PROPS: &[&str] = &[
    "proxyAddresses",
    "accountEnabled",
    "otherMails",
    "department",
    "companyName",
    "employeeId",
    "userType",
    "imAddresses",
    "onPremisesSipEnabled",
    "createdDateTime",
    // The whole complex type only: its single attributes are neither selectable nor filterable
    // (user resource: <https://learn.microsoft.com/en-us/graph/api/resources/user>).
    "onPremisesExtensionAttributes",
];

/// The canonical spelling of a selectable property, matched case-insensitively.
pub(crate) fn canonical_prop(name: &str) -> Option<&'static str> {
    DEFAULT_PROPS
        .iter()
        .chain(OTHER_PROPS)
        .find(|p| p.eq_ignore_ascii_case(name))
        .copied()
}

#[derive(Debug, Default)]
pub(crate) struct Directory {
    users: Vec<(String, User)>,
    by_id: HashMap<String, usize>,
    by_upn: HashMap<String, usize>,
    by_mail: HashMap<String, Vec<usize>>,
    by_proxy: HashMap<String, Vec<usize>>,
}

fn push_index(map: &mut HashMap<String, Vec<usize>>, key: &str, idx: usize) {
    map.entry(key.to_lowercase()).or_default().push(idx);
}

fn drop_index(map: &mut HashMap<String, Vec<usize>>, key: &str, idx: usize) {
    if let Some(v) = map.get_mut(&key.to_lowercase()) {
        v.retain(|i| *i != idx);
    }
}

impl Directory {
    /// Adds a user, or replaces the one with the same id. Returns the id.
    pub fn add(&mut self, mut user: User) -> String {
        let id = user.id.clone().unwrap_or_else(guid);
        user.id = Some(id.clone());
        let idx = match self.by_id.get(&id.to_lowercase()) {
            Some(&idx) => {
                self.unindex(idx);
                self.users[idx] = (id.clone(), user);
                idx
            }
            None => {
                self.users.push((id.clone(), user));
                self.users.len() - 1
            }
        };
        self.index(idx);
        id
    }

    fn index(&mut self, idx: usize) {
        let (id, u) = &self.users[idx];
        self.by_id.insert(id.to_lowercase(), idx);
        self.by_upn
            .insert(u.user_principal_name.to_lowercase(), idx);
        if let Some(m) = &u.mail {
            push_index(&mut self.by_mail, m, idx);
        }
        for p in &u.proxy_addresses {
            push_index(&mut self.by_proxy, p, idx);
        }
    }

    fn unindex(&mut self, idx: usize) {
        let (_, u) = &self.users[idx];
        if self.by_upn.get(&u.user_principal_name.to_lowercase()) == Some(&idx) {
            self.by_upn.remove(&u.user_principal_name.to_lowercase());
        }
        if let Some(m) = &u.mail {
            drop_index(&mut self.by_mail, m, idx);
        }
        for p in &u.proxy_addresses {
            drop_index(&mut self.by_proxy, p, idx);
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// The canonical id of a user named by id or UPN (case-insensitive; List users page above).
    pub fn resolve(&self, key: &str) -> Option<&str> {
        let k = key.to_lowercase();
        let idx = self.by_id.get(&k).or_else(|| self.by_upn.get(&k))?;
        Some(self.users[*idx].0.as_str())
    }

    /// Whether `id` is a user's object id (not a UPN).
    pub fn contains_id(&self, id: &str) -> bool {
        self.by_id.contains_key(&id.to_lowercase())
    }

    pub fn get(&self, key: &str) -> Option<&User> {
        let k = key.to_lowercase();
        let idx = self.by_id.get(&k).or_else(|| self.by_upn.get(&k))?;
        Some(&self.users[*idx].1)
    }

    /// Positions of the users matching any clause, in directory order, without duplicates.
    pub fn matching(&self, clauses: &[Clause]) -> Vec<usize> {
        let mut out = Vec::new();
        for c in clauses {
            for v in &c.values {
                match c.field {
                    Field::Id => out.extend(self.by_id.get(v)),
                    Field::Upn => out.extend(self.by_upn.get(v)),
                    Field::Mail => out.extend(self.by_mail.get(v).into_iter().flatten()),
                    Field::ProxyAddresses => out.extend(self.by_proxy.get(v).into_iter().flatten()),
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    pub fn at(&self, idx: usize) -> Option<&User> {
        self.users.get(idx).map(|(_, u)| u)
    }
}

/// A user as JSON with the given properties (canonical names; List users page above).
pub(crate) fn user_json(u: &User, props: &[&str]) -> Value {
    let mut m = Map::new();
    for p in props {
        let v = match *p {
            "id" => json!(u.id),
            "displayName" => json!(u.display_name),
            "userPrincipalName" => json!(u.user_principal_name),
            "mail" => json!(u.mail),
            "proxyAddresses" => json!(u.proxy_addresses),
            "businessPhones" => json!(u.business_phones),
            "mobilePhone" => json!(u.mobile_phone),
            "employeeId" => json!(u.employee_id),
            "onPremisesExtensionAttributes" => extension_attributes(u),
            "otherMails" | "imAddresses" => json!([]),
            "accountEnabled" => json!(true),
            "userType" => json!("Member"),
            _ => Value::Null,
        };
        m.insert((*p).to_owned(), v);
    }
    Value::Object(m)
}

/// `onPremisesExtensionAttributes`: an object with `extensionAttribute1..15`, null where unset
/// (<https://learn.microsoft.com/en-us/graph/api/resources/onpremisesextensionattributes>).
fn extension_attributes(u: &User) -> Value {
    let mut m = Map::new();
    for (i, v) in u.extension_attributes.iter().enumerate() {
        m.insert(format!("extensionAttribute{}", i + 1), json!(v));
    }
    Value::Object(m)
}
