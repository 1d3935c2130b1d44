//! `[pbx] kind = "sip"`: the SIP account the daemon subscribes with (RFC 4235 dialog
//! subscriptions, "busy lamp field"), which URI it watches per user, and the optional
//! presence server it PUBLISHes Teams states to. Documented in `config.example.toml` and
//! `docs/sip.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::{CaFile, Secret};

/// `host:port` of a SIP server, as written in the file (a name is resolved when used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `pbx.transport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    Tcp,
    /// Checked against the system's roots and `pbx.ca_file`.
    Tls,
}

impl SipTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            SipTransport::Udp => "udp",
            SipTransport::Tcp => "tcp",
            SipTransport::Tls => "tls",
        }
    }
}

/// `pbx.publish_body`: what a PUBLISH to the presence server carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishBody {
    /// `application/pidf+xml` (`Event: presence`, RFC 3863).
    Pidf,
    /// `application/dialog-info+xml` (`Event: dialog`, RFC 4235).
    DialogInfo,
    /// Both, as two publications.
    Both,
}

/// `[pbx]` with `"sip"` in `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct SipPbxConfig {
    /// `pbx.registrar`: where REGISTER goes, and SUBSCRIBEs too unless `proxy` is set.
    pub registrar: HostPort,
    /// `pbx.proxy`: the outbound proxy every request is sent to, when set.
    pub proxy: Option<HostPort>,
    pub transport: SipTransport,
    /// Certificate authorities trusted for `transport = "tls"` besides the system's.
    pub ca_file: Option<CaFile>,
    /// The daemon's SIP account (the user part of its From/Contact, and the digest user).
    pub username: String,
    /// Digest password: `pbx.password(_file)` or the credential `sip-password`; `None`: the
    /// PBX trusts the daemon's address and challenges nothing.
    pub password: Option<Secret>,
    /// The SIP domain (From, To, the watched URIs); default: the registrar's host.
    pub domain: String,
    /// Whether to REGISTER first (some PBXs take SUBSCRIBEs from a trusted peer without).
    pub register: bool,
    /// Where the daemon's SIP socket binds; `None`: the address the system routes to the
    /// registrar, any free port.
    pub local_address: Option<SocketAddr>,
    /// The `Expires` asked for in each SUBSCRIBE.
    pub subscribe_expires: Duration,
    /// SUBSCRIBEs sent per second at most (new ones and refreshes), so that thousands of
    /// users do not storm the PBX at start.
    pub subscribe_rate: u32,
    /// The URI watched for a user, as a template (`{extension}`, `{domain}`);
    /// `pbx.watch_uri`, default `sip:{extension}@{domain}`.
    pub watch_uri: String,
    /// `[pbx.watch]`: the URI watched per extension, replacing `watch_uri` for it.
    pub watch: BTreeMap<String, String>,
    /// `pbx.presence_server`: where Teams states are PUBLISHed; `None`: not published.
    pub presence_server: Option<HostPort>,
    /// The entity published for a user, as a template; default `teams-{extension}`.
    pub publish_entity: String,
    pub publish_body: PublishBody,
}

impl SipPbxConfig {
    /// The URI watched for `extension`.
    pub fn watch_uri_of(&self, extension: &str) -> String {
        match self.watch.get(extension) {
            Some(uri) => uri.clone(),
            None => self.expand(&self.watch_uri, extension),
        }
    }

    /// The presence entity (a SIP URI) published for `extension`.
    pub fn publish_uri_of(&self, extension: &str) -> String {
        let user = self.expand(&self.publish_entity, extension);
        format!("sip:{user}@{}", self.domain)
    }

    /// Where requests go: the proxy when set, else the registrar.
    pub fn next_hop(&self) -> &HostPort {
        self.proxy.as_ref().unwrap_or(&self.registrar)
    }

    fn expand(&self, template: &str, extension: &str) -> String {
        template
            .replace("{extension}", extension)
            .replace("{domain}", &self.domain)
    }
}
