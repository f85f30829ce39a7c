//! Supervision: every actor is restarted when it fails or panics, and the
//! restarts are counted for the status endpoint.
//!
//! actix's `Supervisor` restarts an actor only when it stops itself; a panic
//! in a handler kills it for good. So every handler runs its work under
//! [`guard`] or [`guard_future`], which turn a panic into `ctx.stop()`: the
//! async actors are then restarted by actix's `Supervisor` (same address,
//! `Supervised::restarting` reloads what the journal holds) and the sync
//! actors by their `SyncArbiter` factory. A heartbeat backstop marks an
//! actor that died some other way as dead, and `/health` reports it.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use actix::ActorContext;
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use crate::error::ActorError;

/// What the status endpoint shows of one actor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ActorHealth {
    pub alive: bool,
    pub restarts: u32,
    pub panics: u32,
}

type Liveness = Box<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
struct Entry {
    restarts: AtomicU32,
    panics: AtomicU32,
    liveness: Mutex<Option<Liveness>>,
}

/// The registry of supervised actors, shared by the actors and the status
/// endpoint.
#[derive(Clone, Default)]
pub struct Supervision {
    entries: Arc<Mutex<BTreeMap<&'static str, Arc<Entry>>>>,
}

impl Supervision {
    fn entry(&self, actor: &'static str) -> Arc<Entry> {
        self.entries
            .lock()
            .expect("supervision registry poisoned")
            .entry(actor)
            .or_default()
            .clone()
    }

    /// Tells the registry how to see whether `actor` still runs.
    pub fn watch(&self, actor: &'static str, alive: impl Fn() -> bool + Send + Sync + 'static) {
        *self.entry(actor).liveness.lock().expect("poisoned") = Some(Box::new(alive));
    }

    pub fn restarted(&self, actor: &'static str) {
        self.entry(actor).restarts.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(actor, "actor restarted");
    }

    pub fn panicked(&self, actor: &'static str) {
        self.entry(actor).panics.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, ActorHealth> {
        let entries = self.entries.lock().expect("poisoned");
        entries
            .iter()
            .map(|(name, e)| {
                let alive = e
                    .liveness
                    .lock()
                    .expect("poisoned")
                    .as_ref()
                    .is_none_or(|f| f());
                let health = ActorHealth {
                    alive,
                    restarts: e.restarts.load(Ordering::Relaxed),
                    panics: e.panics.load(Ordering::Relaxed),
                };
                (*name, health)
            })
            .collect()
    }

    /// A factory for a `SyncArbiter` that counts every start after the first
    /// as a restart.
    pub fn counting_factory<A>(
        &self,
        actor: &'static str,
        make: impl Fn() -> A + Send + Sync + 'static,
    ) -> impl Fn() -> A + Send + Sync + 'static {
        self.entry(actor);
        let started = AtomicU32::new(0);
        let supervision = self.clone();
        move || {
            if started.fetch_add(1, Ordering::Relaxed) > 0 {
                supervision.restarted(actor);
            }
            make()
        }
    }
}

/// Counts the panic and stops the actor, so that its supervisor restarts it.
fn restart_after_panic<C: ActorContext>(
    ctx: &mut C,
    supervision: &Supervision,
    actor: &'static str,
    payload: Box<dyn std::any::Any + Send>,
) -> ActorError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    tracing::error!(actor, panic = %message, "actor panicked; restarting it");
    supervision.panicked(actor);
    ctx.stop();
    ActorError::Panicked { actor, message }
}

/// Runs a handler's work; a panic stops the actor (so it is restarted) and
/// becomes [`ActorError::Panicked`] for the sender.
pub fn guard<C, T>(
    ctx: &mut C,
    supervision: &Supervision,
    actor: &'static str,
    work: impl FnOnce() -> Result<T, ActorError>,
) -> Result<T, ActorError>
where
    C: ActorContext,
{
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(restart_after_panic(ctx, supervision, actor, payload)))
}

/// [`guard`] for the future of an async handler.
pub fn guard_future<A, T>(
    supervision: &Supervision,
    actor: &'static str,
    work: impl Future<Output = Result<T, ActorError>> + 'static,
) -> actix::ResponseActFuture<A, Result<T, ActorError>>
where
    A: actix::Actor<Context = actix::Context<A>>,
    T: 'static,
{
    use actix::fut::ActorFutureExt;
    let supervision = supervision.clone();
    let caught = actix::fut::wrap_future::<_, A>(AssertUnwindSafe(work).catch_unwind());
    Box::pin(caught.map(move |res, _act, ctx: &mut actix::Context<A>| {
        res.unwrap_or_else(|payload| Err(restart_after_panic(ctx, &supervision, actor, payload)))
    }))
}

/// Runs blocking work on the blocking pool; a panic there is reported as a
/// panic of `actor`, like one in the handler itself.
pub async fn blocking<T: Send + 'static>(
    actor: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("{actor}: blocking task canceled: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sync actor's factory counts every start after the first as a restart.
    #[test]
    fn counting_factory_counts_restarts_not_the_first_start() {
        let supervision = Supervision::default();
        let factory = supervision.counting_factory("applier", || 7);
        assert_eq!(factory(), 7);
        assert_eq!(supervision.snapshot()["applier"].restarts, 0);
        factory();
        factory();
        assert_eq!(supervision.snapshot()["applier"].restarts, 2);
    }

    /// The snapshot shows an actor dead once its liveness check fails.
    #[test]
    fn snapshot_reports_liveness_and_panics() {
        let supervision = Supervision::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let seen = alive.clone();
        supervision.watch("poller", move || seen.load(Ordering::Relaxed));
        supervision.panicked("poller");
        let health = &supervision.snapshot()["poller"];
        assert!(health.alive);
        assert_eq!(health.panics, 1);
        alive.store(false, Ordering::Relaxed);
        assert!(!supervision.snapshot()["poller"].alive);
    }
}
