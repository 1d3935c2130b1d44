//! The TOML config file and the users file, validated into concrete runtime types, and watched
//! for changes.
//!
//! Two layers (style habit 4): `file.rs` mirrors the TOML with serde and denies unknown keys;
//! `validate.rs` turns it into [`Config`] (durations, URLs, addresses, secrets read from their
//! files). Every [`ConfigError`] names the file and the key or line. Reloading is the caller's
//! loop: [`watch_files`] says "something changed", [`Config::load`] + [`load_users`] re-read,
//! [`diff`] says what changed; an invalid new file is logged and the old config kept.
//!
//! Loading reads files with blocking std I/O: call it from `spawn_blocking` on the runtime.

mod asterisk;
mod ca;
mod credential;
mod diff;
mod display;
mod entra_group;
mod file;
mod ha;
mod notifications;
mod pbx;
mod secret;
mod sip;
mod sip_keys;
mod spans;
mod store;
mod users;
mod validate;
mod watch;

#[cfg(test)]
mod sip_tests;
#[cfg(test)]
mod store_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::sync::mapping::Mapping;
pub use crate::sync::pacing::{PaceSettings, PollInterval};
use crate::sync::types::DndToTeams;

pub use crate::secret::{Secret, same_secret};
pub use asterisk::{
    AmiConfig, AsteriskPbxConfig, AsteriskState, DEVICE_STATES, PRESENCE_STATES, Template,
};
pub use ca::CaFile;
pub use diff::{Change, diff};
pub use entra_group::{EntraGroupConfig, ExtensionRegex};
pub use file::{
    DEFAULT_GRAPH_URL, DEFAULT_IN_CALL_EXPIRATION, DEFAULT_LOGIN_URL, DEFAULT_POLL_INTERVAL,
    DEFAULT_STATE_DB, DEFAULT_USERS_FILE,
};
pub use ha::{DEFAULT_LEASE, HaConfig};
pub use notifications::{NotificationsConfig, TlsFiles};
pub use secret::EnvLookup;
pub use sip::{
    DEFAULT_PUBLISH_ENTITY, DEFAULT_SIP_PORT, DEFAULT_SIPS_PORT, DEFAULT_SUBSCRIBE_EXPIRES,
    DEFAULT_SUBSCRIBE_RATE, DEFAULT_WATCH_URI, HostPort, PublishBody, SipPbxConfig, SipTransport,
};
pub use store::{POSTGRES_PASSWORD_CREDENTIAL, PostgresStore, StoreConfig};
pub use users::{Directory, UserEntry, load_users, parse_users};
pub use watch::{FileWatch, watch_files};

/// The validated configuration the daemon runs with. `Debug` redacts secrets; `Display`
/// prints the effective configuration as TOML (defaults filled in, secrets left out), for
/// `check --print-config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from: reloads re-read it, errors name it.
    pub source: PathBuf,
    /// Entra app registration and Graph endpoints.
    pub azure: AzureConfig,
    /// State database and the timings of the sync loop.
    pub sync: SyncConfig,
    /// Where the users file is.
    pub users: UsersConfig,
    /// Which PBX connector to run and how.
    pub pbx: PbxConfig,
    /// Teams presence -> PBX state table (defaults overlaid with the file's rules).
    pub mapping: Mapping,
    /// Change notifications; `None` unless `notifications.enabled`.
    pub notifications: Option<NotificationsConfig>,
    /// Leader election among nodes sharing one PostgreSQL database; `None` unless
    /// `ha.enabled`.
    pub ha: Option<HaConfig>,
    /// Where the state database is: SQLite (`sync.state_db`) or PostgreSQL.
    pub store: StoreConfig,
    /// Logging filter.
    pub log: LogConfig,
    /// `GET /metrics` for Prometheus; `None` without a `[metrics]` section.
    pub metrics: Option<MetricsConfig>,
}

/// `[azure]`: what the client-credentials flow and the Graph client need.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureConfig {
    /// Directory (tenant) id of the organisation; part of the token URL.
    pub tenant_id: String,
    /// Application (client) id of the app registration.
    pub client_id: String,
    /// How the app signs in: client secret or certificate.
    pub credential: AzureCredential,
    /// Token endpoint host; changed for national clouds and the emulator.
    pub login_url: Url,
    /// Graph host; changed for national clouds and the emulator.
    pub graph_url: Url,
}

/// How the app signs in at the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum AzureCredential {
    /// `client_secret` (inline, `client_secret_file` or the systemd credential
    /// `client-secret`).
    Secret(Secret),
    /// `client_certificate_file` + `client_key_file` (or the systemd credentials
    /// `client-certificate` + `client-key`), read and checked at load.
    Certificate(CertificateCredential),
}

/// A certificate credential and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateCredential {
    /// The certificate file (PEM).
    pub certificate_file: PathBuf,
    /// The private key file (PEM, unencrypted).
    pub key_file: PathBuf,
    /// Both, parsed and checked to belong together.
    pub certificate: Arc<crate::graph::ClientCertificate>,
}

/// `[sync]`: local state and timings.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// SQLite file with the sessions we own and the last pushed states (survives restarts).
    pub state_db: PathBuf,
    /// How often Teams presence is read for all users: `auto` (as the budget share allows)
    /// or a fixed interval.
    pub poll_interval: PollInterval,
    /// Presence requests Graph allows per `graph_budget_window` (the request budget).
    pub graph_budget: u32,
    pub graph_budget_window: Duration,
    /// The part of the budget polling may use (0 < share <= 1).
    pub poll_budget_share: f64,
    /// `auto` never polls faster than this.
    pub poll_min_interval: Duration,
    /// `expirationDuration` of our setPresence session; refreshed before it runs out
    /// (5m..=4h, the range setPresence accepts:
    /// <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>).
    pub in_call_expiration: Duration,
    /// How often e-mail -> Teams id matching is redone (new hires, renamed accounts).
    pub resolve_interval: Duration,
    /// Longest time shutdown may take (clearing sessions included); below systemd's stop timeout.
    pub shutdown_timeout: Duration,
    /// After an unclean stop, how long the PBX has to report a call still running before the
    /// sessions left in the store are cleared.
    pub recovery_grace: Duration,
    /// Timeout of one Graph or token request.
    pub request_timeout: Duration,
    /// Whether the phone's Do Not Disturb shows in Teams, and how.
    pub pbx_dnd_to_teams: DndToTeams,
}

impl SyncConfig {
    /// What the poll pacing reads (`sync::pacing`).
    pub fn pacing(&self) -> PaceSettings {
        PaceSettings {
            interval: self.poll_interval,
            budget: self.graph_budget,
            window: self.graph_budget_window,
            share: self.poll_budget_share,
            min_interval: self.poll_min_interval,
        }
    }
}

/// `[users]`: the users file, and optionally an Entra group whose members are users too (the
/// file wins where both name an extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersConfig {
    /// The users file (`extension,email[,direction]`), resolved against the config directory.
    pub file: PathBuf,
    /// True when `users.file` is not written and `entra_group` is set: the file (the default
    /// path) is then optional, its absence meaning "no users from a file". False: the file
    /// must exist.
    pub file_optional: bool,
    /// `users.entra_group` with how extensions are read; None without the key.
    pub entra_group: Option<EntraGroupConfig>,
}

/// `[pbx]`: the connectors `kind` lists, each with only its own keys. At least one is set,
/// never both `http` and `asterisk`; with `sip` set, call state comes from SIP alone and the
/// other one (if any) only carries Teams states to the PBX.
#[derive(Debug, Clone, PartialEq)]
pub struct PbxConfig {
    /// The generic connector: the PBX POSTs call states to us, we POST Teams states to it.
    pub http: Option<HttpPbxConfig>,
    /// Asterisk (and FreePBX): call state from ARI device states (unless `sip` is set), Teams
    /// state written to a custom device state and a presence state.
    pub asterisk: Option<AsteriskPbxConfig>,
    /// Any SIP PBX: call state from dialog subscriptions (BLF), Teams states optionally
    /// PUBLISHed to a presence server.
    pub sip: Option<SipPbxConfig>,
}

impl PbxConfig {
    /// The kinds set, as `pbx.kind` spells them, `"sip"` first (`["sip", "http"]`).
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            ("sip", self.sip.is_some()),
            ("asterisk", self.asterisk.is_some()),
            ("http", self.http.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// Whether the Asterisk connector reads call state (ARI device states): Asterisk is set
    /// and SIP is not. With both, Asterisk only takes Teams states (its writer runs alone).
    pub fn asterisk_reads_calls(&self) -> bool {
        self.asterisk.is_some() && self.sip.is_none()
    }

    /// Whether a connector watches each user on the PBX over a connection it keeps (ARI
    /// device states; SIP dialog subscriptions): it needs the list of extensions, and reports
    /// its link (`status` says "connecting" until it is up). The HTTP connector and the
    /// Asterisk writer alone do neither.
    pub fn watches_users(&self) -> bool {
        self.asterisk_reads_calls() || self.sip.is_some()
    }
}

/// `[pbx]` with `"http"` in `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPbxConfig {
    /// Where we listen for the PBX's POSTs.
    pub listen: SocketAddr,
    /// Bearer token the PBX must send to us.
    pub token: Secret,
    /// Where Teams states are pushed; `None` means no push (PBX -> Teams only).
    pub push_url: Option<Url>,
    /// Bearer token sent with each push; `None`: no `Authorization` header. Never `token`:
    /// whoever receives a push must not be able to post call states with it.
    pub push_token: Option<Secret>,
    /// Timeout of one push request.
    pub push_timeout: Duration,
    /// Certificate authorities trusted for `push_url` besides the system's.
    pub ca_file: Option<CaFile>,
}

/// `[metrics]` (a change needs a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `GET /metrics` listens (port 0: any free port, `status` says which).
    pub listen: SocketAddr,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, checked at load time.
    pub level: String,
}

impl Config {
    /// Reads and validates the config file at `path` (secret files included; the users file
    /// is separate: [`load_users`]). Uses the process environment for `CREDENTIALS_DIRECTORY`;
    /// when it is not set (not started by systemd: `check` by hand, say), the directory
    /// `credentials` next to the config file stands in for it, as the shipped units pass it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let text = std::fs::read_to_string(&source).map_err(|e| ConfigError::Read {
            path: source.clone(),
            source: e,
        })?;
        let beside = source.parent().map(|d| d.join("credentials"));
        let env = |k: &str| {
            std::env::var_os(k).or_else(|| {
                let dir = beside.as_ref().filter(|d| d.is_dir())?;
                (k == "CREDENTIALS_DIRECTORY").then(|| dir.clone().into_os_string())
            })
        };
        Config::from_str_with(&text, &source, &env)
    }

    /// Validates `text` as if read from `source` (relative paths resolve against its
    /// directory), looking environment variables up through `env`. Secret files are read
    /// here; nothing else is touched (the state database and the users file are not).
    pub fn from_str_with(
        text: &str,
        source: &Path,
        env: EnvLookup<'_>,
    ) -> Result<Config, ConfigError> {
        validate::validate(text, source, env)
    }

    /// The files whose change should trigger a reload: this file and the users file.
    pub fn watched_paths(&self) -> Vec<PathBuf> {
        vec![self.source.clone(), self.users.file.clone()]
    }
}

/// Loads the config at `path` and the users file it names: what a (re)load needs for [`diff`].
pub fn load_all(path: &Path) -> Result<(Config, Directory), ConfigError> {
    let config = Config::load(path)?;
    // With users from an Entra group and no `users.file` line, a missing file is no users.
    if config.users.file_optional && !config.users.file.exists() {
        return Ok((config, Directory::default()));
    }
    let users = load_users(&config.users.file)?;
    Ok((config, users))
}

/// Where in the config file a problem is: the dotted key and/or the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    /// Dotted key path, e.g. `sync.poll_interval`, when known.
    pub key: Option<String>,
    /// 1-based line, when the key is written in the file (not for defaults).
    pub line: Option<usize>,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, self.line) {
            (Some(k), Some(l)) => write!(f, "{k} (line {l})"),
            (Some(k), None) => f.write_str(k),
            (None, Some(l)) => write!(f, "line {l}"),
            (None, None) => f.write_str("(unknown position)"),
        }
    }
}

/// Why the config or users file cannot be used. Every variant means "fix the file and reload";
/// on reload the caller keeps the last good config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read: fix its path or permissions.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, a value of the wrong type, a missing or an unknown key: fix the syntax.
    #[error("{}: {at}: {message}", path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// Where.
        at: At,
        /// What toml said (values of secret keys are not repeated).
        message: String,
    },
    /// A value is malformed or out of range: fix the value.
    #[error("{}: {at}: {reason}", path.display())]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Where.
        at: At,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A secret file is missing, unreadable or empty: fix the file (its content is never shown).
    #[error("{}: {key}: secret file {}: {reason}", path.display(), secret_file.display())]
    SecretFile {
        /// The config file.
        path: PathBuf,
        /// The key that pointed at the secret file.
        key: String,
        /// The secret file.
        secret_file: PathBuf,
        /// The I/O error or "is empty".
        reason: String,
    },
    /// A line of the users file is wrong: fix that line.
    #[error("{}: line {line}: {reason}", path.display())]
    UsersLine {
        /// The users file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The directory of a watched file cannot be watched: fix the path, or reload by SIGHUP.
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        /// The directory or file that failed.
        path: PathBuf,
        /// The watcher error.
        source: notify::Error,
    },
}
