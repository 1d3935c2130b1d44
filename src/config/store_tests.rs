//! `[store]` and `[ha]`: defaults, what PostgreSQL needs, and errors that name the key.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::*;

const MINIMAL: &str = include_str!("../../config.minimal.toml");

fn load(extra: &str, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Config, ConfigError> {
    // The minimal config's secrets come from systemd credentials: give them.
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("client-secret"), "s").unwrap();
    std::fs::write(creds.path().join("pbx-token"), "t").unwrap();
    let dir = creds.path().as_os_str().to_owned();
    let lookup = move |k: &str| match k {
        "CREDENTIALS_DIRECTORY" => Some(dir.clone()),
        other => env(other),
    };
    Config::from_str_with(
        &format!("{MINIMAL}\n{extra}"),
        Path::new("/etc/p/config.toml"),
        &lookup,
    )
}

fn no_env(_: &str) -> Option<OsString> {
    None
}

fn err(extra: &str) -> String {
    load(extra, &no_env).unwrap_err().to_string()
}

#[test]
fn sqlite_and_no_ha_by_default() {
    let c = load("", &no_env).unwrap();
    assert_eq!(c.store, StoreConfig::Sqlite);
    assert_eq!(c.ha, None);
}

#[test]
fn postgres_with_a_password_file_and_ha() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pg-password");
    std::fs::write(&pw, "s3cret-pg\n").unwrap();
    let extra = format!(
        "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://presence@db.example.net/presence?sslmode=require\"\npostgres_password_file = \"{}\"\n\n[ha]\nenabled = true\nnode = \"pbx1\"\n",
        pw.display()
    );
    let c = load(&extra, &no_env).unwrap();
    let StoreConfig::Postgres(pg) = &c.store else {
        panic!("{:?}", c.store)
    };
    assert_eq!(pg.password.as_ref().map(|p| p.expose()), Some("s3cret-pg"));
    assert_eq!(
        pg.shown(),
        "postgres://presence@db.example.net:5432/presence"
    );
    assert_eq!(
        pg.pg_config().get_application_name(),
        Some("pbx-teams-presence")
    );
    assert!(
        !format!("{c:?}").contains("s3cret-pg"),
        "Debug shows the password"
    );
    let printed = c.to_string();
    assert!(
        !printed.contains("s3cret-pg"),
        "print-config shows the password"
    );
    assert!(printed.contains("kind = \"postgres\"\npostgres_url = \"postgres://presence@db.example.net/presence?sslmode=require\"\n# password: set"), "{printed}");
    let ha = c.ha.expect("[ha]");
    assert_eq!(
        (ha.node.as_str(), ha.lease),
        ("pbx1", Duration::from_secs(10))
    );
}

#[test]
fn the_password_may_come_from_the_systemd_credential() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join(POSTGRES_PASSWORD_CREDENTIAL),
        "from-cred\n",
    )
    .unwrap();
    std::fs::write(creds.path().join("client-secret"), "s").unwrap();
    std::fs::write(creds.path().join("pbx-token"), "t").unwrap();
    let dir = creds.path().as_os_str().to_owned();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir.clone());
    let extra = "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://p@db/p\"\n";
    let c = Config::from_str_with(
        &format!("{MINIMAL}\n{extra}"),
        Path::new("/etc/p/c.toml"),
        &env,
    )
    .unwrap();
    let StoreConfig::Postgres(pg) = &c.store else {
        panic!()
    };
    assert_eq!(pg.password.as_ref().map(|p| p.expose()), Some("from-cred"));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("[store]\nkind = \"mysql\"\n", "store.kind"),
        ("[store]\nkind = \"postgres\"\n", "store.postgres_url"),
        (
            "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://u:pw@db/p\"\n",
            "store.postgres_password_file",
        ),
        (
            "[store]\npostgres_url = \"postgres://u@db/p\"\n",
            "store.postgres_url",
        ),
        (
            "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://u@db/p\"\nca_file = \"/nonexistent.pem\"\n",
            "store.ca_file",
        ),
        ("[ha]\nenabled = true\nnode = \"pbx1\"\n", "ha.enabled"),
        (
            "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://u@db/p\"\n[ha]\nenabled = true\n",
            "ha.node",
        ),
        (
            "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://u@db/p\"\n[ha]\nenabled = true\nnode = \"pbx 1\"\n",
            "ha.node",
        ),
        (
            "[store]\nkind = \"postgres\"\npostgres_url = \"postgres://u@db/p\"\n[ha]\nenabled = true\nnode = \"a\"\nlease = \"1s\"\n",
            "ha.lease",
        ),
        (
            "[ha]\nenabled = true\nnode = \"a\"\nleader = true\n",
            "leader",
        ),
    ];
    for (extra, key) in cases {
        let e = err(extra);
        assert!(e.contains(key), "{extra:?}: {e}");
        assert!(!e.contains("pw@"), "the error quotes the password: {e}");
    }
}
