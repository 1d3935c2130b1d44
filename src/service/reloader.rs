//! The reloader task: watches the config and users files, re-reads them when they change (off
//! the runtime), reads the voicemail boxes (over AMI, when configured) and the Entra group's
//! members (`users.entra_group`, also every `sync.resolve_interval`), and hands the main loop
//! a validated config with the list of what changed. An invalid change is logged with its
//! reason and the last good config stays in force. The waits (disk, network) happen here, so
//! the main loop only applies what arrives.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use tokio::sync::watch;

use super::group::{self, GroupUsers};
use super::{LogReload, voicemail};
use crate::clock::Clock;
use crate::config::{self, Change, Config, Directory, FileWatch};
use crate::graph::GraphClient;
use crate::pbx::asterisk::ami::VoicemailUser;
use crate::store::{MetaKey, Store, Write};

/// How long one config change must be quiet before it is applied (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// A valid change for the main loop.
#[derive(Debug)]
pub struct Reloaded {
    pub config: Config,
    pub directory: Arc<Directory>,
    pub changes: Vec<Change>,
}

/// What the reloader starts from: the config in force and what it was made of.
pub struct Reloader {
    pub path: PathBuf,
    pub config: Config,
    pub directory: Arc<Directory>,
    /// The voicemail boxes last read (kept when a later read fails: nobody is dropped).
    pub voicemail: Vec<VoicemailUser>,
    /// The Entra group's members last read (kept when a later read fails, likewise).
    pub group: GroupUsers,
    /// The Graph client the group is read with.
    pub graph: watch::Receiver<GraphClient>,
    pub log_reload: Option<LogReload>,
    pub store: Store,
    pub clock: Clock,
    pub out: mpsc::Sender<Reloaded>,
}

impl Reloader {
    pub fn spawn(self, cancel: CancellationToken, tracker: &TaskTracker) {
        tracker.spawn(self.run(cancel).instrument(tracing::info_span!("reload")));
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut watch = watch_config(&self.config);
        loop {
            // The group changes in Entra, not in a file: read again every resolve_interval.
            let reread = self.config.users.entra_group.is_some();
            let every = self.config.sync.resolve_interval;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every), if reread => {}
                changed = changed(&mut watch) => {
                    if changed.is_none() {
                        tracing::warn!("the config file watcher stopped; changes need a restart");
                        watch = None;
                        continue;
                    }
                }
            }
            let Some(reloaded) = self.reload().await else {
                continue;
            };
            if reloaded.changes.contains(&Change::UsersFile) {
                watch = watch_config(&self.config);
            }
            if reloaded.changes.contains(&Change::LogLevel) {
                self.set_log_level();
            }
            if self.out.send(reloaded).await.is_err() {
                return;
            }
        }
    }

    /// Read everything again; `None` when nothing changed or the change is invalid.
    async fn reload(&mut self) -> Option<Reloaded> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load_all(&path)).await;
        let (config, file_users) = match loaded {
            Ok(Ok(new)) => new,
            Err(e) => {
                tracing::error!(error = %e, "config reload task failed: {e}");
                return None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "config change ignored, the last good config stays in force: {e}");
                self.record(e.to_string()).await;
                return None;
            }
        };
        match voicemail::fetch(&config).await {
            Some(Ok(boxes)) => self.voicemail = boxes,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "voicemail boxes not read ({e}); the ones read before are kept");
                self.record(format!("voicemail users: {e}")).await;
            }
            None => self.voicemail.clear(),
        }
        let local = voicemail::merge(file_users, &self.voicemail);
        let fresh = self.read_group(&config).await;
        let (directory, conflicts) = group::merge(local, &self.group.entries);
        if fresh {
            group::say(&config, &self.group, conflicts);
        }
        let changes = config::diff((&self.config, &self.directory), (&config, &directory));
        if changes.is_empty() {
            return None;
        }
        tracing::info!(?changes, "config change applied");
        self.config = config.clone();
        if *self.directory != directory {
            self.directory = Arc::new(directory);
        }
        Some(Reloaded {
            config,
            directory: Arc::clone(&self.directory),
            changes,
        })
    }

    /// Reads the group again; a failed read keeps the members read before. True when the
    /// read found something else than before (to be said once merged).
    async fn read_group(&mut self, config: &Config) -> bool {
        let graph = self.graph.borrow().clone();
        match group::fetch(config, &graph).await {
            None => {
                self.group = GroupUsers::default();
                false
            }
            Some(Ok(users)) => {
                let changed = users != self.group;
                if changed {
                    let unusable = group::shown(&users.unusable);
                    self.store
                        .write(Write::SetMeta {
                            key: MetaKey::GroupUnusable,
                            value: unusable,
                        })
                        .await;
                }
                self.group = users;
                changed
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "users.entra_group not read ({e}); the members read before are kept");
                self.record(format!("users.entra_group: {e}")).await;
                false
            }
        }
    }

    fn set_log_level(&self) {
        if let Some(reload) = &self.log_reload
            && let Err(e) = reload(&self.config.log.level)
        {
            tracing::warn!(error = %e, "log.level not applied: {e}");
        }
    }

    async fn record(&self, message: String) {
        let error = Write::RecordError {
            component: "config".into(),
            user: None,
            message,
            at: self.clock.now(),
        };
        self.store.write(error).await;
    }
}

/// Watch the config and users files; without a watcher (e.g. inotify limits) the daemon still
/// runs and says that reloads need a restart.
fn watch_config(config: &Config) -> Option<FileWatch> {
    let paths = vec![config.source.clone(), config.users.file.clone()];
    match config::watch_files(paths, DEBOUNCE) {
        Ok(watch) => Some(watch),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config files ({e}); changes need a restart");
            None
        }
    }
}

async fn changed(watch: &mut Option<FileWatch>) -> Option<()> {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}
