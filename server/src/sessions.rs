//! Download and upload sessions as the server records them.
//!
//! A session is keyed by (channel, direction, subject): the package for a
//! download, the upload batch for an upload. The server creates download
//! sessions as Available when a package is published or listed, and upload
//! sessions as Applied when it stores a batch; the agent's status reports
//! move them on. Every report is appended to `session_history`. A session in
//! a final status (Applied, Canceled) keeps it: later reports are only
//! recorded in the history.

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use super::error::ServerError;
use super::store::{parse_uuid, Store};
use cdx::protocol::{
    now_ms, PackageInfo, RefusedReport, SessionInfo, SessionList, StatusBatchAck, StatusReport,
};
use cdx::status::{Direction, DownloadStatus, UploadStatus};

/// Which sessions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// One channel, or all.
    pub channel: Option<String>,
    /// One direction, or both.
    pub direction: Option<Direction>,
}

/// A status of either direction, parsed from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnyStatus {
    Download(DownloadStatus),
    Upload(UploadStatus),
}

impl AnyStatus {
    fn parse(direction: Direction, name: &str) -> Result<AnyStatus, ServerError> {
        let json = serde_json::Value::from(name);
        let parsed = match direction {
            Direction::Download => serde_json::from_value(json).map(AnyStatus::Download),
            Direction::Upload => serde_json::from_value(json).map(AnyStatus::Upload),
        };
        parsed.map_err(|_| {
            let names = match direction {
                Direction::Download => "Available, Requested, Downloaded, Applied, Canceled, DownloadFailed, ApplyFailed, Suspended",
                Direction::Upload => "Started, Available, Uploaded, Applied, Canceled, UploadFailed, ApplyFailed",
            };
            ServerError::Invalid(format!(
                "unknown {} status `{name}` (expected one of {names})",
                direction_str(direction)
            ))
        })
    }

    fn code(self) -> u8 {
        match self {
            AnyStatus::Download(s) => s.code(),
            AnyStatus::Upload(s) => s.code(),
        }
    }

    fn is_final(self) -> bool {
        match self {
            AnyStatus::Download(s) => s.is_final(),
            AnyStatus::Upload(s) => s.is_final(),
        }
    }

    fn is_applied(self) -> bool {
        matches!(
            self,
            AnyStatus::Download(DownloadStatus::Applied) | AnyStatus::Upload(UploadStatus::Applied)
        )
    }
}

/// The session row as a report finds it.
#[derive(Debug, Clone, Copy)]
struct CurrentRow {
    status: AnyStatus,
    /// Whether the report is of the session that last moved the row.
    same_session: bool,
    /// The `at_ms` of the report that last moved the row (`None`: the
    /// server's own row, or one from before it was kept).
    reported_at_ms: Option<i64>,
}

/// Whether a report of `status` at `at_ms` moves the current status of
/// `current` (docs/protocol.md, section 3.4):
/// - Applied is where a package or batch ends at a store: nothing moves it.
/// - A session's own reports move it until it reaches a final status.
/// - Another session's report (the agent opened a new one, after a Canceled
///   try or after losing its message database) takes the row over from a
///   non-Applied status, unless it is older than the report that last moved
///   the row: a late re-send of an abandoned session changes nothing.
///   An Applied report always does: it is the truth of the store whatever
///   its clock says.
fn report_moves(current: Option<CurrentRow>, status: AnyStatus, at_ms: i64) -> bool {
    let Some(current) = current else {
        return true;
    };
    if current.status.is_applied() {
        return false;
    }
    if current.same_session {
        return !current.status.is_final();
    }
    status.is_applied() || current.reported_at_ms.is_none_or(|last| at_ms >= last)
}

pub(crate) fn direction_str(direction: Direction) -> &'static str {
    match direction {
        Direction::Download => "download",
        Direction::Upload => "upload",
    }
}

/// One row of `session_history`.
struct HistoryEntry<'a> {
    channel: &'a str,
    direction: Direction,
    subject_id: Uuid,
    session_id: Option<Uuid>,
    source: &'static str,
    status: &'a str,
    status_code: u8,
    message: Option<&'a str>,
    bytes: u64,
    rows: u64,
    attempt: u32,
    at_ms: i64,
}

fn append_history(conn: &Connection, e: &HistoryEntry<'_>) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO session_history (channel, direction, subject_id, session_id, source, status,
             status_code, message, bytes, rows, attempt, at_ms, received_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            e.channel,
            direction_str(e.direction),
            e.subject_id.to_string(),
            e.session_id.map(|s| s.to_string()),
            e.source,
            e.status,
            e.status_code,
            e.message,
            e.bytes as i64,
            e.rows as i64,
            e.attempt,
            e.at_ms,
            now_ms(),
        ],
    )?;
    Ok(())
}

/// Whether `channel`, listing after `after` and given `first` (the package
/// after it), went back: the highest sequence it applied (or passed over)
/// before, when above `after`. Records the episode on the channel (`stores
/// --failing` shows it until the store is back there), or ends one the
/// store has caught up with. A listing costs one key lookup unless `first`
/// was applied already.
fn went_back(
    conn: &Connection,
    channel: &str,
    after: u64,
    first: &PackageInfo,
) -> rusqlite::Result<Option<u64>> {
    let first_done: bool = conn.query_row(
        &format!(
            "SELECT COUNT(*) > 0 FROM sessions WHERE channel = ?1 AND direction = 'download'
               AND subject_id = ?2
               AND (status = 'Applied' OR (status = 'Canceled' AND {}))",
            super::fleet::PASSED_OVER
        ),
        params![channel, first.id.to_string()],
        |r| r.get(0),
    )?;
    let applied: Option<i64> = if !first_done {
        None
    } else {
        conn.query_row(
            &format!(
                "SELECT MAX(sequence) FROM sessions WHERE channel = ?1 AND direction = 'download'
               AND (status = 'Applied' OR (status = 'Canceled' AND {}))",
                super::fleet::PASSED_OVER
            ),
            [channel],
            |r| r.get(0),
        )?
    };
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    match applied {
        Some(applied) if applied > after => {
            // An episode the store caught up with is over: a new one starts
            // (a second restore before anything new was published).
            conn.execute(
                &format!(
                    "UPDATE channels AS c SET went_back_at_ms = NULL, went_back_from = NULL,
                         went_back_to = NULL
                     WHERE c.id = ?1 AND c.went_back_at_ms IS NOT NULL AND {}",
                    super::fleet::CAUGHT_UP
                ),
                [channel],
            )?;
            conn.execute(
                "UPDATE channels SET went_back_at_ms = COALESCE(went_back_at_ms, ?2),
                     went_back_from = MAX(COALESCE(went_back_from, 0), ?3),
                     went_back_to = MIN(COALESCE(went_back_to, ?4), ?4)
                 WHERE id = ?1",
                params![channel, now_ms(), applied, after],
            )?;
            Ok(Some(applied as u64))
        }
        _ => {
            conn.execute(
                "UPDATE channels SET went_back_at_ms = NULL, went_back_from = NULL,
                     went_back_to = NULL
                 WHERE id = ?1 AND went_back_from <= ?2",
                params![channel, after],
            )?;
            Ok(None)
        }
    }
}

/// Creates the Available download session of `channel` for `package`
/// unless it exists.
pub(crate) fn ensure_download_session(
    conn: &Connection,
    channel: &str,
    package: &PackageInfo,
) -> rusqlite::Result<()> {
    let status = DownloadStatus::Available;
    let now = now_ms();
    let inserted = conn.execute(
        "INSERT OR IGNORE INTO sessions (channel, direction, subject_id, job, sequence, status,
             status_code, bytes, rows, created_at_ms, modified_at_ms)
         VALUES (?1, 'download', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        params![
            channel,
            package.id.to_string(),
            package.job,
            package.sequence as i64,
            format!("{status:?}"),
            status.code(),
            package.bytes as i64,
            package.rows as i64,
            now,
        ],
    )?;
    if inserted == 1 {
        append_history(
            conn,
            &HistoryEntry {
                channel,
                direction: Direction::Download,
                subject_id: package.id,
                session_id: None,
                source: "server",
                status: &format!("{status:?}"),
                status_code: status.code(),
                message: None,
                bytes: package.bytes,
                rows: package.rows,
                attempt: 0,
                at_ms: now,
            },
        )?;
    }
    Ok(())
}

/// Records that the server stored upload `upload_id`: its session becomes
/// Applied, whatever it was.
pub(crate) fn record_upload_applied(
    conn: &Connection,
    channel: &str,
    upload_id: Uuid,
    table: &str,
    rows: u64,
    bytes: u64,
) -> rusqlite::Result<()> {
    let status = UploadStatus::Applied;
    let name = format!("{status:?}");
    let now = now_ms();
    conn.execute(
        "INSERT INTO sessions (channel, direction, subject_id, job, status, status_code, bytes,
             rows, attempts, created_at_ms, modified_at_ms)
         VALUES (?1, 'upload', ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?8)
         ON CONFLICT (channel, direction, subject_id) DO UPDATE SET
             status = excluded.status, status_code = excluded.status_code, message = NULL,
             bytes = excluded.bytes, rows = excluded.rows, modified_at_ms = excluded.modified_at_ms",
        params![channel, upload_id.to_string(), table, name, status.code(), bytes as i64, rows as i64, now],
    )?;
    append_history(
        conn,
        &HistoryEntry {
            channel,
            direction: Direction::Upload,
            subject_id: upload_id,
            session_id: None,
            source: "server",
            status: &name,
            status_code: status.code(),
            message: None,
            bytes,
            rows,
            attempt: 0,
            at_ms: now,
        },
    )
}

impl Store {
    /// Creates the Available download sessions of `channel` for `packages`
    /// that it has none for yet, and answers the highest sequence it applied
    /// before when it lists after a lower one (it went back), in the same
    /// transaction.
    pub fn ensure_download_sessions(
        &self,
        channel: &str,
        after: u64,
        packages: &[PackageInfo],
    ) -> Result<Option<u64>, ServerError> {
        if packages.is_empty() {
            return Ok(None);
        }
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for package in packages {
                ensure_download_session(&tx, channel, package)?;
            }
            let went_back = went_back(&tx, channel, after, &packages[0])?;
            tx.commit()?;
            Ok(went_back)
        })
    }

    /// Records a status report of `channel`: appends it to the history and
    /// moves the session's current status, creating the session if unknown.
    pub fn record_status(
        &self,
        channel: &str,
        data_group: &str,
        report: &StatusReport,
    ) -> Result<(), ServerError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            record_status_in(&tx, channel, data_group, report)?;
            tx.commit()?;
            Ok(())
        })
    }

    /// Records `reports` of `channel` in order, in one transaction (one
    /// synced write for all). A report refused for good (bad status, a
    /// package of another data group) is skipped and answered by index with
    /// why; the others are recorded.
    pub fn record_statuses(
        &self,
        channel: &str,
        data_group: &str,
        reports: &[StatusReport],
    ) -> Result<StatusBatchAck, ServerError> {
        self.with_conn(|conn| {
            let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut ack = StatusBatchAck::default();
            for (index, report) in reports.iter().enumerate() {
                // Each report its own savepoint: a refused one leaves no trace.
                let sp = tx.savepoint()?;
                match record_status_in(&sp, channel, data_group, report) {
                    Ok(()) => {
                        sp.commit()?;
                        ack.recorded += 1;
                    }
                    Err(e @ (ServerError::Invalid(_) | ServerError::NotFound(_))) => {
                        ack.refused.push(RefusedReport {
                            index,
                            error: e.to_string(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            tx.commit()?;
            Ok(ack)
        })
    }

    /// Sessions matching `filter`, per direction, by channel then creation.
    pub fn sessions(&self, filter: &SessionFilter) -> Result<SessionList, ServerError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT channel, direction, subject_id, session_id, job, sequence, status,
                        status_code, message, bytes, rows, attempts, created_at_ms, modified_at_ms
                 FROM sessions
                 WHERE (?1 IS NULL OR channel = ?1) AND (?2 IS NULL OR direction = ?2)
                 ORDER BY channel, direction, COALESCE(sequence, 0), created_at_ms, subject_id",
            )?;
            let direction = filter.direction.map(direction_str);
            let rows = stmt.query_map(params![filter.channel, direction], session_from_row)?;
            let mut list = SessionList::default();
            for session in rows {
                let session = session?;
                match session.direction {
                    Direction::Download => list.download.push(session),
                    Direction::Upload => list.upload.push(session),
                }
            }
            Ok(list)
        })
    }
}

/// Records one status report of `channel` in the open transaction `tx`.
fn record_status_in(
    tx: &rusqlite::Connection,
    channel: &str,
    data_group: &str,
    report: &StatusReport,
) -> Result<(), ServerError> {
    let status = AnyStatus::parse(report.direction, &report.status)?;
    if report.direction == Direction::Download {
        // A channel reports only on packages of its own data group.
        let group: Option<String> = tx
            .query_row(
                "SELECT data_group FROM packages WHERE id = ?1",
                [report.subject_id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        if group.as_deref() != Some(data_group) {
            return Err(ServerError::NotFound(format!(
                "package {} is not a package of data group `{data_group}`",
                report.subject_id
            )));
        }
    }
    let direction = direction_str(report.direction);
    let subject = report.subject_id.to_string();
    let row: Option<(String, Option<String>, Option<i64>)> = tx
        .query_row(
            "SELECT status, session_id, reported_at_ms FROM sessions
             WHERE channel = ?1 AND direction = ?2 AND subject_id = ?3",
            params![channel, direction, subject],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let session_id = report.session_id.to_string();
    let current = match row {
        None => None,
        Some((status, id, reported_at_ms)) => Some(CurrentRow {
            status: AnyStatus::parse(report.direction, &status)?,
            same_session: id.as_deref() == Some(session_id.as_str()),
            reported_at_ms,
        }),
    };
    if report_moves(current, status, report.at_ms) {
        tx.execute(
            "INSERT INTO sessions (channel, direction, subject_id, session_id, job,
                 sequence, status, status_code, message, bytes, rows, attempts,
                 created_at_ms, modified_at_ms, reported_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, (SELECT sequence FROM packages WHERE id = ?3),
                 ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13)
             ON CONFLICT (channel, direction, subject_id) DO UPDATE SET
                 session_id = excluded.session_id, status = excluded.status,
                 status_code = excluded.status_code, message = excluded.message,
                 bytes = excluded.bytes, rows = excluded.rows,
                 attempts = MAX(attempts, excluded.attempts),
                 modified_at_ms = excluded.modified_at_ms,
                 reported_at_ms = excluded.reported_at_ms",
            params![
                channel,
                direction,
                subject,
                report.session_id.to_string(),
                report.job,
                report.status,
                status.code(),
                report.message,
                report.bytes as i64,
                report.rows as i64,
                report.attempt,
                now_ms(),
                report.at_ms,
            ],
        )?;
    }
    append_history(
        tx,
        &HistoryEntry {
            channel,
            direction: report.direction,
            subject_id: report.subject_id,
            session_id: Some(report.session_id),
            source: "agent",
            status: &report.status,
            status_code: status.code(),
            message: report.message.as_deref(),
            bytes: report.bytes,
            rows: report.rows,
            attempt: report.attempt,
            at_ms: report.at_ms,
        },
    )?;
    Ok(())
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    let direction: String = r.get(1)?;
    let subject: String = r.get(2)?;
    let session: Option<String> = r.get(3)?;
    Ok(SessionInfo {
        channel_id: r.get(0)?,
        direction: if direction == "upload" {
            Direction::Upload
        } else {
            Direction::Download
        },
        subject_id: parse_uuid(2, &subject)?,
        session_id: session.map(|s| parse_uuid(3, &s)).transpose()?,
        job: r.get(4)?,
        sequence: r.get::<_, Option<i64>>(5)?.map(|s| s as u64),
        status: r.get(6)?,
        status_code: r.get(7)?,
        message: r.get(8)?,
        bytes: r.get::<_, i64>(9)? as u64,
        rows: r.get::<_, i64>(10)? as u64,
        attempts: r.get(11)?,
        created_at_ms: r.get(12)?,
        modified_at_ms: r.get(13)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: DownloadStatus, same_session: bool, at: Option<i64>) -> Option<CurrentRow> {
        Some(CurrentRow {
            status: AnyStatus::Download(status),
            same_session,
            reported_at_ms: at,
        })
    }

    const FAILED: AnyStatus = AnyStatus::Download(DownloadStatus::DownloadFailed);
    const APPLIED: AnyStatus = AnyStatus::Download(DownloadStatus::Applied);
    const CANCELED: AnyStatus = AnyStatus::Download(DownloadStatus::Canceled);

    #[test]
    fn applied_is_final_for_every_session() {
        assert!(!report_moves(
            row(DownloadStatus::Applied, true, Some(5)),
            FAILED,
            9
        ));
        assert!(!report_moves(
            row(DownloadStatus::Applied, false, Some(5)),
            FAILED,
            9
        ));
        assert!(!report_moves(
            row(DownloadStatus::Applied, false, None),
            CANCELED,
            9
        ));
    }

    #[test]
    fn a_session_moves_its_own_row_until_final() {
        assert!(report_moves(None, FAILED, 0));
        assert!(report_moves(
            row(DownloadStatus::DownloadFailed, true, Some(5)),
            FAILED,
            1
        ));
        assert!(!report_moves(
            row(DownloadStatus::Canceled, true, Some(5)),
            APPLIED,
            9
        ));
    }

    #[test]
    fn a_newer_session_takes_over_but_a_late_old_report_does_not() {
        // After a Canceled try the agent opens a new session (Suspended).
        assert!(report_moves(
            row(DownloadStatus::Canceled, false, Some(5)),
            FAILED,
            6
        ));
        assert!(report_moves(
            row(DownloadStatus::Available, false, None),
            FAILED,
            1
        ));
        // The old session's Canceled, re-sent after the takeover.
        assert!(!report_moves(
            row(DownloadStatus::Suspended, false, Some(6)),
            CANCELED,
            5
        ));
        // Applied from a new session moves the row even if the agent's
        // clock went back.
        assert!(report_moves(
            row(DownloadStatus::Canceled, false, Some(6)),
            APPLIED,
            5
        ));
    }
}
