//! The config file as written: serde structs that mirror the TOML one to one. Every struct
//! denies unknown keys (a typo is an error, never silently ignored); defaults are named
//! constants so `config.example.toml` and the code can be checked against each other.
//! Values stay strings here; `validate` turns them into durations, URLs and addresses.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// Default `azure.login_url`: the Entra ID token endpoint host (global cloud).
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// Default `azure.graph_url`: Microsoft Graph (global cloud).
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// Default `sync.state_db` without systemd: the main unit's `StateDirectory=`. Under systemd
/// the default is `state.db` in `$STATE_DIRECTORY` (`/var/lib/pbx-teams-presence` for the main
/// unit, `/var/lib/pbx-teams-presence/NAME` for an instance of the template).
pub const DEFAULT_STATE_DB: &str = "/var/lib/pbx-teams-presence/state.db";
/// Default `sync.poll_interval`.
pub const DEFAULT_POLL_INTERVAL: &str = "auto";
/// Default `sync.graph_budget`: presence requests per `graph_budget_window`, the lower of two
/// published figures (1,500 per 30 s on the getPresencesByUserId page; the throttling limits
/// page says 10,000).
pub const DEFAULT_GRAPH_BUDGET: u32 = 1500;
/// Default `sync.graph_budget_window`.
pub const DEFAULT_GRAPH_BUDGET_WINDOW: &str = "30s";
/// Default `sync.poll_budget_share`.
pub const DEFAULT_POLL_BUDGET_SHARE: f64 = 0.5;
/// Default `sync.poll_min_interval`.
pub const DEFAULT_POLL_MIN_INTERVAL: &str = "1s";
/// Default `sync.in_call_expiration` (the Graph default:
/// <https://learn.microsoft.com/en-us/graph/api/presence-setpresence>).
pub const DEFAULT_IN_CALL_EXPIRATION: &str = "5m";
/// Default `sync.resolve_interval`.
pub const DEFAULT_RESOLVE_INTERVAL: &str = "1h";
/// Default `sync.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: &str = "8s";
/// Default `sync.recovery_grace`.
pub const DEFAULT_RECOVERY_GRACE: &str = "15s";
/// Default `sync.request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: &str = "10s";
/// Default `users.file`, relative to the config file's directory.
pub const DEFAULT_USERS_FILE: &str = "users.csv";
/// Default `pbx.kind`.
pub const DEFAULT_PBX_KIND: &str = "http";
/// Default `pbx.listen`: loopback only, the PBX usually runs on the same host.
pub const DEFAULT_PBX_LISTEN: &str = "127.0.0.1:8790";
/// Default `pbx.push_timeout`.
pub const DEFAULT_PUSH_TIMEOUT: &str = "5s";
/// Default `log.level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

fn s(v: &str) -> String {
    v.to_owned()
}

/// The whole file. Only `[azure]` is required; every other section has defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    pub azure: AzureSection,
    #[serde(default)]
    pub sync: SyncSection,
    #[serde(default)]
    pub users: UsersSection,
    #[serde(default)]
    pub pbx: PbxSection,
    #[serde(default)]
    pub mapping: MappingSection,
    #[serde(default)]
    pub notifications: super::notifications::NotificationsSection,
    #[serde(default)]
    pub ha: super::ha::HaSection,
    #[serde(default)]
    pub store: super::store::StoreSection,
    #[serde(default)]
    pub log: LogSection,
    /// Absent: no metrics listener.
    pub metrics: Option<MetricsSection>,
}

/// `[metrics]`: where `GET /metrics` is served (Prometheus).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSection {
    pub listen: String,
}

/// `[azure]`: the app registration and the endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AzureSection {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_secret_file: Option<PathBuf>,
    pub client_certificate_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    #[serde(default = "default_login_url")]
    pub login_url: String,
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
}

fn default_login_url() -> String {
    s(DEFAULT_LOGIN_URL)
}
fn default_graph_url() -> String {
    s(DEFAULT_GRAPH_URL)
}

/// `[sync]`: the state database and the timings of the sync loop.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SyncSection {
    pub state_db: Option<PathBuf>,
    pub poll_interval: String,
    pub graph_budget: u32,
    pub graph_budget_window: String,
    pub poll_budget_share: f64,
    pub poll_min_interval: String,
    pub in_call_expiration: String,
    pub resolve_interval: String,
    pub shutdown_timeout: String,
    pub recovery_grace: String,
    pub request_timeout: String,
    pub pbx_dnd_to_teams: String,
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            state_db: None,
            poll_interval: s(DEFAULT_POLL_INTERVAL),
            graph_budget: DEFAULT_GRAPH_BUDGET,
            graph_budget_window: s(DEFAULT_GRAPH_BUDGET_WINDOW),
            poll_budget_share: DEFAULT_POLL_BUDGET_SHARE,
            poll_min_interval: s(DEFAULT_POLL_MIN_INTERVAL),
            in_call_expiration: s(DEFAULT_IN_CALL_EXPIRATION),
            resolve_interval: s(DEFAULT_RESOLVE_INTERVAL),
            shutdown_timeout: s(DEFAULT_SHUTDOWN_TIMEOUT),
            recovery_grace: s(DEFAULT_RECOVERY_GRACE),
            request_timeout: s(DEFAULT_REQUEST_TIMEOUT),
            pbx_dnd_to_teams: s("off"),
        }
    }
}

/// `[users]`: where the extension -> e-mail list lives, and the optional Entra group whose
/// members are users too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct UsersSection {
    pub file: PathBuf,
    /// Object id or mail nickname of the group.
    pub entra_group: Option<String>,
    /// The user property the extension is read from (default `businessPhones`).
    pub extension_attribute: Option<String>,
    /// A regex whose first group cuts the extension out of that property's value.
    pub extension_regex: Option<String>,
}

impl Default for UsersSection {
    fn default() -> Self {
        UsersSection {
            file: PathBuf::from(DEFAULT_USERS_FILE),
            entra_group: None,
            extension_attribute: None,
            extension_regex: None,
        }
    }
}

/// `pbx.kind`: one kind, or a list of them (`["sip", "http"]`); `config::pbx` says which
/// lists are allowed.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a kind or a list of kinds: \"http\", \"asterisk\", \"sip\", [\"sip\", \"http\"] or [\"sip\", \"asterisk\"]"
)]
pub(crate) enum KindField {
    One(String),
    List(Vec<String>),
}

/// `[pbx]`: one flat table; `kind` says which keys apply (`http`, `asterisk`, `sip`), and
/// `config::pbx` rejects keys of a kind not listed. The asterisk keys are documented in
/// `config::asterisk`, the sip keys in `config::sip`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PbxSection {
    pub kind: KindField,
    pub listen: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub push_url: Option<String>,
    pub push_token: Option<Secret>,
    pub push_token_file: Option<PathBuf>,
    pub push_timeout: String,
    pub ca_file: Option<PathBuf>,
    pub ari_url: Option<String>,
    pub ari_username: Option<String>,
    pub ari_password: Option<Secret>,
    pub ari_password_file: Option<PathBuf>,
    pub ari_app: Option<String>,
    pub default_devices: Option<Vec<String>>,
    pub devices: BTreeMap<String, Vec<String>>,
    pub device_state: Option<String>,
    pub presence_state: Option<String>,
    pub dnd_device: Option<String>,
    pub states: BTreeMap<String, StateSection>,
    pub ami_address: Option<String>,
    pub ami_username: Option<String>,
    pub ami_password: Option<Secret>,
    pub ami_password_file: Option<PathBuf>,
    pub users_from_voicemail: Option<bool>,
    pub registrar: Option<String>,
    pub proxy: Option<String>,
    pub transport: Option<String>,
    pub username: Option<String>,
    pub auth_username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub domain: Option<String>,
    pub register: Option<bool>,
    pub local_address: Option<String>,
    pub subscribe_expires: Option<String>,
    pub subscribe_rate: Option<i64>,
    pub watch_uri: Option<String>,
    pub watch: BTreeMap<String, String>,
    pub presence_server: Option<String>,
    pub publish_entity: Option<String>,
    pub publish_body: Option<String>,
}

/// `[pbx.states.NAME]` (asterisk): what one PBX state name is written as.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateSection {
    pub device: Option<String>,
    pub presence: Option<String>,
}

impl Default for PbxSection {
    fn default() -> Self {
        PbxSection {
            kind: KindField::One(s(DEFAULT_PBX_KIND)),
            listen: s(DEFAULT_PBX_LISTEN),
            token: None,
            token_file: None,
            push_url: None,
            push_token: None,
            push_token_file: None,
            push_timeout: s(DEFAULT_PUSH_TIMEOUT),
            ca_file: None,
            ari_url: None,
            ari_username: None,
            ari_password: None,
            ari_password_file: None,
            ari_app: None,
            default_devices: None,
            devices: BTreeMap::new(),
            device_state: None,
            presence_state: None,
            dnd_device: None,
            states: BTreeMap::new(),
            ami_address: None,
            ami_username: None,
            ami_password: None,
            ami_password_file: None,
            users_from_voicemail: None,
            registrar: None,
            proxy: None,
            transport: None,
            username: None,
            auth_username: None,
            password: None,
            password_file: None,
            domain: None,
            register: None,
            local_address: None,
            subscribe_expires: None,
            subscribe_rate: None,
            watch_uri: None,
            watch: BTreeMap::new(),
            presence_server: None,
            publish_entity: None,
            publish_body: None,
        }
    }
}

/// `[mapping.activity]` and `[mapping.availability]`: overrides of the default table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MappingSection {
    pub activity: BTreeMap<String, String>,
    pub availability: BTreeMap<String, String>,
}

/// `[log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: s(DEFAULT_LOG_LEVEL),
        }
    }
}
