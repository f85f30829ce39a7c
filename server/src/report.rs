//! Plain-text tables for the operator commands, laid out like the original's
//! Download sessions and Upload sessions forms.

use std::time::Duration;

use super::fleet::StoreState;
use super::lifecycle::{Compacted, Withdrawn};
use super::store::ChannelInfo;
use super::uploads::{UploadConflict, UploadTableInfo};
use cdx::protocol::{ListedPackage, SessionInfo};

/// Download sessions: channel, job, package, sequence, status (code), ...
pub fn download_sessions(sessions: &[SessionInfo]) -> String {
    let header = [
        "CHANNEL", "JOB", "PACKAGE", "SEQ", "STATUS", "MESSAGE", "BYTES", "ROWS", "ATTEMPTS",
        "CREATED", "MODIFIED",
    ];
    let sequence = |s: &SessionInfo| Some(s.sequence.map(|n| n.to_string()).unwrap_or_default());
    table(&header, session_rows(sessions, sequence))
}

/// Upload sessions: channel, table, upload id, status (code), ...
pub fn upload_sessions(sessions: &[SessionInfo]) -> String {
    let header = [
        "CHANNEL", "TABLE", "UPLOAD", "STATUS", "MESSAGE", "BYTES", "ROWS", "ATTEMPTS", "CREATED",
        "MODIFIED",
    ];
    table(&header, session_rows(sessions, |_| None))
}

/// One row per session; `extra` adds a column after the subject (the
/// package's sequence for downloads).
fn session_rows(
    sessions: &[SessionInfo],
    extra: impl Fn(&SessionInfo) -> Option<String>,
) -> Vec<Vec<String>> {
    sessions
        .iter()
        .map(|s| {
            let mut row = vec![
                s.channel_id.clone(),
                s.job.clone(),
                s.subject_id.to_string(),
            ];
            row.extend(extra(s));
            row.extend([
                format!("{} ({})", s.status, s.status_code),
                s.message.clone().unwrap_or_default(),
                s.bytes.to_string(),
                s.rows.to_string(),
                s.attempts.to_string(),
                time(s.created_at_ms),
                time(s.modified_at_ms),
            ]);
            row
        })
        .collect()
}

pub fn upload_tables(tables: &[UploadTableInfo]) -> String {
    let rows = tables
        .iter()
        .map(|t| {
            vec![
                t.channel.clone(),
                t.table.clone(),
                t.high_water.to_string(),
                t.rows.to_string(),
            ]
        })
        .collect();
    table(&["CHANNEL", "TABLE", "HIGH WATER", "ROWS"], rows)
}

pub fn packages(packages: &[ListedPackage]) -> String {
    let rows = packages
        .iter()
        .map(|l| {
            let p = &l.package;
            let state = match (&l.withdrawn, &l.superseded_by) {
                (Some(w), _) => format!("withdrawn by {} at {}: {}", w.by, time(w.at_ms), w.reason),
                (None, Some(s)) => format!("superseded by #{}", s.sequence),
                (None, None) => String::new(),
            };
            vec![
                p.data_group.clone(),
                p.sequence.to_string(),
                p.job.clone(),
                format!("{:?}", p.kind),
                p.id.to_string(),
                p.bytes.to_string(),
                p.rows.to_string(),
                p.sha256.clone(),
                time(p.created_at_ms),
                state,
            ]
        })
        .collect();
    table(
        &[
            "GROUP", "SEQ", "JOB", "KIND", "PACKAGE", "BYTES", "ROWS", "SHA256", "CREATED", "STATE",
        ],
        rows,
    )
}

/// Rows kept apart because their counter went back (`uploads conflicts`).
pub fn upload_conflicts(conflicts: &[UploadConflict]) -> String {
    if conflicts.is_empty() {
        return "no upload conflicts\n".into();
    }
    let rows = conflicts
        .iter()
        .map(|c| {
            vec![
                c.channel.clone(),
                c.table.clone(),
                c.counter.to_string(),
                time(c.received_at_ms),
                c.row_json.clone(),
                c.held_json.clone(),
            ]
        })
        .collect();
    table(
        &["CHANNEL", "TABLE", "COUNTER", "RECEIVED", "ARRIVED", "HELD"],
        rows,
    )
}

/// What `cdx-server compact` pruned.
pub fn compacted(done: &Compacted, dry_run: bool) -> String {
    let verb = if dry_run { "would prune" } else { "pruned" };
    let mut out = String::new();
    for (id, group, sequence, bytes) in &done.pruned {
        out.push_str(&format!(
            "{verb} {group} #{sequence} {id} ({bytes} bytes)\n"
        ));
    }
    out.push_str(&format!(
        "{verb} {} package file(s), {} bytes; their rows stay listed, marked, so every store \
         passes over them\n",
        done.pruned.len(),
        done.bytes
    ));
    out
}

/// What `cdx-server package withdraw` did.
pub fn withdrawn(done: &Withdrawn) -> String {
    let p = &done.package;
    let mut out = format!(
        "withdrew package {} (#{} of data group {}, job {}) at {}: {}\n\
         {} store(s) know of it and have not applied it: each passes over it at its next \
         poll (and any store that has not listed it yet, when it does).\n",
        p.id,
        p.sequence,
        p.data_group,
        p.job,
        time(done.withdrawal.at_ms),
        done.withdrawal.reason,
        done.waiting,
    );
    if !done.stranded.is_empty() {
        out.push_str(&format!(
            "{} store(s) passed over earlier packages that it superseded and lack their changes \
             until a new full package of job {} arrives: {}\n",
            done.stranded.len(),
            p.job,
            done.stranded.join(", ")
        ));
    }
    if done.pruned_superseded > 0 {
        out.push_str(&format!(
            "{} package(s) it superseded were pruned: stores that have not applied them wait \
             for a new full package of job {}; publish one\n",
            done.pruned_superseded, p.job
        ));
    }
    if done.applied_by.is_empty() {
        out.push_str("no store had applied it.\n");
    } else {
        out.push_str(&format!(
            "{} store(s) had already applied it and need a correcting package: {}\n",
            done.applied_by.len(),
            done.applied_by.join(", ")
        ));
    }
    out
}

pub fn channels(channels: &[ChannelInfo]) -> String {
    let rows = channels
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.data_group.clone(),
                time(c.created_at_ms),
                c.last_connection_ms
                    .map(time)
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    table(&["CHANNEL", "GROUP", "CREATED", "LAST CONNECTION"], rows)
}

/// A duration for people: its two largest units (`1h 2m`), `0s` under a
/// second.
pub fn age(ms: i64) -> String {
    let secs = (ms.max(0) / 1000) as u64;
    let text = humantime::format_duration(Duration::from_secs(secs)).to_string();
    let parts: Vec<&str> = text.split(' ').take(2).collect();
    if parts.is_empty() || secs == 0 {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(cdx::protocol::system_time(ms)).to_string()
}

/// Left-aligned columns, two spaces apart; "(none)" when empty.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    if rows.is_empty() {
        return "(none)\n".to_owned();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The fleet, one line per channel, worst first (`cdx-server stores`).
pub fn stores(states: &[StoreState]) -> String {
    let rows = states
        .iter()
        .map(|s| {
            let problem = s.problems.first().map_or_else(String::new, |p| {
                let what = match p.sequence {
                    Some(seq) => format!("#{seq} job {}", p.job),
                    None => format!("{} {}", p.direction, p.job),
                };
                let message: String = p
                    .message
                    .as_deref()
                    .unwrap_or("")
                    .chars()
                    .take(80)
                    .collect();
                let more = match s.problems.len() {
                    1 => String::new(),
                    n => format!(" (+{} more)", n - 1),
                };
                format!("{what} {}: {message}{more}", p.status)
            });
            vec![
                s.channel.clone(),
                s.data_group.clone(),
                s.last_connection_ms
                    .map(time)
                    .unwrap_or_else(|| "never".into()),
                format!("{}/{}", s.applied_sequence, s.latest_sequence),
                s.behind.to_string(),
                s.waiting_since_ms.map(time).unwrap_or_default(),
                s.last_upload_ms.map(time).unwrap_or_default(),
                s.high_water
                    .iter()
                    .map(|(t, n)| format!("{t}={n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                problem,
            ]
        })
        .collect();
    table(
        &[
            "CHANNEL",
            "GROUP",
            "LAST CONNECTION",
            "APPLIED",
            "BEHIND",
            "WAITING SINCE",
            "LAST UPLOAD",
            "HIGH WATER",
            "PROBLEM",
        ],
        rows,
    )
}
