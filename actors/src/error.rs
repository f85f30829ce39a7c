//! The actor layer's error: what a stage of a session failed with.

use cdx::channel_db::ChannelDbError;
use thiserror::Error;

use crate::hq::HqError;
use crate::journal::JournalError;
use crate::transfer::TransferError;

#[derive(Debug, Error)]
pub enum ActorError {
    #[error("{actor} panicked: {message}")]
    Panicked {
        actor: &'static str,
        message: String,
    },
    #[error("{0} is not running")]
    Unavailable(&'static str),
    #[error(
        "the server lists package {listed} next, but {expected} is missing: \
         it was never published or was purged; a full sync is needed"
    )]
    SequenceGap { expected: u64, listed: u64 },
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Hq(#[from] HqError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    ChannelDb(#[from] ChannelDbError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl ActorError {
    /// Whether the failed try still moved its stage forward (a reliable
    /// download that confirmed more chunks): it does not count against the
    /// try count, so a flaky link cannot cancel a download that progresses.
    pub fn made_progress(&self) -> bool {
        matches!(self, Self::Transfer(t) if t.made_progress())
    }
}

/// A mailbox error means the receiving actor died mid-request; its
/// supervisor restarts it, so the request may be sent again.
impl From<actix::MailboxError> for ActorError {
    fn from(_: actix::MailboxError) -> Self {
        Self::Unavailable("an actor")
    }
}
