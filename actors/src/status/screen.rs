//! `cdx-client status`: the status document as one screen for a person at
//! the store. Pure: the document and the time in, text out.

use std::fmt::Write as _;

pub(crate) use cdx_server::report::age;
use cdx_server::report::{table, time as rfc3339};

use super::StatusDocument;

/// Characters of a progress bar.
const BAR: usize = 30;

/// `[####------] 40% 4 of 10`
pub fn bar(done: u64, total: u64) -> String {
    let share = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let filled = (share * BAR as f64).round() as usize;
    format!(
        "[{}{}] {:.0}% {done} of {total}",
        "#".repeat(filled),
        "-".repeat(BAR - filled),
        share * 100.0
    )
}

/// The screen for `doc` at `now_ms`.
pub fn render(doc: &StatusDocument, now_ms: i64) -> String {
    let mut out = String::new();
    let ago = |ms: i64| age(now_ms.saturating_sub(ms));
    let _ = writeln!(
        out,
        "{} -> {} ({}), up {}",
        doc.channel_id,
        doc.server_url,
        doc.transfer_mode,
        age(doc.uptime_ms)
    );
    if doc.healthy {
        let _ = writeln!(out, "health: OK");
    } else {
        let _ = writeln!(out, "health: UNHEALTHY");
        for reason in &doc.health_reasons {
            let _ = writeln!(out, "  - {reason}");
        }
    }
    let poll = &doc.last_poll;
    match poll.at_ms {
        Some(at) => {
            let outcome = match (poll.ok, &poll.error) {
                (Some(false), Some(e)) => format!("failed: {e}"),
                _ => "ok".to_owned(),
            };
            let _ = writeln!(
                out,
                "last poll: {} ago, {outcome}; applied up to #{}{}",
                ago(at),
                poll.last_applied_sequence,
                poll.data_group
                    .as_deref()
                    .map(|g| format!(" of data group {g}"))
                    .unwrap_or_default()
            );
            if let Some(head) = &poll.head {
                let outcome = match &head.error {
                    Some(e) => format!("failed: {e} (polls list at headquarters)"),
                    None => "ok".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "group head: asked {} ago, {outcome}; {} poll(s) ended there",
                    ago(head.at_ms),
                    head.polls_ended
                );
            }
            let behind = &doc.behind;
            let _ = writeln!(
                out,
                "behind: {} package(s) listed and not applied yet{}",
                behind.packages,
                behind
                    .oldest_created_at_ms
                    .map(|at| format!(", the oldest published {} ago", ago(at)))
                    .unwrap_or_default()
            );
        }
        None => {
            let _ = writeln!(out, "last poll: none yet");
        }
    }
    if let Some(p) = &doc.download_progress {
        let _ = writeln!(
            out,
            "downloading {}: {} bytes",
            p.package_id,
            bar(p.bytes, p.total)
        );
    }
    if let Some(p) = &doc.apply_progress {
        let _ = writeln!(
            out,
            "applying {}: {} rows",
            p.package_id,
            bar(p.rows, p.total)
        );
    }
    for (actor, doing) in &doc.activity {
        let _ = writeln!(out, "{actor}: {doing}");
    }
    if let Some(s) = &doc.suspended {
        let _ = writeln!(
            out,
            "SUSPENDED: package {}: {}",
            s.package_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "?".into()),
            s.reason.as_deref().unwrap_or("no reason recorded")
        );
        let _ = writeln!(
            out,
            "  later packages wait: `cdx-client rerun {}` once it is fixed, or headquarters \
             withdraws it (`cdx-server package withdraw`) and the store passes over it",
            s.package_id
                .map(|id| id.to_string())
                .unwrap_or_else(|| "ID".into()),
        );
    }
    for (what, w) in &doc.went_back {
        let caught_up = w
            .caught_up_at_ms
            .map(|at| format!(" (caught up {} ago)", ago(at)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "WENT BACK ({what}), {} ago{caught_up}: {}",
            ago(w.since_ms),
            w.message
        );
    }
    for (stage, p) in &doc.problems {
        let _ = writeln!(
            out,
            "failing: {stage} ({}) for {}, {} failure(s): {}",
            p.component,
            ago(p.since_ms),
            p.failures,
            p.error
        );
    }
    if doc.watermarks.is_empty() {
        let _ = writeln!(out, "uploads: none yet");
    }
    for (table, w) in &doc.watermarks {
        let held = w
            .server_high_water
            .map(|h| format!(", headquarters holds up to {h}"))
            .unwrap_or_default();
        let waiting = w
            .waiting
            .map(|n| format!(", {n} row(s) waiting"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "uploads of {table}: sent up to counter {}{held}{waiting} ({} ago)",
            w.counter,
            ago(w.at_ms)
        );
    }
    let restarted: Vec<String> = doc
        .actors
        .iter()
        .filter(|(_, a)| !a.alive || a.restarts > 0)
        .map(|(name, a)| {
            format!(
                "{name} ({}, {} restart(s))",
                if a.alive { "running" } else { "DOWN" },
                a.restarts
            )
        })
        .collect();
    if !restarted.is_empty() {
        let _ = writeln!(out, "actors: {}", restarted.join(", "));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::status::{Behind, HeadState, PollState, Progress, SuspendedState, WatermarkState};

    /// A stopped agent's message database, as `cdx-client status` shows it.
    #[test]
    fn a_stopped_agents_journal_on_one_screen() {
        use crate::journal::{DownloadSession, UploadSession};
        use cdx::status::{DownloadStatus, UploadStatus};
        let package = |sequence: u64| cdx::protocol::PackageInfo {
            id: uuid::Uuid::from_u128(sequence as u128),
            data_group: "default".into(),
            job: "1040".into(),
            sequence,
            kind: cdx::package::PackageKind::Full,
            bytes: 10,
            sha256: "ab".into(),
            rows: 1,
            created_at_ms: 0,
            content_bytes: None,
            content_url: None,
        };
        let mut suspended = DownloadSession::new(
            package(2),
            DownloadStatus::Suspended,
            Some("bad sum".into()),
        );
        suspended.updated_at_ms = 990_000;
        let mut applied = DownloadSession::new(package(1), DownloadStatus::Applied, None);
        applied.updated_at_ms = 940_000;
        let mut batch = UploadSession::new("sales", 1, 7, 7);
        batch.transition(UploadStatus::Applied, None);
        batch.updated_at_ms = 999_000;
        let doc = crate::status::SessionsDocument {
            downloads: vec![suspended, applied],
            uploads: vec![batch],
        };
        let text = stopped(&doc, 1_000_000);
        assert_eq!(
            text,
            "from its message database:\n\
             SUSPENDED: package 00000000-0000-0000-0000-000000000002 (#2 job 1040): bad sum\n\
             last applied: package 00000000-0000-0000-0000-000000000001 (#1 job 1040), 1m ago\n\
             download sessions open: 1\n\
             uploads of sales: last batch up to counter 7, acknowledged (Applied), 1s ago\n"
        );
    }

    pub(crate) fn doc() -> StatusDocument {
        StatusDocument {
            channel_id: "store-0001".into(),
            server_url: "http://hq:8080".into(),
            transfer_mode: "reliable".into(),
            started_at_ms: 0,
            started_at: String::new(),
            last_successful_poll_ms: Some(990_000),
            last_successful_poll: None,
            behind: Behind {
                packages: 2,
                oldest_created_at_ms: Some(400_000),
                oldest_created_at: None,
            },
            apply_progress: None,
            uptime_ms: 3_723_000,
            healthy: true,
            health_reasons: vec![],
            problems: Default::default(),
            actors: Default::default(),
            last_poll: PollState {
                at_ms: Some(990_000),
                at: None,
                ok: Some(true),
                error: None,
                listed: 2,
                data_group: Some("default".into()),
                last_applied_sequence: 17,
                head: Some(HeadState {
                    at_ms: 995_000,
                    ok: false,
                    error: Some(
                        "cannot reach the server at http://cdn/v1/groups/default/head".into(),
                    ),
                    polls_ended: 12,
                }),
            },
            activity: Default::default(),
            download_progress: None,
            suspended: None,
            watermarks: Default::default(),
            went_back: Default::default(),
            recent_downloads: vec![],
            recent_uploads: vec![],
        }
    }

    #[test]
    fn a_healthy_store_on_one_screen() {
        let mut d = doc();
        d.download_progress = Some(Progress {
            package_id: uuid::Uuid::nil(),
            bytes: 50,
            total: 200,
        });
        d.watermarks.insert(
            "sales".into(),
            WatermarkState {
                counter: 700,
                server_high_water: Some(700),
                at_ms: 995_000,
                at: String::new(),
                waiting: Some(12),
            },
        );
        let text = render(&d, 1_000_000);
        assert!(
            text.contains("store-0001 -> http://hq:8080 (reliable), up 1h 2m"),
            "{text}"
        );
        assert!(text.contains("health: OK"), "{text}");
        assert!(
            text.contains("last poll: 10s ago, ok; applied up to #17 of data group default"),
            "{text}"
        );
        assert!(
            text.contains(
                "group head: asked 5s ago, failed: cannot reach the server at \
                 http://cdn/v1/groups/default/head (polls list at headquarters); \
                 12 poll(s) ended there"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "behind: 2 package(s) listed and not applied yet, the oldest published 10m ago"
            ),
            "{text}"
        );
        assert!(
            text.contains("[########----------------------] 25% 50 of 200 bytes"),
            "{text}"
        );
        assert!(
            text.contains(
                "uploads of sales: sent up to counter 700, headquarters holds up to 700, \
                 12 row(s) waiting (5s ago)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_suspended_store_says_why_and_what_to_do() {
        let mut d = doc();
        d.healthy = false;
        d.health_reasons = vec!["a package is suspended".into()];
        d.suspended = Some(SuspendedState {
            package_id: Some(uuid::Uuid::nil()),
            reason: Some("schema conflict: table `t` has no column `y`".into()),
        });
        let text = render(&d, 1_000_000);
        assert!(
            text.contains("health: UNHEALTHY\n  - a package is suspended"),
            "{text}"
        );
        assert!(
            text.contains(
                "SUSPENDED: package 00000000-0000-0000-0000-000000000000: schema conflict"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "`cdx-client rerun 00000000-0000-0000-0000-000000000000` once it is fixed"
            ) && text.contains("cdx-server package withdraw"),
            "{text}"
        );
    }
}

/// Which sessions `cdx-client sessions` lists.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub downloads: bool,
    pub uploads: bool,
    /// A status name, compared case-insensitively.
    pub status: Option<String>,
    pub limit: usize,
}

/// The sessions as the original's Download sessions and Upload sessions
/// forms: one line each, newest first, times in RFC 3339.
pub fn sessions_table(doc: &super::SessionsDocument, filter: &SessionFilter) -> String {
    let both = filter.downloads == filter.uploads;
    let wanted = |status: &str| {
        filter
            .status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(status))
    };
    let mut out = String::new();
    if both || filter.downloads {
        let rows: Vec<Vec<String>> = doc
            .downloads
            .iter()
            .map(|s| (s, format!("{:?}", s.status)))
            .filter(|(_, status)| wanted(status))
            .take(filter.limit)
            .map(|(s, status)| {
                vec![
                    s.id.to_string(),
                    s.package.id.to_string(),
                    s.package.sequence.to_string(),
                    s.package.job.clone(),
                    status,
                    s.attempts.to_string(),
                    s.bytes_done.to_string(),
                    s.rows_applied.to_string(),
                    rfc3339(s.updated_at_ms),
                    s.last_error.as_deref().map(short).unwrap_or_default(),
                ]
            })
            .collect();
        let _ = writeln!(out, "Download sessions");
        out += &table(
            &[
                "SESSION", "PACKAGE", "SEQ", "JOB", "STATUS", "ATTEMPTS", "BYTES", "ROWS",
                "UPDATED", "ERROR",
            ],
            rows,
        );
    }
    if both {
        out.push('\n');
    }
    if both || filter.uploads {
        let rows: Vec<Vec<String>> = doc
            .uploads
            .iter()
            .map(|s| (s, format!("{:?}", s.status)))
            .filter(|(_, status)| wanted(status))
            .take(filter.limit)
            .map(|(s, status)| {
                vec![
                    s.id.to_string(),
                    s.table.clone(),
                    format!("{}..={}", s.first_counter, s.last_counter),
                    status,
                    s.attempts.to_string(),
                    s.rows.to_string(),
                    s.bytes.to_string(),
                    rfc3339(s.updated_at_ms),
                    s.last_error.as_deref().map(short).unwrap_or_default(),
                ]
            })
            .collect();
        let _ = writeln!(out, "Upload sessions");
        out += &table(
            &[
                "SESSION", "TABLE", "COUNTERS", "STATUS", "ATTEMPTS", "ROWS", "BYTES", "UPDATED",
                "ERROR",
            ],
            rows,
        );
    }
    out
}

/// What a stopped agent's message database says, for `cdx-client status`
/// while the agent does not run: a suspended package, the last package
/// applied, sessions still open, and each upload table's last batch.
pub fn stopped(doc: &super::SessionsDocument, now_ms: i64) -> String {
    use cdx::status::{DownloadStatus, UploadStatus};
    let ago = |ms: i64| age(now_ms.saturating_sub(ms));
    let mut out = String::from("from its message database:\n");
    let package = |s: &crate::journal::DownloadSession| {
        format!(
            "package {} (#{} job {})",
            s.package.id, s.package.sequence, s.package.job
        )
    };
    if let Some(s) = doc
        .downloads
        .iter()
        .find(|s| s.status == DownloadStatus::Suspended)
    {
        let reason = s.history.last().and_then(|t| t.message.as_deref());
        let _ = writeln!(
            out,
            "SUSPENDED: {}: {}",
            package(s),
            reason.unwrap_or("no reason recorded")
        );
    }
    // By sequence and counter, not by time: sessions made in the same
    // millisecond have no order of their own.
    match doc
        .downloads
        .iter()
        .filter(|s| s.status == DownloadStatus::Applied)
        .max_by_key(|s| s.package.sequence)
    {
        Some(s) => {
            let _ = writeln!(
                out,
                "last applied: {}, {} ago",
                package(s),
                ago(s.updated_at_ms)
            );
        }
        None => out.push_str("last applied: none recorded\n"),
    }
    let open = doc
        .downloads
        .iter()
        .filter(|s| !s.status.is_final())
        .count();
    if open > 0 {
        let _ = writeln!(out, "download sessions open: {open}");
    }
    let mut tables: Vec<&str> = doc.uploads.iter().map(|s| s.table.as_str()).collect();
    tables.sort_unstable();
    tables.dedup();
    for table in tables {
        if let Some(s) = doc
            .uploads
            .iter()
            .filter(|s| s.table == table)
            .max_by_key(|s| s.last_counter)
        {
            let sent = if s.status == UploadStatus::Applied {
                "acknowledged"
            } else {
                "not acknowledged yet"
            };
            let _ = writeln!(
                out,
                "uploads of {table}: last batch up to counter {}, {sent} ({:?}), {} ago",
                s.last_counter,
                s.status,
                ago(s.updated_at_ms)
            );
        }
    }
    out
}

/// One session with its status history, found by its id, its package id or
/// its upload id (or a unique prefix of one); `None` when nothing matches.
pub fn session_detail(doc: &super::SessionsDocument, id: &str) -> Option<String> {
    let id = id.to_ascii_lowercase();
    let matches = |candidates: &[String]| candidates.iter().any(|c| c.starts_with(&id));
    let mut out = String::new();
    if let Some(s) = doc
        .downloads
        .iter()
        .find(|s| matches(&[s.id.to_string(), s.package.id.to_string()]))
    {
        let _ = writeln!(out, "download session {}", s.id);
        let _ = writeln!(
            out,
            "package {} (#{} job {}, {:?}, {} bytes, {} rows)",
            s.package.id,
            s.package.sequence,
            s.package.job,
            s.package.kind,
            s.package.bytes,
            s.package.rows
        );
        let _ = writeln!(
            out,
            "status {:?}, {} failed tries, {} bytes downloaded, {} rows applied",
            s.status, s.attempts, s.bytes_done, s.rows_applied
        );
        history(&mut out, &s.history);
        return Some(out);
    }
    let s = doc
        .uploads
        .iter()
        .find(|s| matches(&[s.id.to_string(), s.upload_id.to_string()]))?;
    let _ = writeln!(out, "upload session {} (upload {})", s.id, s.upload_id);
    let _ = writeln!(
        out,
        "table {}, counters {}..={}, {} rows, {} bytes",
        s.table, s.first_counter, s.last_counter, s.rows, s.bytes
    );
    let _ = writeln!(out, "status {:?}, {} failed tries", s.status, s.attempts);
    history(&mut out, &s.history);
    Some(out)
}

fn history(out: &mut String, history: &[crate::journal::Transition]) {
    let _ = writeln!(out, "history:");
    for t in history {
        let _ = writeln!(
            out,
            "  {}  {}{}",
            rfc3339(t.at_ms),
            t.status,
            t.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        s.push('…');
    }
    s
}
