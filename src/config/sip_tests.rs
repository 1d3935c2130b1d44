//! `pbx.kind` as a list, and the keys of `kind = "sip"`: defaults, each key's errors, the
//! `sip-password` credential, keys of kinds not listed, and `--print-config`.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::*;

const AZURE: &str = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n";
const SOURCE: &str = "/etc/p/config.toml";

/// `[pbx]` with `lines` after the azure section, no systemd credentials.
fn load(pbx: &str) -> Result<Config, ConfigError> {
    load_with(pbx, &|_| None)
}

fn load_with(pbx: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let text = format!("{AZURE}[pbx]\n{pbx}");
    Config::from_str_with(&text, Path::new(SOURCE), env)
}

fn err(pbx: &str) -> String {
    match load(pbx) {
        Ok(_) => panic!("should fail:\n{pbx}"),
        Err(e) => e.to_string(),
    }
}

fn sip(c: &Config) -> &SipPbxConfig {
    c.pbx.sip.as_ref().expect("\"sip\" in kind")
}

const SIP: &str = "kind = \"sip\"\nregistrar = \"pbx.example.com\"\nusername = \"teams-sync\"\n";

fn host_port(host: &str, port: u16) -> HostPort {
    HostPort {
        host: host.to_owned(),
        port,
    }
}

#[test]
fn a_sip_config_with_only_the_required_keys_has_the_documented_defaults() {
    let c = load(SIP).unwrap();
    let want = SipPbxConfig::new(host_port("pbx.example.com", 5060), "teams-sync");
    assert_eq!(sip(&c), &want);
    assert_eq!(want.domain, "pbx.example.com");
    assert_eq!(want.subscribe_expires, Duration::from_secs(600));
    assert_eq!(want.watch_uri_of("1001"), "sip:1001@pbx.example.com");
    assert_eq!(
        want.publish_uri_of("1001"),
        "sip:teams-1001@pbx.example.com"
    );
    assert_eq!(
        (c.pbx.http.is_some(), c.pbx.asterisk.is_some()),
        (false, false)
    );
    assert_eq!(c.pbx.kinds(), ["sip"]);
}

#[test]
fn every_sip_key_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/pbx-ca.pem");
    std::fs::write(dir.path().join("sip-pw"), "file-s3cret\n").unwrap();
    let text = format!(
        "{AZURE}[pbx]\nkind = \"sip\"\nregistrar = \"[2001:db8::1]\"\nproxy = \"edge.example.com:5081\"\n\
         transport = \"tls\"\nca_file = \"{}\"\nusername = \"teams\"\nauth_username = \"a1b2c3\"\npassword_file = \"sip-pw\"\n\
         domain = \"example.com\"\nregister = false\nlocal_address = \"127.0.0.1:5070\"\n\
         subscribe_expires = \"1h\"\nsubscribe_rate = 1000\nwatch_uri = \"sips:{{extension}}-blf@{{domain}}\"\n\
         presence_server = \"presence.example.com\"\npublish_entity = \"t{{extension}}\"\n\
         publish_body = \"both\"\n[pbx.watch]\n1001 = \"sip:desk-1001@example.com\"\n",
        ca.display()
    );
    let c = Config::from_str_with(&text, &dir.path().join("c.toml"), &|_| None).unwrap();
    let s = sip(&c);
    assert_eq!(s.registrar, host_port("2001:db8::1", 5061), "tls: 5061");
    assert_eq!(s.registrar.to_string(), "[2001:db8::1]:5061");
    assert_eq!(s.proxy, Some(host_port("edge.example.com", 5081)));
    assert_eq!(s.next_hop(), s.proxy.as_ref().unwrap());
    assert_eq!(s.transport, SipTransport::Tls);
    assert_eq!(s.ca_file.as_ref().unwrap().certs.len(), 1);
    assert_eq!(s.password.as_ref().unwrap().expose(), "file-s3cret");
    assert_eq!(s.auth_username.as_deref(), Some("a1b2c3"));
    assert_eq!((s.domain.as_str(), s.register), ("example.com", false));
    assert_eq!(s.local_address, Some("127.0.0.1:5070".parse().unwrap()));
    assert_eq!(s.subscribe_expires, Duration::from_secs(3600));
    assert_eq!(s.subscribe_rate, 1000);
    assert_eq!(s.watch_uri_of("1002"), "sips:1002-blf@example.com");
    assert_eq!(s.watch_uri_of("1001"), "sip:desk-1001@example.com");
    assert_eq!(
        s.presence_server,
        Some(host_port("presence.example.com", 5061))
    );
    assert_eq!(s.publish_uri_of("1001"), "sip:t1001@example.com");
    assert_eq!(s.publish_body, PublishBody::Both);
}

#[test]
fn an_ipv6_registrar_is_the_domain_in_brackets() {
    let c = load("kind = \"sip\"\nregistrar = \"[::1]:5062\"\nusername = \"u\"\n").unwrap();
    assert_eq!(sip(&c).domain, "[::1]");
    assert_eq!(sip(&c).watch_uri_of("1001"), "sip:1001@[::1]");
}

/// The password: inline, from a file, from the systemd credential `sip-password`, or none at
/// all (no digest auth); never inline and file both; never shown.
#[test]
fn the_sip_password_comes_from_the_key_the_file_or_the_credential_sip_password() {
    let dir = tempfile::tempdir().unwrap();
    let d: OsString = dir.path().as_os_str().to_owned();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
    let password = |pbx: &str| {
        let c = load_with(pbx, &env).unwrap();
        sip(&c).password.as_ref().map(|p| p.expose().to_owned())
    };
    assert_eq!(password(SIP), None, "nothing anywhere: no auth");
    std::fs::write(dir.path().join("credentials_sip-password"), "dir-s3cret\n").unwrap();
    assert_eq!(password(SIP).as_deref(), Some("dir-s3cret"));
    std::fs::write(dir.path().join("sip-password"), " cred-s3cret \n").unwrap();
    assert_eq!(password(SIP).as_deref(), Some("cred-s3cret"));
    let inline = format!("{SIP}password = \"inline-s3cret\"\n");
    assert_eq!(password(&inline).as_deref(), Some("inline-s3cret"));
    let c = load_with(&inline, &env).unwrap();
    assert!(!format!("{c:?}{c}").contains("s3cret"), "{c}");
    let e = err(&format!("{inline}password_file = \"pw\"\n"));
    assert!(
        e.contains("pbx.password (line") && e.contains("not both"),
        "{e}"
    );
    let e = err(&format!("{SIP}password_file = \"absent\"\n"));
    assert!(
        e.contains("pbx.password_file") && e.contains("/etc/p/absent"),
        "{e}"
    );
    let e = err(&format!("{SIP}password = 5\n"));
    assert!(e.contains("pbx.password") && !e.contains('5'), "{e}");
}

/// Each key's mistakes: the error names the key (and its line) and the file.
#[test]
fn each_sip_key_error_names_the_key_and_the_file() {
    let base = "kind = \"sip\"\nusername = \"u\"\n";
    let with = |extra: &str| format!("{base}registrar = \"pbx\"\n{extra}\n");
    let cases: Vec<(String, &str, &str)> = vec![
        (base.to_owned(), "pbx.registrar", "must be set"),
        (
            "kind = \"sip\"\nregistrar = \"pbx\"\n".to_owned(),
            "pbx.username",
            "must be set",
        ),
        (
            format!("{base}registrar = \"::1\""),
            "pbx.registrar (line",
            "in brackets",
        ),
        (
            format!("{base}registrar = \"pbx:0\""),
            "pbx.registrar",
            "1 to 65535",
        ),
        (
            format!("{base}registrar = \"sip:pbx\""),
            "pbx.registrar",
            "host:port",
        ),
        (with("proxy = \"a b\""), "pbx.proxy", "host:port"),
        (
            with("transport = \"sctp\""),
            "pbx.transport",
            "\"udp\", \"tcp\", \"tls\"",
        ),
        (
            "kind = \"sip\"\nregistrar = \"pbx\"\nusername = \" \"\n".to_owned(),
            "pbx.username",
            "must not be empty",
        ),
        (
            "kind = \"sip\"\nregistrar = \"pbx\"\nusername = \"u@pbx\"\n".to_owned(),
            "pbx.username",
            "user part",
        ),
        (with("domain = \"a b\""), "pbx.domain", "SIP domain"),
        (with("register = \"yes\""), "pbx.register", "bool"),
        (
            with("local_address = \"pbx:5070\""),
            "pbx.local_address",
            "address:port",
        ),
        (
            with("subscribe_expires = \"59s\""),
            "pbx.subscribe_expires",
            "between 1m and 1day",
        ),
        (
            with("subscribe_expires = \"2d\""),
            "pbx.subscribe_expires",
            "between",
        ),
        (
            with("subscribe_expires = \"soon\""),
            "pbx.subscribe_expires",
            "not a duration",
        ),
        (
            with("subscribe_rate = 0"),
            "pbx.subscribe_rate",
            "between 1 and 1000",
        ),
        (
            with("subscribe_rate = 1001"),
            "pbx.subscribe_rate",
            "between 1 and 1000",
        ),
        (
            with("subscribe_rate = -5"),
            "pbx.subscribe_rate",
            "between 1 and 1000",
        ),
        (
            with("watch_uri = \"{extension}@{domain}\""),
            "pbx.watch_uri",
            "\"sip:\" or \"sips:\"",
        ),
        (
            with("watch_uri = \"sip:1001@{domain}\""),
            "pbx.watch_uri",
            "must contain {extension}",
        ),
        (
            with("watch_uri = \"sip:{ext}@{domain}\""),
            "pbx.watch_uri",
            "unknown placeholder",
        ),
        (
            with("[pbx.watch]\n1001 = \"tel:1001\""),
            "pbx.watch.1001",
            "\"sip:\" or \"sips:\"",
        ),
        (
            with("[pbx.watch]\n1001 = \"sip:{extension}@pbx\""),
            "pbx.watch.1001",
            "used as written",
        ),
        (
            with("presence_server = \"a/b\""),
            "pbx.presence_server",
            "host:port",
        ),
        (
            with("presence_server = \"p\"\npublish_entity = \"teams\""),
            "pbx.publish_entity",
            "{extension}",
        ),
        (
            with("presence_server = \"p\"\npublish_entity = \"t-{extension}@pbx\""),
            "pbx.publish_entity",
            "no @",
        ),
        (
            with("presence_server = \"p\"\npublish_body = \"xml\""),
            "pbx.publish_body",
            "\"pidf\", \"dialog-info\", \"both\"",
        ),
        (
            with("publish_body = \"pidf\""),
            "pbx.publish_body",
            "without pbx.presence_server",
        ),
        (
            with("publish_entity = \"t{extension}\""),
            "pbx.publish_entity",
            "without",
        ),
        (
            with("ca_file = \"ca.pem\""),
            "pbx.ca_file",
            "unless pbx.transport = \"tls\"",
        ),
        (
            with("transport = \"tls\"\nca_file = \"ca.pem\""),
            "pbx.ca_file",
            "/etc/p/ca.pem",
        ),
        (
            with("token = \"t\""),
            "pbx.token",
            "applies to kind = \"http\" only",
        ),
    ];
    for (pbx, key, why) in cases {
        let e = err(&pbx);
        assert!(e.starts_with(&format!("{SOURCE}: ")), "{pbx}: {e}");
        assert!(
            e.contains(key) && e.contains(why),
            "{pbx}\n{e}\nwants {key} and {why}"
        );
    }
}

#[test]
fn the_kind_is_one_kind_or_sip_with_one_other() {
    let creds = tempfile::tempdir().unwrap();
    for (name, value) in [
        ("client-secret", "s"),
        ("pbx-token", "t"),
        ("ari-password", "p"),
    ] {
        std::fs::write(creds.path().join(name), value).unwrap();
    }
    let d: OsString = creds.path().as_os_str().to_owned();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
    let sip_keys = "registrar = \"pbx\"\nusername = \"u\"\n";
    for (kind, kinds, reads) in [
        ("\"http\"", vec!["http"], false),
        ("[\"http\"]", vec!["http"], false),
        ("\"asterisk\"", vec!["asterisk"], true),
        ("\"sip\"", vec!["sip"], false),
        ("[\"sip\", \"http\"]", vec!["sip", "http"], false),
        ("[\"http\", \"sip\"]", vec!["sip", "http"], false),
        ("[\"sip\", \"asterisk\"]", vec!["sip", "asterisk"], false),
        ("[\"asterisk\", \"sip\"]", vec!["sip", "asterisk"], false),
    ] {
        let keys = if kind.contains("sip") { sip_keys } else { "" };
        let c = load_with(&format!("kind = {kind}\n{keys}"), &env).unwrap();
        assert_eq!(c.pbx.kinds(), kinds, "{kind}");
        assert_eq!(c.pbx.asterisk_reads_calls(), reads, "{kind}");
        let watches = reads || kinds.contains(&"sip");
        assert_eq!(c.pbx.watches_users(), watches, "{kind}");
        let shown = c.to_string();
        let again = Config::from_str_with(&shown, Path::new(SOURCE), &env).unwrap();
        assert_eq!(
            again, c,
            "{kind}: --print-config reads back the same:\n{shown}"
        );
    }
    for (kind, why) in [
        ("\"freeswitch\"", "unknown kind \"freeswitch\""),
        ("\"SIP\"", "unknown kind \"SIP\""),
        ("[]", "lists no kind"),
        ("[\"sip\", \"sip\"]", "lists \"sip\" twice"),
        ("[\"http\", \"asterisk\"]", "cannot be combined"),
        ("[\"sip\", \"http\", \"asterisk\"]", "cannot be combined"),
        ("[\"sip\", \"tel\"]", "unknown kind \"tel\""),
        ("5", "a kind or a list of kinds"),
        ("[\"sip\", 5]", "a kind or a list of kinds"),
    ] {
        let e = err(&format!("kind = {kind}\n{sip_keys}"));
        assert!(
            e.contains(&format!("{SOURCE}: pbx.kind (line")),
            "{kind}: {e}"
        );
        assert!(e.contains(why), "{kind}: {e}");
        let supported = "\"http\", \"asterisk\", \"sip\", [\"sip\", \"http\"]";
        assert!(e.contains(supported), "{kind}: {e}");
    }
}

/// A key of a kind not listed is refused, naming the kind it belongs to and the kinds listed.
#[test]
fn keys_of_a_kind_not_listed_are_refused() {
    let sip_keys = "registrar = \"pbx\"\nusername = \"u\"\n";
    for (pbx, key, why) in [
        (
            "kind = \"http\"\ntoken = \"t\"\nregistrar = \"pbx\"\n".to_owned(),
            "pbx.registrar (line 8)",
            "applies to kind = \"sip\" only; remove it (pbx.kind is \"http\")",
        ),
        (
            "token = \"t\"\n[pbx.watch]\n1001 = \"sip:1001@pbx\"\n".to_owned(),
            "pbx.watch",
            "kind = \"sip\" only",
        ),
        (
            "kind = \"asterisk\"\nari_password = \"p\"\npublish_body = \"pidf\"\n".to_owned(),
            "pbx.publish_body",
            "kind = \"sip\" only; remove it (pbx.kind is \"asterisk\")",
        ),
        (
            format!("kind = \"sip\"\n{sip_keys}listen = \"127.0.0.1:1\"\n"),
            "pbx.listen",
            "kind = \"http\" only; remove it (pbx.kind is \"sip\")",
        ),
        (
            format!(
                "kind = [\"sip\", \"http\"]\n{sip_keys}token = \"t\"\nari_url = \"http://a/ari\"\n"
            ),
            "pbx.ari_url",
            "kind = \"asterisk\" only; remove it (pbx.kind is [\"sip\", \"http\"])",
        ),
        (
            format!(
                "kind = [\"asterisk\", \"sip\"]\n{sip_keys}ari_password = \"p\"\ntoken = \"t\"\n"
            ),
            "pbx.token",
            "(pbx.kind is [\"asterisk\", \"sip\"])",
        ),
        (
            format!(
                "kind = [\"sip\", \"asterisk\"]\n{sip_keys}ari_password = \"p\"\ndefault_devices = [\"PJSIP/{{extension}}\"]\n"
            ),
            "pbx.default_devices",
            "has no effect with \"sip\" in pbx.kind",
        ),
        (
            format!(
                "kind = [\"sip\", \"asterisk\"]\n{sip_keys}ari_password = \"p\"\n[pbx.devices]\n1001 = [\"PJSIP/1001\"]\n"
            ),
            "pbx.devices",
            "[pbx.watch]",
        ),
    ] {
        let e = err(&pbx);
        assert!(e.contains(key) && e.contains(why), "{pbx}\n{e}");
    }
}

/// `ca_file` is every kind's: with `["sip", "http"]` over UDP it is the push's alone.
#[test]
fn the_ca_file_is_shared_by_the_kinds_that_use_it() {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/pbx-ca.pem");
    let kinds =
        "kind = [\"sip\", \"http\"]\nregistrar = \"pbx\"\nusername = \"u\"\ntoken = \"t\"\n";
    let ca_line = format!("ca_file = \"{}\"\n", ca.display());
    let c = load(&format!("{kinds}{ca_line}")).unwrap();
    assert!(c.pbx.http.as_ref().unwrap().ca_file.is_some());
    assert_eq!(sip(&c).ca_file, None, "udp: no TLS to check");
    let c = load(&format!("{kinds}transport = \"tls\"\n{ca_line}")).unwrap();
    assert_eq!(sip(&c).ca_file, c.pbx.http.as_ref().unwrap().ca_file);
    assert_eq!(sip(&c).registrar.port, 5061);
}

/// The commented-out `kind = "sip"` example of `config.example.toml`, uncommented.
fn example_sip_block() -> String {
    let example = include_str!("../../config.example.toml");
    let start = example
        .find("# ---- kind = \"sip\"")
        .expect("the sip example");
    example[start..]
        .lines()
        .skip_while(|l| *l != "# [pbx]")
        .take_while(|l| !l.is_empty())
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The sip example loads, and each `# Default: key = value` line in it is the code's default.
#[test]
fn the_sip_example_loads_and_its_default_lines_match_the_code() {
    let block = example_sip_block();
    let text = format!("{AZURE}{block}");
    let c = Config::from_str_with(&text, Path::new(SOURCE), &|_| None).unwrap();
    assert_eq!(c.pbx.kinds(), ["sip"]);
    assert_eq!(sip(&c).registrar, host_port("pbx.example.com", 5060));
    assert_eq!(
        sip(&c).watch_uri_of("1001"),
        "sip:desk-1001@pbx.example.com"
    );
    let required: String = block
        .lines()
        .filter(|l| l.starts_with("registrar = ") || l.starts_with("username = "))
        .map(|l| format!("{l}\n"))
        .collect();
    let base = format!("kind = \"sip\"\n{required}presence_server = \"p\"\n");
    let want = load(&base).unwrap();
    let mut checked = 0;
    for line in block.lines() {
        let Some((key, value)) = line
            .strip_prefix("# Default: ")
            .and_then(|d| d.split_once(" = "))
        else {
            continue;
        };
        let got = load(&format!("{base}{key} = {value}\n")).unwrap();
        assert_eq!(
            got, want,
            "pbx.{key}: its Default line disagrees with the code"
        );
        checked += 1;
    }
    assert!(checked >= 7, "only {checked} Default lines checked");
}
