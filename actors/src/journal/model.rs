//! What the message database holds: download and upload sessions.

use cdx::protocol::{now_ms, rfc3339_ms, PackageInfo, StatusReport};
use cdx::status::{Direction, DownloadStatus, UploadStatus};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Transitions kept per session; older ones are dropped first.
const MAX_HISTORY: usize = 64;

/// One status change of a session.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Transition {
    pub status: String,
    pub at_ms: i64,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DownloadSession {
    pub id: Uuid,
    /// The package, as the server listed it.
    pub package: PackageInfo,
    pub status: DownloadStatus,
    /// Tries of the current stage that failed, in all.
    pub attempts: u32,
    pub bytes_done: u64,
    pub rows_applied: u64,
    pub last_error: Option<String>,
    pub history: Vec<Transition>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UploadSession {
    pub id: Uuid,
    /// The batch's idempotency key at the server; kept across re-sends.
    pub upload_id: Uuid,
    pub table: String,
    pub first_counter: i64,
    pub last_counter: i64,
    pub rows: u64,
    pub bytes: u64,
    pub status: UploadStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub history: Vec<Transition>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

// The sessions are stored with bincode and shown as JSON. For people (a
// human-readable format: JSON) each `*_at_ms` time is followed by the same
// time in RFC 3339 (`*_at`); the stored form has the milliseconds only, so
// the journal's layout does not change. Reading ignores the `*_at` fields.

/// A time as `[ms_name, name]`: the milliseconds, then for people the same
/// time in RFC 3339.
fn time_field<S: serde::ser::SerializeStruct>(
    s: &mut S,
    [ms_name, name]: [&'static str; 2],
    ms: i64,
    people: bool,
) -> Result<(), S::Error> {
    s.serialize_field(ms_name, &ms)?;
    if people {
        s.serialize_field(name, &rfc3339_ms(ms))?;
    }
    Ok(())
}

impl Serialize for Transition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let people = serializer.is_human_readable();
        let mut s = serializer.serialize_struct("Transition", 3 + people as usize)?;
        s.serialize_field("status", &self.status)?;
        time_field(&mut s, ["at_ms", "at"], self.at_ms, people)?;
        s.serialize_field("message", &self.message)?;
        s.end()
    }
}

impl Serialize for DownloadSession {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let people = serializer.is_human_readable();
        let mut s = serializer.serialize_struct("DownloadSession", 10 + 2 * people as usize)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("package", &self.package)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("attempts", &self.attempts)?;
        s.serialize_field("bytes_done", &self.bytes_done)?;
        s.serialize_field("rows_applied", &self.rows_applied)?;
        s.serialize_field("last_error", &self.last_error)?;
        s.serialize_field("history", &self.history)?;
        time_field(
            &mut s,
            ["created_at_ms", "created_at"],
            self.created_at_ms,
            people,
        )?;
        time_field(
            &mut s,
            ["updated_at_ms", "updated_at"],
            self.updated_at_ms,
            people,
        )?;
        s.end()
    }
}

impl Serialize for UploadSession {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let people = serializer.is_human_readable();
        let mut s = serializer.serialize_struct("UploadSession", 13 + 2 * people as usize)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("upload_id", &self.upload_id)?;
        s.serialize_field("table", &self.table)?;
        s.serialize_field("first_counter", &self.first_counter)?;
        s.serialize_field("last_counter", &self.last_counter)?;
        s.serialize_field("rows", &self.rows)?;
        s.serialize_field("bytes", &self.bytes)?;
        s.serialize_field("status", &self.status)?;
        s.serialize_field("attempts", &self.attempts)?;
        s.serialize_field("last_error", &self.last_error)?;
        s.serialize_field("history", &self.history)?;
        time_field(
            &mut s,
            ["created_at_ms", "created_at"],
            self.created_at_ms,
            people,
        )?;
        time_field(
            &mut s,
            ["updated_at_ms", "updated_at"],
            self.updated_at_ms,
            people,
        )?;
        s.end()
    }
}

fn push_history(history: &mut Vec<Transition>, status: String, message: Option<String>) {
    if history.len() == MAX_HISTORY {
        history.remove(0);
    }
    history.push(Transition {
        status,
        at_ms: now_ms(),
        message,
    });
}

/// The try a report is about, from 1 (docs/protocol.md, section 3.4):
/// `failures` tries have failed so far; a failure (or the cancel that
/// follows the last one) is about the try that failed, any other status
/// about the try under way.
fn attempt_number(failures: u32, ends_a_try: bool) -> u32 {
    if ends_a_try {
        failures.max(1)
    } else {
        failures + 1
    }
}

impl DownloadSession {
    pub fn new(package: PackageInfo, status: DownloadStatus, message: Option<String>) -> Self {
        let now = now_ms();
        let mut s = Self {
            id: Uuid::now_v7(),
            package,
            status,
            attempts: 0,
            bytes_done: 0,
            rows_applied: 0,
            last_error: None,
            history: Vec::new(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        push_history(&mut s.history, format!("{status:?}"), message);
        s
    }

    /// Moves to `status`; a failure status counts a try and keeps its error.
    pub fn transition(&mut self, status: DownloadStatus, message: Option<String>) {
        if matches!(
            status,
            DownloadStatus::DownloadFailed | DownloadStatus::ApplyFailed
        ) {
            self.attempts += 1;
            self.last_error = message.clone();
        }
        self.status = status;
        self.updated_at_ms = now_ms();
        push_history(&mut self.history, format!("{status:?}"), message);
    }

    pub fn report(&self) -> StatusReport {
        StatusReport {
            session_id: self.id,
            direction: Direction::Download,
            subject_id: self.package.id,
            job: self.package.job.clone(),
            status: format!("{:?}", self.status),
            message: self.history.last().and_then(|t| t.message.clone()),
            bytes: self.bytes_done,
            rows: self.rows_applied,
            attempt: attempt_number(
                self.attempts,
                matches!(
                    self.status,
                    DownloadStatus::DownloadFailed
                        | DownloadStatus::ApplyFailed
                        | DownloadStatus::Canceled
                ),
            ),
            at_ms: self.updated_at_ms,
        }
    }
}

impl UploadSession {
    pub fn new(table: &str, first_counter: i64, last_counter: i64, rows: u64) -> Self {
        let now = now_ms();
        let mut s = Self {
            id: Uuid::now_v7(),
            upload_id: Uuid::now_v7(),
            table: table.to_string(),
            first_counter,
            last_counter,
            rows,
            bytes: 0,
            status: UploadStatus::Started,
            attempts: 0,
            last_error: None,
            history: Vec::new(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        push_history(&mut s.history, "Started".into(), None);
        s
    }

    pub fn transition(&mut self, status: UploadStatus, message: Option<String>) {
        if matches!(
            status,
            UploadStatus::UploadFailed | UploadStatus::ApplyFailed
        ) {
            self.attempts += 1;
            self.last_error = message.clone();
        }
        self.status = status;
        self.updated_at_ms = now_ms();
        push_history(&mut self.history, format!("{status:?}"), message);
    }

    pub fn report(&self) -> StatusReport {
        StatusReport {
            session_id: self.id,
            direction: Direction::Upload,
            subject_id: self.upload_id,
            job: self.table.clone(),
            status: format!("{:?}", self.status),
            message: self.history.last().and_then(|t| t.message.clone()),
            bytes: self.bytes,
            rows: self.rows,
            attempt: attempt_number(
                self.attempts,
                matches!(
                    self.status,
                    UploadStatus::UploadFailed | UploadStatus::ApplyFailed | UploadStatus::Canceled
                ),
            ),
            at_ms: self.updated_at_ms,
        }
    }
}

/// A download session as journals before `PackageInfo::content_bytes`
/// stored it (envelope `V1`); read and converted, never written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadSessionV1 {
    pub id: Uuid,
    pub package: PackageInfoV1,
    pub status: DownloadStatus,
    pub attempts: u32,
    pub bytes_done: u64,
    pub rows_applied: u64,
    pub last_error: Option<String>,
    pub history: Vec<Transition>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `PackageInfo` without `content_bytes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageInfoV1 {
    pub id: Uuid,
    pub data_group: String,
    pub job: String,
    pub sequence: u64,
    pub kind: cdx::package::PackageKind,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
    pub created_at_ms: i64,
}

impl From<DownloadSessionV1> for DownloadSession {
    /// Through the next layout: a V1 record is a V2 one without
    /// `content_bytes`.
    fn from(old: DownloadSessionV1) -> Self {
        let p = old.package;
        DownloadSessionV2 {
            id: old.id,
            package: PackageInfoV2 {
                id: p.id,
                data_group: p.data_group,
                job: p.job,
                sequence: p.sequence,
                kind: p.kind,
                bytes: p.bytes,
                sha256: p.sha256,
                rows: p.rows,
                created_at_ms: p.created_at_ms,
                content_bytes: None,
            },
            status: old.status,
            attempts: old.attempts,
            bytes_done: old.bytes_done,
            rows_applied: old.rows_applied,
            last_error: old.last_error,
            history: old.history,
            created_at_ms: old.created_at_ms,
            updated_at_ms: old.updated_at_ms,
        }
        .into()
    }
}

/// A download session as journals before `PackageInfo::content_url`
/// stored it (envelope `V2`); read and converted, never written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadSessionV2 {
    pub id: Uuid,
    pub package: PackageInfoV2,
    pub status: DownloadStatus,
    pub attempts: u32,
    pub bytes_done: u64,
    pub rows_applied: u64,
    pub last_error: Option<String>,
    pub history: Vec<Transition>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// `PackageInfo` without `content_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageInfoV2 {
    pub id: Uuid,
    pub data_group: String,
    pub job: String,
    pub sequence: u64,
    pub kind: cdx::package::PackageKind,
    pub bytes: u64,
    pub sha256: String,
    pub rows: u64,
    pub created_at_ms: i64,
    pub content_bytes: Option<u64>,
}

impl From<DownloadSessionV2> for DownloadSession {
    fn from(old: DownloadSessionV2) -> Self {
        let p = old.package;
        DownloadSession {
            id: old.id,
            package: PackageInfo {
                id: p.id,
                data_group: p.data_group,
                job: p.job,
                sequence: p.sequence,
                kind: p.kind,
                bytes: p.bytes,
                sha256: p.sha256,
                rows: p.rows,
                created_at_ms: p.created_at_ms,
                content_bytes: p.content_bytes,
                content_url: None,
            },
            status: old.status,
            attempts: old.attempts,
            bytes_done: old.bytes_done,
            rows_applied: old.rows_applied,
            last_error: old.last_error,
            history: old.history,
            created_at_ms: old.created_at_ms,
            updated_at_ms: old.updated_at_ms,
        }
    }
}

#[cfg(test)]
impl DownloadSessionV2 {
    /// `session` as the previous layout wrote it (its `content_url` dropped).
    pub fn from_current(session: &DownloadSession) -> Self {
        let p = session.package.clone();
        DownloadSessionV2 {
            id: session.id,
            package: PackageInfoV2 {
                id: p.id,
                data_group: p.data_group,
                job: p.job,
                sequence: p.sequence,
                kind: p.kind,
                bytes: p.bytes,
                sha256: p.sha256,
                rows: p.rows,
                created_at_ms: p.created_at_ms,
                content_bytes: p.content_bytes,
            },
            status: session.status,
            attempts: session.attempts,
            bytes_done: session.bytes_done,
            rows_applied: session.rows_applied,
            last_error: session.last_error.clone(),
            history: session.history.clone(),
            created_at_ms: session.created_at_ms,
            updated_at_ms: session.updated_at_ms,
        }
    }
}

#[cfg(test)]
impl DownloadSessionV1 {
    /// `session` as the previous layout wrote it (its `content_bytes` dropped).
    pub fn from_current(session: &DownloadSession) -> Self {
        let p = session.package.clone();
        DownloadSessionV1 {
            id: session.id,
            package: PackageInfoV1 {
                id: p.id,
                data_group: p.data_group,
                job: p.job,
                sequence: p.sequence,
                kind: p.kind,
                bytes: p.bytes,
                sha256: p.sha256,
                rows: p.rows,
                created_at_ms: p.created_at_ms,
            },
            status: session.status,
            attempts: session.attempts,
            bytes_done: session.bytes_done,
            rows_applied: session.rows_applied,
            last_error: session.last_error.clone(),
            history: session.history.clone(),
            created_at_ms: session.created_at_ms,
            updated_at_ms: session.updated_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn download() -> DownloadSession {
        let package = PackageInfo {
            id: Uuid::now_v7(),
            data_group: "g".into(),
            job: "j".into(),
            sequence: 7,
            kind: cdx::package::PackageKind::Full,
            bytes: 10,
            sha256: "ab".into(),
            rows: 3,
            created_at_ms: 1,
            content_bytes: Some(12),
            content_url: None,
        };
        let mut s = DownloadSession::new(package, DownloadStatus::Available, None);
        s.transition(DownloadStatus::ApplyFailed, Some("disk".into()));
        s.created_at_ms = 1_764_688_418_123;
        s
    }

    /// The stored layout is the derived one (the fields in order, as a
    /// tuple), so journals written before the RFC 3339 times read the same;
    /// JSON adds the times for people and reads back.
    #[test]
    fn stored_layout_has_no_times_and_json_has_rfc3339() {
        let s = download();
        let stored = bincode::serialize(&s).unwrap();
        let fields = (
            s.id,
            &s.package,
            s.status,
            s.attempts,
            s.bytes_done,
            s.rows_applied,
            &s.last_error,
            s.history
                .iter()
                .map(|t| (&t.status, t.at_ms, &t.message))
                .collect::<Vec<_>>(),
            s.created_at_ms,
            s.updated_at_ms,
        );
        assert_eq!(stored, bincode::serialize(&fields).unwrap());
        assert_eq!(bincode::deserialize::<DownloadSession>(&stored).unwrap(), s);

        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["created_at"], "2025-12-02T15:13:38.123Z");
        assert_eq!(json["created_at_ms"], 1_764_688_418_123i64);
        assert!(json["history"][1]["at"].as_str().unwrap().ends_with('Z'));
        let back: DownloadSession = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);

        let mut u = UploadSession::new("sales", 1, 5, 5);
        u.updated_at_ms = 0;
        u.bytes = 321;
        let stored = bincode::serialize(&u).unwrap();
        let fields = (
            u.id,
            u.upload_id,
            &u.table,
            u.first_counter,
            u.last_counter,
            u.rows,
            u.bytes,
            u.status,
            u.attempts,
            &u.last_error,
            u.history
                .iter()
                .map(|t| (&t.status, t.at_ms, &t.message))
                .collect::<Vec<_>>(),
            u.created_at_ms,
            u.updated_at_ms,
        );
        assert_eq!(stored, bincode::serialize(&fields).unwrap());
        assert_eq!(bincode::deserialize::<UploadSession>(&stored).unwrap(), u);
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["updated_at"], "1970-01-01T00:00:00.000Z");
        assert_eq!(serde_json::from_value::<UploadSession>(json).unwrap(), u);
    }

    /// Reports count tries from 1: the first try's Requested and Applied
    /// are attempt 1, its failure too, and the retry after it attempt 2.
    #[test]
    fn attempts_are_numbered_from_one() {
        assert_eq!(attempt_number(0, false), 1);
        assert_eq!(attempt_number(1, true), 1);
        assert_eq!(attempt_number(1, false), 2);
        assert_eq!(attempt_number(3, true), 3);
        assert_eq!(attempt_number(0, true), 1);
    }
}
