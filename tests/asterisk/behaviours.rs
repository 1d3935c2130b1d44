//! Behaviours beyond calls: Teams states mapped to `keep` write nothing to Asterisk, and the
//! phone's DND (FreePBX's feature codes) shows in Teams.

use super::{DEVICES, connected};
use crate::common::{ALICE, BOB, World, eventually};
use crate::sandbox::{PHONES, Pbx, finish};

/// `Offline = "keep"`: a user signing out of Teams leaves Asterisk's Custom: and
/// CustomPresence: states as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_teams_state_mapped_to_keep_leaves_asterisk_as_it_is() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    w.pbx_section = Some(format!("{}{DEVICES}", Pbx::pbx_section("")));
    w.write_config("[mapping.availability]\nOffline = \"keep\"\n[mapping.activity]\nOffWork = \"keep\"\nOffline = \"keep\"\n");
    w.start().await;
    connected(&w).await;
    let (alice, bob) = (w.id(ALICE), w.id(BOB));
    w.graph.set_user_presence(&bob, "Busy", "InAMeeting");
    Pbx::wait_device("Custom:teams-1002", "INUSE", 10).await;
    Pbx::wait_presence("CustomPresence:1002", ("dnd", "In a meeting"), 10).await;
    w.graph.set_user_presence(&bob, "Offline", "Offline");
    eventually(10, "Bob's Offline read", || {
        w.user_status(BOB)["teams"]["availability"] == "Offline"
    })
    .await;
    // Writes to Asterisk go out in order: once Alice's later change is there, a write for
    // Bob's Offline would have been too.
    w.graph.set_user_presence(&alice, "Busy", "InAMeeting");
    Pbx::wait_device("Custom:teams-1001", "INUSE", 10).await;
    assert_eq!(Pbx::device_state("Custom:teams-1002").await, "INUSE");
    let presence = Pbx::presence("CustomPresence:1002").await;
    assert_eq!(
        (presence.0.as_str(), presence.1.as_str()),
        ("dnd", "In a meeting")
    );
    assert_eq!(w.user_status(BOB)["pushed_state"], "in_meeting");
    w.stop().await.unwrap();
}

/// `pbx_dnd_to_teams = "session"`: DND switched on from Bob's phone with FreePBX's feature
/// code (`*78`, which sets `Custom:DND1002`) is "Do not disturb" in Teams; `*79` clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phones_dnd_feature_code_shows_in_teams() {
    let _pbx = Pbx::acquire().await;
    let mut w = World::new().await;
    w.pbx_section = Some(format!("{}{DEVICES}", Pbx::pbx_section("")));
    w.write_config("");
    w.add_to_section("sync", "pbx_dnd_to_teams = \"session\"");
    w.start().await;
    connected(&w).await;
    PHONES.register("1002").await;
    let session = |w: &World| w.app_session(BOB).map(|s| (s.availability, s.activity));
    finish(
        PHONES.dial("uac_pbx_hangup.xml", "1002", "*78", 0, &[]),
        "*78",
    )
    .await;
    eventually(10, "Do not disturb in Teams", || {
        session(&w) == Some(("DoNotDisturb".into(), "Presenting".into()))
    })
    .await;
    assert_eq!(w.user_status(BOB)["dnd"], true);
    finish(
        PHONES.dial("uac_pbx_hangup.xml", "1002", "*79", 0, &[]),
        "*79",
    )
    .await;
    eventually(10, "cleared", || session(&w).is_none()).await;
    assert_eq!(w.user_status(BOB)["dnd"], false);
    w.stop().await.unwrap();
}
