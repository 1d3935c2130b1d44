//! Teams -> SIP presence server: the daemon (its real service wiring, Graph emulated)
//! PUBLISHes each user's mapped Teams state to the real Kamailio as `teams-<ext>`, and a
//! SIPp phone with a BLF key on `teams-1001` (a dialog subscription) sees the lamp follow
//! Alice's Teams presence, and go off when the daemon stops.

use std::path::Path;

use crate::common::{ALICE, World, eventually};
use crate::sandbox::{Kam, credential, repo};

/// `[pbx]` of kind "sip" on the test Kamailio, publishing to it.
fn section(body: &str) -> String {
    format!(
        "[pbx]\nkind = \"sip\"\nregistrar = \"127.0.0.1:5080\"\nusername = \"teams-presence\"\n\
         password_file = \"{}\"\ndomain = \"127.0.0.1\"\nlocal_address = \"127.0.0.1:0\"\n\
         presence_server = \"127.0.0.1:5080\"\npublish_body = \"{body}\"\n",
        credential("sip_password").display()
    )
}

/// What the BLF phone was told so far, NOTIFY by NOTIFY: lit (a `confirmed` dialog) or off
/// (no dialog, or only ended ones).
fn lamp(log: &Path) -> Vec<&'static str> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split("NOTIFY sip:")
        .skip(1)
        .map(|notify| match notify.contains("<state>confirmed</state>") {
            true => "lit",
            false => "off",
        })
        .collect()
}

fn shows(log: &Path, what: &str) -> bool {
    lamp(log).last().is_some_and(|s| *s == what)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blf_key_on_teams_1001_follows_alices_teams_presence() {
    let _kam = Kam::acquire().await;
    // RUST_LOG=pbx_teams_presence::pbx::sip=trace shows every SIP message.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut w = World::new().await;
    w.pbx_section = Some(section("both"));
    w.write_config("");
    w.start().await;
    let log = repo().join("target/kamailio/blf-teams-1001.log");
    let _ = std::fs::remove_file(&log);
    let log_arg = log.to_str().unwrap().to_owned();
    // A phone (1004) with a BLF key on teams-1001; it listens until 10 s pass without NOTIFY.
    let phone = Kam::sipp(&[
        "-sf",
        "subscribe_dialog.xml",
        "-s",
        "teams-1001",
        "-key",
        "user",
        "1004",
        "-au",
        "1004",
        "-ap",
        "pw1004",
        "-key",
        "expires",
        "600",
        "-set",
        "idle_ticks",
        "40",
        "-p",
        "5084",
        "-trace_msg",
        "-message_file",
        &log_arg,
    ]);
    eventually(15, "the lamp is off (Alice Available)", || {
        shows(&log, "off")
    })
    .await;
    let changed = std::time::Instant::now();
    w.graph
        .set_user_presence(&w.id(ALICE), "Busy", "InAMeeting");
    eventually(10, "the lamp is lit (Alice in a meeting)", || {
        shows(&log, "lit")
    })
    .await;
    // A figure, not asserted: from the poll that read the change to the NOTIFY in the
    // phone's log (seen by a 20 ms poll of the file, so up to 20 ms late).
    let seen = std::time::Instant::now();
    if let Some(read) = w
        .graph_requests("getPresencesByUserId")
        .iter()
        .map(|r| r.at)
        .rfind(|at| *at > changed && *at < seen)
    {
        let ms = seen.saturating_duration_since(read).as_secs_f64() * 1000.0;
        println!("daemon read Alice's change (poll) -> BLF NOTIFY on teams-1001 seen: {ms:.0} ms");
    }
    w.graph.set_user_presence(&w.id(ALICE), "Away", "Away");
    eventually(10, "the lamp is off again (Alice away)", || {
        shows(&log, "off")
    })
    .await;
    w.graph.set_user_presence(&w.id(ALICE), "Busy", "InACall");
    eventually(10, "lit again", || shows(&log, "lit")).await;
    w.stop().await.unwrap();
    eventually(
        10,
        "the daemon stopped: its publication is removed, the lamp is off",
        || shows(&log, "off"),
    )
    .await;
    drop(phone);
}
