//! The SUBSCRIBEs the core asks for, carried out as tasks whose outcome comes back to the
//! connector as a [`Done`]: a new subscription (out of dialog, digest-authenticated, one
//! retry with the PBX's `Min-Expires` after a 423), a refresh within its dialog, and the
//! unsubscribe at shutdown.

use std::time::Duration;

use rsipstack::dialog::dialog::DialogStateSender;
use rsipstack::dialog::subscription::ClientSubscriptionDialog;
use rsipstack::sip::headers::make_header;
use rsipstack::sip::{HeadersExt, Method, Response, StatusCode, StatusCodeKind};
use tokio::sync::mpsc;

use super::incoming::Pending;
use super::notify::seconds;
use super::stack::{Stack, header_value, new_ids, uri};
use super::watch::{Failure, SubId};

/// The expiry asked for after a 423 that names no `Min-Expires`.
const LONGEST: Duration = Duration::from_secs(3600);

/// How a request the core asked for ended.
pub enum Done {
    /// A new subscription was accepted: its dialog and the granted expiry.
    Subscribed {
        id: SubId,
        dialog: ClientSubscriptionDialog,
        expires: Duration,
    },
    /// A refresh was accepted.
    Refreshed {
        id: SubId,
        expires: Duration,
    },
    /// A probe refresh was answered 481: the PBX no longer knows the subscription.
    Forgotten {
        id: SubId,
    },
    Failed {
        id: SubId,
        failure: Failure,
    },
}

/// What a new subscription needs.
pub struct NewSub {
    pub id: SubId,
    pub uri: String,
    pub expires: Duration,
    pub call_id: String,
    pub tag: String,
}

impl NewSub {
    pub fn new(id: SubId, uri: &str, expires: Duration) -> NewSub {
        let (call_id, tag) = new_ids();
        NewSub {
            id,
            uri: uri.to_owned(),
            expires,
            call_id,
            tag,
        }
    }
}

/// Send a new SUBSCRIBE and report how it ended.
pub async fn subscribe(
    stack: Stack,
    pending: Pending,
    notifies: DialogStateSender,
    sub: NewSub,
    done: mpsc::Sender<Done>,
) {
    let id = sub.id;
    let outcome = match try_subscribe(&stack, &pending, &notifies, &sub).await {
        Ok((dialog, expires)) => Done::Subscribed {
            id,
            dialog,
            expires,
        },
        Err(failure) => Done::Failed { id, failure },
    };
    pending.remove(&sub.call_id, &sub.tag);
    // The connector may be gone (shutting down): nothing to tell then.
    let _ = done.send(outcome).await;
}

async fn try_subscribe(
    stack: &Stack,
    pending: &Pending,
    notifies: &DialogStateSender,
    sub: &NewSub,
) -> Result<(ClientSubscriptionDialog, Duration), Failure> {
    let target = uri(&sub.uri).map_err(|_| Failure::Status(416))?;
    let mut expires = sub.expires;
    let mut seq = 1;
    for _ in 0..2 {
        let mut request = stack
            .request(Method::Subscribe, &target, &sub.call_id, &sub.tag, seq)
            .map_err(|_| Failure::Transport)?;
        request.headers.extend(dialog_headers(expires));
        pending.put(&sub.call_id, &sub.tag, request.clone());
        let remember = |r: &rsipstack::sip::Request| pending.put(&sub.call_id, &sub.tag, r.clone());
        let answer = match stack.send(request, &remember).await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Err(Failure::Timeout),
            Err(_) => return Err(Failure::Transport),
        };
        let status = answer.response.status_code.clone();
        if status == StatusCode::IntervalTooBrief && expires < LONGEST {
            // Asterisk's 423 carries no Min-Expires: then the longest we ask for.
            expires = header_value(&answer.response.headers, "Min-Expires")
                .and_then(seconds)
                .unwrap_or(LONGEST)
                .max(expires);
            seq = answer
                .request
                .cseq_header()
                .ok()
                .and_then(|c| c.seq().ok())
                .unwrap_or(seq)
                + 1;
            continue;
        }
        if status.kind() != StatusCodeKind::Successful {
            return Err(Failure::Status(status.code()));
        }
        let to_tag = answer
            .response
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .ok_or(Failure::Transport)?;
        let dialog = stack
            .dialogs
            .get_or_create_client_subscription(
                sub.call_id.clone(),
                sub.tag.clone(),
                to_tag.value().to_owned(),
                answer.request,
                notifies.clone(),
                stack.credential.clone(),
                Some(stack.contact()),
            )
            .map_err(|_| Failure::Transport)?;
        remote_target(stack, &dialog.id(), &answer.response.headers);
        return Ok((dialog, granted(&answer.response, expires)));
    }
    Err(Failure::Status(423))
}

/// Send the dialog's later requests (refreshes) to the `Contact` the PBX gave (RFC 6665
/// section 4.1.2.1 via RFC 3261 section 12.1.2), not to the URI first subscribed to: the
/// SIP stack keeps the latter unless told (Kamailio answers from `sip:host:5080`).
pub fn remote_target(
    stack: &Stack,
    id: &rsipstack::dialog::DialogId,
    headers: &rsipstack::sip::Headers,
) {
    let contact = headers.iter().find_map(|h| match h {
        rsipstack::sip::Header::Contact(c) => Some(c.clone()),
        _ => None,
    });
    let Some(contact) = contact else {
        return;
    };
    let Ok(typed) = rsipstack::sip::headers::ToTypedHeader::typed(&contact) else {
        return;
    };
    let mut target = typed.uri;
    // Over TCP/TLS, a Contact without `transport` (Kamailio's `sip:host:5080`) is still
    // reached over the configured transport, on the open connection.
    if let Some(t) = stack
        .next_hop
        .r#type
        .filter(|t| *t != rsipstack::sip::Transport::Udp)
        && !target
            .params
            .iter()
            .any(|p| matches!(p, rsipstack::sip::Param::Transport(_)))
    {
        target.params.push(rsipstack::sip::Param::Transport(t));
    }
    if let Some(dialog) = stack.dialogs.get_dialog(id) {
        dialog.set_remote_target(target, Some(contact));
    }
}

/// Refresh a subscription within its dialog.
pub async fn refresh(
    dialog: ClientSubscriptionDialog,
    id: SubId,
    expires: Duration,
    done: mpsc::Sender<Done>,
) {
    let outcome = match dialog.subscribe(Some(dialog_headers(expires)), None).await {
        Ok(Some(resp)) if resp.status_code.kind() == StatusCodeKind::Successful => {
            Done::Refreshed {
                id,
                expires: granted(&resp, expires),
            }
        }
        Ok(Some(resp)) => Done::Failed {
            id,
            failure: Failure::Status(resp.status_code.code()),
        },
        Ok(None) => Done::Failed {
            id,
            failure: Failure::Timeout,
        },
        Err(_) => Done::Failed {
            id,
            failure: Failure::Transport,
        },
    };
    let _ = done.send(outcome).await;
}

/// Refresh one subscription to learn whether the PBX still knows it (a restart that was
/// too quick for the keep-alive to notice loses every subscription): a 481 is
/// [`Done::Forgotten`]; anything else says nothing.
pub async fn probe(
    dialog: ClientSubscriptionDialog,
    id: SubId,
    expires: Duration,
    done: mpsc::Sender<Done>,
) {
    let headers = vec![
        make_header("Event", "dialog".into()),
        make_header("Expires", expires.as_secs().to_string()),
    ];
    if let Ok(Some(resp)) = dialog.subscribe(Some(headers), None).await
        && resp.status_code == StatusCode::CallTransactionDoesNotExist
    {
        let _ = done.send(Done::Forgotten { id }).await;
    }
}

/// End a subscription (`Expires: 0`); the answer does not matter any more.
pub async fn unsubscribe(stack: Stack, dialog: ClientSubscriptionDialog) {
    if let Err(e) = dialog.unsubscribe().await {
        tracing::debug!(error = %e, "an unsubscribe was not answered: {e}");
    }
    stack.dialogs.remove_dialog(&dialog.id());
}

/// What every SUBSCRIBE of the dialog package carries, new or refresh.
fn dialog_headers(expires: Duration) -> Vec<rsipstack::sip::Header> {
    vec![
        make_header("Event", "dialog".into()),
        make_header("Accept", "application/dialog-info+xml".into()),
        make_header("Expires", expires.as_secs().to_string()),
    ]
}

/// The expiry the PBX granted (its `Expires`), else the one asked for.
fn granted(response: &Response, asked: Duration) -> Duration {
    header_value(&response.headers, "Expires")
        .and_then(seconds)
        .unwrap_or(asked)
}
