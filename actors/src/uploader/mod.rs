//! The uploader sends the channel's sales transactions to headquarters.
//!
//! Per upload table it reads the rows above the acknowledged watermark, in
//! counter order, as a batch with its own upload id, journals the batch
//! (its counter range) before sending, and advances the watermark in the
//! channel database only after the server acknowledged. A crash anywhere
//! re-sends the same range, which the server stores once: nothing is lost
//! and nothing is duplicated.

mod pass;

use actix::prelude::*;

pub use pass::UploadPass;

use crate::supervisor::Supervision;

const NAME: &str = "uploader";

/// Upload what is waiting (from the scheduler).
#[derive(Message)]
#[rtype(result = "()")]
pub struct UploadNow;

pub struct Uploader {
    pass: UploadPass,
    busy: bool,
    supervision: Supervision,
}

impl Uploader {
    pub fn start(pass: UploadPass, supervision: &Supervision) -> Addr<Self> {
        let supervision = supervision.clone();
        Supervisor::start(move |_| Uploader {
            pass,
            busy: false,
            supervision,
        })
    }
}

impl Actor for Uploader {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Self::Context) {
        self.busy = false;
    }
}

impl Supervised for Uploader {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.supervision.restarted(NAME);
    }
}

impl Handler<UploadNow> for Uploader {
    type Result = ();

    fn handle(&mut self, _: UploadNow, ctx: &mut Self::Context) {
        if self.busy || self.pass.shutdown.is_triggered() {
            return;
        }
        self.busy = true;
        let pass = self.pass.clone();
        let supervision = self.supervision.clone();
        let work = async move { pass.run().await };
        let guarded = crate::supervisor::guard_future::<Self, ()>(&supervision, NAME, async move {
            work.await;
            Ok(())
        });
        ctx.spawn(guarded.map(|_, act, _| act.busy = false));
    }
}

/// Whether a pass is in hand (shutdown waits for it).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsBusy;

impl Handler<IsBusy> for Uploader {
    type Result = bool;
    fn handle(&mut self, _: IsBusy, _: &mut Self::Context) -> bool {
        self.busy
    }
}
