//! AMI on the wire: blocks of `Key: Value` lines, bounded line and block reads with a timeout
//! on each socket wait, and actions encoded with a fresh `ActionID` after their values are
//! checked for line breaks.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{AmiError, MAX_BLOCK, MAX_LINE, NEXT_ACTION_ID};

/// One received block: its `Key: Value` lines in order. Duplicate keys are kept (the
/// `PresenceState` answer has two `Message` lines).
#[derive(Debug, Default)]
pub(super) struct Block {
    pub(super) fields: Vec<(String, String)>,
}

impl Block {
    /// The first value of `key`; keys compare case-insensitively.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.get_all(key).next()
    }

    pub(super) fn get_all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> {
        self.fields
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

/// The action as it goes on the wire, with a fresh `ActionID`; every value checked first.
pub(super) fn encode_action(
    name: &'static str,
    fields: &[(&'static str, &str)],
) -> Result<(String, String), AmiError> {
    for &(field, value) in fields {
        if value.contains(['\r', '\n', '\0']) {
            return Err(AmiError::BadValue { field });
        }
    }
    let id = format!(
        "pbx-teams-presence-{}",
        NEXT_ACTION_ID.fetch_add(1, Ordering::Relaxed)
    );
    let mut text = format!("Action: {name}\r\nActionID: {id}\r\n");
    for (field, value) in fields {
        text.push_str(field);
        text.push_str(": ");
        text.push_str(value);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    Ok((id, text))
}

/// The framing: bounded line and block reads with a timeout on each socket wait. Uses
/// `readable`/`try_read` (tokio's `net` feature) rather than `AsyncBufRead`, so a line is
/// checked against [`MAX_LINE`] while it is being read, not after it has been buffered.
#[derive(Debug)]
pub(super) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the unread bytes in `buf`.
    pos: usize,
    pub(super) timeout: Duration,
}

impl Conn {
    pub(super) fn new(stream: TcpStream, timeout: Duration) -> Conn {
        Conn {
            stream,
            buf: Vec::with_capacity(8 * 1024),
            pos: 0,
            timeout,
        }
    }

    /// The next line without its `\r\n` (a bare `\n` is accepted too), and how many bytes it
    /// took on the wire. Invalid UTF-8 is replaced, not an error: a name in Latin-1 from an
    /// old voicemail.conf should not cost the whole list.
    pub(super) async fn read_line(&mut self) -> Result<(String, usize), AmiError> {
        loop {
            let unread = &self.buf[self.pos..];
            if let Some(end) = unread.iter().position(|&b| b == b'\n') {
                let line = &unread[..end];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > MAX_LINE {
                    return Err(line_too_long());
                }
                let text = String::from_utf8_lossy(line).into_owned();
                self.pos += end + 1;
                return Ok((text, end + 1));
            }
            // +1: the `\r` of a line of exactly MAX_LINE bytes may be here without its `\n`.
            if unread.len() > MAX_LINE + 1 {
                return Err(line_too_long());
            }
            self.fill().await?;
        }
    }

    /// The next non-empty block. Lines without a colon are not AMI fields and are skipped.
    pub(super) async fn read_block(&mut self) -> Result<Block, AmiError> {
        let mut block = Block::default();
        let mut size = 0;
        loop {
            let (line, n) = self.read_line().await?;
            size += n;
            if size > MAX_BLOCK {
                return Err(AmiError::Protocol(format!(
                    "a block longer than {MAX_BLOCK} bytes"
                )));
            }
            if line.is_empty() {
                if block.fields.is_empty() {
                    size = 0;
                    continue;
                }
                return Ok(block);
            }
            match line.split_once(':') {
                Some((key, value)) => block
                    .fields
                    .push((key.trim().to_owned(), value.trim().to_owned())),
                None => tracing::debug!(len = line.len(), "AMI: skipping a line without a colon"),
            }
        }
    }

    /// Read whatever the socket has (at least one byte) into `buf`.
    async fn fill(&mut self) -> Result<(), AmiError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let Conn {
            stream,
            buf,
            timeout,
            ..
        } = self;
        let read = async {
            let mut chunk = [0u8; 4096];
            loop {
                stream.readable().await?;
                match stream.try_read(&mut chunk) {
                    Ok(0) => return Err(AmiError::Closed),
                    Ok(n) => {
                        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        tokio::time::timeout(*timeout, read)
            .await
            .map_err(|_| AmiError::Timeout)?
    }

    pub(super) async fn write_all(&mut self, data: &[u8]) -> Result<(), AmiError> {
        let stream = &self.stream;
        let write = async {
            let mut rest = data;
            while !rest.is_empty() {
                stream.writable().await?;
                match stream.try_write(rest) {
                    Ok(0) => return Err(AmiError::Closed),
                    Ok(n) => rest = rest.get(n..).unwrap_or_default(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| AmiError::Timeout)?
    }
}

fn line_too_long() -> AmiError {
    AmiError::Protocol(format!("a line longer than {MAX_LINE} bytes"))
}
