//! `[pbx]`: which connectors `kind` lists, which keys belong to which kind, and the
//! [`PbxConfig`] they make. `kind` is one of `"http"`, `"asterisk"`, `"sip"`, or `"sip"`
//! with one of the other two: call state then comes from SIP, and the other kind carries
//! Teams states to the PBX.

use url::Url;

use super::file::{KindField, PbxSection};
use super::secret::{self, SecretSpec};
use super::validate::Ctx;
use super::{ConfigError, HttpPbxConfig, PbxConfig, Secret};
use super::{asterisk, ca, sip_keys};

/// Every `kind` accepted, as the errors list them.
const SUPPORTED: &str =
    "\"http\", \"asterisk\", \"sip\", [\"sip\", \"http\"], [\"sip\", \"asterisk\"]";

/// One connector `pbx.kind` may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Asterisk,
    Sip,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Http, Kind::Asterisk, Kind::Sip];

    fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Asterisk => "asterisk",
            Kind::Sip => "sip",
        }
    }

    /// The keys of `[pbx]` only this kind reads (`kind` and `ca_file` are every kind's).
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Http => &[
                "listen",
                "token",
                "token_file",
                "push_url",
                "push_token",
                "push_token_file",
                "push_timeout",
            ],
            Kind::Asterisk => &[
                "ari_url",
                "ari_username",
                "ari_password",
                "ari_password_file",
                "ari_app",
                "default_devices",
                "devices",
                "device_state",
                "presence_state",
                "dnd_device",
                "states",
                "ami_address",
                "ami_username",
                "ami_password",
                "ami_password_file",
                "users_from_voicemail",
            ],
            Kind::Sip => &[
                "registrar",
                "proxy",
                "transport",
                "username",
                "auth_username",
                "password",
                "password_file",
                "domain",
                "register",
                "local_address",
                "subscribe_expires",
                "subscribe_rate",
                "watch_uri",
                "watch",
                "presence_server",
                "publish_entity",
                "publish_body",
            ],
        }
    }
}

/// `[pbx]`: the kinds listed, each with its keys; keys of a kind not listed are refused.
pub(super) fn pbx(ctx: &Ctx<'_>, p: &PbxSection) -> Result<PbxConfig, ConfigError> {
    let kinds = kinds(ctx, &p.kind)?;
    foreign_keys(ctx, &kinds)?;
    let has = |k: Kind| kinds.contains(&k);
    let config = PbxConfig {
        http: has(Kind::Http).then(|| http(ctx, p)).transpose()?,
        asterisk: has(Kind::Asterisk)
            .then(|| asterisk::asterisk(ctx, p))
            .transpose()?,
        sip: has(Kind::Sip).then(|| sip_keys::sip(ctx, p)).transpose()?,
    };
    if let Some(sip) = &config.sip {
        let others = config.http.is_some() || config.asterisk.is_some();
        if !others && sip.ca_file.is_none() && ctx.written("pbx.ca_file") {
            let reason = "has no effect unless pbx.transport = \"tls\"";
            return Err(ctx.invalid("pbx.ca_file", reason));
        }
        if others && sip.presence_server.is_some() {
            let reason = "applies only to kind = \"sip\" alone: with \"http\" or \"asterisk\" in pbx.kind, that kind carries the Teams states to the PBX; remove one of them";
            return Err(ctx.invalid("pbx.presence_server", reason));
        }
    }
    Ok(config)
}

/// `pbx.kind`, in the file's order: one kind, or `"sip"` and one other, each once.
fn kinds(ctx: &Ctx<'_>, field: &KindField) -> Result<Vec<Kind>, ConfigError> {
    let names: Vec<&str> = match field {
        KindField::One(name) => vec![name],
        KindField::List(names) => names.iter().map(String::as_str).collect(),
    };
    let refuse = |why: String| ctx.invalid("pbx.kind", format!("{why}; supported: {SUPPORTED}"));
    let mut kinds = Vec::new();
    for name in names {
        let Some(kind) = Kind::ALL.into_iter().find(|k| k.name() == name) else {
            return Err(refuse(format!("unknown kind {name:?}")));
        };
        if kinds.contains(&kind) {
            return Err(refuse(format!("lists {name:?} twice")));
        }
        kinds.push(kind);
    }
    match kinds.as_slice() {
        [] => Err(refuse("lists no kind".to_owned())),
        [_] => Ok(kinds),
        [a, b] if *a == Kind::Sip || *b == Kind::Sip => Ok(kinds),
        _ => Err(refuse(format!(
            "{} cannot be combined: call state comes from one kind (\"sip\" when listed), Teams states go out through at most one other",
            spelled(&kinds)
        ))),
    }
}

/// The kinds as the file writes them: `"http"` or `["sip", "http"]`.
fn spelled(kinds: &[Kind]) -> String {
    let quoted: Vec<String> = kinds.iter().map(|k| format!("\"{}\"", k.name())).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", quoted.join(", ")),
    }
}

/// A key of a kind not listed is a mistake (a typo in `kind`, a leftover), never ignored. So
/// are the Asterisk devices read as call state when SIP gives it.
fn foreign_keys(ctx: &Ctx<'_>, kinds: &[Kind]) -> Result<(), ConfigError> {
    for owner in Kind::ALL.into_iter().filter(|k| !kinds.contains(k)) {
        if let Some(key) = written(ctx, owner.keys()) {
            let reason = format!(
                "applies to kind = \"{}\" only; remove it (pbx.kind is {})",
                owner.name(),
                spelled(kinds)
            );
            return Err(ctx.invalid(&key, reason));
        }
    }
    if kinds.contains(&Kind::Sip)
        && let Some(key) = written(ctx, &["default_devices", "devices"])
    {
        let reason = "has no effect with \"sip\" in pbx.kind: call state comes from SIP, and the watched URIs are pbx.watch_uri and [pbx.watch]; remove it";
        return Err(ctx.invalid(&key, reason));
    }
    Ok(())
}

/// The first of `keys` written in `[pbx]`, as `pbx.KEY`.
fn written(ctx: &Ctx<'_>, keys: &[&str]) -> Option<String> {
    keys.iter()
        .map(|k| format!("pbx.{k}"))
        .find(|k| ctx.written(k))
}

fn http(ctx: &Ctx<'_>, p: &PbxSection) -> Result<HttpPbxConfig, ConfigError> {
    let listen = ctx.address("pbx.listen", &p.listen, "127.0.0.1:8790")?;
    let spec = SecretSpec {
        key: "pbx.token",
        file_key: "pbx.token_file",
        credential: "pbx-token",
        inline: p.token.as_ref(),
        file: p.token_file.as_deref().map(|f| ctx.path(f)),
    };
    let (push_url, push_token) = push(ctx, p)?;
    Ok(HttpPbxConfig {
        listen,
        token: secret::resolve(spec, ctx.path, ctx.env, &|k| ctx.at(k))?,
        push_url,
        push_token,
        push_timeout: ctx.duration(
            "pbx.push_timeout",
            &p.push_timeout,
            super::validate::SECOND / 10..=super::validate::MINUTE,
        )?,
        ca_file: ca::ca_file(ctx, p.ca_file.as_deref())?,
    })
}

/// `pbx.push_url`, and its token: `pbx.push_token(_file)` or the systemd credential
/// `pbx-push-token` (never `pbx.token`).
fn push(ctx: &Ctx<'_>, p: &PbxSection) -> Result<(Option<Url>, Option<Secret>), ConfigError> {
    let url = p
        .push_url
        .as_deref()
        .map(|u| ctx.url("pbx.push_url", u))
        .transpose()?;
    let set = [
        ("pbx.push_token", p.push_token.is_some()),
        ("pbx.push_token_file", p.push_token_file.is_some()),
    ];
    if let Some((key, _)) = set.iter().find(|(_, set)| *set)
        && url.is_none()
    {
        return Err(ctx.invalid(key, "has no effect without pbx.push_url"));
    }
    let spec = SecretSpec {
        key: "pbx.push_token",
        file_key: "pbx.push_token_file",
        credential: "pbx-push-token",
        inline: p.push_token.as_ref(),
        file: p.push_token_file.as_deref().map(|f| ctx.path(f)),
    };
    let token = secret::resolve_optional(spec, ctx.path, ctx.env, &|k| ctx.at(k))?;
    let token = token.filter(|_| url.is_some());
    Ok((url, token))
}
