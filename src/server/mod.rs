//! The reference Async Server.
