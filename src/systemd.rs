//! systemd's service protocol (`sd_notify`), for `Type=notify` units:
//! `READY=1` once a binary serves, `WATCHDOG=1` while it is alive, and
//! `STOPPING=1` when it stops. Without `NOTIFY_SOCKET` (not started by
//! systemd) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}

/// Startup is finished; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The service is alive (resets systemd's watchdog timer).
pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

/// The service is stopping.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// How often to send `WATCHDOG=1`: half of the unit's `WatchdogSec`, as
/// systemd advises; `None` when the watchdog is off.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|limit| limit / 2)
}
