//! The actor layer's error: what a stage of a session failed with.

use cdx::channel_db::ChannelDbError;
use cdx::failure::FailureClass;
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
    /// Whether trying again later can help without anything changing in
    /// the package ([`cdx::failure`]): only permanent failures count
    /// against the try count.
    pub fn class(&self) -> FailureClass {
        match self {
            // A panic may come from the package's data: count it, so a
            // package that always crashes the applier ends up suspended.
            Self::Panicked { .. } => FailureClass::Permanent,
            Self::Unavailable(_) | Self::ShuttingDown | Self::SequenceGap { .. } => {
                FailureClass::Transient
            }
            Self::Journal(_) => FailureClass::Transient,
            Self::Hq(e) => e.class(),
            Self::Transfer(e) => e.class(),
            Self::ChannelDb(e) => e.class(),
        }
    }

    /// Which part of the store failed, for `/health`: the message database,
    /// the channel database, the working folder's disk, or headquarters.
    pub fn component(&self) -> &'static str {
        match self {
            Self::Journal(_) => "message database",
            Self::ChannelDb(e) if e.class().is_transient() => "channel database",
            Self::Transfer(TransferError::Io { .. } | TransferError::NoSpace { .. }) => {
                "working folder"
            }
            Self::Hq(_) | Self::Transfer(_) if self.class().is_transient() => "headquarters",
            _ => "package",
        }
    }
}

/// A mailbox error means the receiving actor died mid-request; its
/// supervisor restarts it, so the request may be sent again.
impl From<actix::MailboxError> for ActorError {
    fn from(_: actix::MailboxError) -> Self {
        Self::Unavailable("an actor")
    }
}
