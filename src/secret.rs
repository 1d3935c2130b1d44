//! Secrets in memory: a type that never prints its value, and a comparison in constant time.
//! Used by every part that holds or checks one (config, Graph, PBX, store).

use std::fmt;

use serde::Deserialize;

/// A secret string. `Debug` and `Display` print `[redacted]`, so a config can be logged or
/// printed by `check --print-config` without leaking; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests, and secrets that come from somewhere other than the config).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (token request, auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How every secret is trimmed, wherever it comes from (inline value, file, systemd
/// credential) and wherever it is presented (a bearer token): whitespace at both ends is
/// dropped, inside it is kept. A trailing space or newline in a token file therefore matches a
/// request that sends the token without it.
pub fn trimmed(value: &str) -> &str {
    value.trim()
}

/// Compares a secret someone presented with ours in constant time (no early exit on the
/// first differing byte): PBX bearer tokens and notification `clientState`s.
pub fn same_secret(given: &[u8], ours: &[u8]) -> bool {
    given.len() == ours.len()
        && given
            .iter()
            .zip(ours)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
