//! The session status models of the original Async Client.
//!
//! Numeric codes follow AX 2012 R3's `RetailCDXDownloadSessionStatus` and
//! `RetailCDXUploadSessionStatus`; `Suspended` is D365's order-enforcement
//! gate, given the next free code.

use serde::{Deserialize, Serialize};

/// Where a download session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DownloadStatus {
    Available,
    Requested,
    Downloaded,
    Applied,
    Canceled,
    DownloadFailed,
    ApplyFailed,
    /// An operator's gate: later packages wait until this one is resumed.
    Suspended,
}

impl DownloadStatus {
    /// The original's enum value, for operators who know those.
    pub fn code(self) -> u8 {
        match self {
            Self::Available => 1,
            Self::Requested => 2,
            Self::Downloaded => 3,
            Self::Applied => 4,
            Self::Canceled => 5,
            Self::DownloadFailed => 7,
            Self::ApplyFailed => 8,
            Self::Suspended => 10,
        }
    }

    /// No further transition happens without an operator.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Applied | Self::Canceled)
    }
}

/// Where an upload session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UploadStatus {
    Started,
    Available,
    Uploaded,
    Applied,
    Canceled,
    UploadFailed,
    ApplyFailed,
}

impl UploadStatus {
    pub fn code(self) -> u8 {
        match self {
            Self::Started => 0,
            Self::Available => 1,
            Self::Uploaded => 2,
            Self::Applied => 3,
            Self::Canceled => 4,
            Self::UploadFailed => 5,
            Self::ApplyFailed => 6,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Applied | Self::Canceled)
    }
}

/// Which way a session moves data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Download,
    Upload,
}
