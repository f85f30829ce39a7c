//! The embedded default backend: SQLite through rusqlite.

/// A channel database in one SQLite file.
pub struct SqliteChannelDb {}
