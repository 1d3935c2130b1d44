//! The keys of `[pbx]` that `kind = "sip"` reads, checked into a [`SipPbxConfig`]. Every
//! error names the key and the file; which keys belong to which kind is `config::pbx`'s.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::Duration;

use super::file::PbxSection;
use super::secret::{self, SecretSpec};
use super::sip::{
    DEFAULT_PUBLISH_ENTITY, DEFAULT_SUBSCRIBE_EXPIRES, DEFAULT_SUBSCRIBE_RATE, DEFAULT_WATCH_URI,
};
use super::validate::Ctx;
use super::{ConfigError, HostPort, PublishBody, SipPbxConfig, SipTransport};

const EXTENSION: &str = "{extension}";
const DOMAIN: &str = "{domain}";
const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// `[pbx]` with `"sip"` in `kind`. `ca_file` is read only for `transport = "tls"` (the
/// other kinds read it for themselves).
pub(super) fn sip(ctx: &Ctx<'_>, p: &PbxSection) -> Result<SipPbxConfig, ConfigError> {
    let transport = transport(ctx, p.transport.as_deref())?;
    let port = transport.default_port();
    let Some(registrar) = &p.registrar else {
        let reason = "must be set: the SIP server the daemon registers and subscribes at, e.g. registrar = \"pbx.example.com:5060\"";
        return Err(ctx.invalid("pbx.registrar", reason));
    };
    let registrar = host_port(ctx, "pbx.registrar", registrar, port)?;
    let server = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(|v| host_port(ctx, key, v, port))
            .transpose()
    };
    let presence_server = server("pbx.presence_server", &p.presence_server)?;
    publish_keys_need_a_server(ctx, presence_server.is_some())?;
    let ca_file = match transport {
        SipTransport::Tls => super::ca::ca_file(ctx, p.ca_file.as_deref())?,
        SipTransport::Udp | SipTransport::Tcp => None,
    };
    Ok(SipPbxConfig {
        domain: domain(ctx, p.domain.as_deref(), &registrar)?,
        registrar,
        proxy: server("pbx.proxy", &p.proxy)?,
        transport,
        ca_file,
        username: username(ctx, p.username.as_deref())?,
        auth_username: p
            .auth_username
            .as_deref()
            .map(|a| ctx.non_empty("pbx.auth_username", a))
            .transpose()?,
        password: password(ctx, p)?,
        register: p.register.unwrap_or(true),
        local_address: p
            .local_address
            .as_deref()
            .map(|a| ctx.address("pbx.local_address", a, "192.0.2.10:5070"))
            .transpose()?,
        subscribe_expires: ctx.duration(
            "pbx.subscribe_expires",
            p.subscribe_expires
                .as_deref()
                .unwrap_or(DEFAULT_SUBSCRIBE_EXPIRES),
            MINUTE..=DAY,
        )?,
        subscribe_rate: subscribe_rate(ctx, p.subscribe_rate)?,
        watch_uri: watch_uri(ctx, p.watch_uri.as_deref())?,
        watch: watch(ctx, &p.watch)?,
        presence_server,
        publish_entity: publish_entity(ctx, p.publish_entity.as_deref())?,
        publish_body: publish_body(ctx, p.publish_body.as_deref())?,
    })
}

fn transport(ctx: &Ctx<'_>, value: Option<&str>) -> Result<SipTransport, ConfigError> {
    match value.unwrap_or("udp") {
        "udp" => Ok(SipTransport::Udp),
        "tcp" => Ok(SipTransport::Tcp),
        "tls" => Ok(SipTransport::Tls),
        other => Err(ctx.invalid(
            "pbx.transport",
            format!("{other:?} is not one of \"udp\", \"tcp\", \"tls\""),
        )),
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`; `port` when none is written.
fn host_port(ctx: &Ctx<'_>, key: &str, value: &str, port: u16) -> Result<HostPort, ConfigError> {
    split_host_port(value, port).map_err(|why| {
        let reason = format!(
            "{value:?} is not host or host:port like \"pbx.example.com:5060\" or \"[2001:db8::1]:5060\" ({why})"
        );
        ctx.invalid(key, reason)
    })
}

fn split_host_port(value: &str, default_port: u16) -> Result<HostPort, &'static str> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or("no ] after the IPv6 address")?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| "not an IPv6 address in the brackets")?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':').ok_or("junk after ]")?)),
        }
    } else {
        match value.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err("an IPv6 address goes in brackets"),
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
    if host.is_empty() || !host.chars().all(name_char) {
        return Err("the host must be a name or an address");
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("the port must be 1 to 65535"),
        },
    };
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// Characters no SIP URI the daemon builds may hold (it writes them in `<...>`).
fn uri_breaker(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>' | '"' | ',')
}

fn username(ctx: &Ctx<'_>, value: Option<&str>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        let reason = "must be set: the daemon's SIP account (the user part of its address and its digest user name), e.g. username = \"teams-sync\"";
        return Err(ctx.invalid("pbx.username", reason));
    };
    let user = ctx.non_empty("pbx.username", value)?;
    if user.contains(|c: char| uri_breaker(c) || matches!(c, '@' | ':' | ';')) {
        let reason = format!(
            "{user:?} is not the user part of a SIP address like \"teams-sync\" (no spaces, @, :, ;, <, >)"
        );
        return Err(ctx.invalid("pbx.username", reason));
    }
    Ok(user)
}

/// `pbx.password(_file)` or the credential `sip-password`; none of them: no digest auth.
fn password(ctx: &Ctx<'_>, p: &PbxSection) -> Result<Option<super::Secret>, ConfigError> {
    let spec = SecretSpec {
        key: "pbx.password",
        file_key: "pbx.password_file",
        credential: "sip-password",
        inline: p.password.as_ref(),
        file: p.password_file.as_deref().map(|f| ctx.path(f)),
    };
    secret::resolve_optional(spec, ctx.path, ctx.env, &|k| ctx.at(k))
}

fn domain(ctx: &Ctx<'_>, value: Option<&str>, registrar: &HostPort) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(registrar.uri_host());
    };
    let domain = ctx.non_empty("pbx.domain", value)?;
    if domain.contains(|c: char| uri_breaker(c) || matches!(c, '@' | '/' | ';' | '{' | '}')) {
        let reason = format!("{domain:?} is not a SIP domain like \"pbx.example.com\"");
        return Err(ctx.invalid("pbx.domain", reason));
    }
    Ok(domain)
}

fn subscribe_rate(ctx: &Ctx<'_>, value: Option<i64>) -> Result<u32, ConfigError> {
    let Some(rate) = value else {
        return Ok(DEFAULT_SUBSCRIBE_RATE);
    };
    match u32::try_from(rate) {
        Ok(r @ 1..=1000) => Ok(r),
        _ => Err(ctx.invalid(
            "pbx.subscribe_rate",
            format!("must be between 1 and 1000 SUBSCRIBEs per second, got {rate}"),
        )),
    }
}

/// A `sip:` or `sips:` URI with a user and a host; `placeholders` may appear in it.
fn sip_uri(uri: &str, placeholders: &[&str]) -> Result<(), String> {
    let Some(rest) = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))
    else {
        return Err(format!("{uri:?} must begin with \"sip:\" or \"sips:\""));
    };
    let bare = placeholders
        .iter()
        .fold(rest.to_owned(), |s, p| s.replace(p, ""));
    if bare.contains(['{', '}']) {
        let known = match placeholders {
            [] => "none: it is used as written".to_owned(),
            _ => placeholders.join(" and "),
        };
        return Err(format!(
            "{uri:?} has an unknown placeholder (known: {known})"
        ));
    }
    let ok = rest
        .split_once('@')
        .is_some_and(|(user, host)| !user.is_empty() && !host.is_empty());
    if !ok || rest.contains(uri_breaker) {
        return Err(format!(
            "{uri:?} is not a SIP URI like \"sip:1001@pbx.example.com\" (user@host, no spaces)"
        ));
    }
    Ok(())
}

fn watch_uri(ctx: &Ctx<'_>, value: Option<&str>) -> Result<String, ConfigError> {
    let uri = value.unwrap_or(DEFAULT_WATCH_URI);
    sip_uri(uri, &[EXTENSION, DOMAIN]).map_err(|why| ctx.invalid("pbx.watch_uri", why))?;
    if !uri.contains(EXTENSION) {
        let reason = format!("{uri:?} must contain {EXTENSION}, e.g. \"{DEFAULT_WATCH_URI}\"");
        return Err(ctx.invalid("pbx.watch_uri", reason));
    }
    Ok(uri.to_owned())
}

fn watch(
    ctx: &Ctx<'_>,
    table: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    for (extension, uri) in table {
        let key = format!("pbx.watch.{extension}");
        if extension.trim().is_empty() {
            return Err(ctx.invalid(&key, "the extension must not be empty"));
        }
        sip_uri(uri, &[]).map_err(|why| ctx.invalid(&key, why))?;
    }
    Ok(table.clone())
}

fn publish_entity(ctx: &Ctx<'_>, value: Option<&str>) -> Result<String, ConfigError> {
    let entity = value.unwrap_or(DEFAULT_PUBLISH_ENTITY);
    let bare = entity.replace(EXTENSION, "");
    let bad = bare.contains(|c: char| uri_breaker(c) || matches!(c, '@' | ':' | ';' | '{' | '}'));
    if !entity.contains(EXTENSION) || bad {
        let reason = format!(
            "{entity:?} must be the user part of a SIP address with {EXTENSION} in it, like \"{DEFAULT_PUBLISH_ENTITY}\" (no @, :, spaces or other placeholders: the domain is pbx.domain)"
        );
        return Err(ctx.invalid("pbx.publish_entity", reason));
    }
    Ok(entity.to_owned())
}

fn publish_body(ctx: &Ctx<'_>, value: Option<&str>) -> Result<PublishBody, ConfigError> {
    match value.unwrap_or("pidf") {
        "pidf" => Ok(PublishBody::Pidf),
        "dialog-info" => Ok(PublishBody::DialogInfo),
        "both" => Ok(PublishBody::Both),
        other => Err(ctx.invalid(
            "pbx.publish_body",
            format!("{other:?} is not one of \"pidf\", \"dialog-info\", \"both\""),
        )),
    }
}

/// `publish_entity` and `publish_body` say how Teams states are PUBLISHed: without a
/// presence server nothing is, and a key that does nothing is a mistake worth saying.
fn publish_keys_need_a_server(ctx: &Ctx<'_>, server: bool) -> Result<(), ConfigError> {
    if server {
        return Ok(());
    }
    match ["pbx.publish_entity", "pbx.publish_body"]
        .into_iter()
        .find(|k| ctx.written(k))
    {
        Some(key) => Err(ctx.invalid(key, "has no effect without pbx.presence_server")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let hp = |v: &str| split_host_port(v, 5060).map(|h| (h.host, h.port));
        let ok = |host: &str, port| Ok((host.to_owned(), port));
        assert_eq!(hp("pbx.example.com"), ok("pbx.example.com", 5060));
        assert_eq!(hp("pbx.example.com:5080"), ok("pbx.example.com", 5080));
        assert_eq!(hp("10.0.0.1:5070"), ok("10.0.0.1", 5070));
        assert_eq!(hp("[::1]:5062"), ok("::1", 5062));
        assert_eq!(hp("[2001:db8::1]"), ok("2001:db8::1", 5060));
        for bad in [
            "",
            ":5060",
            "::1",
            "2001:db8::1:5060",
            "[::1",
            "[x]:5060",
            "[::1]5060",
            "pbx:0",
            "pbx:65536",
            "pbx:sip",
            "sip:pbx.example.com",
            "pbx example",
            "user@pbx",
        ] {
            assert!(hp(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sip_uris() {
        let both = [EXTENSION, DOMAIN];
        assert!(sip_uri("sip:{extension}@{domain}", &both).is_ok());
        assert!(sip_uri("sips:1001@pbx.example.com", &[]).is_ok());
        assert!(sip_uri("sip:1001@[::1]:5060;transport=tcp", &[]).is_ok());
        for (uri, why) in [
            ("1001@pbx", "must begin"),
            ("tel:1001", "must begin"),
            ("sip:{ext}@{domain}", "unknown placeholder"),
            ("sip:pbx.example.com", "user@host"),
            ("sip:@pbx", "user@host"),
            ("sip:1001@", "user@host"),
            ("sip:10 01@pbx", "no spaces"),
        ] {
            let e = sip_uri(uri, &both).unwrap_err();
            assert!(e.contains(why), "{uri}: {e}");
        }
        let e = sip_uri("sip:{extension}@pbx", &[]).unwrap_err();
        assert!(e.contains("used as written"), "{e}");
    }
}
