//! The reporter tells the server about every session status change, in
//! order, retrying while the server is unreachable. Reports are advisory
//! (the server's view of the store), so a bounded queue drops the oldest
//! rather than grow without end during a long outage.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use cdx::protocol::StatusReport;

use crate::hq::HqClient;
use crate::supervisor::Supervision;

const NAME: &str = "reporter";
const MAX_QUEUED: usize = 10_000;
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Report(pub StatusReport);

/// Sent to itself to send the next queued report.
#[derive(Message)]
#[rtype(result = "()")]
struct SendNext;

pub struct Reporter {
    hq: HqClient,
    queue: VecDeque<StatusReport>,
    sending: bool,
    backoff: Duration,
    supervision: Supervision,
}

impl Reporter {
    pub fn start(hq: HqClient, supervision: &Supervision) -> Addr<Self> {
        let supervision = supervision.clone();
        Supervisor::start(move |_| Reporter {
            hq,
            queue: VecDeque::new(),
            sending: false,
            backoff: RETRY_MIN,
            supervision: supervision.clone(),
        })
    }
}

impl Actor for Reporter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.sending = false;
        if !self.queue.is_empty() {
            ctx.notify(SendNext);
        }
    }
}

impl Supervised for Reporter {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.supervision.restarted(NAME);
    }
}

impl Handler<Report> for Reporter {
    type Result = ();
    fn handle(&mut self, msg: Report, ctx: &mut Self::Context) {
        if self.queue.len() == MAX_QUEUED {
            self.queue.pop_front();
            tracing::warn!("status report queue full; dropped the oldest report");
        }
        self.queue.push_back(msg.0);
        if !self.sending {
            ctx.notify(SendNext);
        }
    }
}

impl Handler<SendNext> for Reporter {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: SendNext, _: &mut Self::Context) -> Self::Result {
        let Some(report) = self.queue.front().cloned() else {
            self.sending = false;
            return Box::pin(actix::fut::ready(()));
        };
        self.sending = true;
        let hq = self.hq.clone();
        Box::pin(
            async move { hq.report(&report).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(()) => {
                        act.queue.pop_front();
                        act.backoff = RETRY_MIN;
                        ctx.notify(SendNext);
                    }
                    // The server refuses this report for good (a package
                    // of another data group, say): drop it, or it would
                    // hold back every report after it.
                    Err(e) if !e.class().is_transient() => {
                        tracing::warn!(error = %e, "status report refused; dropped");
                        act.queue.pop_front();
                        ctx.notify(SendNext);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "status report not delivered; will retry");
                        let delay = act.backoff;
                        act.backoff = (act.backoff * 2).min(RETRY_MAX);
                        ctx.notify_later(SendNext, delay);
                    }
                }),
        )
    }
}
