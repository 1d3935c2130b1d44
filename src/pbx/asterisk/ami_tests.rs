//! Unit tests of the AMI client against a scripted server on 127.0.0.1:0: the server, and the
//! tests of the connection (login, timeouts, framing limits, values refused before sending).
//! The answers are byte for byte what Asterisk 22.10 (AMI 11.0.0, the project's test PBX)
//! sent, with our ActionID put in where `{id}` stands. The commands' tests, in
//! `ami_command_tests.rs`, use the same server.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";
const SECRET: &str = "s3cret-Do-Not-Leak";
pub(super) const T: Duration = Duration::from_secs(5);

pub(super) const LOGIN_OK: &str =
    "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n";
const LOGIN_FAILED: &str =
    "Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n";
const GOODBYE: &str =
    "Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n";

pub(super) const VM_START: &str = "Response: Success\r\nActionID: {id}\r\nEventList: start\r\n\
    Message: Voicemail user list will follow\r\n\r\n";
pub(super) const VM_COMPLETE: &str = "Event: VoicemailUserEntryComplete\r\nActionID: {id}\r\n\
    EventList: Complete\r\nListItems: 4\r\n\r\n";

/// One `VoicemailUserEntry` as Asterisk 22 sends it.
pub(super) fn vm_entry(action_id: &str, mailbox: &str, name: &str, email: &str) -> String {
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
pub(super) const DEVICE_EVENT: &str = "Event: DeviceStateChange\r\nPrivilege: call,all\r\n\
    SystemName: sandbox\r\nDevice: PJSIP/1001\r\nState: NOT_INUSE\r\n\r\n";
pub(super) const PRESENCE_EVENT: &str = "Event: PresenceStateChange\r\nPrivilege: call,all\r\n\
    SystemName: sandbox\r\nPresentity: CustomPresence:1001\r\nStatus: dnd\r\nSubtype: \r\n\
    Message: In a meeting\r\n\r\n";

/// What the server does after its last step.
#[derive(Clone, Copy)]
pub(super) enum End {
    /// Close the connection.
    Close,
    /// Keep it open until the client goes away.
    Hold,
}

pub(super) struct Step {
    /// The Action the client must send next.
    action: &'static str,
    /// Raw answer; `{id}` becomes the request's ActionID.
    reply: String,
    delay: Duration,
}

pub(super) fn step(action: &'static str, reply: impl Into<String>) -> Step {
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

pub(super) async fn server(steps: Vec<Step>, end: End) -> (SocketAddr, JoinHandle<Vec<Block>>) {
    server_with_banner(BANNER, steps, end).await
}

pub(super) async fn login(addr: SocketAddr, timeout: Duration) -> Result<AmiClient, AmiError> {
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
