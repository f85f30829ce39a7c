//! The fleet as headquarters sees it (`cdx-server stores`): per channel,
//! how far it has applied its group's packages, what fails, and what it
//! uploaded. Read from the sessions the agents report.

use std::collections::{BTreeMap, HashMap};

use rusqlite::params;
use serde::Serialize;

use super::error::ServerError;
use super::store::Store;

/// Download statuses an operator must look at.
const DOWNLOAD_PROBLEMS: &str = "'DownloadFailed', 'ApplyFailed', 'Suspended', 'Canceled'";
/// A session's package was withdrawn or superseded (SQL, on `sessions`).
pub(crate) const PASSED_OVER: &str = "subject_id IN (SELECT id FROM packages
     WHERE withdrawn_at_ms IS NOT NULL OR superseded_by IS NOT NULL)";
/// The problem of a store that applied a package withdrawn afterwards.
pub const APPLIED_WITHDRAWN: &str = "Applied, then withdrawn";
/// The problem of a store whose upload counters went back.
pub const COUNTERS_WENT_BACK: &str = "Counters went back";
/// Whether channel `c`'s went-back episode is over (SQL, on `channels c`):
/// it reported a package at or past `went_back_from` applied (or passed
/// over) since the episode began, by its own clock too, so that a late
/// report from before it does not count.
pub(crate) const CAUGHT_UP: &str = "EXISTS (
    SELECT 1 FROM session_history h JOIN packages p ON p.id = h.subject_id
    WHERE h.channel = c.id AND h.direction = 'download'
      AND p.sequence >= c.went_back_from
      AND h.received_at_ms >= c.went_back_at_ms AND h.at_ms >= c.went_back_at_ms - 300000
      AND (h.status = 'Applied'
           OR (h.status = 'Canceled' AND (p.withdrawn_at_ms IS NOT NULL
                                          OR p.superseded_by IS NOT NULL))))";
/// The problem of a store whose channel database went back in the order.
pub const DATABASE_WENT_BACK: &str = "Database went back";
/// Upload statuses an operator must look at.
const UPLOAD_PROBLEMS: &str = "'UploadFailed', 'ApplyFailed', 'Canceled'";

/// One channel database: where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreState {
    pub channel: String,
    pub data_group: String,
    pub last_connection_ms: Option<i64>,
    /// The highest sequence the channel reported Applied (0: none).
    pub applied_sequence: u64,
    /// The group's latest published sequence (0: none).
    pub latest_sequence: u64,
    /// Packages published and not applied.
    pub behind: u64,
    /// When the oldest package it has not applied was published.
    pub waiting_since_ms: Option<i64>,
    /// Sessions in a failed, suspended or canceled status, newest first.
    pub problems: Vec<StoreProblem>,
    /// When the last upload batch was stored.
    pub last_upload_ms: Option<i64>,
    /// Per upload table, the highest counter stored.
    pub high_water: BTreeMap<String, i64>,
    /// The last time its channel database went back in the order.
    pub went_back: Option<WentBack>,
}

/// A channel database that went back: it listed packages after `to` when
/// it had applied up to `from` (restored from a backup, or a full sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WentBack {
    pub from: u64,
    pub to: u64,
    pub at_ms: i64,
    /// Whether it applied again as far as `from` since.
    pub caught_up: bool,
}

/// A session an operator must look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreProblem {
    /// `download` or `upload`.
    pub direction: String,
    /// The job (downloads) or the table (uploads).
    pub job: String,
    pub subject_id: String,
    pub sequence: Option<u64>,
    pub status: String,
    pub message: Option<String>,
    pub modified_at_ms: i64,
}

/// Which channels `cdx-server stores` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetFilter {
    pub group: Option<String>,
    /// Only channels with packages not applied.
    pub behind: bool,
    /// Only channels with a failed, suspended or canceled session, or a
    /// withdrawn package applied.
    pub failing: bool,
}

impl StoreState {
    fn is_failing(&self) -> bool {
        !self.problems.is_empty()
    }
}

impl Store {
    /// Every channel matching `filter`, worst first: failing ones, then the
    /// furthest behind, then by id.
    pub fn fleet(&self, filter: &FleetFilter) -> Result<Vec<StoreState>, ServerError> {
        let channels = self.channels()?;
        // Grouped once: a scan per channel would cost channels × tables.
        let mut high_waters: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
        for t in self.upload_tables(None)? {
            high_waters
                .entry(t.channel)
                .or_default()
                .insert(t.table, t.high_water);
        }
        let mut states: Vec<StoreState> = self.with_conn(|conn| {
            let latest: HashMap<String, u64> = conn
                .prepare("SELECT data_group, MAX(sequence) FROM packages GROUP BY data_group")?
                .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<Result<_, _>>()?;
            // A package passed over (withdrawn or superseded, Canceled) is
            // as good as applied for the store's position.
            let applied: HashMap<String, u64> = conn
                .prepare(&format!(
                    "SELECT channel, MAX(sequence) FROM sessions
                     WHERE direction = 'download'
                       AND (status = 'Applied' OR (status = 'Canceled' AND {PASSED_OVER}))
                     GROUP BY channel"
                ))?
                .query_map([], |r| {
                    Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0) as u64))
                })?
                .collect::<Result<_, _>>()?;
            let last_upload: HashMap<String, i64> = conn
                .prepare(
                    "SELECT channel, MAX(modified_at_ms) FROM sessions
                     WHERE direction = 'upload' AND status = 'Applied' GROUP BY channel",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut problems: HashMap<String, Vec<StoreProblem>> = HashMap::new();
            let mut stmt = conn.prepare(&format!(
                "SELECT channel, direction, job, subject_id, sequence, status, message,
                        modified_at_ms
                 FROM sessions
                 WHERE (direction = 'download' AND status IN ({DOWNLOAD_PROBLEMS})
                        AND NOT (status = 'Canceled' AND {PASSED_OVER}))
                    OR (direction = 'upload' AND status IN ({UPLOAD_PROBLEMS}))
                 ORDER BY modified_at_ms DESC"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    StoreProblem {
                        direction: r.get(1)?,
                        job: r.get(2)?,
                        subject_id: r.get(3)?,
                        sequence: r.get::<_, Option<i64>>(4)?.map(|n| n as u64),
                        status: r.get(5)?,
                        message: r.get(6)?,
                        modified_at_ms: r.get(7)?,
                    },
                ))
            })?;
            for row in rows {
                let (channel, problem) = row?;
                problems.entry(channel).or_default().push(problem);
            }
            // Uploads whose counters went back: kept apart, to reconcile.
            let mut stmt = conn.prepare(
                "SELECT channel, table_name, COUNT(*), MIN(counter), MAX(counter),
                        MAX(received_at_ms)
                 FROM upload_conflicts GROUP BY channel, table_name",
            )?;
            let rows = stmt.query_map([], |r| {
                let (n, low, high): (i64, i64, i64) = (r.get(2)?, r.get(3)?, r.get(4)?);
                Ok((
                    r.get::<_, String>(0)?,
                    StoreProblem {
                        direction: "upload".into(),
                        job: r.get(1)?,
                        subject_id: String::new(),
                        sequence: None,
                        status: COUNTERS_WENT_BACK.into(),
                        message: Some(format!(
                            "{n} row(s) arrived under counters {low} to {high}, held already \
                             with other values: the store's counters went back (a channel \
                             database restored from a backup?); kept apart, see \
                             `cdx-server uploads conflicts`"
                        )),
                        modified_at_ms: r.get(5)?,
                    },
                ))
            })?;
            for row in rows {
                let (channel, problem) = row?;
                problems.entry(channel).or_default().push(problem);
            }
            // A channel database that went back (restored from a backup, or
            // a full sync): a problem until the store applied again as far
            // as before, shown (caught up) after.
            let mut stmt = conn.prepare(&format!(
                "SELECT c.id, c.went_back_from, c.went_back_to, c.went_back_at_ms,
                        {CAUGHT_UP}
                 FROM channels c
                 WHERE c.went_back_at_ms IS NOT NULL",
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    WentBack {
                        from: r.get::<_, i64>(1)? as u64,
                        to: r.get::<_, i64>(2)? as u64,
                        at_ms: r.get(3)?,
                        caught_up: r.get(4)?,
                    },
                ))
            })?;
            let mut went_back: HashMap<String, WentBack> = HashMap::new();
            for row in rows {
                let (channel, w) = row?;
                if !w.caught_up {
                    problems
                        .entry(channel.clone())
                        .or_default()
                        .push(StoreProblem {
                            direction: "download".into(),
                            job: String::new(),
                            subject_id: String::new(),
                            sequence: Some(w.to),
                            status: DATABASE_WENT_BACK.into(),
                            message: Some(format!(
                                "its channel database had applied up to #{} and went back to #{} \
                             (restored from a backup, or a full sync); it applies the packages \
                             after #{} again",
                                w.from, w.to, w.to
                            )),
                            modified_at_ms: w.at_ms,
                        });
                }
                went_back.insert(channel, w);
            }
            // Applied, then withdrawn: the store needs a correcting package
            // (a later full package of the job, once applied, is one).
            let mut stmt = conn.prepare(
                "SELECT s.channel, s.job, s.subject_id, s.sequence, p.withdrawn_by,
                        p.withdrawn_reason, p.withdrawn_at_ms
                 FROM sessions s JOIN packages p ON p.id = s.subject_id
                 WHERE s.direction = 'download' AND s.status = 'Applied'
                   AND p.withdrawn_at_ms IS NOT NULL
                   AND NOT EXISTS (
                       SELECT 1 FROM sessions a JOIN packages f ON f.id = a.subject_id
                       WHERE a.channel = s.channel AND a.direction = 'download'
                         AND a.status = 'Applied' AND f.kind = 'Full' AND f.job = p.job
                         AND f.withdrawn_at_ms IS NULL
                         AND f.data_group = p.data_group AND f.sequence > p.sequence)
                 ORDER BY p.withdrawn_at_ms DESC",
            )?;
            let rows = stmt.query_map([], |r| {
                let by: Option<String> = r.get(4)?;
                let reason: Option<String> = r.get(5)?;
                Ok((
                    r.get::<_, String>(0)?,
                    StoreProblem {
                        direction: "download".into(),
                        job: r.get(1)?,
                        subject_id: r.get(2)?,
                        sequence: r.get::<_, Option<i64>>(3)?.map(|n| n as u64),
                        status: APPLIED_WITHDRAWN.into(),
                        message: Some(format!(
                            "applied before {} withdrew it: {}; send a correcting package",
                            by.unwrap_or_default(),
                            reason.unwrap_or_default()
                        )),
                        modified_at_ms: r.get(6)?,
                    },
                ))
            })?;
            for row in rows {
                let (channel, problem) = row?;
                problems.entry(channel).or_default().push(problem);
            }
            let mut waiting = conn.prepare_cached(
                "SELECT created_at_ms FROM packages WHERE data_group = ?1 AND sequence = ?2",
            )?;
            let mut states = Vec::with_capacity(channels.len());
            for c in &channels {
                let latest_sequence = latest.get(&c.data_group).copied().unwrap_or(0);
                let applied_sequence = applied.get(&c.id).copied().unwrap_or(0);
                let behind = latest_sequence.saturating_sub(applied_sequence);
                let waiting_since_ms = if behind > 0 {
                    waiting
                        .query_row(params![c.data_group, (applied_sequence + 1) as i64], |r| {
                            r.get(0)
                        })
                        .ok()
                } else {
                    None
                };
                states.push(StoreState {
                    channel: c.id.clone(),
                    data_group: c.data_group.clone(),
                    last_connection_ms: c.last_connection_ms,
                    applied_sequence,
                    latest_sequence,
                    behind,
                    waiting_since_ms,
                    problems: problems.remove(&c.id).unwrap_or_default(),
                    last_upload_ms: last_upload.get(&c.id).copied(),
                    high_water: high_waters.remove(&c.id).unwrap_or_default(),
                    went_back: went_back.remove(&c.id),
                });
            }
            Ok(states)
        })?;
        states.retain(|s| {
            filter.group.as_ref().is_none_or(|g| &s.data_group == g)
                && (!filter.behind || s.behind > 0)
                && (!filter.failing || s.is_failing())
        });
        states.sort_by(|a, b| {
            b.is_failing()
                .cmp(&a.is_failing())
                .then(b.behind.cmp(&a.behind))
                .then(a.channel.cmp(&b.channel))
        });
        Ok(states)
    }
}
