//! `cdx-server`: the reference Async Server (headquarters side), a crate of
//! its own beside the `cdx` library it serves packages of.
//!
//! It registers channel databases in data groups, publishes packages per
//! data group in a strict sequence, serves them over HTTP with resumable
//! downloads and long polling, stores uploaded channel transactions once per
//! (channel, table, counter), and records every session status the agents
//! report. The wire protocol is in `docs/protocol.md`.
//!
//! # Layout
//! - `store`: [`Store`], the data directory: `server.db` (SQLite, WAL) and
//!   `packages/<uuid>.cdxpkg`; channels and package queries.
//! - `schema`: the tables of `server.db`.
//! - `auth`: salted secret hashes and HTTP Basic authentication.
//! - `publish`: [`Publication`], sequence assignment under a file lock and
//!   the atomic commit of a streamed package.
//! - `source`: publish inputs (JSON Lines, CSV), schema inference, checks.
//! - `sessions`: download and upload sessions and their history.
//! - `uploads`: idempotent storage of uploaded rows and high-water marks.
//! - `http`: the `/v1` routes and [`serve`]; `content`: package downloads
//!   with `Range`/`If-Range`.
//! - `running`: [`spawn`], a server on its own thread for in-process use.
//! - `lifecycle`: withdrawn and superseded packages.
//! - `report`: the operator commands' text tables.
//!
//! **Invariants:** a package row exists only for a complete, fsynced file;
//! sequences of a data group are assigned under its publish lock, so they
//! are gap-free and increasing in commit order; SQLite is only touched off
//! the event loop.

mod auth;
mod cache;
mod console;
mod content;
mod credentials;
mod error;
mod fleet;
mod http;
mod lifecycle;
pub mod metrics;
mod offload;
mod publish;
pub mod report;
mod running;
mod schema;
mod sessions;
pub mod source;
mod store;
mod uploads;

pub use auth::Authenticated;
pub use error::ServerError;
pub use fleet::{FleetFilter, StoreProblem, StoreState};
pub use http::{serve, MAX_UPLOAD_BYTES, PACKAGES_PER_RESPONSE};
pub use lifecycle::{supersessions, AppliedWithdrawn, Compacted, JobPackage, Withdrawn};
pub use publish::{PackageFileWriter, Publication, PublishSpec};
pub use running::{spawn, spawn_store, RunningServer};
pub use sessions::SessionFilter;
pub use source::{
    publish_files, publish_files_with_progress, CsvNull, PublishFiles, PublishProgress, TableInput,
};
pub use store::{ChannelInfo, Store, DB_FILE, PACKAGES_DIR};
pub use uploads::{ExportFormat, UploadConflict, UploadTableInfo};
