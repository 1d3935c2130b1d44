//! Behaviours that leave one side alone: Teams states mapped to `keep` write nothing to
//! Asterisk.

use super::{DEVICES, connected};
use crate::common::{ALICE, BOB, World, eventually};
use crate::sandbox::Pbx;

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
