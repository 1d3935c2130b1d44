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
    /// The OS watcher; its callback owns the sender of `raw` (`None` in tests that feed
    /// `raw` themselves).
    _watcher: Option<RecommendedWatcher>,
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
        Err(e) => tracing::warn!(error = %e, "file watcher error: {e}"),
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
        _watcher: Some(watcher),
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
    use notify::event::{CreateKind, ModifyKind};
    use tokio::time::timeout;

    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(100);
    const PATIENCE: Duration = Duration::from_secs(10);

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        let users = dir.path().join("users.csv");
        std::fs::write(&config, "a").unwrap();
        std::fs::write(&users, "1001,a@example.com\n").unwrap();
        (dir, config, users)
    }

    /// A watch fed by the test instead of the OS.
    fn fed(debounce: Duration) -> (mpsc::Sender<()>, FileWatch) {
        let (tx, raw) = mpsc::channel(1);
        let watch = FileWatch {
            _watcher: None,
            raw,
            debounce,
        };
        (tx, watch)
    }

    /// Five writes 50 ms apart are one change, reported 100 ms after the last; nothing
    /// follows (paused time: the hour passes at once).
    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_change_once_the_files_are_quiet() {
        let (tx, mut watch) = fed(DEBOUNCE);
        let started = crate::clock::monotonic();
        let burst = async {
            for _ in 0..5 {
                let _ = tx.try_send(());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let ((), changed) = tokio::join!(burst, watch.changed());
        assert_eq!(changed, Some(()));
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        let more = timeout(Duration::from_secs(3600), watch.changed()).await;
        assert!(more.is_err(), "a burst must coalesce into one change");
    }

    #[test]
    fn reads_and_other_files_are_no_change() {
        let target = PathBuf::from("/etc/p/config.toml");
        let targets: BTreeSet<PathBuf> = [target.clone()].into();
        let event = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        let modify = EventKind::Modify(ModifyKind::Any);
        assert!(is_relevant(&event(modify, "/etc/p/config.toml"), &targets));
        assert!(is_relevant(
            &event(EventKind::Create(CreateKind::File), "/etc/p/config.toml"),
            &targets
        ));
        let closed = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(is_relevant(&event(closed, "/etc/p/config.toml"), &targets));
        let read = EventKind::Access(AccessKind::Open(AccessMode::Read));
        assert!(!is_relevant(&event(read, "/etc/p/config.toml"), &targets));
        assert!(!is_relevant(&event(modify, "/etc/p/other.toml"), &targets));
    }

    #[tokio::test]
    async fn a_write_and_a_rename_over_are_each_seen() {
        let (dir, config, users) = setup();
        let mut watch = watch_files(vec![config.clone(), users.clone()], DEBOUNCE).unwrap();
        std::fs::write(&config, "b").unwrap();
        timeout(PATIENCE, watch.changed()).await.unwrap().unwrap();
        let tmp = dir.path().join(".users.csv.swp");
        std::fs::write(&tmp, "1002,b@example.com\n").unwrap();
        std::fs::rename(&tmp, &users).unwrap();
        timeout(PATIENCE, watch.changed()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn missing_directory_is_an_error_naming_it() {
        let e = watch_files(vec!["/nonexistent-dir/config.toml".into()], DEBOUNCE).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir"), "{e}");
    }
}
