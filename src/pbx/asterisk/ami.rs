//! A small Asterisk Manager Interface (AMI) client: actions only, no event stream.
//!
//! AMI is Asterisk's line-based TCP control protocol (port 5038): the server greets with a
//! banner line (`Asterisk Call Manager/11.0.0`), then both sides exchange blocks of
//! `Key: Value\r\n` lines, each block ended by an empty line. We use it for two things:
//!
//! - **the users**: FreePBX keeps a user's e-mail address in their voicemail box, so
//!   `VoicemailUsersList` is the one place where extension, name and e-mail meet (the Teams
//!   side is matched by e-mail);
//! - **an optional write path**: `Setvar` of `DEVICE_STATE(Custom:teams-XXXX)` and
//!   `PRESENCE_STATE(CustomPresence:XXXX)` shows Teams presence on the PBX (BLF lamps,
//!   busy-on-busy) without a dialplan script, and `Getvar`, `PresenceState` and
//!   `DeviceStateList` read it back.
//!
//! Call state comes from ARI, so the login says `Events: off`. Even so every answer is matched
//! by its `ActionID` and anything else is skipped: an answer that arrives after its action
//! timed out must not be taken for the next action's answer.
//!
//! Input from the network is bounded (a line over [`MAX_LINE`] bytes or a block over
//! [`MAX_BLOCK`] bytes is [`AmiError::Protocol`]) and never panics; values we send are checked
//! for CR/LF first, because a line break in a value would let it inject its own AMI action.

use std::io;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::net::{TcpStream, ToSocketAddrs};

/// The longest line we accept from the server (without its line ending). Real lines are far
/// below 1 KiB; a longer one means a wrong peer or a broken server, not data to keep.
pub const MAX_LINE: usize = 8 * 1024;

/// The largest block (all its lines, line endings included) we accept from the server. A
/// `VoicemailUserEntry` is about 600 bytes.
pub const MAX_BLOCK: usize = 64 * 1024;

/// What the banner of a real AMI server starts with; anything else is the wrong port.
const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// Server text put into an error is cut to this many characters (errors end up in logs).
const MAX_ERROR_TEXT: usize = 200;

/// Source of `ActionID`s: unique within the process, so also on every connection.
static NEXT_ACTION_ID: AtomicU64 = AtomicU64::new(1);

/// Why an AMI call failed. None of them carries the login secret or a value we tried to send.
#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    /// The connection failed below AMI (refused, unreachable, ...).
    #[error("AMI connection error: {0}")]
    Io(#[source] io::Error),
    /// The server did not connect, send or accept anything within the timeout.
    #[error("AMI did not answer within the timeout")]
    Timeout,
    /// The server closed the connection (also: reset by peer, broken pipe).
    #[error("AMI closed the connection")]
    Closed,
    /// The login was refused; the server's Message (e.g. `Authentication failed`). Check
    /// the user, secret and `permit` in manager.conf.
    #[error("AMI login refused: {0}")]
    Auth(String),
    /// The server answered the action with `Response: Error`; its Message.
    #[error("AMI refused the action: {0}")]
    Refused(String),
    /// The server sent something that is not AMI or not the expected answer.
    #[error("AMI protocol error: {0}")]
    Protocol(String),
    /// A value for this field contains CR, LF or NUL; nothing was sent.
    #[error("the value for AMI field {field} contains CR, LF or NUL")]
    BadValue { field: &'static str },
}

impl From<io::Error> for AmiError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => AmiError::Closed,
            _ => AmiError::Io(e),
        }
    }
}

/// One voicemail box as `VoicemailUsersList` reports it: on FreePBX, one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailUser {
    /// The box number; on FreePBX the user's extension.
    pub mailbox: String,
    /// The voicemail context (FreePBX: `default`); box numbers are unique only within it.
    pub context: String,
    pub full_name: String,
    /// Empty when the box has no e-mail address (such a user cannot be matched to Teams).
    pub email: String,
}

/// A logged-in AMI connection. Actions take `&mut self`: one action at a time per connection,
/// which is all the connector needs and keeps answer matching simple.
///
/// After [`AmiError::Timeout`] the client stays usable (late answers are skipped by their
/// `ActionID`); after any other network or protocol error, reconnect.
#[derive(Debug)]
pub struct AmiClient {
    conn: Conn,
    /// The AMI protocol version from the banner (`11.0.0` on Asterisk 22), not Asterisk's.
    version: String,
}

impl AmiClient {
    /// Connect, read the banner and log in with `Events: off`.
    ///
    /// `timeout` bounds the TCP connect and every single read and write, not the whole call:
    /// a long list keeps coming as long as the server keeps sending. Asterisk answers a wrong
    /// secret only after about 1 s, so keep `timeout` above that to get [`AmiError::Auth`]
    /// rather than [`AmiError::Timeout`].
    pub async fn connect(
        addr: impl ToSocketAddrs,
        username: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<AmiClient, AmiError> {
        // Checked before connecting: a bad secret must not reach the wire even in part.
        let (id, login) = encode_action(
            "Login",
            &[
                ("Username", username),
                ("Secret", secret),
                ("Events", "off"),
            ],
        )?;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| AmiError::Timeout)??;
        stream.set_nodelay(true)?;
        let mut conn = Conn::new(stream, timeout);
        let (banner, _) = conn.read_line().await?;
        let Some(version) = banner.strip_prefix(BANNER_PREFIX) else {
            return Err(AmiError::Protocol(format!(
                "not an AMI banner: {:?}",
                clip(&banner)
            )));
        };
        let version = version.trim().to_owned();
        let mut client = AmiClient { conn, version };
        client.conn.write_all(login.as_bytes()).await?;
        let answer = client.response(&id).await?;
        match response_kind(&answer) {
            Kind::Success => {
                tracing::debug!(ami_version = %client.version, "AMI: logged in");
                Ok(client)
            }
            Kind::Error => Err(AmiError::Auth(message(&answer))),
            Kind::Other(r) => Err(AmiError::Protocol(format!(
                "unexpected Response to Login: {r:?}"
            ))),
        }
    }

    /// The AMI protocol version the server announced (for logs and diagnostics).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// All voicemail boxes, in the server's order. A server with no boxes answers a plain
    /// `Success` without a list; that is an empty list here, not a timeout.
    pub async fn voicemail_users(&mut self) -> Result<Vec<VoicemailUser>, AmiError> {
        self.list(
            "VoicemailUsersList",
            "VoicemailUserEntry",
            "VoicemailUserEntryComplete",
            |entry| {
                Ok(VoicemailUser {
                    mailbox: required(entry, "VoiceMailbox")?.to_owned(),
                    context: required(entry, "VMContext")?.to_owned(),
                    full_name: entry.get("Fullname").unwrap_or_default().to_owned(),
                    email: entry.get("Email").unwrap_or_default().to_owned(),
                })
            },
        )
        .await
    }

    /// Set a global variable or dialplan function, e.g. `DEVICE_STATE(Custom:teams-1002)` to
    /// `INUSE`. A refusal (unknown function, bad argument) is [`AmiError::Refused`].
    pub async fn setvar(&mut self, variable: &str, value: &str) -> Result<(), AmiError> {
        let answer = self
            .action("Setvar", &[("Variable", variable), ("Value", value)])
            .await?;
        success(answer).map(drop)
    }

    /// Read a global variable or dialplan function. Asterisk answers an unset variable, and
    /// even an unknown function, with an empty value: empty does not mean "exists". A Custom
    /// device never set reads `UNKNOWN` through `DEVICE_STATE(...)`.
    pub async fn getvar(&mut self, variable: &str) -> Result<String, AmiError> {
        let answer = success(self.action("Getvar", &[("Variable", variable)]).await?)?;
        Ok(required(&answer, "Value")?.to_owned())
    }

    /// The presence of a provider such as `CustomPresence:1001`: `(state, message)`, e.g.
    /// `("dnd", "In a meeting")`; `("not_set", "")` for one never set. The subtype is not
    /// returned (we never set one). An unknown provider is [`AmiError::Refused`].
    pub async fn presence_state(&mut self, provider: &str) -> Result<(String, String), AmiError> {
        let answer = success(
            self.action("PresenceState", &[("Provider", provider)])
                .await?,
        )?;
        let state = required(&answer, "State")?.to_owned();
        // The answer has two `Message` keys: the acknowledgement ("Presence State") first, the
        // presence message second; Asterisk 22 repeats the latter as `PresenceMessage`.
        let text = match answer.get("PresenceMessage") {
            Some(m) => m.to_owned(),
            None => answer
                .get_all("Message")
                .nth(1)
                .unwrap_or_default()
                .to_owned(),
        };
        Ok((state, text))
    }

    /// `(device, state)` for every device whose state Asterisk has cached, e.g.
    /// `("Custom:teams-1002", "INUSE")`: PJSIP endpoints, and Custom devices only once set.
    pub async fn device_state_list(&mut self) -> Result<Vec<(String, String)>, AmiError> {
        self.list(
            "DeviceStateList",
            "DeviceStateChange",
            "DeviceStateListComplete",
            |entry| {
                Ok((
                    required(entry, "Device")?.to_owned(),
                    required(entry, "State")?.to_owned(),
                ))
            },
        )
        .await
    }

    /// Log off politely (the server answers `Goodbye` and closes). The connection is gone
    /// afterwards either way, so a server that closes without answering is fine too.
    pub async fn logoff(mut self) -> Result<(), AmiError> {
        let answer = match self.action("Logoff", &[]).await {
            Ok(answer) => answer,
            Err(AmiError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        match response_kind(&answer) {
            Kind::Success => Ok(()),
            Kind::Other(r) if r.eq_ignore_ascii_case("Goodbye") => Ok(()),
            Kind::Error => Err(AmiError::Refused(message(&answer))),
            Kind::Other(r) => Err(AmiError::Protocol(format!(
                "unexpected Response to Logoff: {r:?}"
            ))),
        }
    }

    /// Send one action and wait for its `Response` block.
    async fn action(
        &mut self,
        name: &'static str,
        fields: &[(&'static str, &str)],
    ) -> Result<Block, AmiError> {
        let id = self.send(name, fields).await?;
        self.response(&id).await
    }

    async fn send(
        &mut self,
        name: &'static str,
        fields: &[(&'static str, &str)],
    ) -> Result<String, AmiError> {
        let (id, text) = encode_action(name, fields)?;
        tracing::trace!(action = name, action_id = %id, "AMI: sending");
        self.conn.write_all(text.as_bytes()).await?;
        Ok(id)
    }

    /// Read blocks until the `Response` carrying `id`; everything else is skipped.
    async fn response(&mut self, id: &str) -> Result<Block, AmiError> {
        loop {
            let block = self.conn.read_block().await?;
            if block.get("ActionID") == Some(id) && block.get("Response").is_some() {
                return Ok(block);
            }
            skipped(&block);
        }
    }

    /// An event-list action: `Success` + `EventList: start`, `entry` events, then `complete`
    /// with `ListItems`. Each entry is converted as it arrives so the raw blocks are not kept.
    async fn list<T>(
        &mut self,
        name: &'static str,
        entry: &str,
        complete: &str,
        mut convert: impl FnMut(&Block) -> Result<T, AmiError>,
    ) -> Result<Vec<T>, AmiError> {
        let id = self.send(name, &[]).await?;
        let answer = success(self.response(&id).await?)?;
        if !answer
            .get("EventList")
            .is_some_and(|v| v.eq_ignore_ascii_case("start"))
        {
            // app_voicemail with no boxes: "There are no voicemail users currently defined."
            return Ok(Vec::new());
        }
        let mut items = Vec::new();
        loop {
            let block = self.conn.read_block().await?;
            if block.get("ActionID") != Some(id.as_str()) {
                skipped(&block);
                continue;
            }
            match block.get("Event") {
                Some(e) if e.eq_ignore_ascii_case(entry) => items.push(convert(&block)?),
                Some(e) if e.eq_ignore_ascii_case(complete) => {
                    // A count that disagrees means entries were lost: better no list than a
                    // short one (a missing user would look like a deleted one).
                    if let Some(n) = block.get("ListItems")
                        && n.parse::<usize>().ok() != Some(items.len())
                    {
                        return Err(AmiError::Protocol(format!(
                            "{name}: ListItems {:?} but {} entries received",
                            clip(n),
                            items.len()
                        )));
                    }
                    return Ok(items);
                }
                _ => skipped(&block),
            }
        }
    }
}

enum Kind<'a> {
    Success,
    Error,
    Other(&'a str),
}

fn response_kind(block: &Block) -> Kind<'_> {
    match block.get("Response").unwrap_or_default() {
        r if r.eq_ignore_ascii_case("Success") => Kind::Success,
        r if r.eq_ignore_ascii_case("Error") => Kind::Error,
        r => Kind::Other(r),
    }
}

/// `Success` passes, `Error` is [`AmiError::Refused`] with the server's message.
fn success(block: Block) -> Result<Block, AmiError> {
    match response_kind(&block) {
        Kind::Success => Ok(block),
        Kind::Error => Err(AmiError::Refused(message(&block))),
        Kind::Other(r) => Err(AmiError::Protocol(format!("unexpected Response: {r:?}"))),
    }
}

fn message(block: &Block) -> String {
    clip(block.get("Message").unwrap_or_default())
}

fn required<'a>(block: &'a Block, key: &str) -> Result<&'a str, AmiError> {
    block.get(key).ok_or_else(|| {
        let what = block
            .get("Event")
            .or_else(|| block.get("Response"))
            .unwrap_or_default();
        AmiError::Protocol(format!("{} without {key}", clip(what)))
    })
}

fn skipped(block: &Block) {
    tracing::debug!(
        event = block.get("Event").map(clip),
        response = block.get("Response").map(clip),
        action_id = block.get("ActionID").map(clip),
        "AMI: skipping a block that is not the answer"
    );
}

/// Server text for an error or a log line: control characters replaced, length capped.
fn clip(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(MAX_ERROR_TEXT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_ERROR_TEXT).is_some() {
        out.push('…');
    }
    out
}

#[path = "ami_wire.rs"]
mod wire;
use wire::{Block, Conn, encode_action};

#[cfg(test)]
#[path = "ami_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "ami_command_tests.rs"]
mod command_tests;
