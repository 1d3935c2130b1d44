//! Where secrets (the Azure client secret, the PBX token, ...) come from: the lookup order
//! inline value -> `*_file` -> systemd credential (`$CREDENTIALS_DIRECTORY/<name>`). The
//! redacting type itself is [`crate::secret::Secret`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{At, ConfigError};
use crate::secret::Secret;

/// Reads environment variables; injected so tests can fake `CREDENTIALS_DIRECTORY` without
/// touching the process environment. [`std::env::var_os`] in production.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

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
        (Some(inline), None) if inline.expose().trim().is_empty() => {
            Err(invalid(spec.key, "is empty".to_owned()))
        }
        (Some(inline), None) => Ok(inline.clone()),
        (None, Some(file)) => read_secret_file(config, spec.file_key, &file),
        (None, None) => from_credentials(&spec, config, env, &invalid),
    }
}

fn from_credentials(
    spec: &SecretSpec<'_>,
    config: &Path,
    env: EnvLookup<'_>,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Secret, ConfigError> {
    let hint = format!(
        "set {} (a file holding the secret) or {}, or pass the systemd credential \"{}\" \
         (LoadCredential={}:/path/to/file)",
        spec.file_key, spec.key, spec.credential, spec.credential
    );
    let Some(dir) = env("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) else {
        return Err(invalid(spec.key, format!("not set; {hint}")));
    };
    let file = Path::new(&dir).join(spec.credential);
    if !file.exists() {
        let reason = format!("not set, and no credential at {}; {hint}", file.display());
        return Err(invalid(spec.key, reason));
    }
    read_secret_file(config, spec.key, &file)
}

/// Reads a secret file: trailing newlines are dropped, the rest must be non-empty. Errors name
/// the key and the file, never the content.
fn read_secret_file(config: &Path, key: &str, file: &Path) -> Result<Secret, ConfigError> {
    let err = |reason: String| ConfigError::SecretFile {
        path: config.to_owned(),
        key: key.to_owned(),
        secret_file: file.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        return Err(err("is empty".to_owned()));
    }
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
    fn file_is_trimmed_of_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "abc def\r\n\n").unwrap();
        let s = resolve(spec(None, Some(f)), Path::new("/c.toml"), &no_env, &no_line).unwrap();
        assert_eq!(s.expose(), "abc def");
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
