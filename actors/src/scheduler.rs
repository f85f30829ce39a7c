//! The scheduler ticks the download and upload intervals, and prunes the
//! journal of old finished sessions.

use std::time::Duration;

use actix::prelude::*;
use cdx::protocol::now_ms;

use crate::journal::{Journal, Prune};
use crate::poller::{PollNow, Poller};
use crate::supervisor::Supervision;
use crate::uploader::{UploadNow, Uploader};

const NAME: &str = "scheduler";
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Scheduler {
    pub poller: Addr<Poller>,
    pub uploader: Addr<Uploader>,
    pub journal: Addr<Journal>,
    pub download_interval: Duration,
    pub upload_interval: Duration,
    pub journal_retention: Duration,
    pub supervision: Supervision,
}

impl Scheduler {
    pub fn start(self) -> Addr<Self> {
        Supervisor::start(move |_| self)
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    // Timers die with the actor, so a restart registers them again here.
    fn started(&mut self, ctx: &mut Self::Context) {
        self.uploader.do_send(UploadNow);
        ctx.run_interval(self.download_interval, |act, _| act.poller.do_send(PollNow));
        ctx.run_interval(self.upload_interval, |act, _| {
            act.uploader.do_send(UploadNow)
        });
        ctx.run_interval(PRUNE_EVERY, |act, _| {
            let before_ms = now_ms() - act.journal_retention.as_millis() as i64;
            act.journal.do_send(Prune { before_ms });
        });
    }
}

impl Supervised for Scheduler {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.supervision.restarted(NAME);
    }
}
