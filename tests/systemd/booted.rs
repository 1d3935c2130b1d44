//! The Rust side of `tests/systemd/root.sh`: a fresh copy of the cached Debian 12 root,
//! systemd 252 booted in it as PID 1, commands run inside it (nsenter), and a guard that
//! kills it by pid when dropped, a failed assertion included: no systemd outlives the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/systemd/root.sh");

/// What the test needs from the machine, or why it cannot run: the test fails with this text
/// rather than passing silently.
pub fn preconditions() -> Result<(), String> {
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
    if !uid.is_ok_and(|u| u.trim_ascii() == b"0") {
        return Err(
            "needs root (namespaces, mounts, dpkg in the root): run ./scripts/test.sh \
                    as root, or sudo -E cargo test --test installed_service"
                .into(),
        );
    }
    let cached = Command::new(SCRIPT)
        .arg("cached")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let debootstrap = Command::new("sh")
        .args(["-c", "command -v debootstrap"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !cached && !debootstrap {
        return Err(
            "needs debootstrap to make the Debian 12 root once (apt-get install \
                    debootstrap; ./scripts/test.sh installs it), or the cached root \
                    (tests/systemd/root.sh install)"
                .into(),
        );
    }
    Ok(())
}

/// A booted root. Dropping it kills systemd (and so the whole pid namespace) and deletes
/// the root's copy.
pub struct Booted {
    pub dir: PathBuf,
    /// systemd's pid on the host.
    pub pid: u32,
    launcher: Child,
}

fn script(args: &[&str]) -> Output {
    Command::new(SCRIPT)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{SCRIPT} {args:?}: {e}"))
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `root.sh install`: the cached tarball, made once (debootstrap, about 90 s).
pub fn install_cache() {
    ok("root.sh install", script(&["install"]));
}

impl Booted {
    /// A fresh copy of the cached root in `dir`, booted; returns once systemd reports the
    /// system running.
    pub fn boot(dir: &Path) -> Booted {
        let d = dir.to_str().expect("a UTF-8 path");
        ok("root.sh fresh", script(&["fresh", d]));
        // root.sh boot execs setpriv --pdeathsig KILL unshare ...: killed with this thread.
        // Its own output (unshare's complaint when its child is killed) goes next to the
        // console log.
        let log = std::fs::File::create(dir.with_extension("boot.log")).expect("the boot log");
        let launcher = Command::new(SCRIPT)
            .args(["boot", d])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the boot log"))
            .stderr(log)
            .spawn()
            .expect("root.sh boot starts");
        let mut booted = Booted {
            dir: dir.to_owned(),
            pid: 0,
            launcher,
        };
        booted.pid = booted.find_systemd();
        let pid = booted.pid.to_string();
        let waited = script(&["wait", &pid, "60"]);
        assert!(
            waited.status.success(),
            "systemd did not boot: {}\nPID 1's console:\n{}\nboot log:\n{}",
            String::from_utf8_lossy(&waited.stderr),
            booted.console(),
            std::fs::read_to_string(dir.with_extension("boot.log")).unwrap_or_default()
        );
        booted
    }

    /// The launcher's child is systemd (unshare --fork; boot.sh execs it).
    fn find_systemd(&mut self) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let launcher = self.launcher.id();
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children"))
                    .unwrap_or_default();
            let child = children
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok());
            if let Some(pid) = child {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return pid;
                }
            }
            if let Ok(Some(status)) = self.launcher.try_wait() {
                panic!(
                    "root.sh boot exited with {status}; PID 1's console:\n{}",
                    self.console()
                );
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not start within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PID 1's console output (the boot log).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("console")).unwrap_or_default()
    }

    /// A path inside the root, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.dir.join(inside.trim_start_matches('/'))
    }

    /// Runs a command inside the booted root (its mount, pid, uts, ipc and cgroup
    /// namespaces; the network is the host's).
    pub fn run(&self, args: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut all = vec!["enter", &pid];
        all.extend_from_slice(args);
        script(&all)
    }

    /// Like [`Booted::run`], and the command must succeed: its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(&args.join(" "), self.run(args))
    }

    /// `sh -c SCRIPT` inside the root; must succeed.
    pub fn sh(&self, script: &str) -> String {
        self.ok(&["sh", "-c", script])
    }

    /// `journalctl -u UNIT` in its default (short) output, plus `filters` (e.g.
    /// `EXTENSION=1001`).
    pub fn journal(&self, unit: &str, filters: &[&str]) -> String {
        let mut args = vec!["journalctl", "--no-pager", "-u", unit];
        args.extend_from_slice(filters);
        String::from_utf8_lossy(&self.run(&args).stdout).into_owned()
    }

    /// `systemctl show -p PROPERTY --value UNIT`.
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.ok(&["systemctl", "show", "-p", property, "--value", unit])
            .trim()
            .to_owned()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if self.pid != 0 {
            let _ = script(&["stop", &self.pid.to_string()]);
        }
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
        if std::env::var_os("PBX_TEAMS_PRESENCE_KEEP_ROOT").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::remove_file(self.dir.with_extension("console"));
            let _ = std::fs::remove_file(self.dir.with_extension("boot.log"));
        }
    }
}
