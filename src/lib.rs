//! cdx: Commerce Data Exchange for retail channels.
//!
//! This crate holds everything of the system that is not an actor: the package
//! codec, the channel database, the wire protocol, the configuration, the retry
//! policy. The reference Async Server is the `cdx-server` crate (`server/`),
//! the agent's actors the `cdx-actors` crate (`actors/`); both depend on this
//! one, and this crate knows nothing of actix or of either binary.
//!
//! # Layout
//! - [`package`]: the package file format: header, framed rows, checksum trailer.
//! - [`plan`]: pure decisions: which package comes next, does a schema fit.
//! - [`channel_db`]: the channel database behind a backend trait; SQLite is the
//!   embedded default.
//! - [`protocol`]: the JSON bodies and routes shared by agent and server.
//! - [`config`]: the agent's TOML configuration, validated.
//! - [`failure`]: which failures are transient (retried, not counted) and
//!   which permanent (counted against the try count).
//! - [`head`]: whether a poll may end at its data group's head (pure).
//! - [`retry`]: the retry policy (try count, exponential backoff with jitter).
//! - [`status`]: the session status models of the original Async Client.
//! - [`retail`]: a generated retail data set for the demo and the tests.

pub mod channel_db;
pub mod config;
pub mod failure;
pub mod head;
pub mod html;
pub mod metrics;
pub mod package;
pub mod plan;
pub mod protocol;
pub mod retail;
pub mod retry;
pub mod status;
pub mod systemd;
