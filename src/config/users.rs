//! The users file: one `extension,email[,direction]` per line, `#` comments, blank lines and an
//! optional `extension,email,...` header. It says which PBX extension belongs to which Teams
//! account (matched by e-mail/UPN) and which directions of sync apply.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::ConfigError;
use crate::sync::types::Direction;

/// One user: a PBX extension and the Teams account it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The PBX extension, as the PBX reports it; unique in the file. Shared with the sync
    /// engine (one allocation per user at 250,000 users, not one per copy).
    pub extension: Arc<str>,
    /// E-mail or UPN of the Teams account, trimmed and lowercased (Graph matches it
    /// case-insensitively). The same address may appear on several extensions. Shared too.
    pub email: Arc<str>,
    /// Which directions of sync apply (default: both).
    pub direction: Direction,
    /// 1-based line in the users file, for messages.
    pub line: usize,
}

/// The parsed users file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Every user, in file order; extensions are unique.
    pub entries: Vec<UserEntry>,
}

impl Directory {
    /// The user with this extension. A linear scan: callers that look up per event should
    /// build their own index.
    pub fn get(&self, extension: &str) -> Option<&UserEntry> {
        self.entries.iter().find(|e| &*e.extension == extension)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file lists no user.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Reads and parses the users file at `path`.
pub fn load_users(path: &Path) -> Result<Directory, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        source: e,
    })?;
    parse_users(&text, path)
}

/// Parses users-file `text` read from `path` (`path` only names the file in errors).
pub fn parse_users(text: &str, path: &Path) -> Result<Directory, ConfigError> {
    let err = |line: usize, reason: String| ConfigError::UsersLine {
        path: path.to_owned(),
        line,
        reason,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // spreadsheet exports add a BOM
    let mut entries: Vec<UserEntry> = Vec::new();
    let mut by_ext: HashMap<Arc<str>, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.trim();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if entries.is_empty() && is_header(content) {
            continue;
        }
        let entry = parse_line(content, line).map_err(|r| err(line, r))?;
        if let Some(first) = by_ext.get(&entry.extension) {
            let reason = format!(
                "extension {} already listed on line {first}",
                entry.extension
            );
            return Err(err(line, reason));
        }
        by_ext.insert(entry.extension.clone(), line);
        entries.push(entry);
    }
    warn_shared_emails(&entries, path);
    if entries.is_empty() {
        tracing::warn!(file = %path.display(), "users file {} lists no user", path.display());
    }
    entries.shrink_to_fit();
    Ok(Directory { entries })
}

fn is_header(content: &str) -> bool {
    content
        .split(',')
        .next()
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("extension"))
}

fn parse_line(content: &str, line: usize) -> Result<UserEntry, String> {
    let fields: Vec<&str> = content.split(',').map(str::trim).collect();
    if !(2..=3).contains(&fields.len()) {
        return Err(format!(
            "expected extension,email[,direction], got {} fields",
            fields.len()
        ));
    }
    let extension = check_extension(fields[0])?;
    let email = check_email(fields[1])?;
    let direction = parse_direction(fields.get(2).copied().unwrap_or(""))?;
    Ok(UserEntry {
        extension: extension.into(),
        email: email.into(),
        direction,
        line,
    })
}

fn check_extension(ext: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "+*#._-".contains(c);
    if ext.is_empty() || !ext.chars().all(ok) {
        return Err(format!(
            "extension {ext:?} must be non-empty [A-Za-z0-9+*#._-]"
        ));
    }
    Ok(ext.to_owned())
}

fn check_email(email: &str) -> Result<String, String> {
    let bad = || format!("{email:?} is not an e-mail address like alice@example.com");
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@');
    let no_space = !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if local.is_empty() || !domain_ok || !no_space {
        return Err(bad());
    }
    Ok(email.to_lowercase())
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    match s.to_ascii_lowercase().as_str() {
        "" | "both" => Ok(Direction::Both),
        "teams-to-pbx" => Ok(Direction::TeamsToPbx),
        "pbx-to-teams" => Ok(Direction::PbxToTeams),
        "off" => Ok(Direction::Off),
        _ => Err(format!(
            "direction {s:?} must be one of both, teams-to-pbx, pbx-to-teams, off"
        )),
    }
}

/// One Teams account on several extensions is allowed (a desk phone and a softphone), but it
/// is often a copy-paste mistake, so say so.
fn warn_shared_emails(entries: &[UserEntry], path: &Path) {
    let mut by_email: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in entries {
        by_email.entry(&e.email).or_default().push(&e.extension);
    }
    for (email, exts) in by_email.into_iter().filter(|(_, x)| x.len() > 1) {
        tracing::warn!(
            file = %path.display(),
            email,
            extensions = ?exts,
            "{email}: one Teams account on extensions {} (allowed: e.g. desk phone and softphone)",
            exts.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Directory, ConfigError> {
        parse_users(text, Path::new("/etc/p/users.csv"))
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_entries_comments_header_and_directions() {
        let text = "\u{feff}extension,email,direction\n# a comment\n\n\
                    1001, Alice@Example.COM \n1002,bob@example.com,teams-to-pbx\r\n\
                    1003,carol@example.com,PBX-to-Teams\n1004,dan@example.com,off\n\
                    1005,erin@example.com,both\n";
        let d = parse(text).unwrap();
        assert_eq!(d.len(), 5);
        let alice = d.get("1001").unwrap();
        assert_eq!(&*alice.email, "alice@example.com");
        assert_eq!((alice.direction, alice.line), (Direction::Both, 4));
        assert_eq!(d.get("1002").unwrap().direction, Direction::TeamsToPbx);
        assert_eq!(d.get("1003").unwrap().direction, Direction::PbxToTeams);
        assert_eq!(d.get("1004").unwrap().direction, Direction::Off);
        assert!(d.get("9999").is_none());
    }

    #[test]
    fn header_only_counts_as_first_line() {
        let e = err("1001,a@example.com\nextension,email\n");
        assert!(
            e.contains("line 2") && e.contains("\"email\" is not an e-mail"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let cases = [
            (
                "1001,a@example.com\n1001,b@example.com\n",
                "line 2",
                "already listed on line 1",
            ),
            ("1001,not-an-email\n", "line 1", "not an e-mail"),
            ("# c\n1001,a@example\n", "line 2", "not an e-mail"),
            ("1001,a@example.com,sideways\n", "line 1", "direction"),
            ("1001\n", "line 1", "got 1 fields"),
            ("1001,a@example.com,both,x\n", "line 1", "got 4 fields"),
            (",a@example.com\n", "line 1", "extension"),
            ("10 01,a@example.com\n", "line 1", "extension"),
            ("1001,a b@example.com\n", "line 1", "not an e-mail"),
        ];
        for (text, line, reason) in cases {
            let e = err(text);
            assert!(e.starts_with("/etc/p/users.csv: "), "{e}");
            assert!(e.contains(line) && e.contains(reason), "{text:?} -> {e}");
        }
    }

    #[test]
    fn same_email_on_two_extensions_is_allowed() {
        let d = parse("1001,a@example.com\n1002,A@example.com\n").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(&*d.entries[1].email, "a@example.com");
    }

    #[test]
    fn empty_file_is_an_empty_directory() {
        assert!(parse("# nobody yet\n").unwrap().is_empty());
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = load_users(Path::new("/nonexistent/users.csv"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/users.csv"), "{e}");
    }
}
