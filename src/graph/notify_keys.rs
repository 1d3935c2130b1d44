//! The key pairs of rich notifications in files: the current one and the previous one, in one
//! private directory (the state database's), written atomically with mode 0600.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use super::{CURRENT_FILE, CryptoError, DEFAULT_VALIDITY, NotifyKeys, PREVIOUS_FILE};

/// The current key pair and the previous one, kept in files in one directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    pub(super) current: NotifyKeys,
    pub(super) previous: Option<NotifyKeys>,
    /// True when `current` was made by this load (first start, rotation, or a missing or
    /// corrupt key file): subscriptions must be re-created with the new certificate.
    pub rotated: bool,
}

impl KeyStore {
    /// Reads the key files in `dir` (creating the directory, mode 0700, if needed), and makes
    /// a new current key pair when there is none, when its file is corrupt (logged), or when
    /// its certificate expires within `rotate_before` of `now`; the old current one then
    /// becomes the previous one. New certificates are valid for [`DEFAULT_VALIDITY`];
    /// `rotate_before` must be shorter than that.
    ///
    /// Generating a key takes 0.1 to 2 s and file I/O blocks: callers on the runtime must run
    /// this in `tokio::task::spawn_blocking`. Call it again now and then (daily, say) so that
    /// a long-running daemon rotates in time; it only reads the files when nothing is due.
    pub fn load_or_create(
        dir: &Path,
        now: SystemTime,
        rotate_before: Duration,
    ) -> Result<KeyStore, CryptoError> {
        KeyStore::load_or_create_with(dir, now, rotate_before, DEFAULT_VALIDITY)
    }

    /// [`KeyStore::load_or_create`] with new certificates valid for `valid_for`.
    pub fn load_or_create_with(
        dir: &Path,
        now: SystemTime,
        rotate_before: Duration,
        valid_for: Duration,
    ) -> Result<KeyStore, CryptoError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| io_error(dir, source))?;
        let current_path = dir.join(CURRENT_FILE);
        let previous_path = dir.join(PREVIOUS_FILE);
        let current = read_keys(&current_path)?;
        let previous = read_keys(&previous_path)?;

        let due = |keys: &NotifyKeys| {
            now.checked_add(rotate_before)
                .is_none_or(|limit| keys.expires_at() <= limit)
        };
        let (previous, retire_current) = match current {
            Some(current) if !due(&current) => {
                return Ok(KeyStore {
                    current,
                    previous,
                    rotated: false,
                });
            }
            Some(current) => {
                tracing::info!(
                    certificate_id = current.certificate_id(),
                    "notification certificate {} expires soon; making a new one",
                    current.certificate_id()
                );
                (Some(current), true)
            }
            None => (previous, false),
        };

        let new = NotifyKeys::generate(now, valid_for)?;
        if retire_current {
            fs::rename(&current_path, &previous_path)
                .map_err(|source| io_error(&previous_path, source))?;
        }
        write_keys(dir, &current_path, &new)?;
        tracing::info!(
            certificate_id = new.certificate_id(),
            path = %current_path.display(),
            "new notification certificate {} in {}",
            new.certificate_id(),
            current_path.display()
        );
        Ok(KeyStore {
            current: new,
            previous,
            rotated: true,
        })
    }

    /// The key pair whose certificate new subscriptions send.
    pub fn current(&self) -> &NotifyKeys {
        &self.current
    }

    /// The key pair current before the last rotation, if any.
    pub fn previous(&self) -> Option<&NotifyKeys> {
        self.previous.as_ref()
    }

    /// The key pair with this `encryptionCertificateId`.
    pub fn get(&self, certificate_id: &str) -> Option<&NotifyKeys> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.certificate_id == certificate_id)
    }
}

fn io_error(path: &Path, source: io::Error) -> CryptoError {
    CryptoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The key pair in `path`; `None` when the file is missing or unusable (logged: a new key is
/// made). Only I/O errors other than "not found" fail.
fn read_keys(path: &Path) -> Result<Option<NotifyKeys>, CryptoError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path, source)),
    };
    restrict_mode(path)?;
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| "not text".to_string())
        .and_then(NotifyKeys::from_pem);
    match parsed {
        Ok(keys) => Ok(Some(keys)),
        Err(reason) => {
            tracing::warn!(
                path = %path.display(),
                reason,
                "unusable notification key file {} ({reason}), ignored",
                path.display()
            );
            Ok(None)
        }
    }
}

/// Takes group and other permissions off a key file that has them (copied in by hand, say).
fn restrict_mode(path: &Path) -> Result<(), CryptoError> {
    let mode = fs::metadata(path)
        .map_err(|source| io_error(path, source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            "notification key file {} readable by others; setting mode 0600",
            path.display()
        );
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|source| io_error(path, source))?;
    }
    Ok(())
}

/// Writes `keys` to `path` atomically: a temporary file created with mode 0600 (never more
/// open, not even briefly), synced, renamed over `path`, and the directory synced.
pub(super) fn write_keys(dir: &Path, path: &Path, keys: &NotifyKeys) -> Result<(), CryptoError> {
    let pem = keys.to_pem()?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(io_error(&tmp, source)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| io_error(&tmp, source))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(&tmp, source))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|source| io_error(path, source))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_error(dir, source))
}
