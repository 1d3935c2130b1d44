//! `[pbx] kind = "asterisk"`: ARI (and optional AMI) settings, the devices that make up each
//! user's call state, and the table of what each PBX state name is written to Asterisk as.
//!
//! Facts these checks rely on were verified on Asterisk 22 (`tests/pbx/README.md`): only
//! `Custom:` device states can be set from outside (`DEVICE_STATE()`), only `CustomPresence:`
//! presence providers, and `busy` is not a presence value Asterisk takes.

use std::collections::BTreeMap;
use std::fmt;

use url::Url;

use super::file::{PbxSection, StateSection};
use super::secret::{self, SecretSpec};
use super::validate::Ctx;
use super::{ConfigError, Secret};
use crate::sync::mapping::KEEP;

/// Default `pbx.ari_url`: Asterisk's HTTP server on the same host.
pub const DEFAULT_ARI_URL: &str = "http://127.0.0.1:8088/ari";
/// Default `pbx.ari_username`, `pbx.ami_username` and `pbx.ari_app`.
pub const DEFAULT_ASTERISK_USER: &str = "pbx-teams-presence";
/// Default `pbx.default_devices`: a PJSIP endpoint named like the extension.
pub const DEFAULT_DEVICE: &str = "PJSIP/{extension}";
/// Default `pbx.device_state`: what hints, BLF lamps and `DEVICE_STATE()` read.
pub const DEFAULT_DEVICE_STATE: &str = "Custom:teams-{extension}";
/// Default `pbx.presence_state`: what phones subscribed to presence show.
pub const DEFAULT_PRESENCE_STATE: &str = "CustomPresence:{extension}";
/// Default `pbx.dnd_device`: FreePBX's DND feature code sets it `BUSY` while DND is on.
pub const DEFAULT_DND_DEVICE: &str = "Custom:DND{extension}";
/// The placeholder of templates.
pub const EXTENSION: &str = "{extension}";

/// Device states `DEVICE_STATE(Custom:...)` accepts (`UNKNOWN` is refused, `INVALID` is
/// meaningless for a lamp).
pub const DEVICE_STATES: &[&str] = &[
    "NOT_INUSE",
    "INUSE",
    "BUSY",
    "UNAVAILABLE",
    "RINGING",
    "RINGINUSE",
    "ONHOLD",
];

/// Presence values `PRESENCE_STATE(CustomPresence:...)` accepts. There is no `busy`.
pub const PRESENCE_STATES: &[&str] = &[
    "available",
    "away",
    "xa",
    "chat",
    "dnd",
    "unavailable",
    "not_set",
];

/// Default `[pbx.states]`: PBX state name (from `[mapping]`) -> (device state, presence).
/// Calls, meetings and a manual Busy light the lamp (`INUSE`) and trip the busy-on-busy
/// recipe; Do not disturb is `BUSY`, so a dialplan can tell it apart; presence has no "busy",
/// so every red Teams state is `dnd` with the Teams activity as the message.
pub const DEFAULT_STATES: &[(&str, &str, &str)] = &[
    ("available", "NOT_INUSE", "available"),
    ("busy", "INUSE", "dnd"),
    ("in_call", "INUSE", "dnd"),
    ("in_meeting", "INUSE", "dnd"),
    ("dnd", "BUSY", "dnd"),
    ("away", "NOT_INUSE", "away"),
    ("offline", "NOT_INUSE", "unavailable"),
    ("unknown", "NOT_INUSE", "not_set"),
];

/// A name with one `{extension}` placeholder, e.g. `Custom:teams-{extension}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// The template for a given text; `None` when it has no `{extension}`.
    pub fn new(text: &str) -> Option<Template> {
        (text.matches(EXTENSION).count() == 1).then(|| Template(text.to_owned()))
    }

    /// The name for one extension.
    pub fn expand(&self, extension: &str) -> String {
        self.0.replace(EXTENSION, extension)
    }

    /// Whether `name` is this template expanded for some extension.
    pub fn matches(&self, name: &str) -> bool {
        let (prefix, suffix) = self.0.split_once(EXTENSION).unwrap_or((&self.0, ""));
        name.len() > prefix.len() + suffix.len()
            && name.starts_with(prefix)
            && name.ends_with(suffix)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one PBX state name is written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsteriskState {
    /// Custom device state, one of [`DEVICE_STATES`].
    pub device: String,
    /// Presence value, one of [`PRESENCE_STATES`].
    pub presence: String,
}

/// `[pbx]` with `"asterisk"` in `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct AsteriskPbxConfig {
    /// ARI base URL, e.g. `http://127.0.0.1:8088/ari` (the WebSocket URL is derived from it).
    pub ari_url: Url,
    pub ari_username: String,
    pub ari_password: Secret,
    /// The Stasis application name our WebSocket registers; it takes no channels.
    pub ari_app: String,
    /// Devices of every user not listed in `devices`, as templates.
    pub default_devices: Vec<Template>,
    /// Devices per extension (desk phone + softphone); replaces `default_devices` for it.
    pub devices: BTreeMap<String, Vec<String>>,
    /// Where the mapped Teams state goes as a device state; `None` = not written.
    pub device_state: Option<Template>,
    /// Where it goes as a presence state; `None` = not written.
    pub presence_state: Option<Template>,
    /// The device whose state says the phone is in DND (`INUSE` or `BUSY`); `None` = not
    /// read (always when `sync.pbx_dnd_to_teams` is off).
    pub dnd_device: Option<Template>,
    /// PBX state name -> what is written (defaults overlaid with `[pbx.states]`).
    pub states: BTreeMap<String, AsteriskState>,
    /// AMI, for users from voicemail boxes.
    pub ami: Option<AmiConfig>,
    /// Take users and e-mails from Asterisk's voicemail boxes (needs AMI).
    pub users_from_voicemail: bool,
    /// Certificate authorities trusted for an `https://` ARI besides the system's.
    pub ca_file: Option<super::CaFile>,
}

impl AsteriskPbxConfig {
    /// The devices whose state is the user's call state.
    pub fn devices_of(&self, extension: &str) -> Vec<String> {
        match self.devices.get(extension) {
            Some(list) => list.clone(),
            None => self
                .default_devices
                .iter()
                .map(|t| t.expand(extension))
                .collect(),
        }
    }

    /// The device that says whether `extension`'s phone is in DND, if read.
    pub fn dnd_device_of(&self, extension: &str) -> Option<String> {
        self.dnd_device.as_ref().map(|t| t.expand(extension))
    }

    /// Whether `device` is one the daemon writes (and so must never read as call state).
    pub fn is_own_device(&self, device: &str) -> bool {
        self.device_state
            .as_ref()
            .is_some_and(|t| t.matches(device))
    }
}

/// AMI login.
#[derive(Debug, Clone, PartialEq)]
pub struct AmiConfig {
    /// `host:port`, e.g. `127.0.0.1:5038`.
    pub address: String,
    pub username: String,
    pub password: Secret,
}

pub(super) fn asterisk(ctx: &Ctx<'_>, p: &PbxSection) -> Result<AsteriskPbxConfig, ConfigError> {
    let ari_url = ctx.url(
        "pbx.ari_url",
        p.ari_url.as_deref().unwrap_or(DEFAULT_ARI_URL),
    )?;
    let ari_password = secret::resolve(
        SecretSpec {
            key: "pbx.ari_password",
            file_key: "pbx.ari_password_file",
            credential: "ari-password",
            inline: p.ari_password.as_ref(),
            file: p.ari_password_file.as_deref().map(|f| ctx.path(f)),
        },
        ctx.path,
        ctx.env,
        &|k| ctx.at(k),
    )?;
    let name = |key: &str, v: &Option<String>| {
        ctx.non_empty(key, v.as_deref().unwrap_or(DEFAULT_ASTERISK_USER))
    };
    let default_devices = match &p.default_devices {
        None => vec![Template(DEFAULT_DEVICE.to_owned())],
        Some(list) => list
            .iter()
            .map(|d| template(ctx, "pbx.default_devices", d))
            .collect::<Result<_, _>>()?,
    };
    let device_state = optional_template(
        ctx,
        "pbx.device_state",
        p.device_state.as_deref(),
        DEFAULT_DEVICE_STATE,
        "Custom:",
    )?;
    let presence_state = optional_template(
        ctx,
        "pbx.presence_state",
        p.presence_state.as_deref(),
        DEFAULT_PRESENCE_STATE,
        "CustomPresence:",
    )?;
    let dnd_device = match p.dnd_device.as_deref().unwrap_or(DEFAULT_DND_DEVICE) {
        "" => None,
        text => Some(template(ctx, "pbx.dnd_device", text)?),
    };
    let config = AsteriskPbxConfig {
        ari_url,
        ari_username: name("pbx.ari_username", &p.ari_username)?,
        ari_password,
        ari_app: name("pbx.ari_app", &p.ari_app)?,
        default_devices,
        devices: devices(ctx, &p.devices)?,
        device_state,
        presence_state,
        dnd_device,
        states: states(ctx, &p.states)?,
        ami: ami(ctx, p)?,
        users_from_voicemail: p.users_from_voicemail.unwrap_or(false),
        ca_file: super::ca::ca_file(ctx, p.ca_file.as_deref())?,
    };
    no_loops(ctx, &config)?;
    if config.users_from_voicemail && config.ami.is_none() {
        let reason = "needs AMI: set pbx.ami_address (and pbx.ami_password_file)";
        return Err(ctx.invalid("pbx.users_from_voicemail", reason));
    }
    Ok(config)
}

fn device_name(ctx: &Ctx<'_>, key: &str, name: &str) -> Result<(), ConfigError> {
    let bad = |c: char| c.is_whitespace() || c == ',' || c == '&';
    if name.is_empty() || name.contains(bad) || !name.contains(['/', ':']) {
        let reason = format!(
            "{name:?} is not a device name like \"PJSIP/1001\" (technology/resource, no spaces, commas or &)"
        );
        return Err(ctx.invalid(key, reason));
    }
    Ok(())
}

fn template(ctx: &Ctx<'_>, key: &str, text: &str) -> Result<Template, ConfigError> {
    device_name(ctx, key, text)?;
    Template::new(text).ok_or_else(|| {
        ctx.invalid(
            key,
            format!("{text:?} must contain {EXTENSION} once, e.g. \"PJSIP/{EXTENSION}\""),
        )
    })
}

fn optional_template(
    ctx: &Ctx<'_>,
    key: &str,
    value: Option<&str>,
    default: &str,
    prefix: &str,
) -> Result<Option<Template>, ConfigError> {
    let text = value.unwrap_or(default);
    if text.is_empty() {
        return Ok(None);
    }
    let t = template(ctx, key, text)?;
    if !text.starts_with(prefix) || text.len() == prefix.len() {
        let reason = format!(
            "{text:?} must start with {prefix:?}: Asterisk lets only those be set from outside (or \"\" to write none)"
        );
        return Err(ctx.invalid(key, reason));
    }
    Ok(Some(t))
}

fn devices(
    ctx: &Ctx<'_>,
    table: &BTreeMap<String, Vec<String>>,
) -> Result<BTreeMap<String, Vec<String>>, ConfigError> {
    for (extension, list) in table {
        let key = format!("pbx.devices.{extension}");
        if list.is_empty() {
            return Err(ctx.invalid(
                &key,
                "lists no device; remove the line to use pbx.default_devices",
            ));
        }
        for d in list {
            device_name(ctx, &key, d)?;
        }
    }
    Ok(table.clone())
}

fn states(
    ctx: &Ctx<'_>,
    table: &BTreeMap<String, StateSection>,
) -> Result<BTreeMap<String, AsteriskState>, ConfigError> {
    let mut out: BTreeMap<String, AsteriskState> = DEFAULT_STATES
        .iter()
        .map(|(name, device, presence)| {
            let s = AsteriskState {
                device: (*device).to_owned(),
                presence: (*presence).to_owned(),
            };
            ((*name).to_owned(), s)
        })
        .collect();
    for (name, rule) in table {
        let key = format!("pbx.states.{name}");
        if name == KEEP {
            return Err(ctx.invalid(&key, "\"keep\" is reserved: a Teams state mapped to keep pushes nothing, so it needs no Asterisk state"));
        }
        let entry = out.get(name).cloned();
        let device = match (&rule.device, &entry) {
            (Some(d), _) => one_of(
                ctx,
                &format!("{key}.device"),
                &d.to_ascii_uppercase(),
                DEVICE_STATES,
            )?,
            (None, Some(e)) => e.device.clone(),
            (None, None) => {
                return Err(ctx.invalid(&key, "a new state needs both device and presence"));
            }
        };
        let presence = match (&rule.presence, &entry) {
            (Some(p), _) => one_of(
                ctx,
                &format!("{key}.presence"),
                &p.to_ascii_lowercase(),
                PRESENCE_STATES,
            )?,
            (None, Some(e)) => e.presence.clone(),
            (None, None) => {
                return Err(ctx.invalid(&key, "a new state needs both device and presence"));
            }
        };
        out.insert(name.clone(), AsteriskState { device, presence });
    }
    Ok(out)
}

fn one_of(ctx: &Ctx<'_>, key: &str, value: &str, allowed: &[&str]) -> Result<String, ConfigError> {
    if allowed.contains(&value) {
        return Ok(value.to_owned());
    }
    let reason = format!("{value:?} is not one of {}", allowed.join(", "));
    Err(ctx.invalid(key, reason))
}

fn ami(ctx: &Ctx<'_>, p: &PbxSection) -> Result<Option<AmiConfig>, ConfigError> {
    let Some(address) = &p.ami_address else {
        if let Some(k) = [
            ("ami_username", p.ami_username.is_some()),
            ("ami_password", p.ami_password.is_some()),
            ("ami_password_file", p.ami_password_file.is_some()),
        ]
        .into_iter()
        .find_map(|(k, set)| set.then_some(k))
        {
            let reason = "has no effect without pbx.ami_address";
            return Err(ctx.invalid(&format!("pbx.{k}"), reason));
        }
        return Ok(None);
    };
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        let reason = format!("{address:?} is not host:port like \"127.0.0.1:5038\"");
        return Err(ctx.invalid("pbx.ami_address", reason));
    }
    let password = secret::resolve(
        SecretSpec {
            key: "pbx.ami_password",
            file_key: "pbx.ami_password_file",
            credential: "ami-password",
            inline: p.ami_password.as_ref(),
            file: p.ami_password_file.as_deref().map(|f| ctx.path(f)),
        },
        ctx.path,
        ctx.env,
        &|k| ctx.at(k),
    )?;
    Ok(Some(AmiConfig {
        address: address.clone(),
        username: ctx.non_empty(
            "pbx.ami_username",
            p.ami_username.as_deref().unwrap_or(DEFAULT_ASTERISK_USER),
        )?,
        password,
    }))
}

/// A device the daemon writes must never be read back as call state (that would be a loop:
/// Teams "In a meeting" -> our Custom: state INUSE -> "speaking" -> Teams "In a call").
fn no_loops(ctx: &Ctx<'_>, c: &AsteriskPbxConfig) -> Result<(), ConfigError> {
    let Some(own) = &c.device_state else {
        return Ok(());
    };
    let reason = |d: &str| {
        format!(
            "{d:?} is a device the daemon writes (pbx.device_state = \"{own}\"); reading it as call state would loop"
        )
    };
    for t in &c.default_devices {
        if t == own || own.matches(&t.expand("1")) {
            return Err(ctx.invalid("pbx.default_devices", reason(t.as_str())));
        }
    }
    for (extension, list) in &c.devices {
        if let Some(d) = list.iter().find(|d| own.matches(d)) {
            return Err(ctx.invalid(&format!("pbx.devices.{extension}"), reason(d)));
        }
    }
    if let Some(t) = c
        .dnd_device
        .as_ref()
        .filter(|t| own.matches(&t.expand("1")))
    {
        return Err(ctx.invalid("pbx.dnd_device", reason(t.as_str())));
    }
    Ok(())
}
