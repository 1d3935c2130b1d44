//! Users from an Entra group: the group's transitive members (nested groups' members
//! included), users only, each with the property that carries their PBX extension. Sources:
//! - List group transitive members (GroupMember.Read.All, application; a flat list of
//!   directoryObjects with `@odata.type`, nested groups listed too):
//!   <https://learn.microsoft.com/en-us/graph/api/group-list-transitivemembers>
//! - List groups and `mailNickname` `$filter` (`eq`):
//!   <https://learn.microsoft.com/en-us/graph/api/group-list>,
//!   <https://learn.microsoft.com/en-us/graph/api/resources/group>
//! - user properties: `businessPhones` (a collection holding one number at most),
//!   `mobilePhone`, `employeeId`, `onPremisesExtensionAttributes` (selectable only as a whole):
//!   <https://learn.microsoft.com/en-us/graph/api/resources/user>,
//!   <https://learn.microsoft.com/en-us/graph/api/resources/onpremisesextensionattributes>
//! - members the app may not read come with `@odata.type` and `id` only:
//!   <https://learn.microsoft.com/en-us/graph/permissions-overview#limited-information-returned-for-inaccessible-member-objects>
//! - page sizes 100 (default) and 999 (maximum) for directoryObject relationships:
//!   <https://learn.microsoft.com/en-us/graph/api/group-list-transitivememberof> (that
//!   transitiveMembers takes `$top=999` too is UNVERIFIED)

use std::fmt;
use std::str::FromStr;

use percent_encoding::utf8_percent_encode;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use super::http::Request;
use super::users::{QUERY_VALUE, odata_string};
use super::{GraphClient, GraphError, join};

/// Entries per page asked for (the maximum; module doc).
const PAGE_SIZE: u32 = 999;
/// `@odata.type` of users in a directoryObject collection (transitive members page).
const USER_TYPE: &str = "#microsoft.graph.user";

/// The user property a PBX extension is read from (config `users.extension_attribute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ExtensionAttribute {
    /// The first entry of `businessPhones` (Graph keeps one number at most there).
    #[default]
    BusinessPhones,
    /// `mobilePhone`.
    MobilePhone,
    /// `employeeId`.
    EmployeeId,
    /// `onPremisesExtensionAttributes.extensionAttributeN`, N from 1 to 15.
    OnPremises(u8),
}

/// The names [`ExtensionAttribute`] accepts, for error messages and docs.
pub const EXTENSION_ATTRIBUTE_NAMES: &str = "businessPhones, mobilePhone, employeeId, \
     onPremisesExtensionAttributes.extensionAttribute1 .. extensionAttribute15";

/// A name [`ExtensionAttribute::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a supported user property{hint}; use one of {EXTENSION_ATTRIBUTE_NAMES}")]
pub struct UnknownAttribute {
    /// The name as given.
    pub name: String,
    /// Extra advice for a name people are known to try.
    hint: &'static str,
}

impl FromStr for ExtensionAttribute {
    type Err = UnknownAttribute;

    /// Graph's spelling, case-insensitively.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let n = name.trim();
        let unknown = |hint| UnknownAttribute {
            name: name.to_owned(),
            hint,
        };
        let prefix = "onPremisesExtensionAttributes.extensionAttribute";
        if let Some(num) = n
            .get(..prefix.len())
            .filter(|p| p.eq_ignore_ascii_case(prefix))
            .and_then(|_| n.get(prefix.len()..))
        {
            return match num.parse::<u8>() {
                Ok(k @ 1..=15) if !num.starts_with('0') => Ok(Self::OnPremises(k)),
                _ => Err(unknown("")),
            };
        }
        match n.to_ascii_lowercase().as_str() {
            "businessphones" => Ok(Self::BusinessPhones),
            "mobilephone" => Ok(Self::MobilePhone),
            "employeeid" => Ok(Self::EmployeeId),
            // Active Directory's telephoneNumber has no property of that name in Graph; the
            // office number is `businessPhones` (user resource page, module doc). That Entra
            // Connect syncs one into the other is UNVERIFIED here.
            "telephonenumber" => Err(unknown(
                " in Microsoft Graph (the office phone number is businessPhones)",
            )),
            _ => Err(unknown("")),
        }
    }
}

impl fmt::Display for ExtensionAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BusinessPhones => f.write_str("businessPhones"),
            Self::MobilePhone => f.write_str("mobilePhone"),
            Self::EmployeeId => f.write_str("employeeId"),
            Self::OnPremises(n) => write!(f, "onPremisesExtensionAttributes.extensionAttribute{n}"),
        }
    }
}

impl ExtensionAttribute {
    /// The `$select` name: single extension attributes are not selectable, only the whole
    /// `onPremisesExtensionAttributes` (user resource page).
    fn select(self) -> &'static str {
        match self {
            Self::BusinessPhones => "businessPhones",
            Self::MobilePhone => "mobilePhone",
            Self::EmployeeId => "employeeId",
            Self::OnPremises(_) => "onPremisesExtensionAttributes",
        }
    }

    /// The value in a member entry's other properties; None when absent, null or blank.
    fn value(self, props: &Map<String, Value>) -> Option<String> {
        let v = match self {
            Self::BusinessPhones => props.get("businessPhones")?.as_array()?.first()?,
            Self::OnPremises(n) => props
                .get("onPremisesExtensionAttributes")?
                .get(format!("extensionAttribute{n}"))?,
            other => props.get(other.select())?,
        };
        v.as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// A user among a group's transitive members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Entra object id.
    pub id: String,
    /// `mail`, absent for users without a mailbox.
    pub mail: Option<String>,
    /// `userPrincipalName`.
    pub upn: String,
    /// The configured attribute's value (the first business phone for `businessPhones`), trimmed;
    /// None when the user has none. [`extension_of`] makes an extension of it.
    pub attribute_value: Option<String>,
}

/// The extension in `value`: with `regex`, its first capture group (the whole match when it has
/// none); without, the value itself. Either way trimmed, and only when it looks dialable: digits,
/// `*` and `#`, with an optional leading `+`. None otherwise (no match, empty, other characters).
pub fn extension_of(value: &str, regex: Option<&Regex>) -> Option<String> {
    let cut = match regex {
        None => value,
        Some(re) => {
            let caps = re.captures(value)?;
            caps.get(1).or_else(|| caps.get(0))?.as_str()
        }
    };
    let ext = cut.trim();
    let digits = ext.strip_prefix('+').unwrap_or(ext);
    let dialable = !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '*' || c == '#');
    dialable.then(|| ext.to_owned())
}

/// Whether `s` is an object id (a GUID) rather than a mail nickname.
fn is_object_id(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct IdEntry {
    id: String,
}

/// One transitive member as `$select` returns it.
#[derive(Deserialize)]
struct MemberEntry {
    #[serde(rename = "@odata.type", default)]
    odata_type: Option<String>,
    id: String,
    #[serde(default)]
    mail: Option<String>,
    #[serde(default, rename = "userPrincipalName")]
    upn: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl GraphClient {
    /// The users among the transitive members of `group` (an object id, or else a mail
    /// nickname looked up first), with `attribute` read for each; nested groups and other
    /// object types are left out. Errors: `NotFound` for an unknown group, `Forbidden` without
    /// GroupMember.Read.All (or when users come without their properties: the app may not read
    /// users), `InvalidSettings` when several groups have the nickname.
    pub async fn group_members(
        &self,
        group: &str,
        attribute: ExtensionAttribute,
    ) -> Result<Vec<GroupMember>, GraphError> {
        let id = self.group_id(group).await?;
        let mut url = join(&self.inner.api_root, &["groups", &id, "transitiveMembers"])?;
        url.set_query(Some(&format!(
            "$select=id,mail,userPrincipalName,{}&$top={PAGE_SIZE}",
            attribute.select()
        )));
        let mut members = Vec::new();
        for entry in self.all_pages::<MemberEntry>(url).await? {
            if entry.odata_type.as_deref() != Some(USER_TYPE) {
                continue;
            }
            // Every user has a UPN; a null one is the limited information Graph returns when
            // the app may not read users (module doc).
            let upn = entry.upn.ok_or_else(|| GraphError::Forbidden {
                code: "LimitedInformation".into(),
                message: format!(
                    "member {} came without userPrincipalName: the app may not read users \
                     (grant User.Read.All)",
                    entry.id
                ),
            })?;
            members.push(GroupMember {
                attribute_value: attribute.value(&entry.rest),
                id: entry.id,
                mail: entry.mail,
                upn,
            });
        }
        Ok(members)
    }

    /// The object id of `group`: itself when it is a GUID, else the one group whose
    /// `mailNickname` it is (List groups with `$filter`).
    pub(crate) async fn group_id(&self, group: &str) -> Result<String, GraphError> {
        let group = group.trim();
        if is_object_id(group) {
            return Ok(group.to_owned());
        }
        let filter = format!("mailNickname eq {}", odata_string(group));
        let mut url = join(&self.inner.api_root, &["groups"])?;
        url.set_query(Some(&format!(
            "$filter={}&$select=id",
            utf8_percent_encode(&filter, QUERY_VALUE)
        )));
        let found = self.all_pages::<IdEntry>(url).await?;
        match found.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(GraphError::NotFound {
                code: "Request_ResourceNotFound".into(),
                message: format!("no group has the mailNickname {group:?}"),
            }),
            several => Err(GraphError::InvalidSettings(format!(
                "{} groups have the mailNickname {group:?}: name the group by its object id",
                several.len()
            ))),
        }
    }

    /// Every entry of a collection, following `@odata.nextLink` only on the Graph host (the
    /// token must not leave it).
    async fn all_pages<T: for<'de> Deserialize<'de>>(
        &self,
        first: Url,
    ) -> Result<Vec<T>, GraphError> {
        let mut out = Vec::new();
        let mut url = first;
        loop {
            let body = self.inner.send(&Request::get("groups", url)).await?;
            let page: Page<T> = serde_json::from_slice(&body)
                .map_err(|e| GraphError::InvalidResponse(format!("groups page: {e}")))?;
            out.extend(page.value);
            let Some(link) = page.next_link else {
                return Ok(out);
            };
            url = Url::parse(&link)
                .ok()
                .filter(|u| u.origin() == self.inner.graph_origin)
                .ok_or_else(|| {
                    GraphError::InvalidResponse(format!("nextLink off the Graph host: {link}"))
                })?;
        }
    }
}

#[cfg(test)]
#[path = "groups_tests.rs"]
mod tests;
