//! Unit tests of the AMI commands (VoicemailUsersList, Setvar, Getvar, PresenceState,
//! DeviceStateList) against the scripted server of `ami_tests.rs`.

use std::time::Duration;

use super::tests::{
    DEVICE_EVENT, End, LOGIN_OK, PRESENCE_EVENT, T, VM_COMPLETE, VM_START, login, server, step,
    vm_entry,
};
use super::*;

#[tokio::test]
async fn voicemail_users_skips_other_action_ids_and_unrelated_events() {
    // Around and between our answer: unrelated events, an answer and a list entry for another
    // ActionID (e.g. a late answer to an action that timed out).
    let mut reply = String::new();
    reply += DEVICE_EVENT;
    reply += "Response: Success\r\nActionID: other-7\r\nMessage: Variable Set\r\n\r\n";
    reply += VM_START;
    reply += &vm_entry("{id}", "1001", "Alice Example", "alice@contoso.com");
    reply += PRESENCE_EVENT;
    reply += &vm_entry("other-7", "6666", "Mallory", "mallory@contoso.com");
    reply += &vm_entry("{id}", "1002", "Bob Example", "bob@contoso.com");
    reply += "\r\n\r\n"; // stray empty lines are no block
    reply += &vm_entry("{id}", "1003", "Carol Example", "carol@contoso.com");
    reply += "Event: VoicemailUserEntryComplete\r\nActionID: other-7\r\nListItems: 1\r\n\r\n";
    reply += &vm_entry("{id}", "1004", "Dave Example", "dave@contoso.com");
    reply += VM_COMPLETE;
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let users = client.voicemail_users().await.unwrap();
    let got: Vec<_> = users
        .iter()
        .map(|u| {
            (
                u.mailbox.as_str(),
                u.context.as_str(),
                u.full_name.as_str(),
                u.email.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("1001", "default", "Alice Example", "alice@contoso.com"),
            ("1002", "default", "Bob Example", "bob@contoso.com"),
            ("1003", "default", "Carol Example", "carol@contoso.com"),
            ("1004", "default", "Dave Example", "dave@contoso.com"),
        ]
    );
}

#[tokio::test]
async fn voicemail_keys_are_case_insensitive_and_email_may_be_empty() {
    let reply = format!(
        "{VM_START}event: voicemailuserentry\r\nactionid: {{id}}\r\nVMCONTEXT: sales\r\n\
         voicemailbox: 2001\r\nFULLNAME: Erin\r\nEmail: \r\n\r\n\
         Event: VoicemailUserEntryComplete\r\nActionID: {{id}}\r\nListItems: 1\r\n\r\n"
    );
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let users = client.voicemail_users().await.unwrap();
    assert_eq!(
        users,
        [VoicemailUser {
            mailbox: "2001".into(),
            context: "sales".into(),
            full_name: "Erin".into(),
            email: String::new(),
        }]
    );
}

#[tokio::test]
async fn no_voicemail_boxes_is_an_empty_list_not_a_timeout() {
    // app_voicemail's answer when no box is configured: an ack without an event list.
    let reply = "Response: Success\r\nActionID: {id}\r\n\
        Message: There are no voicemail users currently defined.\r\n\r\n";
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, Duration::from_millis(500)).await.unwrap();
    assert_eq!(client.voicemail_users().await.unwrap(), []);
}

#[tokio::test]
async fn a_list_shorter_than_list_items_is_a_protocol_error() {
    let mut reply = String::from(VM_START);
    reply += &vm_entry("{id}", "1001", "Alice Example", "alice@contoso.com");
    reply += VM_COMPLETE; // says 4
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let err = client.voicemail_users().await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Protocol(m) if m.contains("ListItems")),
        "{err:?}"
    );
}

#[tokio::test]
async fn connection_closed_mid_list_is_closed() {
    let mut reply = String::from(VM_START);
    reply += &vm_entry("{id}", "1001", "Alice Example", "alice@contoso.com");
    reply += "Event: VoicemailUserEntry\r\nActionID: {id}\r\nVMContext: default\r\n"; // cut
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Close,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let err = client.voicemail_users().await.unwrap_err();
    assert!(matches!(err, AmiError::Closed), "{err:?}");
}

#[tokio::test]
async fn setvar_and_getvar_send_the_fields_and_read_value() {
    let (addr, srv) = server(
        vec![
            step("Login", LOGIN_OK),
            step(
                "Setvar",
                "Response: Success\r\nActionID: {id}\r\nMessage: Variable Set\r\n\r\n",
            ),
            step(
                "Getvar",
                "Response: Success\r\nActionID: {id}\r\n\
                 Variable: DEVICE_STATE(Custom:teams-1002)\r\nValue: INUSE\r\n\r\n",
            ),
        ],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    client
        .setvar("DEVICE_STATE(Custom:teams-1002)", "INUSE")
        .await
        .unwrap();
    let value = client
        .getvar("DEVICE_STATE(Custom:teams-1002)")
        .await
        .unwrap();
    assert_eq!(value, "INUSE");
    drop(client);
    let requests = srv.await.unwrap();
    assert_eq!(
        requests[1].get("Variable"),
        Some("DEVICE_STATE(Custom:teams-1002)")
    );
    assert_eq!(requests[1].get("Value"), Some("INUSE"));
    assert_eq!(
        requests[2].get("Variable"),
        Some("DEVICE_STATE(Custom:teams-1002)")
    );
}

#[tokio::test]
async fn setvar_refused_is_refused_with_the_message() {
    // Asterisk 22's answer to `Setvar` of an unknown function.
    let (addr, _srv) = server(
        vec![
            step("Login", LOGIN_OK),
            step(
                "Setvar",
                "Response: Error\r\nActionID: {id}\r\nMessage: Variable not set\r\n\r\n",
            ),
        ],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let err = client.setvar("NOSUCHFUNC(x)", "x").await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Refused(m) if m == "Variable not set"),
        "{err:?}"
    );
}

#[tokio::test]
async fn presence_state_takes_the_second_message_not_the_acknowledgement() {
    let (addr, _srv) = server(
        vec![
            step("Login", LOGIN_OK),
            // Asterisk 22: two `Message` keys plus `PresenceMessage`.
            step(
                "PresenceState",
                "Response: Success\r\nActionID: {id}\r\nMessage: Presence State\r\n\
                 State: dnd\r\nMessage: In a meeting\r\nPresenceMessage: In a meeting\r\n\r\n",
            ),
            // Never set.
            step(
                "PresenceState",
                "Response: Success\r\nActionID: {id}\r\nMessage: Presence State\r\n\
                 State: not_set\r\n\r\n",
            ),
            // Older servers: no `PresenceMessage`.
            step(
                "PresenceState",
                "Response: Success\r\nActionID: {id}\r\nMessage: Presence State\r\n\
                 State: away\r\nSubtype: \r\nMessage: Out to lunch\r\n\r\n",
            ),
            step(
                "PresenceState",
                "Response: Error\r\nActionID: {id}\r\n\
                 Message: Invalid provider Bogus:1003 or provider in invalid state\r\n\r\n",
            ),
        ],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let p = |s: &str, m: &str| (s.to_owned(), m.to_owned());
    let provider = "CustomPresence:1001";
    assert_eq!(
        client.presence_state(provider).await.unwrap(),
        p("dnd", "In a meeting")
    );
    assert_eq!(
        client.presence_state(provider).await.unwrap(),
        p("not_set", "")
    );
    assert_eq!(
        client.presence_state(provider).await.unwrap(),
        p("away", "Out to lunch")
    );
    let err = client.presence_state("Bogus:1003").await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Refused(m) if m.starts_with("Invalid provider")),
        "{err:?}"
    );
}

#[tokio::test]
async fn device_state_list_reads_the_cached_states() {
    let mut reply = String::from(
        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\
         Message: Device State Changes will follow\r\n\r\n",
    );
    for (device, state) in [
        ("PJSIP/1001", "UNAVAILABLE"),
        ("PJSIP/1002", "UNAVAILABLE"),
        ("Custom:teams-1002", "INUSE"),
    ] {
        reply += &format!(
            "Event: DeviceStateChange\r\nActionID: {{id}}\r\nDevice: {device}\r\nState: {state}\r\n\r\n"
        );
        reply += DEVICE_EVENT; // the same event name without ActionID: not part of the list
    }
    reply += "Event: DeviceStateListComplete\r\nActionID: {id}\r\nEventList: Complete\r\n\
        ListItems: 3\r\n\r\n";
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("DeviceStateList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let states = client.device_state_list().await.unwrap();
    let got: Vec<_> = states
        .iter()
        .map(|(d, s)| (d.as_str(), s.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("PJSIP/1001", "UNAVAILABLE"),
            ("PJSIP/1002", "UNAVAILABLE"),
            ("Custom:teams-1002", "INUSE"),
        ]
    );
}
