//! File structs -> runtime [`Config`]: parse every value, check every range, read the secrets.
//! Errors name the key and, when the key is written in the file, its line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::file::{
    AzureSection, DEFAULT_STATE_DB, FileConfig, MappingSection, MetricsSection, SyncSection,
};
use super::secret::EnvLookup;
use super::spans::Spans;
use super::{
    AsteriskPbxConfig, At, AzureConfig, Config, ConfigError, LogConfig, MetricsConfig, SyncConfig,
    UsersConfig,
};
use super::{PollInterval, credential, notifications, pbx};
use crate::sync::mapping::{KEEP, KNOWN_ACTIVITIES, KNOWN_AVAILABILITIES, Mapping};
use crate::sync::types::DndToTeams;

/// Keys whose values must never be repeated in an error message.
const SECRET_KEYS: &[&str] = &[
    "azure.client_secret",
    "pbx.token",
    "pbx.push_token",
    "pbx.ari_password",
    "pbx.ami_password",
    "pbx.password",
];

pub(super) const SECOND: Duration = Duration::from_secs(1);
pub(super) const MINUTE: Duration = Duration::from_secs(60);
const FOREVER: Duration = Duration::MAX;

/// What every check needs: the file (for messages), its directory (for relative paths), the
/// spans (for line numbers) and the environment (for systemd credentials).
pub(super) struct Ctx<'a> {
    pub(super) path: &'a Path,
    base: PathBuf,
    spans: Spans<'a>,
    pub(super) env: EnvLookup<'a>,
}

impl Ctx<'_> {
    /// Whether `key` is written in the file (not just defaulted).
    pub(super) fn written(&self, key: &str) -> bool {
        self.spans.line_of(key).is_some()
    }

    pub(super) fn at(&self, key: &str) -> At {
        At {
            key: Some(key.to_owned()),
            line: self.spans.line_of(key),
        }
    }

    pub(super) fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_owned(),
            at: self.at(key),
            reason: reason.into(),
        }
    }

    pub(super) fn path(&self, p: &Path) -> PathBuf {
        self.base.join(p)
    }

    pub(super) fn duration(
        &self,
        key: &str,
        value: &str,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, ConfigError> {
        let d = humantime::parse_duration(value).map_err(|e| {
            self.invalid(
                key,
                format!("{value:?} is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\""),
            )
        })?;
        if range.contains(&d) {
            return Ok(d);
        }
        let fmt = humantime::format_duration;
        let reason = match (*range.start(), *range.end()) {
            (lo, FOREVER) => format!("must be at least {}, got {value:?}", fmt(lo)),
            (Duration::ZERO, hi) => format!("must be at most {}, got {value:?}", fmt(hi)),
            (lo, hi) => format!("must be between {} and {}, got {value:?}", fmt(lo), fmt(hi)),
        };
        Err(self.invalid(key, reason))
    }

    pub(super) fn url(&self, key: &str, value: &str) -> Result<Url, ConfigError> {
        let url = Url::parse(value)
            .map_err(|e| self.invalid(key, format!("{value:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.invalid(key, format!("{value:?} must be an http:// or https:// URL")));
        }
        Ok(url)
    }

    /// An `address:port` (port 0 allowed: any free port).
    pub(super) fn address(
        &self,
        key: &str,
        value: &str,
        example: &str,
    ) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|e| {
            let reason = format!("{value:?} is not an address:port like \"{example}\" ({e})");
            self.invalid(key, reason)
        })
    }

    pub(super) fn non_empty(&self, key: &str, value: &str) -> Result<String, ConfigError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(self.invalid(key, "must not be empty"));
        }
        Ok(v.to_owned())
    }
}

/// Parses and validates `text`, read from `source`.
pub(crate) fn validate(
    text: &str,
    source: &Path,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let base = source.parent().map(Path::to_owned).unwrap_or_default();
    let ctx = Ctx {
        path: source,
        base,
        spans: Spans::new(text),
        env,
    };
    let file: FileConfig = toml::from_str(text).map_err(|e| syntax_error(&ctx, &e))?;
    let mut config = Config {
        source: source.to_owned(),
        azure: azure(&ctx, &file.azure)?,
        sync: sync(&ctx, &file.sync)?,
        users: UsersConfig {
            file: ctx.path(&file.users.file),
            file_optional: file.users.entra_group.is_some() && !ctx.written("users.file"),
            entra_group: super::entra_group::entra_group(&ctx, &file.users)?,
        },
        pbx: pbx::pbx(&ctx, &file.pbx)?,
        mapping: mapping(&ctx, &file.mapping)?,
        notifications: notifications::notifications(&ctx, &file.notifications)?,
        ha: super::ha::ha(&ctx, &file.ha)?,
        store: super::store::store(&ctx, &file.store)?,
        log: LogConfig {
            level: log_level(&ctx, &file.log.level)?,
        },
        metrics: file
            .metrics
            .as_ref()
            .map(|m| metrics(&ctx, m))
            .transpose()?,
    };
    if config.pbx.sip.is_some() && config.sync.pbx_dnd_to_teams != DndToTeams::Off {
        let reason = "has no effect with \"sip\" in pbx.kind: SIP dialog-info carries no DND and reads the calls alone; set it to \"off\" or read calls with the asterisk or http connector";
        return Err(ctx.invalid("sync.pbx_dnd_to_teams", reason));
    }
    if let Some(a) = &mut config.pbx.asterisk
        && config.sync.pbx_dnd_to_teams == DndToTeams::Off
    {
        // Nobody reads it: not subscribed to, not read at every connect.
        a.dnd_device = None;
    }
    if let Some(a) = &config.pbx.asterisk {
        every_state_written(&ctx, &config.mapping, a)?;
    }
    if config.ha.is_some() && config.store == super::StoreConfig::Sqlite {
        let reason = "needs a state database the nodes share: set [store] kind = \"postgres\" and postgres_url (docs/high-availability.md)";
        return Err(ctx.invalid("ha.enabled", reason));
    }
    Ok(config)
}

/// Every state the mapping can produce must say what Asterisk is told.
fn every_state_written(
    ctx: &Ctx<'_>,
    mapping: &Mapping,
    a: &AsteriskPbxConfig,
) -> Result<(), ConfigError> {
    for (table, teams, state) in mapping.rules() {
        if state != KEEP && !a.states.contains_key(state) {
            let reason = format!(
                "maps to {state:?}, which [pbx.states] does not define; add [pbx.states.{state}] with device and presence"
            );
            return Err(ctx.invalid(&format!("mapping.{table}.{teams}"), reason));
        }
    }
    Ok(())
}

/// toml's error, located: key path from the span (plus the missing field, if that is the
/// problem) and the line. Values of secret keys are not repeated.
fn syntax_error(ctx: &Ctx<'_>, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map(|s| s.start);
    let mut key = offset.and_then(|o| ctx.spans.key_at(o));
    let mut line = offset.map(|o| ctx.spans.line_at(o));
    let message = e.message().trim().to_owned();
    if let Some(missing) = missing_field(&message) {
        // The span is the table that lacks the key: its header, or the whole document.
        key = Some(match key {
            Some(k) => format!("{k}.{missing}"),
            None => {
                line = None;
                missing.to_owned()
            }
        });
    }
    let secret = key.as_deref().is_some_and(|k| SECRET_KEYS.contains(&k));
    let message = if secret {
        "invalid value (not shown: secret)".to_owned()
    } else {
        message
    };
    ConfigError::Syntax {
        path: ctx.path.to_owned(),
        at: At { key, line },
        message,
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn azure(ctx: &Ctx<'_>, a: &AzureSection) -> Result<AzureConfig, ConfigError> {
    Ok(AzureConfig {
        tenant_id: ctx.non_empty("azure.tenant_id", &a.tenant_id)?,
        client_id: ctx.non_empty("azure.client_id", &a.client_id)?,
        credential: credential::resolve(ctx, a)?,
        login_url: ctx.url("azure.login_url", &a.login_url)?,
        graph_url: ctx.url("azure.graph_url", &a.graph_url)?,
    })
}

/// `state.db` in the unit's state directory when systemd gives one (`$STATE_DIRECTORY`, the
/// first of its list), else [`DEFAULT_STATE_DB`].
fn default_state_db(ctx: &Ctx<'_>) -> PathBuf {
    let from_systemd = (ctx.env)("STATE_DIRECTORY").and_then(|dirs| {
        let first = dirs.to_string_lossy().split(':').next()?.to_owned();
        (!first.is_empty()).then(|| PathBuf::from(first).join("state.db"))
    });
    from_systemd
        .or_else(|| instance_state_db(ctx.path))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DB))
}

/// Run by hand (`status`, `login`, `check`) on a template instance's config,
/// `/etc/pbx-teams-presence/NAME/config.toml`: the instance's own database,
/// `/var/lib/pbx-teams-presence/NAME/state.db`, as its unit's `$STATE_DIRECTORY` gives it.
fn instance_state_db(config: &Path) -> Option<PathBuf> {
    let dir = config.parent()?;
    let name = dir.file_name()?.to_str()?;
    (dir.parent()? == Path::new("/etc/pbx-teams-presence") && name != "credentials")
        .then(|| {
            Path::new(DEFAULT_STATE_DB)
                .parent()
                .map(|d| d.join(name).join("state.db"))
        })
        .flatten()
}

/// `sync.poll_interval`: `"auto"` or a duration of at least a second.
fn poll_interval(ctx: &Ctx<'_>, value: &str) -> Result<PollInterval, ConfigError> {
    if value.trim().eq_ignore_ascii_case("auto") {
        return Ok(PollInterval::Auto);
    }
    if let Err(e) = humantime::parse_duration(value) {
        let reason = format!(
            "{value:?} is not a duration ({e}) nor \"auto\"; write e.g. \"auto\" or \"30s\""
        );
        return Err(ctx.invalid("sync.poll_interval", reason));
    }
    ctx.duration("sync.poll_interval", value, SECOND..=FOREVER)
        .map(PollInterval::Every)
}

/// `sync.poll_budget_share`: a share of the budget, above 0 and at most 1.
fn budget_share(ctx: &Ctx<'_>, share: f64) -> Result<f64, ConfigError> {
    if share > 0.0 && share <= 1.0 {
        return Ok(share);
    }
    Err(ctx.invalid(
        "sync.poll_budget_share",
        format!("{share} is not a share of the Graph budget: write a number above 0 and at most 1, e.g. 0.5"),
    ))
}

fn sync(ctx: &Ctx<'_>, s: &SyncSection) -> Result<SyncConfig, ConfigError> {
    Ok(SyncConfig {
        state_db: match &s.state_db {
            Some(path) => ctx.path(path),
            None => default_state_db(ctx),
        },
        poll_interval: poll_interval(ctx, &s.poll_interval)?,
        graph_budget: match s.graph_budget {
            0 => return Err(ctx.invalid("sync.graph_budget", "must be at least 1 (presence requests Graph allows per graph_budget_window; 1500 per 30 s by default)")),
            n => n,
        },
        graph_budget_window: ctx.duration(
            "sync.graph_budget_window",
            &s.graph_budget_window,
            SECOND..=10 * MINUTE,
        )?,
        poll_budget_share: budget_share(ctx, s.poll_budget_share)?,
        poll_min_interval: ctx.duration(
            "sync.poll_min_interval",
            &s.poll_min_interval,
            Duration::from_millis(100)..=FOREVER,
        )?,
        // Graph accepts PT5M..PT4H only
        // (https://learn.microsoft.com/en-us/graph/api/presence-setpresence).
        in_call_expiration: ctx.duration(
            "sync.in_call_expiration",
            &s.in_call_expiration,
            5 * MINUTE..=240 * MINUTE,
        )?,
        resolve_interval: ctx.duration(
            "sync.resolve_interval",
            &s.resolve_interval,
            MINUTE..=FOREVER,
        )?,
        shutdown_timeout: ctx.duration(
            "sync.shutdown_timeout",
            &s.shutdown_timeout,
            SECOND..=10 * SECOND,
        )?,
        recovery_grace: ctx.duration(
            "sync.recovery_grace",
            &s.recovery_grace,
            Duration::ZERO..=10 * MINUTE,
        )?,
        request_timeout: ctx.duration(
            "sync.request_timeout",
            &s.request_timeout,
            SECOND..=MINUTE,
        )?,
        pbx_dnd_to_teams: DndToTeams::parse(&s.pbx_dnd_to_teams).ok_or_else(|| {
            ctx.invalid(
                "sync.pbx_dnd_to_teams",
                format!("{:?} is not off, session or preferred", s.pbx_dnd_to_teams),
            )
        })?,
    })
}

fn mapping(ctx: &Ctx<'_>, m: &MappingSection) -> Result<Mapping, ConfigError> {
    rules(ctx, "mapping.activity", &m.activity, KNOWN_ACTIVITIES)?;
    rules(
        ctx,
        "mapping.availability",
        &m.availability,
        KNOWN_AVAILABILITIES,
    )?;
    Ok(Mapping::with_overrides(&m.activity, &m.availability))
}

fn rules(
    ctx: &Ctx<'_>,
    table: &str,
    rules: &BTreeMap<String, String>,
    known: &[&str],
) -> Result<(), ConfigError> {
    for (teams, state) in rules {
        let key = format!("{table}.{teams}");
        if !known.contains(&teams.as_str()) {
            let reason = format!(
                "{teams:?} is not a Teams value; known: {}",
                known.join(", ")
            );
            return Err(ctx.invalid(&key, reason));
        }
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
        if state.is_empty() || !state.chars().all(ok) {
            let reason = format!("PBX state {state:?} must be non-empty [a-z0-9_]");
            return Err(ctx.invalid(&key, reason));
        }
    }
    Ok(())
}

fn metrics(ctx: &Ctx<'_>, m: &MetricsSection) -> Result<MetricsConfig, ConfigError> {
    Ok(MetricsConfig {
        listen: ctx.address("metrics.listen", &m.listen, "127.0.0.1:9790")?,
    })
}

fn log_level(ctx: &Ctx<'_>, level: &str) -> Result<String, ConfigError> {
    tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        let reason =
            format!("{level:?} is not a filter like \"info,pbx_teams_presence=debug\" ({e})");
        ctx.invalid("log.level", reason)
    })?;
    Ok(level.to_owned())
}
