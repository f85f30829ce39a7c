//! Which failures cost a try.
//!
//! A store's agent meets two kinds of failure. A **transient** one says
//! nothing about the package or the batch: headquarters restarting, a
//! dropped or refused connection, a timeout, a 5xx or 429, a database that
//! is locked or busy, a disk that is full, a message database that cannot
//! write. It is retried with capped exponential backoff and jitter for as
//! long as it lasts, and never counts against `retry.try_count`, so a store
//! catches up by itself after an outage of any length. A **permanent** one is
//! the package's or the request's own fault: a checksum that does not match,
//! a header that contradicts the listing, a schema conflict, a constraint
//! violation, a value that does not fit, a server that answers a range with
//! something else. Only these count; when `try_count` of them are spent the
//! session is Canceled and later packages wait for an operator.
//!
//! Pure: each layer's error type maps itself to a class through the
//! functions here (`docs/failures.md` has the whole table).

use std::io;

use serde::{Deserialize, Serialize};

/// Whether trying again later can help, whatever the thing tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureClass {
    /// Not the package's fault: retried for as long as it lasts, not counted.
    Transient,
    /// The package's or request's own fault: counted against the try count.
    Permanent,
}

impl FailureClass {
    pub fn is_transient(self) -> bool {
        self == FailureClass::Transient
    }
}

/// An HTTP answer's status. 5xx, 429 (too many requests) and 408 (request
/// timeout) are the server's state; 401 and 403 are credentials, which an
/// operator fixes without the package changing. Every other 4xx says the
/// request itself is wrong.
pub fn http_status(status: u16) -> FailureClass {
    match status {
        500..=599 | 429 | 408 | 401 | 403 => FailureClass::Transient,
        _ => FailureClass::Permanent,
    }
}

/// Whether an I/O error means the disk (or a quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(28)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Server-side trouble and credentials are transient; a wrong request is not.
    #[test]
    fn http_statuses_are_classified() {
        for status in [500, 502, 503, 504, 429, 408, 401, 403] {
            assert_eq!(http_status(status), FailureClass::Transient, "{status}");
        }
        for status in [400, 404, 409, 410, 413, 416, 422] {
            assert_eq!(http_status(status), FailureClass::Permanent, "{status}");
        }
    }

    /// ENOSPC is recognised by kind and by raw code.
    #[test]
    fn disk_full_is_recognised() {
        assert!(is_disk_full(&io::Error::from_raw_os_error(28)));
        assert!(is_disk_full(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_disk_full(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
    }
}
