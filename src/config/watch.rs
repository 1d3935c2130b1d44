//! Watches files for changes and says "reload" once a burst of changes has settled.
//!
//! Editors and config management replace files by writing a temporary file and renaming it
//! over the old one, which breaks a watch on the file itself; so the parent directories are
//! watched and events are filtered by file name (as rathole's `config_watcher.rs` does).
//! Reads (including our own reload) are ignored, so a reload cannot trigger another.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::ConfigError;

/// Keeps the watch alive; dropping it stops watching and closes the receiver.
#[derive(Debug)]
pub struct FileWatch {
    /// The OS watcher; its callback owns the sender that feeds the debounce task.
    _watcher: RecommendedWatcher,
}

/// Watches `paths` (their parent directories, filtered to their names) and sends one `()`
/// after `debounce` without further changes. Must be called inside a tokio runtime. The
/// channel holds one pending signal: more changes before it is read coalesce into it.
pub fn watch_files(
    paths: Vec<PathBuf>,
    debounce: Duration,
) -> Result<(FileWatch, mpsc::Receiver<()>), ConfigError> {
    let targets: BTreeSet<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let dirs: BTreeSet<PathBuf> = targets
        .iter()
        .filter_map(|p| p.parent())
        .map(Path::to_owned)
        .collect();
    let runtime = tokio::runtime::Handle::try_current().map_err(|e| ConfigError::Watch {
        path: paths.first().cloned().unwrap_or_default(),
        source: notify::Error::generic(&format!("watch_files needs a tokio runtime: {e}")),
    })?;
    let (raw_tx, raw_rx) = mpsc::unbounded_channel::<()>();
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if is_relevant(&event, &targets) => {
            let _ = raw_tx.send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "file watcher error"),
    })
    .map_err(|e| ConfigError::Watch {
        path: PathBuf::new(),
        source: e,
    })?;
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| ConfigError::Watch {
                path: dir.clone(),
                source: e,
            })?;
    }
    runtime.spawn(debounce_loop(raw_rx, tx, debounce));
    Ok((FileWatch { _watcher: watcher }, rx))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// A change (not a read) to one of the targets, or a lost-events notice (rescan).
fn is_relevant(event: &Event, targets: &BTreeSet<PathBuf>) -> bool {
    let change = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    event.need_rescan() || (change && event.paths.iter().any(|p| targets.contains(p)))
}

/// Waits for a first event, then for `quiet` without events, then signals once.
async fn debounce_loop(
    mut raw: mpsc::UnboundedReceiver<()>,
    out: mpsc::Sender<()>,
    quiet: Duration,
) {
    while raw.recv().await.is_some() {
        loop {
            match tokio::time::timeout(quiet, raw.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return, // the FileWatch was dropped
                Err(_) => break,
            }
        }
        if let Err(mpsc::error::TrySendError::Closed(())) = out.try_send(()) {
            return; // nobody listens any more; a full channel already has a reload pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::timeout;

    const DEBOUNCE: Duration = Duration::from_millis(100);
    const PATIENCE: Duration = Duration::from_secs(10);
    /// How long "nothing happens" is observed. A slow machine can only make these checks pass
    /// vacuously, never fail.
    const QUIET: Duration = Duration::from_millis(600);

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let users = dir.path().join("users.csv");
        std::fs::write(&config, "a").unwrap();
        std::fs::write(&users, "1001,a@example.com\n").unwrap();
        (dir, config, users)
    }

    #[tokio::test]
    async fn write_and_rename_over_trigger_once_each() {
        let (dir, config, users) = setup();
        let (_watch, mut rx) = watch_files(vec![config.clone(), users.clone()], DEBOUNCE).unwrap();

        for i in 0..5 {
            std::fs::write(&config, format!("burst {i}")).unwrap();
        }
        timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
        assert!(
            timeout(QUIET, rx.recv()).await.is_err(),
            "a burst must coalesce into one"
        );

        let tmp = dir.path().join(".users.csv.swp");
        std::fs::write(&tmp, "1002,b@example.com\n").unwrap();
        std::fs::rename(&tmp, &users).unwrap();
        timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn unrelated_files_and_reads_do_not_trigger() {
        let (dir, config, _users) = setup();
        let (_watch, mut rx) = watch_files(vec![config.clone()], DEBOUNCE).unwrap();
        std::fs::write(dir.path().join("other.toml"), "x").unwrap();
        std::fs::read_to_string(&config).unwrap();
        assert!(timeout(QUIET, rx.recv()).await.is_err());
        std::fs::write(&config, "b").unwrap();
        timeout(PATIENCE, rx.recv()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn dropping_the_watch_closes_the_channel() {
        let (_dir, config, _users) = setup();
        let (watch, mut rx) = watch_files(vec![config], DEBOUNCE).unwrap();
        drop(watch);
        assert_eq!(timeout(PATIENCE, rx.recv()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn missing_directory_is_an_error_naming_it() {
        let e = watch_files(vec!["/nonexistent-dir/config.toml".into()], DEBOUNCE).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir"), "{e}");
    }
}
