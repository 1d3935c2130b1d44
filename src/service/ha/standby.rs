//! A standby's own link to Asterisk (`[ha]` with `pbx.kind = "asterisk"`): the ARI events
//! WebSocket under the node's own application name, `ARI_APP-NODE` (a second WebSocket on the
//! leader's application would take its events away: Asterisk replaces an application's
//! WebSocket, `ApplicationReplaced`). It subscribes every user's devices, reads their states
//! and follows them, and writes nothing. So before any take-over the node has shown that it
//! reaches Asterisk, and `status` says so (`ha_nodes.detail`: `pbx_link=`, `pbx_calls=`).
//! On taking over, the daemon's own listener subscribes and reads every device state again
//! (the resync): what the PBX did during the take-over is read, not missed.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::AsteriskPbxConfig;
use crate::ha::sql::{self, PgTarget};
use crate::pbx::LinkState;
use crate::pbx::asterisk::{self, AriError, AsteriskLinks};
use crate::sync::types::{CallState, PbxEvent};

/// The ARI application a standby uses: the leader's, suffixed with the node's name.
pub fn app_of(config: &AsteriskPbxConfig, node: &str) -> String {
    format!("{}-{node}", config.ari_app)
}

/// What `ha_nodes.detail` says of the standby's link: `pbx_link=... pbx_calls=N`, or nothing.
pub type LinkView = watch::Sender<String>;

/// The standby's link while it runs; dropping it stops it.
pub struct Standby {
    cancel: CancellationToken,
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Start following Asterisk as `node`'s standby. The users are the users file's extensions
/// and the ones the leader stored (voicemail boxes, an Entra group).
pub fn start(
    config: &AsteriskPbxConfig,
    node: &str,
    file: &[String],
    target: &PgTarget,
    view: &LinkView,
    tracker: &TaskTracker,
) -> Result<Standby, AriError> {
    let mut config = config.clone();
    config.ari_app = app_of(&config, node);
    let cancel = CancellationToken::new();
    let (users_tx, users) = watch::channel(Arc::new(sorted(file.to_vec())));
    let (events_tx, events) = mpsc::channel(64);
    let (status_tx, status) = mpsc::channel(8);
    let (delivered, _) = mpsc::channel(1);
    let links = AsteriskLinks {
        users,
        events: events_tx,
        delivered,
        status: status_tx,
        metrics: crate::metrics::Metrics::new(),
        fence: crate::fence::Fence::for_node(node),
    };
    asterisk::spawn_listener(&config, links, &cancel, tracker)?;
    let follow = Follow {
        calls: HashMap::new(),
        connected: None,
        view: view.clone(),
    };
    tracker.spawn(
        follow
            .run(events, status, cancel.clone())
            .instrument(tracing::info_span!("asterisk_standby")),
    );
    let (target, file) = (target.clone(), file.to_vec());
    tracker.spawn(stored_users(target, file, users_tx, cancel.clone()));
    tracing::info!(app = %config.ari_app,
        "node {node} (standby) follows Asterisk's devices over ARI as application {}, ready to lead", config.ari_app);
    Ok(Standby { cancel })
}

fn sorted(mut users: Vec<String>) -> Vec<String> {
    users.sort();
    users.dedup();
    users
}

/// Adds the users the leader stored to the file's, once (the daemon's users at the last
/// term); a database out of reach leaves the file's. Holds the sender until cancelled (the
/// listener stops when its users' sender is gone).
async fn stored_users(
    target: PgTarget,
    file: Vec<String>,
    users: watch::Sender<Arc<Vec<String>>>,
    cancel: CancellationToken,
) {
    let read = async {
        let client = target.connect(None).await.ok()?;
        sql::extensions(&client).await.ok()
    };
    let stored = tokio::select! {
        () = cancel.cancelled() => return,
        stored = read => stored,
    };
    if let Some(stored) = stored {
        let all = sorted(file.into_iter().chain(stored).collect());
        if all.len() != users.borrow().len() {
            users.send_replace(Arc::new(all));
        }
    }
    cancel.cancelled().await;
}

/// Keeps the standby's view of the calls, for `status`.
struct Follow {
    calls: HashMap<String, CallState>,
    /// `None` until the first connection, then whether it is up.
    connected: Option<bool>,
    view: LinkView,
}

impl Follow {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Vec<PbxEvent>>,
        mut status: mpsc::Receiver<LinkState>,
        cancel: CancellationToken,
    ) {
        self.show();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(batch) = events.recv() => {
                    for e in batch {
                        self.calls.insert(e.extension.to_string(), e.state);
                    }
                }
                Some(link) = status.recv() => {
                    self.connected = Some(matches!(link, LinkState::Connected));
                }
                else => break,
            }
            self.show();
        }
        self.view.send_replace(String::new());
    }

    fn show(&self) {
        let text = match self.connected {
            Some(true) => {
                let calls = self.calls.values().filter(|s| **s != CallState::Idle);
                format!("pbx_link=connected pbx_calls={}", calls.count())
            }
            Some(false) => "pbx_link=lost".to_owned(),
            None => "pbx_link=connecting".to_owned(),
        };
        self.view.send_if_modified(|v| {
            let changed = *v != text;
            *v = text;
            changed
        });
    }
}
