//! The cdx agent: independent actix actors that keep a store's channel
//! database in sync with headquarters.
//!
//! # Layout
//! - [`scheduler`]: ticks the download and upload intervals.
//! - [`poller`]: lists new packages in order and carries each through
//!   download and apply, retrying per policy, suspending on a spent try count.
//! - [`downloader`]: fetches a package into the working folder ([`transfer`]).
//! - [`applier`]: applies a package to the channel database in one transaction.
//! - [`uploader`]: uploads sales transactions above the watermark, exactly once.
//! - [`journal`]: the only writer of the message database (sled).
//! - [`reporter`]: tells the server about every session status change.
//! - [`status`]: the `/health` and `/status` HTTP endpoint.
//! - [`supervisor`]: panics become restarts; restarts are counted.
//! - [`agent`]: wiring and graceful shutdown.
//! - [`demo`]: the one-command demo against embedded defaults.

pub mod agent;
pub mod applier;
pub mod demo;
pub mod downloader;
pub mod error;
pub mod hq;
pub mod journal;
pub mod poller;
pub mod reporter;
pub mod scheduler;
pub mod shutdown;
pub mod status;
pub mod supervisor;
pub mod transfer;
pub mod uploader;

pub use agent::{channel_db_factory, sqlite_factory, Agent};
