//! `[pbx] kind = "sip"`: the SIP account the daemon subscribes with (RFC 4235 dialog
//! subscriptions, "busy lamp field"), which URI it watches per user, and the optional
//! presence server it PUBLISHes Teams states to. Documented in `config.example.toml` and
//! `docs/sip.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::{CaFile, Secret};

/// The port of `pbx.registrar` / `pbx.proxy` / `pbx.presence_server` when none is written,
/// for `udp` and `tcp` (RFC 3261 section 19.1.2).
pub const DEFAULT_SIP_PORT: u16 = 5060;
/// The same for `transport = "tls"`.
pub const DEFAULT_SIPS_PORT: u16 = 5061;
/// Default `pbx.subscribe_expires`.
pub const DEFAULT_SUBSCRIBE_EXPIRES: &str = "600s";
/// Default `pbx.subscribe_rate` (SUBSCRIBEs per second).
pub const DEFAULT_SUBSCRIBE_RATE: u32 = 50;
/// Default `pbx.watch_uri`.
pub const DEFAULT_WATCH_URI: &str = "sip:{extension}@{domain}";
/// Default `pbx.publish_entity`.
pub const DEFAULT_PUBLISH_ENTITY: &str = "teams-{extension}";

/// `host:port` of a SIP server, as written in the file (a name is resolved when used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// A name or an address; an IPv6 address without its brackets (`::1`).
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// The host as it goes into a SIP URI: an IPv6 address in brackets (`[::1]`).
    pub fn uri_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
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
    /// The port of a server written without one: 5061 for TLS, else 5060.
    pub fn default_port(self) -> u16 {
        match self {
            SipTransport::Tls => DEFAULT_SIPS_PORT,
            SipTransport::Udp | SipTransport::Tcp => DEFAULT_SIP_PORT,
        }
    }

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

impl PublishBody {
    /// As `pbx.publish_body` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishBody::Pidf => "pidf",
            PublishBody::DialogInfo => "dialog-info",
            PublishBody::Both => "both",
        }
    }
}

/// `[pbx]` with `"sip"` in `kind`.
#[derive(Debug, Clone, PartialEq)]
pub struct SipPbxConfig {
    /// `pbx.registrar`: where REGISTER goes, and SUBSCRIBEs too unless `proxy` is set.
    pub registrar: HostPort,
    /// `pbx.proxy`: the outbound proxy every request is sent to, when set.
    pub proxy: Option<HostPort>,
    /// `pbx.transport`: `udp` (default), `tcp` or `tls`.
    pub transport: SipTransport,
    /// Certificate authorities trusted for `transport = "tls"` besides the system's.
    pub ca_file: Option<CaFile>,
    /// The daemon's SIP account (the user part of its From/Contact, and the digest user
    /// unless `auth_username` is set).
    pub username: String,
    /// `pbx.auth_username`: the digest user name when the PBX's differs from the account's
    /// (3CX's authentication ID); `None`: `username`.
    pub auth_username: Option<String>,
    /// Digest password: `pbx.password(_file)` or the credential `sip-password`; `None`: the
    /// PBX trusts the daemon's address and challenges nothing.
    pub password: Option<Secret>,
    /// The SIP domain (From, To, the watched URIs); default: the registrar's host (an IPv6
    /// address in brackets).
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
    /// `pbx.publish_body`: `pidf` (default), `dialog-info` or `both`.
    pub publish_body: PublishBody,
}

impl SipPbxConfig {
    /// The config `[pbx] kind = "sip"` with only `registrar` and `username` written gives
    /// (no password: no digest auth). For tests, and the base of a config built in code.
    pub fn new(registrar: HostPort, username: &str) -> SipPbxConfig {
        SipPbxConfig {
            domain: registrar.uri_host(),
            registrar,
            proxy: None,
            transport: SipTransport::Udp,
            ca_file: None,
            username: username.to_owned(),
            auth_username: None,
            password: None,
            register: true,
            local_address: None,
            subscribe_expires: Duration::from_secs(600),
            subscribe_rate: DEFAULT_SUBSCRIBE_RATE,
            watch_uri: DEFAULT_WATCH_URI.to_owned(),
            watch: BTreeMap::new(),
            presence_server: None,
            publish_entity: DEFAULT_PUBLISH_ENTITY.to_owned(),
            publish_body: PublishBody::Pidf,
        }
    }

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
