//! Whole-file tests: the shipped examples, the fixture directories, error positions, redaction.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::sync::types::TeamsPresence;

const EXAMPLE: &str = include_str!("../../config.example.toml");
const MINIMAL: &str = include_str!("../../config.minimal.toml");

/// The client secret the config holds (the tests' configs use one).
fn secret(c: &Config) -> &str {
    match &c.azure.credential {
        AzureCredential::Secret(s) => s.expose(),
        AzureCredential::Certificate(_) => panic!("a certificate, not a secret"),
    }
}

/// A directory with both systemd credentials, and an env lookup that points at it.
struct Creds {
    dir: tempfile::TempDir,
}

impl Creds {
    fn new() -> Creds {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client-secret"), "cred-client-secret\n").unwrap();
        std::fs::write(dir.path().join("pbx-token"), "cred-pbx-token\n").unwrap();
        Creds { dir }
    }

    fn env(&self) -> impl Fn(&str) -> Option<OsString> + use<> {
        let d = self.dir.path().as_os_str().to_owned();
        move |k| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone())
    }
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn http(c: &Config) -> &HttpPbxConfig {
    c.pbx.http.as_ref().expect("kind = \"http\"")
}

fn parse_err(text: &str) -> String {
    let creds = Creds::new();
    Config::from_str_with(text, Path::new("/etc/p/config.toml"), &creds.env())
        .unwrap_err()
        .to_string()
}

#[test]
fn example_parses_with_its_files_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = format!("{}/", dir.path().display());
    let text = EXAMPLE.replace("/etc/pbx-teams-presence/", &root);
    // Its secrets come from the systemd credentials directory (the shipped units).
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("client-secret"), "example-secret\n").unwrap();
    std::fs::write(creds.join("pbx-token"), "example-token").unwrap();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds.clone().into_os_string());
    let c = Config::from_str_with(&text, &dir.path().join("config.toml"), &env).unwrap();
    assert_eq!(secret(&c), "example-secret");
    assert_eq!(http(&c).token.expose(), "example-token");
    assert_eq!(c.users.file, dir.path().join("users.csv"));
    assert_eq!(c.sync.poll_interval, PollInterval::Auto);
    assert_eq!(
        (c.sync.graph_budget, c.sync.graph_budget_window),
        (1500, Duration::from_secs(30))
    );
    assert_eq!(c.sync.poll_budget_share, 0.5);
    assert_eq!(c.sync.poll_min_interval, Duration::from_secs(1));
    assert_eq!(
        http(&c).push_url.as_ref().unwrap().as_str(),
        "http://127.0.0.1:8080/presence"
    );
    assert_eq!(
        c.mapping
            .state_for(&TeamsPresence::new("Busy", "InAMeeting")),
        "busy"
    );
}

#[test]
fn minimal_parses_with_systemd_credentials_and_defaults() {
    let creds = Creds::new();
    let source = Path::new("/etc/pbx-teams-presence/config.toml");
    let c = Config::from_str_with(MINIMAL, source, &creds.env()).unwrap();
    assert_eq!(secret(&c), "cred-client-secret");
    assert_eq!(http(&c).token.expose(), "cred-pbx-token");
    assert_eq!(c.users.file, Path::new("/etc/pbx-teams-presence/users.csv"));
    assert_eq!(c.sync.state_db, Path::new(DEFAULT_STATE_DB));
    assert_eq!(c.sync.in_call_expiration, Duration::from_secs(300));
    assert_eq!(http(&c).listen.to_string(), "127.0.0.1:8790");
    assert_eq!(http(&c).push_url, None);
    assert_eq!(c.azure.graph_url.as_str(), "https://graph.microsoft.com/");
    assert_eq!(c.mapping, crate::sync::mapping::Mapping::default());
    assert_eq!(c.log.level, "info");
}

/// Every `# Default: key = "value"` line of the example must match the code's default: the
/// minimal config with that one key added equals the minimal config.
#[test]
fn example_default_lines_match_the_code() {
    let creds = Creds::new();
    let source = Path::new("/etc/pbx-teams-presence/config.toml");
    let base = Config::from_str_with(MINIMAL, source, &creds.env()).unwrap();
    let mut section = String::new();
    let mut checked = 0;
    for line in EXAMPLE.lines() {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
        }
        let Some((key, value)) = default_line(line) else {
            continue;
        };
        let text = if section == "azure" {
            format!("{MINIMAL}\n{key} = {value}\n")
        } else {
            format!("{MINIMAL}\n[{section}]\n{key} = {value}\n")
        };
        let c = Config::from_str_with(&text, source, &creds.env()).unwrap();
        assert_eq!(
            c, base,
            "[{section}] {key}: Default line disagrees with the code"
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} Default lines checked");
}

/// `# Default: key = "value"` -> (key, "\"value\""); other Default lines (prose) -> None.
fn default_line(line: &str) -> Option<(&str, &str)> {
    let (key, rest) = line.strip_prefix("# Default: ")?.split_once(" = ")?;
    if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') || !rest.starts_with('"') {
        return None;
    }
    let end = rest[1..].find('"')? + 2;
    Some((key, &rest[..end]))
}

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/config")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_fixtures_load() {
    let creds = Creds::new();
    let files = fixtures("valid");
    assert!(
        files.len() >= 5,
        "found only {} valid fixtures",
        files.len()
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if let Err(e) = Config::from_str_with(&text, &f, &creds.env()) {
            panic!("{} should load: {e}", f.display());
        }
    }
}

/// Each invalid fixture lists what its error must say (`# expect: ...`) and must not say
/// (`# absent: ...`); every error also names the file.
#[test]
fn invalid_fixtures_fail_with_the_right_key() {
    let creds = Creds::new();
    let files = fixtures("invalid");
    assert!(
        files.len() >= 20,
        "found only {} invalid fixtures",
        files.len()
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let err = match Config::from_str_with(&text, &f, &creds.env()) {
            Ok(_) => panic!("{} should fail", f.display()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&f.display().to_string()), "{err}");
        let mut expectations = 0;
        for line in text.lines() {
            if let Some(want) = line.strip_prefix("# expect: ") {
                assert!(
                    err.contains(want),
                    "{}: {err:?} lacks {want:?}",
                    f.display()
                );
                expectations += 1;
            }
            if let Some(not) = line.strip_prefix("# absent: ") {
                assert!(!err.contains(not), "{}: {err:?} shows {not:?}", f.display());
            }
        }
        assert!(expectations > 0, "{} has no '# expect:' line", f.display());
    }
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secrett = \"x\"\n";
    let e = parse_err(text);
    assert!(
        e.starts_with("/etc/p/config.toml: azure.client_secrett (line 4): "),
        "{e}"
    );
    assert!(e.contains("unknown field"), "{e}");
}

#[test]
fn defaulted_key_error_names_key_without_line() {
    let text = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret_file = \"nope\"\n";
    let e = parse_err(text);
    assert!(
        e.contains("/etc/p/config.toml: azure.client_secret_file: secret file"),
        "{e}"
    );
    assert!(e.contains("/etc/p/nope"), "relative to the config dir: {e}");
}

#[test]
fn secrets_never_reach_debug_output() {
    let text = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s3cr3t-a\"\n\
                [pbx]\ntoken = \"s3cr3t-b\"\n";
    let c = Config::from_str_with(text, Path::new("/c.toml"), &no_env).unwrap();
    let shown = format!("{c:?} {c:#?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("[redacted]"));
    assert_eq!(secret(&c), "s3cr3t-a");
}

#[test]
fn missing_secret_without_credentials_says_how_to_fix() {
    let text = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\n";
    let e = Config::from_str_with(text, Path::new("/c.toml"), &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("azure.client_secret") && e.contains("LoadCredential=client-secret"));
}

#[test]
fn load_reads_files_and_load_all_reads_users() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
                [pbx]\ntoken = \"p\"\n[users]\nfile = \"people.csv\"\n";
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("people.csv"), "1001,a@example.com\n").unwrap();
    let (c, users) = load_all(&path).unwrap();
    assert_eq!(c.source, path);
    assert_eq!(
        c.watched_paths(),
        vec![path.clone(), dir.path().join("people.csv")]
    );
    assert_eq!(&*users.get("1001").unwrap().email, "a@example.com");
    let e = Config::load(&dir.path().join("absent.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("absent.toml") && e.contains("cannot read"),
        "{e}"
    );
}

#[test]
fn the_push_token_is_a_secret_of_its_own() {
    let creds = Creds::new();
    let source = Path::new("/etc/p/config.toml");
    let base = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\n\
                [pbx]\npush_url = \"https://pbx.example/presence\"\n";
    let load = |text: &str| Config::from_str_with(text, source, &creds.env()).unwrap();
    let c = load(base);
    assert_eq!(http(&c).token.expose(), "cred-pbx-token");
    assert_eq!(http(&c).push_token, None, "pbx.token is never pushed");
    let c = load(&format!("{base}push_token = \" push-s3cret \"\n"));
    assert_eq!(
        http(&c).push_token.as_ref().unwrap().expose(),
        "push-s3cret"
    );
    assert!(!c.to_string().contains("push-s3cret"), "{c}");
    std::fs::write(creds.dir.path().join("pbx-push-token"), "cred-push\n").unwrap();
    let c = load(base);
    assert_eq!(http(&c).push_token.as_ref().unwrap().expose(), "cred-push");
}

#[test]
fn the_ca_file_is_read_when_the_config_loads() {
    let creds = Creds::new();
    let [http_file, asterisk_file] = ["secret-files.toml", "asterisk.toml"].map(|name| {
        let f = fixtures("valid")
            .into_iter()
            .find(|f| f.ends_with(name))
            .unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        Config::from_str_with(&text, &f, &creds.env()).unwrap()
    });
    let ca = http(&http_file).ca_file.clone().unwrap();
    assert!(ca.path.ends_with("tests/config/valid/pbx-ca.pem"), "{ca:?}");
    assert_eq!(ca.certs.len(), 1);
    assert!(format!("{ca:?}").len() < 200, "no DER dump: {ca:?}");
    let a = asterisk_file
        .pbx
        .asterisk
        .as_ref()
        .expect("kind = \"asterisk\"");
    assert_eq!(a.ca_file.as_ref(), Some(&ca));
    assert!(http_file.to_string().contains("ca_file = "), "{http_file}");
}

#[test]
fn the_webhook_tls_comes_from_systemd_credentials_both_or_neither() {
    let creds = Creds::new();
    let source = Path::new("/etc/p/config.toml");
    let text = "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\n[pbx]\n\
                [notifications]\nenabled = true\npublic_url = \"https://sync.example/n\"\n\
                accounts = [\"sync-1@contoso.com\"]\n";
    let load = || Config::from_str_with(text, source, &creds.env());
    let tls = |c: Config| c.notifications.unwrap().tls;
    assert_eq!(tls(load().unwrap()), None, "no credential: plain HTTP");
    let cert = creds.dir.path().join("webhook-tls-cert");
    std::fs::write(&cert, "cert").unwrap();
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("notifications.tls_key_file") && e.contains("webhook-tls-key"),
        "{e}"
    );
    let key = creds.dir.path().join("webhook-tls-key");
    std::fs::write(&key, "key").unwrap();
    let files = tls(load().unwrap()).unwrap();
    assert_eq!((files.cert, files.key), (cert, key));
}

/// Without `sync.state_db`, the database lives in the unit's state directory (each template
/// instance has its own), or in the main unit's without systemd.
#[test]
fn the_state_database_defaults_to_the_units_state_directory() {
    let creds = Creds::new();
    let source = Path::new("/etc/pbx-teams-presence/tenant-a/config.toml");
    let credentials = creds.env();
    let env = |k: &str| match k {
        "STATE_DIRECTORY" => Some("/var/lib/pbx-teams-presence/tenant-a:/other".into()),
        _ => credentials(k),
    };
    let c = Config::from_str_with(MINIMAL, source, &env).unwrap();
    let db = Path::new("/var/lib/pbx-teams-presence/tenant-a/state.db");
    assert_eq!(c.sync.state_db, db);
    // By hand (no STATE_DIRECTORY): the instance's own, and the main unit's for the main config.
    let c = Config::from_str_with(MINIMAL, source, &creds.env()).unwrap();
    assert_eq!(c.sync.state_db, db);
    let main = Path::new("/etc/pbx-teams-presence/config.toml");
    let c = Config::from_str_with(MINIMAL, main, &creds.env()).unwrap();
    assert_eq!(
        c.sync.state_db,
        Path::new("/var/lib/pbx-teams-presence/state.db")
    );
    let text = format!("{MINIMAL}\n[sync]\nstate_db = \"/srv/p.db\"\n");
    let c = Config::from_str_with(&text, source, &env).unwrap();
    assert_eq!(c.sync.state_db, Path::new("/srv/p.db"));
}

#[test]
fn a_presence_server_beside_another_kind_is_refused() {
    let shown = parse_err(
        "[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\n[pbx]\nkind = [\"sip\", \"http\"]\ntoken = \"t\"\nregistrar = \"pbx.example.com\"\n\
         username = \"teams\"\npresence_server = \"pbx.example.com\"\n",
    );
    assert!(shown.contains("pbx.presence_server"), "{shown}");
    assert!(shown.contains("kind = \"sip\" alone"), "{shown}");
}

/// `--print-config` shows every sip key but the password, and reads back the same config.
#[test]
fn print_config_shows_the_sip_keys_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let d: OsString = dir.path().as_os_str().to_owned();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| d.clone());
    std::fs::write(dir.path().join("sip-password"), "cred-s3cret").unwrap();
    std::fs::write(dir.path().join("client-secret"), "s").unwrap();
    let pbx = "kind = \"sip\"\nregistrar = \"[::1]\"\nusername = \"u\"\n\
               proxy = \"edge:5070\"\nlocal_address = \"[::1]:0\"\nsubscribe_rate = 9\n\
               presence_server = \"p\"\npublish_body = \"dialog-info\"\n\
               [pbx.watch]\n1001 = \"sip:a@b\"\n";
    let text = format!("[azure]\ntenant_id = \"t\"\nclient_id = \"c\"\n[pbx]\n{pbx}");
    let c = Config::from_str_with(&text, Path::new("/etc/p/config.toml"), &env).unwrap();
    let shown = c.to_string();
    for part in [
        "kind = \"sip\"",
        "registrar = \"[::1]:5060\"",
        "proxy = \"edge:5070\"",
        "transport = \"udp\"",
        "# password: set ([redacted])",
        "domain = \"[::1]\"",
        "register = true",
        "local_address = \"[::1]:0\"",
        "subscribe_expires = \"10m\"",
        "subscribe_rate = 9",
        "watch_uri = \"sip:{extension}@{domain}\"",
        "presence_server = \"p:5060\"",
        "publish_entity = \"teams-{extension}\"",
        "publish_body = \"dialog-info\"",
        "[pbx.watch]\n\"1001\" = \"sip:a@b\"",
    ] {
        assert!(shown.contains(part), "{part} missing in\n{shown}");
    }
    assert!(
        !shown.contains("s3cret") && !shown.contains("devices"),
        "{shown}"
    );
    let again = Config::from_str_with(&shown, Path::new("/etc/p/config.toml"), &env).unwrap();
    assert_eq!(again, c);
}
