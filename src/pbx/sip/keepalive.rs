//! Staying in touch with the PBX: REGISTER (when `pbx.register`), refreshed before it
//! expires, and an OPTIONS every [`EVERY`]. Three unanswered OPTIONS in a row make the link
//! down (`status`, metrics); the first answer after that is news for the core: the PBX may
//! have restarted and forgotten every subscription, so all are made again. A restart noticed
//! so is noticed within `3 * EVERY + ANSWER_WAIT`, 35 s at most. Over TCP and TLS, each round
//! first checks the connection (opening it again if it closed): a new connection is a new
//! Contact, and the same news.

use std::time::Duration;

use rsipstack::sip::{Method, StatusCodeKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::stack::{Stack, header, new_ids, uri};
use crate::pbx::{LinkLost, LinkState};

pub const EVERY: Duration = Duration::from_secs(10);
/// How long an OPTIONS may go unanswered (UDP retransmits inside it).
const ANSWER_WAIT: Duration = Duration::from_secs(5);
const MISSES: u32 = 3;
/// The `Expires` asked for in REGISTER.
const REGISTER_EXPIRES: u32 = 600;

/// What the keep-alive tells the connector.
#[derive(Debug)]
pub enum News {
    /// The PBX answers again after being silent (or restarted): subscribe again.
    Restarted,
}

pub struct KeepAlive {
    pub stack: Stack,
    pub domain: String,
    pub register: bool,
    pub news: mpsc::Sender<News>,
    pub status: mpsc::Sender<LinkState>,
    pub cancel: CancellationToken,
}

impl KeepAlive {
    pub async fn run(self) {
        let mut misses = 0;
        let mut up = false;
        let mut registered_until = crate::clock::monotonic();
        // Not registered yet, registered, refused (said once until it works).
        let mut registered: Option<bool> = None;
        // Over TCP/TLS: connected (said), not connected (said), nothing said yet.
        let mut connected: Option<bool> = None;
        loop {
            if self.connection(&mut connected).await {
                tracing::info!("SIP: a new connection to the server; subscribing every user again");
                let _ = self.news.send(News::Restarted).await;
                registered_until = crate::clock::monotonic();
            }
            let answered = self.options().await;
            if answered && self.register && crate::clock::monotonic() >= registered_until {
                let outcome = self.register_once().await;
                self.say(&outcome, registered);
                registered = Some(outcome.is_ok());
                let again_in = match outcome {
                    Ok(()) => Duration::from_secs(u64::from(REGISTER_EXPIRES) * 8 / 10),
                    Err(_) => Duration::from_secs(60),
                };
                registered_until = crate::clock::monotonic() + again_in;
            }
            match (answered, up) {
                (true, false) => {
                    if misses >= MISSES {
                        tracing::info!("SIP: the PBX answers again; subscribing every user again");
                        let _ = self.news.send(News::Restarted).await;
                    }
                    misses = 0;
                    up = true;
                    let _ = self.status.send(LinkState::Connected).await;
                }
                (true, true) => misses = 0,
                (false, _) => {
                    misses += 1;
                    if misses == MISSES && up {
                        up = false;
                        let lost = LinkLost::Sip(format!("no answer to {MISSES} OPTIONS in a row"));
                        let _ = self.status.send(LinkState::Disconnected(lost)).await;
                    }
                }
            }
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// Over TCP/TLS: the connection is open (opened again if it was closed), said when that
    /// changes. `true` when it is not the connection the Contact named.
    async fn connection(&self, connected: &mut Option<bool>) -> bool {
        let server = &self.stack.next_hop;
        let transport = server.r#type.unwrap_or_default();
        match self.stack.connect().await {
            Ok(changed) => {
                if *connected != Some(true) && transport != rsipstack::sip::Transport::Udp {
                    let local = self.stack.local_addr();
                    tracing::info!(local = %local,
                        "SIP: connected to {} over {transport} from {local}", server.addr);
                }
                *connected = Some(true);
                changed
            }
            Err(e) => {
                if *connected != Some(false) {
                    let hint = match transport {
                        rsipstack::sip::Transport::Tls => {
                            " (a certificate refused: its CA goes in pbx.ca_file, and it must be valid for the host of pbx.proxy or pbx.registrar)"
                        }
                        _ => "",
                    };
                    tracing::warn!(error = %e,
                        "SIP: {e}{hint}; trying again every {} s", EVERY.as_secs());
                }
                *connected = Some(false);
                false
            }
        }
    }

    /// One OPTIONS to the SIP server: any final answer means it is there.
    async fn options(&self) -> bool {
        let Ok(target) = uri(&format!("sip:{}", self.domain)) else {
            return false;
        };
        let (call_id, tag) = new_ids();
        let Ok(request) = self
            .stack
            .request(Method::Options, &target, &call_id, &tag, 1)
        else {
            return false;
        };
        let send = self.stack.send(request, &|_| {});
        matches!(
            tokio::time::timeout(ANSWER_WAIT, send).await,
            Ok(Ok(Some(_)))
        )
    }

    /// A registration's outcome, said when it changes.
    fn say(&self, outcome: &Result<(), Option<u16>>, before: Option<bool>) {
        let aor = &self.stack.aor;
        match (outcome, before) {
            (Ok(()), Some(true)) => tracing::debug!("SIP: registered as {aor}"),
            (Ok(()), _) => tracing::info!(aor = %aor, "SIP: registered as {aor}"),
            (Err(Some(code)), None | Some(true)) => tracing::warn!(status = code, aor = %aor,
                "SIP: REGISTER as {aor} was answered {code}; check pbx.username and the password (credential sip-password), or set pbx.register = false if the PBX takes subscriptions without it; trying again every minute"),
            (Err(None), None | Some(true)) => tracing::warn!(aor = %aor,
                "SIP: REGISTER as {aor} was not answered; trying again every minute"),
            (Err(_), Some(false)) => {}
        }
    }

    /// REGISTER once: `Err(Some(status))` refused, `Err(None)` not answered.
    async fn register_once(&self) -> Result<(), Option<u16>> {
        let Ok(target) = uri(&format!("sip:{}", self.domain)) else {
            return Err(None);
        };
        let (call_id, tag) = new_ids();
        let Ok(mut request) = self
            .stack
            .request(Method::Register, &target, &call_id, &tag, 1)
        else {
            return Err(None);
        };
        // A REGISTER's To is the address of record.
        request
            .headers
            .retain(|h| !h.name().eq_ignore_ascii_case("To"));
        header(&mut request, "To", format!("<{}>", self.stack.aor));
        header(&mut request, "Expires", REGISTER_EXPIRES.to_string());
        match self.stack.send(request, &|_| {}).await {
            Ok(Some(a)) if a.response.status_code.kind() == StatusCodeKind::Successful => Ok(()),
            Ok(Some(a)) => Err(Some(a.response.status_code.code())),
            _ => Err(None),
        }
    }
}
