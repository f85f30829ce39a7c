//! Graceful shutdown as a small shared type: a flag that stops new work
//! and wakes every sleeping retry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag, for code that checks it between steps.
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    /// Resolves once shutdown is triggered.
    pub async fn triggered(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps for `d`, or less if shutdown is triggered meanwhile. Returns
    /// whether the agent is still running.
    pub async fn sleep(&self, d: Duration) -> bool {
        let notified = self.notify.notified();
        if self.is_triggered() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = notified => {}
        }
        !self.is_triggered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A retry's sleep ends as soon as shutdown is triggered, and says so.
    #[tokio::test(start_paused = true)]
    async fn sleep_is_cut_short_by_shutdown() {
        let shutdown = Shutdown::default();
        assert!(
            shutdown.sleep(Duration::from_secs(1)).await,
            "a full sleep runs on"
        );
        let other = shutdown.clone();
        let sleeper = tokio::spawn(async move { other.sleep(Duration::from_secs(3600)).await });
        tokio::task::yield_now().await;
        shutdown.trigger();
        assert!(
            !sleeper.await.unwrap(),
            "the sleep did not report the shutdown"
        );
        assert!(!shutdown.sleep(Duration::from_secs(3600)).await);
    }

    /// `triggered` resolves for waiters that came before and after the trigger.
    #[tokio::test]
    async fn triggered_resolves_before_and_after() {
        let shutdown = Shutdown::default();
        let other = shutdown.clone();
        let waiter = tokio::spawn(async move { other.triggered().await });
        tokio::task::yield_now().await;
        shutdown.trigger();
        waiter.await.unwrap();
        shutdown.triggered().await;
    }
}
