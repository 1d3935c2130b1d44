//! Requests the PBX sends us: NOTIFYs in our subscriptions' dialogs (handed to the dialog,
//! whose state channel brings them to the connector), OPTIONS (answered 200), anything else
//! refused. A NOTIFY may come before the 2xx to its SUBSCRIBE (RFC 6665 section 4.1.2.4): the
//! dialog is then made from the NOTIFY instead of answering 481, which would end the
//! subscription. A NOTIFY for a dialog we do not have gets 481, so the PBX ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rsipstack::dialog::dialog::DialogStateSender;
use rsipstack::sip::{HeadersExt, Method, Request, StatusCode};
use rsipstack::transaction::TransactionReceiver;
use rsipstack::transaction::transaction::Transaction;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::stack::Stack;
use crate::listener::refusals::{Cause, Refusals};

/// NOTIFYs being handled at once; beyond this a NOTIFY gets 503 and the PBX sends it again.
const IN_FLIGHT: usize = 1024;

pub static UNKNOWN_DIALOG: Cause = Cause {
    key: "sip_unknown_dialog",
    verb: "answered 481 to",
    one: "a NOTIFY for a subscription the daemon does not have",
    many: "NOTIFYs for subscriptions the daemon does not have",
};
static BUSY: Cause = Cause {
    key: "sip_busy",
    verb: "answered 503 to",
    one: "a NOTIFY (too many in progress)",
    many: "NOTIFYs (too many in progress)",
};
static METHOD: Cause = Cause {
    key: "sip_method",
    verb: "answered 405 to",
    one: "a SIP request the daemon does not take",
    many: "SIP requests the daemon does not take",
};

/// SUBSCRIBEs sent and not yet answered, by (Call-ID, our From tag): the request as sent
/// last (after digest authentication), to make the dialog from an early NOTIFY.
#[derive(Clone, Default)]
pub struct Pending(Arc<Mutex<HashMap<(String, String), Request>>>);

impl Pending {
    pub fn put(&self, call_id: &str, tag: &str, request: Request) {
        self.lock()
            .insert((call_id.to_owned(), tag.to_owned()), request);
    }

    pub fn remove(&self, call_id: &str, tag: &str) {
        self.lock().remove(&(call_id.to_owned(), tag.to_owned()));
    }

    fn get(&self, call_id: &str, tag: &str) -> Option<Request> {
        self.lock()
            .get(&(call_id.to_owned(), tag.to_owned()))
            .cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Request>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub struct Incoming {
    pub stack: Stack,
    pub pending: Pending,
    pub notifies: DialogStateSender,
    pub refusals: Refusals,
    pub cancel: CancellationToken,
    pub tracker: TaskTracker,
}

impl Incoming {
    pub async fn run(self, mut requests: TransactionReceiver) {
        let limit = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let tx = tokio::select! {
                () = self.cancel.cancelled() => break,
                tx = requests.recv() => match tx {
                    Some(tx) => tx,
                    None => break,
                },
            };
            self.take(tx, &limit);
        }
        self.refusals.drain();
    }

    fn take(&self, mut tx: Transaction, limit: &Arc<Semaphore>) {
        self.refusals.flush();
        let answer = match tx.original.method {
            Method::Notify => match self.dialog_of(&tx) {
                Some(mut dialog) => match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        self.tracker.spawn(async move {
                            let handled = dialog.handle(&mut tx).await;
                            if let Err(e) = handled {
                                tracing::debug!(error = %e, "a NOTIFY could not be answered: {e}");
                            }
                            drop(permit);
                        });
                        return;
                    }
                    Err(_) => {
                        self.refusals.refused(&BUSY, || call_id(&tx.original));
                        StatusCode::ServiceUnavailable
                    }
                },
                None => {
                    self.refusals
                        .refused(&UNKNOWN_DIALOG, || call_id(&tx.original));
                    StatusCode::CallTransactionDoesNotExist
                }
            },
            Method::Options => StatusCode::OK,
            Method::Ack => return,
            _ => {
                self.refusals
                    .refused(&METHOD, || tx.original.method.to_string());
                StatusCode::MethodNotAllowed
            }
        };
        self.tracker.spawn(async move {
            if let Err(e) = tx.reply(answer).await {
                tracing::debug!(error = %e, "a SIP answer could not be sent: {e}");
            }
        });
    }

    /// The subscription dialog a NOTIFY belongs to: a known one, or one whose SUBSCRIBE is
    /// still waiting for its answer (made here from the NOTIFY's From tag).
    fn dialog_of(&self, tx: &Transaction) -> Option<rsipstack::dialog::dialog::Dialog> {
        if let Some(dialog) = self.stack.dialogs.match_dialog(tx) {
            return Some(dialog);
        }
        let request = &tx.original;
        let call = request.call_id_header().ok()?.value().to_owned();
        let ours = request.to_header().ok()?.tag().ok()??.value().to_owned();
        let theirs = request.from_header().ok()?.tag().ok()??.value().to_owned();
        let subscribe = self.pending.get(&call, &ours)?;
        self.stack
            .dialogs
            .get_or_create_client_subscription(
                call,
                ours,
                theirs,
                subscribe,
                self.notifies.clone(),
                self.stack.credential.clone(),
                Some(self.stack.contact()),
            )
            .ok()?;
        let dialog = self.stack.dialogs.match_dialog(tx)?;
        super::requests::remote_target(&self.stack, &dialog.id(), &request.headers);
        Some(dialog)
    }
}

fn call_id(request: &Request) -> String {
    request
        .call_id_header()
        .map(|c| format!("Call-ID {}", c.value()))
        .unwrap_or_else(|_| "no Call-ID".into())
}
