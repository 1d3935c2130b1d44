//! The Debian package on a real systemd: the .deb (`cargo deb`; its path in
//! `PBX_TEAMS_PRESENCE_DEB`, or the newest in `target/debian/`) installed with `dpkg -i` into a
//! Debian 12 root booted with systemd 252 as PID 1 (`tests/systemd/root.sh`), configured the
//! way docs/operations.md says, and driven through `systemctl` and `journalctl`. The daemon
//! inside talks to the Graph emulator and a PBX push receiver running here, on the host's
//! loopback (the network namespace is shared).
//!
//! Needs root, debootstrap (once, for the cached root) and the .deb: without one of them it
//! fails and says how to get it. `./scripts/test.sh` provides all three. Figures (install to
//! READY, RSS under systemd) are printed, not asserted.
#![allow(clippy::disallowed_methods)] // the test is the outside observer: it reads real time

#[path = "systemd/booted.rs"]
mod booted;
mod common;
#[path = "systemd/package.rs"]
mod package;

use std::time::{Duration, Instant};

use booted::Booted;
use common::{ALICE, BOB, CAROL, World, eventually};
use package::{Installed, MAIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_under_systemd() {
    let started = Instant::now();
    if let Err(why) = booted::preconditions() {
        panic!("cannot run the installed-service test: {why}");
    }
    let deb = package::deb().unwrap_or_else(|why| panic!("{why}"));
    booted::install_cache();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("installed-service-root");
    let t = Instant::now();
    let root = Booted::boot(&dir);
    println!("fresh root booted in {:.1} s", t.elapsed().as_secs_f64());
    let mut w = World::new().await;
    let mut pkg = Installed::new(&root, &deb);

    pkg.install_and_check_modes();
    pkg.configure(&w, "", &[ALICE, BOB]);
    pkg.check();
    pkg.enable_now(&mut w).await;
    teams_change_and_call_in_the_journal(&pkg, &w).await;
    users_file_edit_is_picked_up(&mut pkg, &w).await;
    stop_clears_sessions(&mut pkg, &mut w).await;
    kill_restarts_and_clears(&mut pkg, &mut w).await;
    pkg.security(&[MAIN, "pbx-teams-presence@a.service"]);
    upgrade_restarts_and_leaves_nobody_in_a_call(&mut pkg, &mut w).await;
    two_tenants_side_by_side(&pkg, &mut w).await;
    pkg.remove_keeps_config();
    pkg.purge_removes_everything();
    drop(root);
    println!(
        "installed-service test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

async fn teams_change_and_call_in_the_journal(pkg: &Installed<'_>, w: &World) {
    w.graph
        .set_user_presence(&w.id(ALICE), "Busy", "InAMeeting");
    let teams =
        "1001 alice@contoso.com: Teams Available -> Busy/InAMeeting (poll); PBX state in_meeting";
    pkg.wait_journal(MAIN, teams).await;
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "Alice In a call in Teams", || {
        w.app_session(ALICE).is_some()
    })
    .await;
    pkg.wait_journal(
        MAIN,
        "1001 alice@contoso.com: speaking -> In a call written to Teams",
    )
    .await;
    // The fields filter without a prefix.
    let id = w.id(ALICE);
    for filter in [
        "EXTENSION=1001".to_owned(),
        "EMAIL=alice@contoso.com".to_owned(),
        format!("TEAMS_USER={id}"),
    ] {
        let lines = pkg.root.journal(MAIN, &[&filter]);
        assert!(
            lines.contains(teams),
            "{filter} lists the Teams change:\n{lines}"
        );
        assert!(
            !lines.contains("1002 bob@contoso.com"),
            "{filter} lists Alice's lines only:\n{lines}"
        );
    }
}

async fn users_file_edit_is_picked_up(pkg: &mut Installed<'_>, w: &World) {
    assert!(
        pkg.user_status(CAROL).is_none(),
        "Carol is not in the users file yet"
    );
    pkg.write_users(w, "/etc/pbx-teams-presence", &[ALICE, BOB, CAROL]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while pkg.user_status(CAROL).as_deref() != Some("matched") {
        assert!(
            Instant::now() < deadline,
            "Carol matched within 15 s of the edit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop_clears_sessions(pkg: &mut Installed<'_>, w: &mut World) {
    assert!(w.app_session(ALICE).is_some(), "Alice is in a call");
    pkg.root.ok(&["systemctl", "stop", MAIN]);
    assert!(
        w.app_session(ALICE).is_none(),
        "systemctl stop cleared Alice's session"
    );
    pkg.wait_journal(MAIN, "1001 alice@contoso.com: In a call cleared in Teams")
        .await;
    assert_eq!(pkg.root.property(MAIN, "ActiveState"), "inactive");
    pkg.start(w).await;
}

async fn kill_restarts_and_clears(pkg: &mut Installed<'_>, w: &mut World) {
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "Alice In a call again", || {
        w.app_session(ALICE).is_some()
    })
    .await;
    let before = pkg.root.property(MAIN, "MainPID");
    pkg.root.ok(&["systemctl", "kill", "-s", "KILL", MAIN]);
    // Restart=on-failure after RestartSec=5s; the new daemon finds the session it did not
    // clear and, the PBX saying nothing, clears it after sync.recovery_grace (2 s here).
    let t = Instant::now();
    eventually(30, "the killed daemon restarted", || {
        let pid = pkg.root.property(MAIN, "MainPID");
        pid != before && pid != "0" && pkg.root.property(MAIN, "ActiveState") == "active"
    })
    .await;
    pkg.follow_restart(w).await;
    eventually(30, "the restarted daemon cleared Alice's session", || {
        w.app_session(ALICE).is_none()
    })
    .await;
    println!(
        "SIGKILL -> restarted and session cleared: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(pkg.root.property(MAIN, "NRestarts"), "1");
}

async fn upgrade_restarts_and_leaves_nobody_in_a_call(pkg: &mut Installed<'_>, w: &mut World) {
    w.pbx_event(ALICE, "speaking").await;
    w.pbx_event(BOB, "speaking").await;
    eventually(10, "Alice and Bob in a call", || {
        w.app_session(ALICE).is_some() && w.app_session(BOB).is_some()
    })
    .await;
    let before = pkg.root.property(MAIN, "MainPID");
    pkg.upgrade();
    let after = pkg.root.property(MAIN, "MainPID");
    assert_ne!(after, before, "the upgrade restarted the daemon");
    assert_eq!(pkg.root.property(MAIN, "ActiveState"), "active");
    for ext in [ALICE, BOB, CAROL] {
        assert!(
            w.app_session(ext).is_none(),
            "{ext} left In a call by the upgrade"
        );
    }
    pkg.follow_restart(w).await;
    // The PBX reports the calls still running: the new daemon writes them again.
    w.pbx_event(ALICE, "speaking").await;
    eventually(10, "Alice In a call after the upgrade", || {
        w.app_session(ALICE).is_some()
    })
    .await;
    w.pbx_event(ALICE, "idle").await;
    w.pbx_event(BOB, "idle").await;
    eventually(10, "Alice's call ended", || w.app_session(ALICE).is_none()).await;
    pkg.rss();
}

async fn two_tenants_side_by_side(pkg: &Installed<'_>, w: &mut World) {
    // The main unit's users are in the tenants now: it steps aside.
    pkg.root.ok(&["systemctl", "disable", "--now", MAIN]);
    pkg.configure_instance(w, "a", &[ALICE]);
    pkg.configure_instance(w, "b", &[BOB]);
    let units = [
        "pbx-teams-presence@a.service",
        "pbx-teams-presence@b.service",
    ];
    // Enabled, so that the purge has their enablement to remove.
    pkg.root
        .ok(&["systemctl", "enable", "--now", units[0], units[1]]);
    for (unit, name, ext) in [(units[0], "a", ALICE), (units[1], "b", BOB)] {
        assert_eq!(pkg.root.property(unit, "ActiveState"), "active", "{unit}");
        w.listen = pkg.listen_of(&format!("/var/lib/pbx-teams-presence/{name}/state.db"));
        w.pbx_event(ext, "speaking").await;
        eventually(10, "a call in each tenant", || w.app_session(ext).is_some()).await;
        let line = format!("{}: speaking -> In a call written to Teams", pkg.who(ext));
        pkg.wait_journal(unit, &line).await;
    }
    pkg.root.ok(&["systemctl", "stop", units[0], units[1]]);
    assert!(w.app_session(ALICE).is_none() && w.app_session(BOB).is_none());
}
