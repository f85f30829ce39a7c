//! Frame and header encoding: one bincode configuration with size limits.
