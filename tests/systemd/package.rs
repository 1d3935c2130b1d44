//! The package's side of `tests/installed_service.rs`: installing, configuring (the way
//! docs/operations.md says), upgrading and removing the .deb inside a booted root, and reading
//! what the daemon reports there (its state database, seen from the host).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::booted::Booted;
use crate::common::{ALICE, BOB, CAROL, World};

pub const MAIN: &str = "pbx-teams-presence.service";
const ETC: &str = "/etc/pbx-teams-presence";
const STATE_DB: &str = "/var/lib/pbx-teams-presence/state.db";

/// The .deb to test: `PBX_TEAMS_PRESENCE_DEB`, or the newest one `cargo deb` left in this
/// target directory.
pub fn deb() -> Result<PathBuf, String> {
    let how = "build it first: cargo deb (cargo install cargo-deb --locked; ./scripts/test.sh \
               does both), then PBX_TEAMS_PRESENCE_DEB=target/debian/pbx-teams-presence_<version>-1_amd64.deb";
    if let Some(path) = std::env::var_os("PBX_TEAMS_PRESENCE_DEB") {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!(
                "PBX_TEAMS_PRESENCE_DEB={} is no file; {how}",
                path.display()
            )),
        };
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).with_file_name("debian");
    let newest = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("pbx-teams-presence_") && name.ends_with(".deb")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    newest.ok_or_else(|| format!("no .deb in {}; {how}", dir.display()))
}

/// The e-mail each extension has in the users files written here.
fn email(extension: &str) -> &'static str {
    match extension {
        ALICE => "alice@contoso.com",
        BOB => "bob@contoso.com",
        CAROL => "carol@contoso.com",
        other => panic!("no e-mail for {other}"),
    }
}

/// The package installed in a booted root.
pub struct Installed<'a> {
    pub root: &'a Booted,
    deb: PathBuf,
    /// When `dpkg -i` started.
    installed_at: Option<Instant>,
    /// `started_at` of the main daemon the test last followed.
    started_at: Option<String>,
}

impl<'a> Installed<'a> {
    pub fn new(root: &'a Booted, deb: &Path) -> Installed<'a> {
        std::fs::create_dir_all(root.path("/root/stage")).unwrap();
        Installed {
            root,
            deb: deb.to_owned(),
            installed_at: None,
            started_at: None,
        }
    }

    /// `1001 alice@contoso.com`, as the journal's lines name a user.
    pub fn who(&self, extension: &str) -> String {
        format!("{extension} {}", email(extension))
    }

    /// A file staged in the root's /root/stage, for `install` inside.
    fn stage(&self, name: &str, text: &str) -> String {
        std::fs::write(self.root.path(&format!("/root/stage/{name}")), text).unwrap();
        format!("/root/stage/{name}")
    }

    /// `dpkg -i`: nothing enabled, nothing started; the user, owners and modes in place.
    pub fn install_and_check_modes(&mut self) {
        let size = self.deb.metadata().unwrap().len();
        std::fs::copy(&self.deb, self.root.path("/root/stage/pkg.deb")).unwrap();
        let t = Instant::now();
        self.installed_at = Some(t);
        self.root.ok(&["dpkg", "-i", "/root/stage/pkg.deb"]);
        println!(
            "package {} ({:.1} MB) installed by dpkg -i in {:.2} s",
            self.deb.display(),
            size as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        for unit in [MAIN, "pbx-teams-presence@x.service"] {
            assert_eq!(
                self.root.property(unit, "ActiveState"),
                "inactive",
                "{unit}"
            );
            assert_eq!(
                self.root.property(unit, "UnitFileState"),
                "disabled",
                "{unit}"
            );
        }
        let modes = self.root.sh(&format!(
            "stat -c '%n %a %U:%G' {ETC} {ETC}/config.toml {ETC}/credentials /usr/bin/pbx-teams-presence"
        ));
        let expected = [
            format!("{ETC} 750 root:pbx-teams-presence"),
            format!("{ETC}/config.toml 640 root:pbx-teams-presence"),
            format!("{ETC}/credentials 700 root:root"),
            "/usr/bin/pbx-teams-presence 755 root:root".to_owned(),
        ];
        assert_eq!(modes.lines().collect::<Vec<_>>(), expected);
        self.root.ok(&["getent", "passwd", "pbx-teams-presence"]);
        let docs = self
            .root
            .path("/usr/share/doc/pbx-teams-presence/docs/operations.md");
        assert!(docs.is_file(), "docs under /usr/share/doc");
    }

    /// The config, the users file and the secrets of one daemon (docs/operations.md).
    fn write_setup(&self, w: &World, dir: &str, extra: &str, extensions: &[&str]) {
        let base = w.graph.base_url();
        let config = format!(
            "[azure]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nlogin_url = \"{base}\"\n\
             graph_url = \"{base}\"\n\n[sync]\npoll_interval = \"1s\"\nrecovery_grace = \"2s\"\n\
             shutdown_timeout = \"5s\"\n{extra}\n[pbx]\nkind = \"http\"\n\
             listen = \"127.0.0.1:0\"\npush_url = \"{}\"\n",
            w.graph.tenant_id(),
            w.graph.client_id(),
            w.pbx.url
        );
        let config = self.stage("config.toml", &config);
        let secret = self.stage("client-secret", &format!("{}\n", w.graph.client_secret()));
        let token = self.stage("pbx-token", &format!("{}\n", w.token));
        self.root.sh(&format!(
            "install -d -m 0750 -o root -g pbx-teams-presence {dir} && \
             install -d -m 0700 {dir}/credentials && \
             install -m 0640 -o root -g pbx-teams-presence {config} {dir}/config.toml && \
             install -m 0600 {secret} {dir}/credentials/client-secret && \
             install -m 0600 {token} {dir}/credentials/pbx-token"
        ));
        self.write_users(w, dir, extensions);
    }

    /// The users file (0640 root:pbx-teams-presence), replaced as an editor would.
    pub fn write_users(&self, _w: &World, dir: &str, extensions: &[&str]) {
        let mut text = String::from("extension,email\n");
        for ext in extensions {
            text.push_str(&format!("{ext},{}\n", email(ext)));
        }
        let users = self.stage("users.csv", &text);
        self.root.sh(&format!(
            "install -m 0640 -o root -g pbx-teams-presence {users} {dir}/users.tmp && \
             mv {dir}/users.tmp {dir}/users.csv"
        ));
    }

    pub fn configure(&self, w: &World, extra: &str, extensions: &[&str]) {
        self.write_setup(w, ETC, extra, extensions);
    }

    /// A template instance: /etc/pbx-teams-presence/NAME; its state goes by default to its own
    /// state directory, /var/lib/pbx-teams-presence/NAME/state.db (no `state_db` written).
    pub fn configure_instance(&self, w: &World, name: &str, extensions: &[&str]) {
        self.write_setup(w, &format!("{ETC}/{name}"), "", extensions);
    }

    /// `pbx-teams-presence check` as the docs run it: by hand, as root, the secrets read from
    /// the credentials directory next to the config.
    pub fn check(&self) {
        let out = self.root.sh(&format!(
            "pbx-teams-presence check --config {ETC}/config.toml"
        ));
        assert!(!out.contains("problem:"), "check found problems:\n{out}");
    }

    /// `systemctl enable --now`: returns at READY (Type=notify).
    pub async fn enable_now(&mut self, w: &mut World) {
        let t = Instant::now();
        self.root.ok(&["systemctl", "enable", "--now", MAIN]);
        println!(
            "systemctl enable --now -> READY (token, matching, first poll): {:.2} s; \
             dpkg -i -> READY (config, users, secrets and check written in between): {:.2} s",
            t.elapsed().as_secs_f64(),
            self.installed_at.map_or(0.0, |i| i.elapsed().as_secs_f64())
        );
        assert_eq!(self.root.property(MAIN, "ActiveState"), "active");
        assert_eq!(self.root.property(MAIN, "UnitFileState"), "enabled");
        self.follow_restart(w).await;
    }

    pub async fn start(&mut self, w: &mut World) {
        self.root.ok(&["systemctl", "start", MAIN]);
        self.follow_restart(w).await;
    }

    /// The main daemon started anew: wait for its state database to say where its PBX
    /// listener is, and post there from now on.
    pub async fn follow_restart(&mut self, w: &mut World) {
        let db = self.root.path(STATE_DB);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let report = report(&db);
            let started = report.as_ref().and_then(|r| r.started_at.clone());
            let listen = report
                .and_then(|r| r.pbx_listen)
                .and_then(|a| a.parse().ok());
            if let (Some(started), Some(listen)) = (started, listen)
                && Some(&started) != self.started_at.as_ref()
            {
                self.started_at = Some(started);
                w.listen = listen;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no new daemon reported its listener"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where the daemon with this state database listens for the PBX.
    pub fn listen_of(&self, state_db: &str) -> SocketAddr {
        report(&self.root.path(state_db))
            .and_then(|r| r.pbx_listen)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{state_db} names no PBX listener"))
    }

    /// The main daemon's match status of a user, if the user is known.
    pub fn user_status(&self, extension: &str) -> Option<String> {
        report(&self.root.path(STATE_DB))?
            .users
            .into_iter()
            .find(|u| u.extension == extension)
            .map(|u| u.match_status)
    }

    /// Waits until `journalctl -u UNIT` (short output) shows a line containing `text`.
    pub async fn wait_journal(&self, unit: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let journal = self.root.journal(unit, &[]);
            if journal.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "journalctl -u {unit} shows no line with {text:?}:\n{journal}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `systemd-analyze security` inside the booted root, for the installed units.
    pub fn security(&self, units: &[&str]) {
        for unit in units {
            let out = self
                .root
                .ok(&["systemd-analyze", "security", "--no-pager", unit]);
            let line = out
                .lines()
                .find(|l| l.contains("Overall exposure level"))
                .unwrap_or_else(|| panic!("no exposure for {unit}:\n{out}"));
            println!("inside the root: {}", line.trim_start_matches('→').trim());
            let score: f64 = line
                .split(':')
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("cannot read {line:?}"));
            assert!(score <= 2.0, "{unit}: exposure {score} > 2.0");
        }
    }

    /// `dpkg -i` of the same package with a higher version (revision + 1).
    pub fn upgrade(&self) {
        let next = self.root.path("/root/stage/pkg-next.deb");
        let work = self.root.path("/root/stage/unpacked");
        let _ = std::fs::remove_dir_all(&work);
        run_host("dpkg-deb", &["-R", path(&self.deb), path(&work)]);
        let control = work.join("DEBIAN/control");
        let text = std::fs::read_to_string(&control).unwrap();
        let text = text
            .lines()
            .map(|l| match l.strip_prefix("Version: ") {
                Some(v) => format!("Version: {v}+upgrade1"),
                None => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&control, text + "\n").unwrap();
        run_host(
            "dpkg-deb",
            &["-Zgzip", "-z1", "-b", path(&work), path(&next)],
        );
        let t = Instant::now();
        self.root.ok(&["dpkg", "-i", "/root/stage/pkg-next.deb"]);
        println!(
            "upgrade (dpkg -i, restart included): {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let version = self
            .root
            .ok(&["dpkg-query", "-W", "-f", "${Version}", "pbx-teams-presence"]);
        assert!(version.ends_with("+upgrade1"), "upgraded to {version}");
    }

    /// The daemon's memory under systemd, from /proc inside the root.
    pub fn rss(&self) {
        let pid = self.root.property(MAIN, "MainPID");
        let status = self.root.ok(&["cat", &format!("/proc/{pid}/status")]);
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_owned())
                .unwrap_or_default()
        };
        println!(
            "RSS under systemd (3 users, after a restart and calls): VmRSS {}, VmHWM {}",
            field("VmRSS:"),
            field("VmHWM:")
        );
    }

    /// `dpkg -r`: the units are gone and stopped, the config, secrets and state stay.
    pub fn remove_keeps_config(&self) {
        self.root.ok(&["dpkg", "-r", "pbx-teams-presence"]);
        assert!(!self.root.path("/usr/bin/pbx-teams-presence").exists());
        for kept in [
            "/etc/pbx-teams-presence/config.toml",
            "/etc/pbx-teams-presence/users.csv",
            "/etc/pbx-teams-presence/credentials/client-secret",
            "/etc/pbx-teams-presence/a/config.toml",
            STATE_DB,
        ] {
            assert!(self.root.path(kept).exists(), "dpkg -r removed {kept}");
        }
    }

    /// `dpkg -P`: config and state are gone.
    pub fn purge_removes_everything(&self) {
        self.root.ok(&["dpkg", "-P", "pbx-teams-presence"]);
        for gone in ["/etc/pbx-teams-presence", "/var/lib/pbx-teams-presence"] {
            assert!(!self.root.path(gone).exists(), "dpkg -P left {gone}");
        }
        let wants = self
            .root
            .sh("ls /etc/systemd/system/multi-user.target.wants/");
        assert!(
            !wants.contains("pbx-teams-presence"),
            "enablement left: {wants}"
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn run_host(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn report(db: &Path) -> Option<pbx_teams_presence::service::StatusReport> {
    let snapshot = pbx_teams_presence::store::read_snapshot(db).ok()?;
    Some(pbx_teams_presence::service::status_report(&snapshot))
}
