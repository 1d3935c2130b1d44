//! Teams -> SIP presence server (`pbx.presence_server`): each user's mapped Teams state is
//! PUBLISHed (RFC 3903) as the entity `teams-{extension}` (`pbx.publish_entity`), as PIDF
//! and/or dialog-info (`pbx.publish_body`), so that a BLF key on any phone subscribed there
//! lights with Teams presence. The first PUBLISH of an entity creates its publication; later
//! ones modify it with `SIP-If-Match` and refresh it before it expires; a 412 (the server
//! forgot it, e.g. after a restart) starts a new one. At shutdown every publication is
//! removed (`Expires: 0`): no lamp stays lit for a daemon that is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use rsipstack::sip::{Method, StatusCodeKind};
use rsipstack::transport::SipAddr;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::publish_body::{dialog_info, pidf};
use super::stack::{Stack, header, header_value, new_ids, uri};
use crate::config::{PublishBody, SipPbxConfig};
use crate::metrics::Metrics;
use crate::pbx::PbxUpdate;
use crate::pbx::mailbox::{Pending, PushQueue};
use crate::pbx::push::acknowledged;

/// The `Expires` of a publication; it is refreshed at 80 %.
const EXPIRES: Duration = Duration::from_secs(600);
const CONCURRENCY: usize = 8;
const BATCH: usize = 256;
/// The answer to a `SIP-If-Match` the server does not know (RFC 3903 section 6).
const CONDITIONAL_REQUEST_FAILED: u16 = 412;
/// Retries of a failed PUBLISH: 200 ms doubling up to 30 s, with jitter.
const RETRY: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(30));

/// One event package's publication of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Package {
    Presence,
    Dialog,
}

impl Package {
    fn event(self) -> &'static str {
        match self {
            Package::Presence => "presence",
            Package::Dialog => "dialog",
        }
    }
}

#[derive(Debug, Default)]
struct Publication {
    etag: Option<String>,
    /// When to refresh it.
    due: Option<Instant>,
    version: u32,
}

/// Why a PUBLISH failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("no answer from the presence server")]
    NoAnswer,
    #[error("the presence server answered {0}")]
    Status(u16),
    #[error("{0}")]
    Stack(#[from] super::StackError),
}

pub struct Publisher {
    pub stack: Stack,
    pub server: SipAddr,
    pub config: Arc<SipPbxConfig>,
    pub queue: PushQueue,
    pub delivered: mpsc::Sender<Vec<PbxUpdate>>,
    pub metrics: Metrics,
    /// Checked before each PUBLISH (`[ha]`: only the leader publishes).
    pub fence: crate::fence::Fence,
    pub cancel: CancellationToken,
}

/// The presence server's address, resolved.
pub async fn server(config: &SipPbxConfig) -> Result<Option<SipAddr>, super::StackError> {
    let Some(at) = &config.presence_server else {
        return Ok(None);
    };
    let addr = super::stack::resolve(&at.host, at.port, "pbx.presence_server").await?;
    Ok(Some(SipAddr {
        r#type: Some(super::stream::transport(config.transport)),
        addr: addr.into(),
    }))
}

type Book = HashMap<(String, Package), Publication>;

impl Publisher {
    pub async fn run(self) {
        let mut pending = Pending::new();
        let mut book = Book::new();
        let mut last: HashMap<String, PbxUpdate> = HashMap::new();
        let mut failures: u32 = 0;
        loop {
            let wake = next_due(&book);
            let refresh = tokio::select! {
                () = self.cancel.cancelled() => break,
                () = self.queue.take_into(&mut pending) => false,
                () = tokio::time::sleep_until(wake) => true,
            };
            if let Err(fenced) = self.fence.check() {
                // A deposed leader neither publishes nor removes: the new leader's states stand.
                tracing::info!(node = %fenced.node, "SIP: no more PUBLISH: {fenced}");
                return;
            }
            if refresh {
                self.refresh_due(&mut book, &last).await;
                continue;
            }
            let batch: Vec<PbxUpdate> = pending.values().take(BATCH).cloned().collect();
            let results = self.publish_all(&batch, &mut book).await;
            let mut done = Vec::new();
            let mut error = None;
            for (update, result) in batch.into_iter().zip(results) {
                self.metrics.pbx_pushes(result.is_ok(), 1);
                match result {
                    Ok(()) => {
                        if pending.get(&update.extension) == Some(&update) {
                            pending.remove(&update.extension);
                        }
                        last.insert(update.extension.clone(), update.clone());
                        done.push(update);
                    }
                    Err(e) => error = Some(e),
                }
            }
            acknowledged(&self.metrics, &done);
            if !done.is_empty() && self.delivered.send(done).await.is_err() {
                break;
            }
            failures = self.after(error, failures, pending.len()).await;
        }
        self.remove_all(&mut book).await;
    }

    /// Log the first failure of an outage and its end; wait before the next try.
    async fn after(&self, error: Option<PublishError>, failures: u32, pending: usize) -> u32 {
        let Some(e) = error else {
            if failures > 0 {
                tracing::info!(
                    failures,
                    "SIP: publishing Teams states works again (after {failures} failures)"
                );
            }
            return 0;
        };
        if failures == 0 {
            tracing::warn!(error = %e, pending,
                "SIP: publishing Teams states to the presence server failed ({e}); {pending} pending, retrying with backoff");
        }
        let failures = failures.saturating_add(1);
        tokio::select! {
            () = self.cancel.cancelled() => {}
            () = tokio::time::sleep(RETRY.delay(failures)) => {}
        }
        failures
    }

    async fn publish_all(
        &self,
        batch: &[PbxUpdate],
        book: &mut Book,
    ) -> Vec<Result<(), PublishError>> {
        let mut work = Vec::new();
        for update in batch {
            for package in self.packages() {
                let publication = book
                    .remove(&(update.extension.clone(), package))
                    .unwrap_or_default();
                work.push((update.clone(), package, publication));
            }
        }
        let outcomes: Vec<_> = stream::iter(work)
            .map(|(update, package, mut publication)| async move {
                let r = self.publish(&update, package, &mut publication).await;
                (update.extension, package, publication, r)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut per_user: HashMap<String, Result<(), PublishError>> = HashMap::new();
        for (extension, package, publication, result) in outcomes {
            book.insert((extension.clone(), package), publication);
            let entry = per_user.entry(extension).or_insert(Ok(()));
            if let Err(e) = result {
                *entry = Err(e);
            }
        }
        batch
            .iter()
            .map(|u| per_user.remove(&u.extension).unwrap_or(Ok(())))
            .collect()
    }

    fn packages(&self) -> Vec<Package> {
        match self.config.publish_body {
            PublishBody::Pidf => vec![Package::Presence],
            PublishBody::DialogInfo => vec![Package::Dialog],
            PublishBody::Both => vec![Package::Presence, Package::Dialog],
        }
    }

    /// Publish a user's state (a modify when the publication exists; a new one after a 412).
    async fn publish(
        &self,
        update: &PbxUpdate,
        package: Package,
        p: &mut Publication,
    ) -> Result<(), PublishError> {
        let entity = self.config.publish_uri_of(&update.extension);
        p.version = p.version.wrapping_add(1);
        let body = match package {
            Package::Presence => pidf(
                &entity,
                &update.state,
                &format!("{}/{}", update.availability, update.activity),
            ),
            Package::Dialog => dialog_info(&entity, &update.state, p.version),
        };
        let result = self
            .send(&entity, package, p.etag.as_deref(), Some(&body), EXPIRES)
            .await;
        let result = match result {
            Err(PublishError::Status(CONDITIONAL_REQUEST_FAILED)) => {
                self.send(&entity, package, None, Some(&body), EXPIRES)
                    .await
            }
            other => other,
        };
        let etag = result?;
        p.etag = etag;
        p.due = Some(crate::clock::monotonic() + EXPIRES * 8 / 10);
        tracing::debug!(extension = %update.extension, entity = %entity, state = %update.state,
            "{}: {} published to the presence server as {entity}", update.extension, update.state);
        Ok(())
    }

    /// One PUBLISH; returns the server's `SIP-ETag`.
    async fn send(
        &self,
        entity: &str,
        package: Package,
        etag: Option<&str>,
        body: Option<&str>,
        expires: Duration,
    ) -> Result<Option<String>, PublishError> {
        let target = uri(entity)?;
        let (call_id, tag) = new_ids();
        let mut request = self
            .stack
            .request(Method::Publish, &target, &call_id, &tag, 1)?;
        header(&mut request, "Event", package.event());
        header(&mut request, "Expires", expires.as_secs().to_string());
        if let Some(etag) = etag {
            header(&mut request, "SIP-If-Match", etag);
        }
        if let Some(body) = body {
            let kind = match package {
                Package::Presence => "application/pidf+xml",
                Package::Dialog => "application/dialog-info+xml",
            };
            header(&mut request, "Content-Type", kind);
            request.body = body.as_bytes().to_vec();
        }
        let answer = self
            .stack
            .send_to(request, &self.server, &|_| {})
            .await?
            .ok_or(PublishError::NoAnswer)?;
        let status = &answer.response.status_code;
        if status.kind() != StatusCodeKind::Successful {
            return Err(PublishError::Status(status.code()));
        }
        Ok(header_value(&answer.response.headers, "SIP-ETag").map(str::to_owned))
    }

    /// Refresh the publications that are due (no body, `SIP-If-Match`); one the server
    /// forgot is published again in full from the last state.
    async fn refresh_due(&self, book: &mut Book, last: &HashMap<String, PbxUpdate>) {
        let now = crate::clock::monotonic();
        let due: Vec<(String, Package)> = book
            .iter()
            .filter(|(_, p)| p.due.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        for (extension, package) in due {
            let Some(p) = book.get_mut(&(extension.clone(), package)) else {
                continue;
            };
            let entity = self.config.publish_uri_of(&extension);
            let refreshed = self
                .send(&entity, package, p.etag.as_deref(), None, EXPIRES)
                .await;
            match (refreshed, last.get(&extension)) {
                (Ok(etag), _) => {
                    p.etag = etag.or(p.etag.take());
                    p.due = Some(now + EXPIRES * 8 / 10);
                }
                (Err(_), Some(update)) => {
                    p.etag = None;
                    if self.publish(update, package, p).await.is_err() {
                        p.due = Some(now + RETRY.delay(3));
                    }
                }
                (Err(_), None) => p.due = Some(now + RETRY.delay(3)),
            }
        }
    }

    /// At shutdown every lamp goes off and every publication is removed, a few at a time,
    /// for at most 3 s in all. Off first (a modify to "unknown": no dialog, PIDF closed),
    /// because a server may tell watchers of a removal only later (Kamailio's presence
    /// module does on its cleanup timer).
    async fn remove_all(&self, book: &mut Book) {
        let all: Vec<_> = book
            .drain()
            .filter_map(|(k, p)| Some((k, p.etag?, p.version)))
            .collect();
        let removals = stream::iter(all).for_each_concurrent(
            CONCURRENCY * 4,
            |((ext, package), etag, version)| async move {
                if let Err(e) = self.remove(&ext, package, &etag, version).await {
                    tracing::debug!(extension = %ext, error = %e,
                        "{ext}: the publication could not be removed ({e}); it expires by itself");
                }
            },
        );
        let _ = tokio::time::timeout(Duration::from_secs(3), removals).await;
    }

    async fn remove(
        &self,
        ext: &str,
        package: Package,
        etag: &str,
        version: u32,
    ) -> Result<(), PublishError> {
        let entity = self.config.publish_uri_of(ext);
        let off = match package {
            Package::Presence => pidf(&entity, "unknown", "unknown (pbx-teams-presence stopped)"),
            Package::Dialog => dialog_info(&entity, "unknown", version.wrapping_add(1)),
        };
        let etag = self
            .send(&entity, package, Some(etag), Some(&off), EXPIRES)
            .await?
            .unwrap_or_else(|| etag.to_owned());
        self.send(&entity, package, Some(&etag), None, Duration::ZERO)
            .await
            .map(|_| ())
    }
}

fn next_due(book: &Book) -> Instant {
    let later = crate::clock::monotonic() + Duration::from_secs(3600);
    book.values().filter_map(|p| p.due).min().unwrap_or(later)
}
