//! The poller asks the server which packages are new for this channel, in
//! publication order, and carries each through download and apply before
//! the next: packages of a channel apply in order, and a failed one is
//! retried, then suspends the ones after it, never skipped silently.
//!
//! While idle it keeps a long poll open, so a package published at
//! headquarters is applied within a second; the scheduler's interval is
//! the backstop after errors or with long polling off. With
//! `download.head_url`, it polls every interval instead, and a poll whose
//! group head has not moved since a quiet listing ends there (`cdx::head`).

mod operator;
mod pipeline;

use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

pub use operator::{OperatorError, Request};
use pipeline::PassOutcome;
pub use pipeline::Pipeline;

use crate::supervisor::Supervision;

const NAME: &str = "poller";

/// Poll now (from the scheduler, or from the poller itself to keep draining).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PollNow;

/// An operator asks for a poll now (`POST /control/sync`): it lists,
/// whatever the group's head says.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SyncNow;

/// An operator releases the suspended package: it is tried again. Answers
/// with the package, or `None` if nothing was suspended.
#[derive(Message)]
#[rtype(result = "Option<Uuid>")]
pub struct Resume;

/// Where the answer to an operator's request goes.
pub type Answer = oneshot::Sender<Result<String, OperatorError>>;

/// An operator's rerun or cancel of one package, carried out after the
/// pass in hand, if any, and answered on `answer`. A caller that stopped
/// waiting (dropped the receiver) before it started is skipped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Operate {
    pub request: Request,
    pub answer: Answer,
}

pub struct Poller {
    pipeline: Pipeline,
    busy: bool,
    resume_requested: bool,
    /// The next pass lists, whatever the group's head says.
    list_requested: bool,
    /// Operators' requests waiting for the pass in hand to end.
    queued: Vec<(Request, Answer)>,
    supervision: Supervision,
}

impl Poller {
    pub fn start(pipeline: Pipeline, supervision: &Supervision) -> Addr<Self> {
        let supervision = supervision.clone();
        Supervisor::start(move |_| Poller {
            pipeline,
            busy: false,
            resume_requested: false,
            list_requested: false,
            queued: Vec::new(),
            supervision,
        })
    }
}

impl Actor for Poller {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        // A restart dropped the pass in flight; the journal holds its state.
        self.busy = false;
        ctx.notify(PollNow);
    }
}

impl Supervised for Poller {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.supervision.restarted(NAME);
    }
}

impl Handler<PollNow> for Poller {
    type Result = ();

    fn handle(&mut self, _: PollNow, ctx: &mut Self::Context) {
        if self.busy || self.pipeline.shutdown.is_triggered() {
            return;
        }
        self.busy = true;
        let resume = std::mem::take(&mut self.resume_requested);
        let list = std::mem::take(&mut self.list_requested) || resume;
        let pipeline = self.pipeline.clone();
        let pass = async move { pipeline.pass(resume, list).await };
        ctx.spawn(pass.into_actor(self).map(|outcome, act, ctx| {
            act.busy = false;
            if act.run_queued(ctx) {
                // It polls again when done.
                return;
            }
            let long_polling = act.pipeline.long_polls();
            match outcome {
                // More may be waiting: go on at once.
                PassOutcome::Progressed => ctx.notify(PollNow),
                // A long poll just ended empty: hold the next one at once.
                PassOutcome::Idle if long_polling => ctx.notify(PollNow),
                // Without long polling an empty answer came at once: wait
                // for the scheduler's next tick, as after a failure.
                PassOutcome::Idle
                | PassOutcome::Failed
                | PassOutcome::Suspended
                | PassOutcome::Stopped => {}
            }
        }));
    }
}

impl Handler<SyncNow> for Poller {
    type Result = ();

    fn handle(&mut self, _: SyncNow, ctx: &mut Self::Context) {
        self.list_requested = true;
        self.handle(PollNow, ctx);
    }
}

impl Handler<Resume> for Poller {
    type Result = ResponseActFuture<Self, Option<Uuid>>;

    fn handle(&mut self, _: Resume, _: &mut Self::Context) -> Self::Result {
        let pipeline = self.pipeline.clone();
        Box::pin(
            async move { pipeline.suspended_package().await }
                .into_actor(self)
                .map(|package, act, ctx| {
                    if package.is_some() {
                        act.resume_requested = true;
                        ctx.notify(PollNow);
                    }
                    package
                }),
        )
    }
}

impl Poller {
    /// Runs the queued operators' requests unless a pass is in hand, then
    /// polls at once. Returns whether it started.
    fn run_queued(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.busy || self.queued.is_empty() {
            return false;
        }
        self.busy = true;
        let requests = std::mem::take(&mut self.queued);
        let pipeline = self.pipeline.clone();
        let work = async move {
            for (request, answer) in requests {
                // The caller gave up waiting: do not act behind its back.
                if answer.is_closed() {
                    continue;
                }
                let _ = answer.send(pipeline.operate(request).await);
            }
        };
        ctx.spawn(work.into_actor(self).map(|(), act, ctx| {
            act.busy = false;
            // What an operator did (a rerun, a cancel) shows in a listing.
            act.list_requested = true;
            // Requests that came meanwhile go before the next pass.
            if !act.run_queued(ctx) {
                ctx.notify(PollNow);
            }
        }));
        true
    }
}

impl Handler<Operate> for Poller {
    type Result = ();

    fn handle(&mut self, msg: Operate, ctx: &mut Self::Context) {
        self.queued.push((msg.request, msg.answer));
        self.run_queued(ctx);
    }
}

/// Whether a pass is in hand (shutdown waits for it).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsBusy;

impl Handler<IsBusy> for Poller {
    type Result = bool;
    fn handle(&mut self, _: IsBusy, _: &mut Self::Context) -> bool {
        self.busy
    }
}
