//! Unit tests of the AMI client against a scripted server on 127.0.0.1:0. The answers are
//! byte for byte what Asterisk 22.10 (AMI 11.0.0, the project's test PBX) sent, with our
//! ActionID put in where `{id}` stands.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";
const SECRET: &str = "s3cret-Do-Not-Leak";
const T: Duration = Duration::from_secs(5);

const LOGIN_OK: &str =
    "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n";
const LOGIN_FAILED: &str =
    "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n";
const GOODBYE: &str =
    "Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n";

const VM_START: &str = "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\
    Message: Voicemail user list will follow\r\n\r\n";
const VM_COMPLETE: &str = "Event: VoicemailUserEntryComplete\r\nActionID: {id}\r\n\
    EventList: Complete\r\nListItems: 4\r\n\r\n";

/// One `VoicemailUserEntry` as Asterisk 22 sends it.
fn vm_entry(action_id: &str, mailbox: &str, name: &str, email: &str) -> String {
    format!(
        "Event: VoicemailUserEntry\r\nActionID: {action_id}\r\nVMContext: default\r\n\
         VoiceMailbox: {mailbox}\r\nFullname: {name}\r\nEmail: {email}\r\nPager: \r\n\
         ServerEmail: asterisk\r\nFromString: \r\nMailCommand: /usr/sbin/sendmail -t\r\n\
         Language: \r\nTimeZone: \r\nCallback: \r\nDialout: \r\nUniqueID: \r\nExitContext: \r\n\
         SayDurationMinimum: 2\r\nSayEnvelope: Yes\r\nSayCID: No\r\nAttachMessage: Yes\r\n\
         AttachmentFormat: \r\nDeleteMessage: No\r\nVolumeGain: 0.00\r\nCanReview: No\r\n\
         CanMarkUrgent: Yes\r\nCallOperator: No\r\nMaxMessageCount: 100\r\n\
         MaxMessageLength: 0\r\nNewMessageCount: 0\r\nOldMessageCount: 0\r\n\r\n"
    )
}

/// Unrelated traffic, from the captures (ami-all.txt): events without an ActionID.
const DEVICE_EVENT: &str = "Event: DeviceStateChange\r\nPrivilege: call,all\r\n\
    SystemName: sandbox\r\nDevice: PJSIP/1001\r\nState: NOT_INUSE\r\n\r\n";
const PRESENCE_EVENT: &str = "Event: PresenceStateChange\r\nPrivilege: call,all\r\n\
    SystemName: sandbox\r\nPresentity: CustomPresence:1001\r\nStatus: dnd\r\nSubtype: \r\n\
    Message: In a meeting\r\n\r\n";

/// What the server does after its last step.
#[derive(Clone, Copy)]
enum End {
    /// Close the connection.
    Close,
    /// Keep it open until the client goes away.
    Hold,
}

struct Step {
    /// The Action the client must send next.
    action: &'static str,
    /// Raw answer; `{id}` becomes the request's ActionID.
    reply: String,
    delay: Duration,
}

fn step(action: &'static str, reply: impl Into<String>) -> Step {
    Step {
        action,
        reply: reply.into(),
        delay: Duration::ZERO,
    }
}

/// A one-connection AMI server: sends `banner`, then for each step reads one action, checks
/// its name and answers. Returns the requests it received.
async fn server_with_banner(
    banner: &'static str,
    steps: Vec<Step>,
    end: End,
) -> (SocketAddr, JoinHandle<Vec<Block>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = Conn::new(stream, T);
        conn.write_all(banner.as_bytes()).await.unwrap();
        let mut requests = Vec::new();
        for step in steps {
            let request = match conn.read_block().await {
                Ok(block) => block,
                Err(_) => return requests,
            };
            assert_eq!(request.get("Action"), Some(step.action), "{request:?}");
            let id = request.get("ActionID").unwrap_or_default().to_owned();
            requests.push(request);
            tokio::time::sleep(step.delay).await;
            let reply = step.reply.replace("{id}", &id);
            if conn.write_all(reply.as_bytes()).await.is_err() {
                return requests;
            }
        }
        if let End::Hold = end {
            // Until the client closes (or sends more, which we record).
            while let Ok(block) = conn.read_block().await {
                requests.push(block);
            }
        }
        requests
    });
    (addr, task)
}

async fn server(steps: Vec<Step>, end: End) -> (SocketAddr, JoinHandle<Vec<Block>>) {
    server_with_banner(BANNER, steps, end).await
}

async fn login(addr: SocketAddr, timeout: Duration) -> Result<AmiClient, AmiError> {
    AmiClient::connect(addr, "pbx-teams-presence", SECRET, timeout).await
}

#[tokio::test]
async fn login_sends_events_off_and_logoff_gets_goodbye() {
    let (addr, srv) = server(
        vec![step("Login", LOGIN_OK), step("Logoff", GOODBYE)],
        End::Hold,
    )
    .await;
    let client = login(addr, T).await.unwrap();
    assert_eq!(client.version(), "11.0.0");
    client.logoff().await.unwrap();
    let requests = srv.await.unwrap();
    assert_eq!(requests.len(), 2);
    let login = &requests[0];
    assert_eq!(login.get("Username"), Some("pbx-teams-presence"));
    assert_eq!(login.get("Secret"), Some(SECRET));
    assert_eq!(login.get("Events"), Some("off"));
    let (a, b) = (requests[0].get("ActionID"), requests[1].get("ActionID"));
    assert!(a.is_some_and(|a| !a.is_empty()));
    assert_ne!(a, b, "every action has its own ActionID");
}

#[tokio::test]
async fn refused_login_is_auth_with_the_server_message_and_no_secret() {
    let (addr, _srv) = server(vec![step("Login", LOGIN_FAILED)], End::Close).await;
    let err = login(addr, T).await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Auth(m) if m == "Authentication failed"),
        "{err:?}"
    );
    assert!(!err.to_string().contains(SECRET));
    assert!(!format!("{err:?}").contains(SECRET));
}

#[tokio::test]
async fn a_port_that_is_not_ami_is_a_protocol_error() {
    let (addr, _srv) = server_with_banner("SSH-2.0-OpenSSH_9.6\r\n", vec![], End::Hold).await;
    let err = login(addr, T).await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Protocol(m) if m.contains("SSH-2.0")),
        "{err:?}"
    );
}

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

#[tokio::test]
async fn a_silent_server_is_a_timeout() {
    let (addr, _srv) = server(vec![], End::Hold).await; // banner, then never answers Login
    let started = crate::clock::monotonic();
    let err = login(addr, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(err, AmiError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_late_answer_after_a_timeout_is_not_taken_for_the_next_one() {
    let getvar = |value: &str| {
        format!("Response: Success\r\nActionID: {{id}}\r\nVariable: X\r\nValue: {value}\r\n\r\n")
    };
    let mut late = step("Getvar", getvar("stale"));
    late.delay = Duration::from_millis(400);
    let (addr, _srv) = server(
        vec![
            step("Login", LOGIN_OK),
            late,
            step("Getvar", getvar("fresh")),
        ],
        End::Hold,
    )
    .await;
    let mut client = login(addr, Duration::from_millis(150)).await.unwrap();
    let err = client.getvar("X").await.unwrap_err();
    assert!(matches!(err, AmiError::Timeout), "{err:?}");
    // The server answers the first Getvar, then the second: the client must skip the first.
    client.conn.timeout = T;
    assert_eq!(client.getvar("X").await.unwrap(), "fresh");
}

#[tokio::test]
async fn an_oversized_line_is_a_protocol_error() {
    let mut reply = String::from(VM_START);
    reply += &vm_entry(
        "{id}",
        "1001",
        &"A".repeat(MAX_LINE + 1),
        "alice@contoso.com",
    );
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let err = client.voicemail_users().await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Protocol(m) if m.contains("line")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_endless_line_is_refused_without_waiting_for_its_end() {
    // 20 KiB and no line break, then silence: the answer must be Protocol, not Timeout.
    let reply = "X".repeat(20 * 1024);
    let (addr, _srv) = server(vec![step("Login", reply)], End::Hold).await;
    let err = login(addr, T).await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Protocol(m) if m.contains("line")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_line_of_exactly_max_line_bytes_is_accepted() {
    let name = "B".repeat(MAX_LINE - "Fullname: ".len());
    let mut reply = String::from(VM_START);
    reply += &vm_entry("{id}", "1001", &name, "");
    reply += "Event: VoicemailUserEntryComplete\r\nActionID: {id}\r\nListItems: 1\r\n\r\n";
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let users = client.voicemail_users().await.unwrap();
    assert_eq!(users[0].full_name, name);
}

#[tokio::test]
async fn an_oversized_block_is_a_protocol_error() {
    // Many short lines (each under MAX_LINE) adding up to more than MAX_BLOCK.
    let mut reply = String::from(VM_START);
    reply += "Event: VoicemailUserEntry\r\nActionID: {id}\r\n";
    let filler = format!("Pager: {}\r\n", "p".repeat(1000));
    for _ in 0..(MAX_BLOCK / filler.len() + 1) {
        reply += &filler;
    }
    reply += "\r\n";
    let (addr, _srv) = server(
        vec![step("Login", LOGIN_OK), step("VoicemailUsersList", reply)],
        End::Hold,
    )
    .await;
    let mut client = login(addr, T).await.unwrap();
    let err = client.voicemail_users().await.unwrap_err();
    assert!(
        matches!(&err, AmiError::Protocol(m) if m.contains("block")),
        "{err:?}"
    );
}

#[tokio::test]
async fn cr_or_lf_in_a_value_is_rejected_before_anything_is_sent() {
    let (addr, srv) = server(vec![step("Login", LOGIN_OK)], End::Hold).await;
    let mut client = login(addr, T).await.unwrap();
    let injection = "dnd\r\n\r\nAction: Originate\r\nChannel: PJSIP/1001";
    let err = client
        .setvar("PRESENCE_STATE(CustomPresence:1001)", injection)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AmiError::BadValue { field: "Value" }),
        "{err:?}"
    );
    let err = client.getvar("X\nY").await.unwrap_err();
    assert!(
        matches!(err, AmiError::BadValue { field: "Variable" }),
        "{err:?}"
    );
    let err = client
        .presence_state("CustomPresence:1001\r")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AmiError::BadValue { field: "Provider" }),
        "{err:?}"
    );
    drop(client);
    let requests = srv.await.unwrap();
    assert_eq!(
        requests.len(),
        1,
        "only the Login reached the server: {requests:?}"
    );
}

#[tokio::test]
async fn a_bad_secret_is_rejected_before_connecting() {
    // Nothing listens here: connecting first would give Io, not BadValue.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = AmiClient::connect(addr, "pbx-teams-presence", "a\r\nb", T)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AmiError::BadValue { field: "Secret" }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("a\r\nb"));
}

#[test]
fn server_text_in_errors_is_clipped_and_has_no_control_characters() {
    let long = format!("\u{1b}[31m{}", "m".repeat(1000));
    let clipped = clip(&long);
    assert!(!clipped.contains('\u{1b}'));
    assert!(clipped.chars().count() <= MAX_ERROR_TEXT + 1);
}
