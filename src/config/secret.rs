//! Where secrets (the Azure client secret, the PBX token, ...) come from: the lookup order
//! inline value -> `*_file` -> systemd credential (`$CREDENTIALS_DIRECTORY/<name>`). The
//! redacting type itself is [`crate::secret::Secret`]. Every secret is trimmed the same way
//! ([`crate::secret::trimmed`]), and is one line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{At, ConfigError};
use crate::secret::{Secret, trimmed};

/// Reads environment variables; injected so tests can fake `CREDENTIALS_DIRECTORY` without
/// touching the process environment. [`std::env::var_os`] in production.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The ID of the shipped units' one `LoadCredential=` line, which loads a whole directory
/// (`LoadCredential=credentials:/etc/pbx-teams-presence/credentials`): systemd passes each
/// file in it as `credentials_<file name>`. A unit that lists a missing file fails to start
/// (systemd 252: 243/CREDENTIALS), a directory may hold only the files a setup needs.
pub const CREDENTIALS_ID: &str = "credentials";

/// The systemd credential `name`, if systemd passed it: `$CREDENTIALS_DIRECTORY/<name>`
/// (`LoadCredential=<name>:FILE`), else `$CREDENTIALS_DIRECTORY/credentials_<name>` (a file
/// of that name in the shipped units' credentials directory). The one place credentials are
/// looked up.
pub(crate) fn credential_file(env: EnvLookup<'_>, name: &str) -> Option<PathBuf> {
    let dir = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let dir = Path::new(&dir);
    [dir.join(name), dir.join(format!("{CREDENTIALS_ID}_{name}"))]
        .into_iter()
        .find(|f| f.exists())
}

/// Where one secret may come from, as the file section gave it.
pub(crate) struct SecretSpec<'a> {
    /// Key of the inline value, e.g. `azure.client_secret`; also names the secret in errors.
    pub key: &'static str,
    /// Key of the file variant, e.g. `azure.client_secret_file`.
    pub file_key: &'static str,
    /// systemd credential name (`LoadCredential=<name>:...`).
    pub credential: &'static str,
    /// The inline value, if set.
    pub inline: Option<&'a Secret>,
    /// The secret file (already resolved against the config directory), if set.
    pub file: Option<PathBuf>,
}

/// Resolves a secret in the documented order. `config` is the config file (for messages);
/// `at` finds the line of a key.
pub(crate) fn resolve(
    spec: SecretSpec<'_>,
    config: &Path,
    env: EnvLookup<'_>,
    at: &dyn Fn(&str) -> At,
) -> Result<Secret, ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        path: config.to_owned(),
        at: at(key),
        reason,
    };
    match (spec.inline, spec.file.clone()) {
        (Some(_), Some(_)) => Err(invalid(
            spec.key,
            format!("set either {} or {}, not both", spec.key, spec.file_key),
        )),
        (Some(inline), None) => match one_line(inline.expose()) {
            Ok(value) => Ok(Secret::new(value)),
            Err(why) => Err(invalid(spec.key, why.to_owned())),
        },
        (None, Some(file)) => read_secret_file(config, spec.file_key, &file),
        (None, None) => from_credentials(&spec, config, env, &invalid),
    }
}

/// Like [`resolve`] for a secret that may be left out: `None` when neither key is set and no
/// systemd credential of its name is there.
pub(crate) fn resolve_optional(
    spec: SecretSpec<'_>,
    config: &Path,
    env: EnvLookup<'_>,
    at: &dyn Fn(&str) -> At,
) -> Result<Option<Secret>, ConfigError> {
    if spec.inline.is_none() && spec.file.is_none() {
        return match credential_file(env, spec.credential) {
            Some(file) => read_secret_file(config, spec.key, &file).map(Some),
            None => Ok(None),
        };
    }
    resolve(spec, config, env, at).map(Some)
}

/// The secret as it is used: trimmed, non-empty, one line (a header cannot carry more).
fn one_line(value: &str) -> Result<&str, &'static str> {
    let value = trimmed(value);
    if value.is_empty() {
        return Err("is empty");
    }
    if value.contains(['\n', '\r']) {
        return Err("holds more than one line; a secret is one line");
    }
    Ok(value)
}

fn from_credentials(
    spec: &SecretSpec<'_>,
    config: &Path,
    env: EnvLookup<'_>,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Secret, ConfigError> {
    let hint = format!(
        "set {} (a file holding the secret) or {}, or pass the systemd credential \"{}\" \
         (a file named {} in /etc/pbx-teams-presence/credentials/ under the shipped unit, \
         or LoadCredential={}:/path/to/file)",
        spec.file_key, spec.key, spec.credential, spec.credential, spec.credential
    );
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Err(invalid(spec.key, format!("not set; {hint}")));
    };
    let Some(file) = credential_file(env, spec.credential) else {
        let missing = Path::new(&dir).join(spec.credential);
        let reason = format!(
            "not set, and no credential at {}; {hint}",
            missing.display()
        );
        return Err(invalid(spec.key, reason));
    };
    read_secret_file(config, spec.key, &file)
}

/// Reads a secret file: trimmed, non-empty, one line. Errors name the key and the file, never
/// the content.
fn read_secret_file(config: &Path, key: &str, file: &Path) -> Result<Secret, ConfigError> {
    let err = |reason: String| ConfigError::SecretFile {
        path: config.to_owned(),
        key: key.to_owned(),
        secret_file: file.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let value = one_line(&text).map_err(|why| err(why.to_owned()))?;
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_line(key: &str) -> At {
        At {
            key: Some(key.to_owned()),
            line: None,
        }
    }

    fn spec<'a>(inline: Option<&'a Secret>, file: Option<PathBuf>) -> SecretSpec<'a> {
        SecretSpec {
            key: "pbx.token",
            file_key: "pbx.token_file",
            credential: "pbx-token",
            inline,
            file,
        }
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_and_inline_values_are_trimmed_like_presented_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        for text in ["abc def \r\n\n", " abc def\t\n", "abc def"] {
            std::fs::write(&f, text).unwrap();
            let s = resolve(
                spec(None, Some(f.clone())),
                Path::new("/c"),
                &no_env,
                &no_line,
            );
            assert_eq!(s.unwrap().expose(), "abc def", "{text:?}");
        }
        let inline = Secret::new(" abc def ");
        let s = resolve(
            spec(Some(&inline), None),
            Path::new("/c"),
            &no_env,
            &no_line,
        );
        assert_eq!(s.unwrap().expose(), "abc def");
        assert_eq!(crate::secret::trimmed(" abc def \t"), "abc def");
    }

    /// Missing, unreadable, empty, blank, not UTF-8, two lines, and the same from systemd's
    /// credentials directory: each error names the file and the key, never the content.
    #[test]
    fn every_secret_file_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, Option<&[u8]>, &str); 5] = [
            ("missing", None, "No such file"),
            ("empty", Some(b""), "is empty"),
            ("blank", Some(b" \t\r\n"), "is empty"),
            ("latin1", Some(b"s\xe9cret\n"), "UTF-8"),
            (
                "two-lines",
                Some(b"s3cret\nother-s3cret\n"),
                "more than one line",
            ),
        ];
        for (name, content, why) in cases {
            let f = dir.path().join(name);
            if let Some(bytes) = content {
                std::fs::write(&f, bytes).unwrap();
            }
            let e = resolve(
                spec(None, Some(f.clone())),
                Path::new("/c"),
                &no_env,
                &no_line,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(&f.display().to_string()), "{name}: {e}");
            assert!(
                e.contains("pbx.token_file") && e.contains(why),
                "{name}: {e}"
            );
            assert!(!e.contains("s3cret"), "{name}: {e}");
        }
        std::fs::write(dir.path().join("pbx-token"), "\n").unwrap();
        let d = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let e = resolve(spec(None, None), Path::new("/c"), &env, &no_line).unwrap_err();
        let credential = dir.path().join("pbx-token").display().to_string();
        assert!(e.to_string().contains(&credential), "{e}");
    }

    #[test]
    fn an_inline_secret_of_two_lines_is_refused() {
        let inline = Secret::new("s3cret\nmore");
        let e = resolve(
            spec(Some(&inline), None),
            Path::new("/c"),
            &no_env,
            &no_line,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pbx.token") && e.contains("one line"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn an_optional_secret_is_none_unless_set_or_given_by_systemd() {
        let none = resolve_optional(spec(None, None), Path::new("/c"), &no_env, &no_line);
        assert_eq!(none.unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let none = resolve_optional(spec(None, None), Path::new("/c"), &env, &no_line);
        assert_eq!(none.unwrap(), None, "a credentials directory without it");
        std::fs::write(dir.path().join("pbx-token"), "from-systemd \n").unwrap();
        let some = resolve_optional(spec(None, None), Path::new("/c"), &env, &no_line);
        assert_eq!(some.unwrap().unwrap().expose(), "from-systemd");
        let f = dir.path().join("missing");
        let e = resolve_optional(spec(None, Some(f)), Path::new("/c"), &no_env, &no_line);
        assert!(e.is_err(), "a set file must exist");
    }

    #[test]
    fn empty_or_missing_file_names_key_and_file_not_secret() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "\n").unwrap();
        let e = resolve(
            spec(None, Some(f.clone())),
            Path::new("/c.toml"),
            &no_env,
            &no_line,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/c.toml") && e.contains("pbx.token_file"), "{e}");
        assert!(
            e.contains(&f.display().to_string()) && e.contains("empty"),
            "{e}"
        );
        let missing = dir.path().join("nope");
        let e = resolve(
            spec(None, Some(missing)),
            Path::new("/c.toml"),
            &no_env,
            &no_line,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope") && e.contains("pbx.token_file"), "{e}");
    }

    #[test]
    fn both_inline_and_file_is_an_error() {
        let s = Secret::new("x");
        let e = resolve(
            spec(Some(&s), Some("f".into())),
            Path::new("/c"),
            &no_env,
            &no_line,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pbx.token") && e.contains("not both"), "{e}");
    }

    #[test]
    fn credentials_directory_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pbx-token"), "from-systemd\n").unwrap();
        let d = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let s = resolve(spec(None, None), Path::new("/c"), &env, &no_line).unwrap();
        assert_eq!(s.expose(), "from-systemd");
    }

    /// The shipped units load a whole directory: its files arrive as `credentials_<name>`.
    /// The plain name (a `LoadCredential=<name>:FILE` drop-in) wins over it.
    #[test]
    fn a_file_of_the_credentials_directory_is_found_under_its_prefixed_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("credentials_pbx-token"), "from-dir\n").unwrap();
        let d = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let read = || resolve(spec(None, None), Path::new("/c"), &env, &no_line).unwrap();
        assert_eq!(read().expose(), "from-dir");
        std::fs::write(dir.path().join("pbx-token"), "from-drop-in\n").unwrap();
        assert_eq!(read().expose(), "from-drop-in");
    }

    #[test]
    fn nothing_set_explains_every_option() {
        let e = resolve(spec(None, None), Path::new("/c.toml"), &no_env, &no_line)
            .unwrap_err()
            .to_string();
        for part in [
            "/c.toml",
            "pbx.token_file",
            "pbx.token",
            "LoadCredential=pbx-token",
        ] {
            assert!(e.contains(part), "{part} missing in {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
        let e = resolve(spec(None, None), Path::new("/c"), &env, &no_line).unwrap_err();
        assert!(e.to_string().contains("no credential at"), "{e}");
    }
}
