//! `[users]` keys for users from an Entra group: `entra_group` (object id or mail nickname),
//! `extension_attribute` (the user property the extension is read from, default
//! `businessPhones`) and `extension_regex` (its first group cuts the extension out).
//!
//! Sources: a group's `mailNickname` is at most 64 ASCII characters without
//! `@ () \ [] " ; : <> ,` and space (group resource:
//! <https://learn.microsoft.com/en-us/graph/api/resources/group>); the user properties are
//! those of the user resource (<https://learn.microsoft.com/en-us/graph/api/resources/user>).

use std::fmt;

use regex::Regex;

use super::ConfigError;
use super::file::UsersSection;
use super::validate::Ctx;
use crate::graph::ExtensionAttribute;

/// Longest `mailNickname` (group resource page).
const MAX_NICKNAME: usize = 64;
/// Characters a `mailNickname` may not contain besides non-ASCII ones (group resource page).
const NICKNAME_FORBIDDEN: &str = "@()\\[]\";:<>, ";

/// `users.entra_group` and how each member's extension is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraGroupConfig {
    /// The group's object id (a GUID) or its mail nickname, as written.
    pub group: String,
    /// The user property that holds the extension.
    pub extension_attribute: ExtensionAttribute,
    /// Cuts the extension out of the property's value (its first group); None: the value is
    /// the extension.
    pub extension_regex: Option<ExtensionRegex>,
}

/// A compiled `users.extension_regex`; equal when the patterns are equal.
#[derive(Clone)]
pub struct ExtensionRegex(Regex);

impl ExtensionRegex {
    /// The compiled regex, for [`crate::graph::extension_of`].
    pub fn regex(&self) -> &Regex {
        &self.0
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl PartialEq for ExtensionRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ExtensionRegex {}

impl fmt::Debug for ExtensionRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ExtensionRegex")
            .field(&self.as_str())
            .finish()
    }
}

/// Validates the group keys of `[users]`: the other two keys need `entra_group`.
pub(super) fn entra_group(
    ctx: &Ctx<'_>,
    u: &UsersSection,
) -> Result<Option<EntraGroupConfig>, ConfigError> {
    let Some(group) = &u.entra_group else {
        for (key, set) in [
            ("users.extension_attribute", u.extension_attribute.is_some()),
            ("users.extension_regex", u.extension_regex.is_some()),
        ] {
            if set {
                return Err(ctx.invalid(key, "needs users.entra_group (the group to read)"));
            }
        }
        return Ok(None);
    };
    let extension_attribute = match &u.extension_attribute {
        None => ExtensionAttribute::default(),
        Some(name) => name
            .parse()
            .map_err(|e| ctx.invalid("users.extension_attribute", format!("{e}")))?,
    };
    let extension_regex = u
        .extension_regex
        .as_deref()
        .map(|r| regex(ctx, r))
        .transpose()?;
    Ok(Some(EntraGroupConfig {
        group: group_name(ctx, group)?,
        extension_attribute,
        extension_regex,
    }))
}

/// A GUID, or a mail nickname as Graph allows them (module doc).
fn group_name(ctx: &Ctx<'_>, value: &str) -> Result<String, ConfigError> {
    let key = "users.entra_group";
    let v = value.trim();
    if uuid::Uuid::try_parse(v).is_ok() {
        return Ok(v.to_owned());
    }
    if v.is_empty() {
        return Err(ctx.invalid(key, "is empty: give the group's object id or mail nickname"));
    }
    if v.contains('@') {
        return Err(ctx.invalid(
            key,
            format!(
                "{v:?} looks like an e-mail address: give the group's object id or its mail \
                 nickname (the part before @)"
            ),
        ));
    }
    let bad = v
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_control() || NICKNAME_FORBIDDEN.contains(*c));
    if let Some(c) = bad {
        return Err(ctx.invalid(
            key,
            format!("{v:?} is neither an object id (GUID) nor a mail nickname ({c:?} is not allowed in one)"),
        ));
    }
    if v.len() > MAX_NICKNAME {
        return Err(ctx.invalid(
            key,
            format!(
                "a mail nickname has at most {MAX_NICKNAME} characters, {v:?} has {}",
                v.len()
            ),
        ));
    }
    Ok(v.to_owned())
}

/// Compiles the pattern; one that does not compile is an error naming the key.
fn regex(ctx: &Ctx<'_>, pattern: &str) -> Result<ExtensionRegex, ConfigError> {
    let key = "users.extension_regex";
    let re =
        Regex::new(pattern).map_err(|e| ctx.invalid(key, format!("not a valid regex: {e}")))?;
    Ok(ExtensionRegex(re))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, EnvLookup};
    use crate::graph::ExtensionAttribute;

    const BASE: &str = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                        [pbx]\ntoken = \"p\"\n";

    fn load(users: &str) -> Result<Config, ConfigError> {
        let text = format!("{BASE}[users]\n{users}");
        let env: EnvLookup<'_> = &|_| None;
        Config::from_str_with(&text, Path::new("/etc/ptp/config.toml"), env)
    }

    fn error(users: &str) -> String {
        match load(users) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_group_alone_makes_the_file_optional() {
        let c = load("entra_group = \"pbx-users\"\n").unwrap();
        let g = c.users.entra_group.clone().unwrap();
        assert_eq!(g.group, "pbx-users");
        assert_eq!(g.extension_attribute, ExtensionAttribute::BusinessPhones);
        assert_eq!(g.extension_regex, None);
        assert!(c.users.file_optional);
        assert_eq!(c.users.file, Path::new("/etc/ptp/users.csv"));
        let c = load("entra_group = \"pbx-users\"\nfile = \"people.csv\"\n").unwrap();
        assert!(!c.users.file_optional, "a written file must exist");
        let c = load("file = \"people.csv\"\n").unwrap();
        assert!(!c.users.file_optional);
        assert_eq!(c.users.entra_group, None);
    }

    #[test]
    fn attribute_and_regex_are_read() {
        let c = load(
            "entra_group = \"0b7e6c1a-1111-4aaa-8bbb-000000000001\"\n\
             extension_attribute = \"onPremisesExtensionAttributes.extensionAttribute3\"\n\
             extension_regex = '(\\d{4})$'\n",
        )
        .unwrap();
        let g = c.users.entra_group.unwrap();
        assert_eq!(g.extension_attribute, ExtensionAttribute::OnPremises(3));
        let re = g.extension_regex.unwrap();
        assert_eq!(re.as_str(), r"(\d{4})$");
        assert_eq!(
            crate::graph::extension_of("+49 30 1234-5678", Some(re.regex())).as_deref(),
            Some("5678")
        );
    }

    #[test]
    fn the_shown_config_reads_back_the_same() {
        let c = load(
            "entra_group = \"pbx-users\"\nextension_attribute = \"employeeId\"\n\
             extension_regex = '^E-(\\d+)'\n",
        )
        .unwrap();
        // The shown [users] section (the shown [azure] hides the secret, so only this part).
        let shown = c.to_string();
        let users = shown.split("\n[users]\n").nth(1).unwrap();
        let users = users.split("\n[").next().unwrap();
        let again = load(users).unwrap();
        assert_eq!(again.users.entra_group, c.users.entra_group);
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let e = error("entra_group = \"g\"\nextension_regex = '(\\d{4}$'\n");
        assert!(e.contains("/etc/ptp/config.toml"), "{e}");
        assert!(e.contains("users.extension_regex (line 9)"), "{e}");
        assert!(e.contains("not a valid regex"), "{e}");
        let e = error("entra_group = \"g\"\nextension_attribute = \"telephoneNumber\"\n");
        assert!(e.contains("users.extension_attribute"), "{e}");
        assert!(e.contains("businessPhones"), "{e}");
        let e = error("entra_group = \"g\"\nextension_attribute = \"ipPhone\"\n");
        assert!(
            e.contains("ipPhone") && e.contains("extensionAttribute15"),
            "{e}"
        );
        let e = error("extension_regex = '(\\d+)'\n");
        assert!(
            e.contains("users.extension_regex") && e.contains("users.entra_group"),
            "{e}"
        );
        let e = error("extension_attribute = \"mobilePhone\"\n");
        assert!(e.contains("users.extension_attribute"), "{e}");
    }

    #[test]
    fn group_names_must_be_an_object_id_or_a_nickname() {
        let e = error("entra_group = \"\"\n");
        assert!(
            e.contains("users.entra_group") && e.contains("empty"),
            "{e}"
        );
        let e = error("entra_group = \"pbx@contoso.com\"\n");
        assert!(e.contains("part before @"), "{e}");
        let e = error("entra_group = \"pbx users\"\n");
        assert!(e.contains("not allowed"), "{e}");
        let long = "a".repeat(65);
        let e = error(&format!("entra_group = \"{long}\"\n"));
        assert!(e.contains("at most 64"), "{e}");
        assert!(load(&format!("entra_group = \"{}\"\n", "a".repeat(64))).is_ok());
    }
}
