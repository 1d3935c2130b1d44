//! `[store]`: where the state database is. SQLite (`sync.state_db`, the embedded default) or
//! PostgreSQL, which the nodes of `[ha]` share (docs/high-availability.md).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::ca::ca_file_at;
use super::secret::{self, SecretSpec};
use super::validate::Ctx;
use super::{CaFile, ConfigError};
use crate::secret::Secret;

/// The systemd credential holding the PostgreSQL password (`LoadCredential=postgres-password:...`).
pub const POSTGRES_PASSWORD_CREDENTIAL: &str = "postgres-password";

/// `[store]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StoreSection {
    pub kind: Option<String>,
    pub postgres_url: Option<String>,
    pub postgres_password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreConfig {
    /// The SQLite file `sync.state_db`.
    #[default]
    Sqlite,
    Postgres(PostgresStore),
}

/// How to reach the PostgreSQL database.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresStore {
    /// `store.postgres_url` as written (it holds no password: refused at load).
    pub url: String,
    /// From `store.postgres_password_file` or the systemd credential `postgres-password`.
    pub password: Option<Secret>,
    /// Extra trusted CAs (`store.ca_file`), besides the system's.
    pub ca_file: Option<CaFile>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl PostgresStore {
    /// The connection settings: the URL, the password, and this program's name as
    /// `application_name` (seen in `pg_stat_activity`) unless the URL names one.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::from_str(&self.url).unwrap_or_default();
        if let Some(p) = &self.password {
            config.password(p.expose());
        }
        if config.get_application_name().is_none() {
            config.application_name("pbx-teams-presence");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        config.keepalives(true);
        config.keepalives_idle(std::time::Duration::from_secs(30));
        config
    }

    /// Who and where, for messages: `postgres://user@host:port/db` (never the password).
    pub fn shown(&self) -> String {
        let c = self.pg_config();
        let user = c.get_user().unwrap_or("");
        let host = c.get_hosts().first().map_or_else(String::new, |h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        });
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let db = c.get_dbname().unwrap_or(user);
        format!("postgres://{user}@{host}:{port}/{db}")
    }
}

pub(super) fn store(ctx: &Ctx<'_>, s: &StoreSection) -> Result<StoreConfig, ConfigError> {
    match s.kind.as_deref().unwrap_or("sqlite") {
        "sqlite" => {
            for (key, set) in [
                ("store.postgres_url", s.postgres_url.is_some()),
                (
                    "store.postgres_password_file",
                    s.postgres_password_file.is_some(),
                ),
                ("store.ca_file", s.ca_file.is_some()),
            ] {
                if set {
                    let reason = "is for kind = \"postgres\"; the SQLite file is sync.state_db";
                    return Err(ctx.invalid(key, reason));
                }
            }
            Ok(StoreConfig::Sqlite)
        }
        "postgres" => postgres(ctx, s).map(StoreConfig::Postgres),
        other => Err(ctx.invalid(
            "store.kind",
            format!("{other:?} is not a store: \"sqlite\" (the default) or \"postgres\""),
        )),
    }
}

fn postgres(ctx: &Ctx<'_>, s: &StoreSection) -> Result<PostgresStore, ConfigError> {
    let Some(url) = s.postgres_url.as_deref().map(str::trim) else {
        let reason = "must be set with kind = \"postgres\", e.g. \"postgres://presence@db.example.net/presence?sslmode=require\"";
        return Err(ctx.invalid("store.postgres_url", reason));
    };
    let parsed = tokio_postgres::Config::from_str(url).map_err(|e| {
        let reason = format!("is not a libpq connection URL or key=value string ({e})");
        ctx.invalid("store.postgres_url", reason)
    })?;
    if parsed.get_password().is_some() {
        let reason = "holds a password: put it in store.postgres_password_file (mode 0600) or the systemd credential postgres-password, not in the config";
        return Err(ctx.invalid("store.postgres_url", reason));
    }
    if parsed.get_hosts().is_empty() {
        return Err(ctx.invalid("store.postgres_url", "names no host"));
    }
    let password = secret::resolve_optional(
        SecretSpec {
            key: "store.postgres_password_file",
            file_key: "store.postgres_password_file",
            credential: POSTGRES_PASSWORD_CREDENTIAL,
            inline: None,
            file: s.postgres_password_file.as_deref().map(|f| ctx.path(f)),
        },
        ctx.path,
        ctx.env,
        &|k| ctx.at(k),
    )?;
    let ca_file = ca_file_at(ctx, "store.ca_file", s.ca_file.as_deref())?;
    Ok(PostgresStore {
        url: url.to_owned(),
        password,
        ca_file,
    })
}
