//! The reporter tells the server about every session status change, in
//! order, retrying while the server is unreachable. What queued while a
//! request was out goes in the next one (`POST /v1/status/batch`: one
//! request and one write at the server for many reports). Reports are advisory
//! (the server's view of the store), so a bounded queue drops the oldest
//! rather than grow without end during a long outage.

use std::collections::VecDeque;
use std::time::Duration;

use actix::prelude::*;
use cdx::protocol::{StatusBatchAck, StatusReport, MAX_STATUS_BATCH};

use crate::hq::{HqClient, HqError};
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
    /// Whether the server takes `POST /v1/status/batch`; false after it
    /// answered 404 (an older server), until the agent restarts.
    batches: bool,
    /// Reports at the queue's front to send one by one: a batch refused as
    /// a whole is sent again singly, so one bad report drops only itself.
    singly: usize,
    /// Reports dropped from the queue's front (it was full) while a request
    /// carrying them was out: that many fewer to remove when it returns.
    dropped_in_flight: usize,
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
            batches: true,
            singly: 0,
            dropped_in_flight: 0,
            supervision: supervision.clone(),
        })
    }

    /// The next request: up to `MAX_STATUS_BATCH` reports from the front,
    /// or one.
    fn next_reports(&self) -> (bool, Vec<StatusReport>) {
        let batch = self.batches && self.singly == 0;
        let n = if batch { MAX_STATUS_BATCH } else { 1 };
        (batch, self.queue.iter().take(n).cloned().collect())
    }

    /// `n` reports delivered or dropped.
    fn done(&mut self, n: usize) {
        let n = n.saturating_sub(std::mem::take(&mut self.dropped_in_flight));
        self.queue.drain(..n.min(self.queue.len()));
        self.singly = self.singly.saturating_sub(n);
        self.backoff = RETRY_MIN;
    }
}

impl Actor for Reporter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.sending = !self.queue.is_empty();
        self.dropped_in_flight = 0;
        if self.sending {
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
            self.singly = self.singly.saturating_sub(1);
            if self.sending {
                self.dropped_in_flight += 1;
            }
            tracing::warn!("status report queue full; dropped the oldest report");
        }
        self.queue.push_back(msg.0);
        if !self.sending {
            self.sending = true;
            ctx.notify(SendNext);
        }
    }
}

/// What one request did.
enum Sent {
    Batch(Result<StatusBatchAck, HqError>),
    One(Result<(), HqError>),
}

impl Handler<SendNext> for Reporter {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: SendNext, _: &mut Self::Context) -> Self::Result {
        if self.queue.is_empty() {
            self.sending = false;
            return Box::pin(actix::fut::ready(()));
        }
        self.sending = true;
        let (batch, reports) = self.next_reports();
        let n = reports.len();
        let hq = self.hq.clone();
        Box::pin(
            async move {
                if batch {
                    Sent::Batch(hq.report_batch(&reports).await)
                } else {
                    Sent::One(hq.report(&reports[0]).await)
                }
            }
            .into_actor(self)
            .map(move |sent, act, ctx| {
                let failed = match sent {
                    Sent::Batch(Ok(ack)) => {
                        for refused in &ack.refused {
                            tracing::warn!(error = %refused.error,
                                "status report refused; dropped");
                        }
                        act.done(n);
                        None
                    }
                    // An older server: one report a request from now on.
                    Sent::Batch(Err(HqError::Status {
                        status: 404 | 405, ..
                    })) => {
                        tracing::info!(
                            "the server takes no batches of status reports; \
                            sending them one by one"
                        );
                        act.batches = false;
                        None
                    }
                    // Refused as a whole: each alone, so only a bad one drops.
                    Sent::Batch(Err(e)) if !e.class().is_transient() => {
                        tracing::debug!(error = %e, "a batch of status reports refused; \
                            sending them one by one");
                        act.singly = n;
                        None
                    }
                    Sent::One(Ok(())) => {
                        act.done(1);
                        None
                    }
                    // The server refuses this report for good (a package
                    // of another data group, say): drop it, or it would
                    // hold back every report after it.
                    Sent::One(Err(e)) if !e.class().is_transient() => {
                        tracing::warn!(error = %e, "status report refused; dropped");
                        act.done(1);
                        None
                    }
                    Sent::Batch(Err(e)) | Sent::One(Err(e)) => Some(e),
                };
                // Whatever was dropped meanwhile is out of the queue now.
                act.dropped_in_flight = 0;
                match failed {
                    None => ctx.notify(SendNext),
                    Some(e) => {
                        tracing::debug!(error = %e, "status report not delivered; will retry");
                        let delay = act.backoff;
                        act.backoff = (act.backoff * 2).min(RETRY_MAX);
                        ctx.notify_later(SendNext, delay);
                    }
                }
            }),
        )
    }
}
