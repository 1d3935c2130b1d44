//! systemd integration: `READY=1` after the first successful sync, `WATCHDOG=1` while the main
//! loop is alive, `STOPPING=1` on shutdown. Every call is a no-op outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tell systemd the daemon is up (Type=notify). Sent once, after the first good sync.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A one-line status shown by `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Shutting down.
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: clearing In-a-call sessions"),
    ]);
}

/// Feed the watchdog.
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// How often to feed the watchdog: half of `WatchdogSec=`, or `None` when it is off.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd: {e}");
    }
}
