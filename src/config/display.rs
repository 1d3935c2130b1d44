//! `Display` for [`Config`]: the effective configuration as TOML, for `check --print-config`
//! (kanidm's `--configtest`). Defaults are filled in, paths resolved, the mapping table shown
//! in full; secrets are only said to be set, in comments, so the output never holds them.

use std::fmt;
use std::time::Duration;

use super::{
    AsteriskPbxConfig, AzureCredential, CaFile, Config, HttpPbxConfig, NotificationsConfig,
    PbxConfig, SipPbxConfig, StoreConfig, Template,
};

/// A TOML string literal (escaped).
fn q(s: &str) -> toml::Value {
    toml::Value::String(s.to_owned())
}

fn d(v: Duration) -> toml::Value {
    q(&humantime::format_duration(v).to_string())
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# Effective configuration of {}", self.source.display())?;
        let a = &self.azure;
        writeln!(
            f,
            "\n[azure]\ntenant_id = {}\nclient_id = {}",
            q(&a.tenant_id),
            q(&a.client_id)
        )?;
        match &a.credential {
            AzureCredential::Secret(secret) => writeln!(f, "# client_secret: set ({secret})")?,
            AzureCredential::Certificate(c) => writeln!(
                f,
                "client_certificate_file = {}\nclient_key_file = {}",
                q(&c.certificate_file.to_string_lossy()),
                q(&c.key_file.to_string_lossy())
            )?,
        }
        writeln!(
            f,
            "login_url = {}\ngraph_url = {}",
            q(a.login_url.as_str()),
            q(a.graph_url.as_str())
        )?;
        let s = &self.sync;
        writeln!(
            f,
            "\n[sync]\nstate_db = {}",
            q(&s.state_db.to_string_lossy())
        )?;
        match s.poll_interval {
            crate::config::PollInterval::Auto => writeln!(f, "poll_interval = \"auto\"")?,
            crate::config::PollInterval::Every(every) => {
                writeln!(f, "poll_interval = {}", d(every))?
            }
        }
        writeln!(
            f,
            "graph_budget = {}\ngraph_budget_window = {}\npoll_budget_share = {}\npoll_min_interval = {}",
            s.graph_budget,
            d(s.graph_budget_window),
            s.poll_budget_share,
            d(s.poll_min_interval)
        )?;
        writeln!(f, "pbx_dnd_to_teams = {}", q(s.pbx_dnd_to_teams.as_str()))?;
        for (key, value) in [
            ("in_call_expiration", s.in_call_expiration),
            ("resolve_interval", s.resolve_interval),
            ("shutdown_timeout", s.shutdown_timeout),
            ("recovery_grace", s.recovery_grace),
            ("request_timeout", s.request_timeout),
        ] {
            writeln!(f, "{key} = {}", d(value))?;
        }
        writeln!(
            f,
            "\n[users]\nfile = {}",
            q(&self.users.file.to_string_lossy())
        )?;
        if let Some(g) = &self.users.entra_group {
            writeln!(f, "entra_group = {}", q(&g.group))?;
            writeln!(
                f,
                "extension_attribute = {}",
                q(&g.extension_attribute.to_string())
            )?;
            if let Some(re) = &g.extension_regex {
                writeln!(f, "extension_regex = {}", q(re.as_str()))?;
            }
        }
        pbx(f, &self.pbx)?;
        for table in ["activity", "availability"] {
            writeln!(f, "\n[mapping.{table}]")?;
            for (_, teams, state) in self.mapping.rules().filter(|(t, _, _)| *t == table) {
                writeln!(f, "{teams} = {}", q(state))?;
            }
        }
        match &self.notifications {
            Some(n) => notifications(f, n)?,
            None => writeln!(f, "\n[notifications]\nenabled = false")?,
        }
        match &self.store {
            StoreConfig::Sqlite => writeln!(f, "\n[store]\nkind = \"sqlite\"")?,
            StoreConfig::Postgres(pg) => {
                writeln!(
                    f,
                    "\n[store]\nkind = \"postgres\"\npostgres_url = {}",
                    q(&pg.url)
                )?;
                let password = if pg.password.is_some() { "set" } else { "none" };
                writeln!(
                    f,
                    "# password: {password} (postgres_password_file or the postgres-password credential)"
                )?;
                if let Some(ca) = &pg.ca_file {
                    writeln!(f, "ca_file = {}", q(&ca.path.display().to_string()))?;
                }
            }
        }
        match &self.ha {
            Some(h) => writeln!(
                f,
                "\n[ha]\nenabled = true\nnode = {}\nlease = {}",
                q(&h.node),
                q(&humantime::format_duration(h.lease).to_string())
            )?,
            None => writeln!(f, "\n[ha]\nenabled = false")?,
        }
        writeln!(f, "\n[log]\nlevel = {}", q(&self.log.level))?;
        match &self.metrics {
            Some(m) => writeln!(f, "\n[metrics]\nlisten = {}", q(&m.listen.to_string())),
            None => writeln!(f, "\n# [metrics]: not set, no metrics listener"),
        }
    }
}

/// `[pbx]`: each kind's keys, the shared `ca_file` once, then the tables.
fn pbx(f: &mut fmt::Formatter<'_>, p: &PbxConfig) -> fmt::Result {
    let kinds: Vec<String> = p.kinds().into_iter().map(|k| q(k).to_string()).collect();
    match kinds.as_slice() {
        [one] => writeln!(f, "\n[pbx]\nkind = {one}")?,
        _ => writeln!(f, "\n[pbx]\nkind = [{}]", kinds.join(", "))?,
    }
    if let Some(h) = &p.http {
        http(f, h)?;
    }
    if let Some(a) = &p.asterisk {
        asterisk(f, a, p.asterisk_reads_calls())?;
    }
    if let Some(s) = &p.sip {
        sip(f, s)?;
    }
    let ca = [
        p.http.as_ref().and_then(|h| h.ca_file.as_ref()),
        p.asterisk.as_ref().and_then(|a| a.ca_file.as_ref()),
        p.sip.as_ref().and_then(|s| s.ca_file.as_ref()),
    ];
    ca_file(f, ca.into_iter().flatten().next())?;
    if let Some(a) = &p.asterisk {
        asterisk_tables(f, a, p.asterisk_reads_calls())?;
    }
    if let Some(s) = &p.sip {
        writeln!(f, "\n[pbx.watch]")?;
        for (extension, uri) in &s.watch {
            writeln!(f, "{} = {}", q(extension), q(uri))?;
        }
    }
    Ok(())
}

fn http(f: &mut fmt::Formatter<'_>, h: &HttpPbxConfig) -> fmt::Result {
    writeln!(f, "listen = {}", q(&h.listen.to_string()))?;
    writeln!(f, "# token: set ({})", h.token)?;
    match &h.push_url {
        Some(url) => writeln!(f, "push_url = {}", q(url.as_str()))?,
        None => writeln!(f, "# push_url: not set, no push to the PBX")?,
    }
    match &h.push_token {
        Some(t) => writeln!(f, "# push_token: set ({t})")?,
        None => writeln!(f, "# push_token: not set, pushes carry no token")?,
    }
    writeln!(f, "push_timeout = {}", d(h.push_timeout))
}

/// The keys of `"sip"` (the password only said to be set).
fn sip(f: &mut fmt::Formatter<'_>, s: &SipPbxConfig) -> fmt::Result {
    writeln!(f, "registrar = {}", q(&s.registrar.to_string()))?;
    match &s.proxy {
        Some(p) => writeln!(f, "proxy = {}", q(&p.to_string()))?,
        None => writeln!(f, "# proxy: not set, requests go to the registrar")?,
    }
    writeln!(f, "transport = {}", q(s.transport.as_str()))?;
    writeln!(f, "username = {}", q(&s.username))?;
    match &s.password {
        Some(p) => writeln!(f, "# password: set ({p})")?,
        None => writeln!(f, "# password: not set, no digest authentication")?,
    }
    writeln!(f, "domain = {}", q(&s.domain))?;
    writeln!(f, "register = {}", s.register)?;
    match &s.local_address {
        Some(a) => writeln!(f, "local_address = {}", q(&a.to_string()))?,
        None => writeln!(f, "# local_address: not set, the system picks")?,
    }
    writeln!(f, "subscribe_expires = {}", d(s.subscribe_expires))?;
    writeln!(f, "subscribe_rate = {}", s.subscribe_rate)?;
    writeln!(f, "watch_uri = {}", q(&s.watch_uri))?;
    match &s.presence_server {
        Some(server) => {
            writeln!(f, "presence_server = {}", q(&server.to_string()))?;
            writeln!(f, "publish_entity = {}", q(&s.publish_entity))?;
            writeln!(f, "publish_body = {}", q(s.publish_body.as_str()))
        }
        None => writeln!(
            f,
            "# presence_server: not set, Teams states are not PUBLISHed"
        ),
    }
}

fn ca_file(f: &mut fmt::Formatter<'_>, ca: Option<&CaFile>) -> fmt::Result {
    match ca {
        Some(ca) => writeln!(f, "ca_file = {}", q(&ca.path.to_string_lossy())),
        None => writeln!(f, "# ca_file: not set, the system's CAs only"),
    }
}

fn notifications(f: &mut fmt::Formatter<'_>, n: &NotificationsConfig) -> fmt::Result {
    writeln!(f, "\n[notifications]\nenabled = true")?;
    writeln!(f, "public_url = {}", q(n.public_url.as_str()))?;
    writeln!(f, "listen = {}", q(&n.listen.to_string()))?;
    let accounts: Vec<String> = n.accounts.iter().map(|a| q(a).to_string()).collect();
    writeln!(f, "accounts = [{}]", accounts.join(", "))?;
    writeln!(f, "include_resource_data = {}", n.include_resource_data)?;
    writeln!(
        f,
        "reconciliation_interval = {}",
        d(n.reconciliation_interval)
    )?;
    writeln!(f, "delete_on_shutdown = {}", n.delete_on_shutdown)?;
    if let Some(tls) = &n.tls {
        writeln!(f, "tls_cert_file = {}", q(&tls.cert.to_string_lossy()))?;
        writeln!(f, "tls_key_file = {}", q(&tls.key.to_string_lossy()))?;
    }
    Ok(())
}

fn list(items: Vec<&str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| q(s).to_string()).collect();
    format!("[{}]", quoted.join(", "))
}

/// The keys of `"asterisk"`; the devices only when it reads call state (with `"sip"` listed
/// they are refused).
fn asterisk(f: &mut fmt::Formatter<'_>, a: &AsteriskPbxConfig, reads_calls: bool) -> fmt::Result {
    let template = |t: &Option<Template>| q(t.as_ref().map_or("", Template::as_str));
    writeln!(f, "ari_url = {}", q(a.ari_url.as_str()))?;
    writeln!(f, "ari_username = {}", q(&a.ari_username))?;
    writeln!(f, "# ari_password: set ({})", a.ari_password)?;
    writeln!(f, "ari_app = {}", q(&a.ari_app))?;
    if reads_calls {
        let defaults = a.default_devices.iter().map(Template::as_str).collect();
        writeln!(f, "default_devices = {}", list(defaults))?;
    }
    writeln!(f, "device_state = {}", template(&a.device_state))?;
    writeln!(f, "presence_state = {}", template(&a.presence_state))?;
    writeln!(f, "dnd_device = {}", template(&a.dnd_device))?;
    match &a.ami {
        Some(ami) => {
            writeln!(f, "ami_address = {}", q(&ami.address))?;
            writeln!(f, "ami_username = {}", q(&ami.username))?;
            writeln!(f, "# ami_password: set ({})", ami.password)?;
        }
        None => writeln!(f, "# ami_address: not set, no AMI")?,
    }
    writeln!(f, "users_from_voicemail = {}", a.users_from_voicemail)
}

fn asterisk_tables(
    f: &mut fmt::Formatter<'_>,
    a: &AsteriskPbxConfig,
    reads_calls: bool,
) -> fmt::Result {
    if reads_calls {
        writeln!(f, "\n[pbx.devices]")?;
        for (extension, devices) in &a.devices {
            let devices = devices.iter().map(String::as_str).collect();
            writeln!(f, "{} = {}", q(extension), list(devices))?;
        }
    }
    for (name, s) in &a.states {
        writeln!(
            f,
            "\n[pbx.states.{name}]\ndevice = {}\npresence = {}",
            q(&s.device),
            q(&s.presence)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::path::Path;

    use super::*;

    const TEXT: &str = r#"
[azure]
tenant_id = "t \"quoted\""
client_id = "c"
client_secret = "top-secret-1"
[pbx]
token = "top-secret-2"
push_url = "http://pbx.example/presence"
[mapping.activity]
InAMeeting = "busy"
"#;

    #[test]
    fn output_is_redacted_and_parses_back_to_the_same_config() {
        let source = Path::new("/etc/p/config.toml");
        let c = Config::from_str_with(TEXT, source, &|_| None).unwrap();
        let shown = c.to_string();
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(
            shown.contains("# client_secret: set ([redacted])"),
            "{shown}"
        );
        assert!(shown.contains("InAMeeting = \"busy\""), "{shown}");
        assert!(shown.contains("# [metrics]: not set"), "{shown}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client-secret"), "top-secret-1").unwrap();
        std::fs::write(dir.path().join("pbx-token"), "top-secret-2").unwrap();
        let creds: OsString = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
        let again = Config::from_str_with(&shown, source, &env).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn asterisk_and_notifications_print_and_parse_back() {
        let text = r#"
[azure]
tenant_id = "t"
client_id = "c"
client_secret = "top-secret-1"
[pbx]
kind = "asterisk"
ari_password = "top-secret-3"
presence_state = ""
ami_address = "127.0.0.1:5038"
ami_password = "top-secret-4"
users_from_voicemail = true
[pbx.devices]
1001 = ["PJSIP/1001", "PJSIP/1011"]
[pbx.states.dnd]
device = "INUSE"
[notifications]
enabled = true
public_url = "https://sync.example/notify"
accounts = ["a@contoso.com"]
[metrics]
listen = "127.0.0.1:0"
"#;
        let source = Path::new("/etc/p/config.toml");
        let c = Config::from_str_with(text, source, &|_| None).unwrap();
        let shown = c.to_string();
        assert!(!shown.contains("top-secret"), "{shown}");
        assert!(shown.contains("presence_state = \"\""), "{shown}");
        assert!(
            shown.contains("[metrics]\nlisten = \"127.0.0.1:0\""),
            "{shown}"
        );
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in [
            ("client-secret", "top-secret-1"),
            ("ari-password", "top-secret-3"),
            ("ami-password", "top-secret-4"),
        ] {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        let creds: OsString = dir.path().as_os_str().to_owned();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
        let again = Config::from_str_with(&shown, source, &env).unwrap();
        assert_eq!(again, c);
    }
}
