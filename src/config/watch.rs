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

/// A watch on some files. Its owner asks [`FileWatch::changed`]; nothing runs in the
/// background but the OS watcher's own thread, which only queues a signal.
#[derive(Debug)]
pub struct FileWatch {
    /// The OS watcher; its callback owns the sender of `raw`.
    _watcher: RecommendedWatcher,
    /// One pending "something changed" (more changes coalesce into it).
    raw: mpsc::Receiver<()>,
    /// How long the files must stay quiet before a change counts.
    debounce: Duration,
}

impl FileWatch {
    /// Waits for a change, then until `debounce` passes without another (editors write in
    /// bursts). `None` if the OS watcher stopped. Cancel-safe: a change seen by a cancelled
    /// call is reported by the next one.
    pub async fn changed(&mut self) -> Option<()> {
        self.raw.recv().await?;
        loop {
            match tokio::time::timeout(self.debounce, self.raw.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return None,
                Err(_) => return Some(()),
            }
        }
    }
}

/// Watches `paths` (their parent directories, filtered to their names); see
/// [`FileWatch::changed`].
pub fn watch_files(paths: Vec<PathBuf>, debounce: Duration) -> Result<FileWatch, ConfigError> {
    let targets: BTreeSet<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let dirs: BTreeSet<PathBuf> = targets
        .iter()
        .filter_map(|p| p.parent())
        .map(Path::to_owned)
        .collect();
    let (raw_tx, raw) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if is_relevant(&event, &targets) => {
            // Full: a change is already pending, and this one coalesces into it.
            let _ = raw_tx.try_send(());
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
    Ok(FileWatch {
        _watcher: watcher,
        raw,
        debounce,
    })
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
        let mut watch = watch_files(vec![config.clone(), users.clone()], DEBOUNCE).unwrap();

        for i in 0..5 {
            std::fs::write(&config, format!("burst {i}")).unwrap();
        }
        timeout(PATIENCE, watch.changed()).await.unwrap().unwrap();
        assert!(
            timeout(QUIET, watch.changed()).await.is_err(),
            "a burst must coalesce into one"
        );

        let tmp = dir.path().join(".users.csv.swp");
        std::fs::write(&tmp, "1002,b@example.com\n").unwrap();
        std::fs::rename(&tmp, &users).unwrap();
        timeout(PATIENCE, watch.changed()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn unrelated_files_and_reads_do_not_trigger() {
        let (dir, config, _users) = setup();
        let mut watch = watch_files(vec![config.clone()], DEBOUNCE).unwrap();
        std::fs::write(dir.path().join("other.toml"), "x").unwrap();
        std::fs::read_to_string(&config).unwrap();
        assert!(timeout(QUIET, watch.changed()).await.is_err());
        std::fs::write(&config, "b").unwrap();
        timeout(PATIENCE, watch.changed()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn missing_directory_is_an_error_naming_it() {
        let e = watch_files(vec!["/nonexistent-dir/config.toml".into()], DEBOUNCE).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir"), "{e}");
    }
}
