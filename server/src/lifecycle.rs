//! What happens to a package after it is published: a later full package of
//! its job supersedes it, or an operator withdraws it
//! (`cdx-server package withdraw`). Both are recorded on the package's row
//! and listed to the stores, which pass over such a package instead of
//! applying it (docs/protocol.md section 3.2).
//!
//! Supersession is decided by [`supersessions`], a pure function of a job's
//! packages, and stored (`packages.superseded_by`) so that a listing reads
//! it instead of computing it per poll.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use super::cache;
use super::error::ServerError;
use super::store::{package_from_row, parse_uuid, Store, PACKAGE_COLUMNS};
use cdx::package::{PackageKind, PackageReader};
use cdx::protocol::{now_ms, GroupHead, ListedPackage, PackageInfo, Supersession, Withdrawal};

/// One package of a job, as [`supersessions`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPackage {
    pub id: Uuid,
    pub sequence: u64,
    pub kind: PackageKind,
    /// The tables it changes; `None` when unknown (its file is gone), which
    /// keeps it from being superseded or superseding.
    pub tables: Option<BTreeSet<String>>,
    pub withdrawn: bool,
}

/// For each package of one job (any order), the full package that
/// supersedes it: the first later full package of the job, not withdrawn,
/// that carries every table the package changes (a full package replaces
/// its tables' rows, so applying it makes the earlier package's changes
/// moot). A withdrawn package is never superseded: it is passed over anyway.
pub fn supersessions(packages: &[JobPackage]) -> Vec<(Uuid, Option<Supersession>)> {
    let mut fulls: Vec<&JobPackage> = packages
        .iter()
        .filter(|p| p.kind == PackageKind::Full && !p.withdrawn && p.tables.is_some())
        .collect();
    fulls.sort_by_key(|p| p.sequence);
    packages
        .iter()
        .map(|p| {
            let by = match (&p.tables, p.withdrawn) {
                (Some(tables), false) => fulls
                    .iter()
                    .filter(|f| f.sequence > p.sequence)
                    .find(|f| f.tables.as_ref().is_some_and(|ft| tables.is_subset(ft)))
                    .map(|f| Supersession {
                        id: f.id,
                        sequence: f.sequence,
                    }),
                _ => None,
            };
            (p.id, by)
        })
        .collect()
}

/// What `package withdraw` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawn {
    pub package: PackageInfo,
    pub withdrawal: Withdrawal,
    /// Channels that had already applied it: they need a correcting package.
    pub applied_by: Vec<String>,
    /// Channels that know of it and have not applied it: each passes over
    /// it at its next poll, and its session becomes Canceled then.
    pub waiting: usize,
    /// Channels that passed over earlier packages because this (full)
    /// package superseded them: they lack those packages' changes until a
    /// new full package of the job arrives.
    pub stranded: Vec<String>,
    /// Packages it superseded whose files `compact` pruned: no store can
    /// download them any more, so a new full package of the job is needed.
    pub pruned_superseded: u64,
}

/// A package some channel applied before it was withdrawn.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedWithdrawn {
    pub channel: String,
    pub package_id: Uuid,
    pub sequence: u64,
    pub job: String,
    pub reason: String,
}

impl Store {
    /// At most `limit` packages of `data_group` above `after`, each with
    /// its withdrawal or supersession; from memory while the database has
    /// not changed (`cache.rs`).
    pub fn listed_after(
        &self,
        data_group: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ListedPackage>, ServerError> {
        if let Some(listed) = self.listed_after_cached(data_group, after, limit) {
            return Ok(listed);
        }
        if self.cache().is_enabled() && self.cache().listing(data_group).is_none() {
            // Read the whole group once (bounded: more than the cache keeps
            // is not kept), and answer from it.
            let generation = self.cache().generation();
            let all = self.listed_packages_up_to(data_group, cache::MAX_CACHED_PACKAGES + 1)?;
            if all.len() <= cache::MAX_CACHED_PACKAGES {
                let answer = cache::listed_after(&all, after, limit);
                self.cache().keep_listing(generation, data_group, all);
                return Ok(answer);
            }
            self.cache().keep_listing(generation, data_group, all);
        }
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LISTED_COLUMNS} FROM packages
                 WHERE data_group = ?1 AND sequence > ?2
                 ORDER BY sequence LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![data_group, after as i64, limit as i64],
                listed_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// [`listed_after`](Self::listed_after) from memory, with no database
    /// read: `None` when the group's listing is not kept.
    pub fn listed_after_cached(
        &self,
        data_group: &str,
        after: u64,
        limit: usize,
    ) -> Option<Vec<ListedPackage>> {
        let listed = self.cache().listing(data_group)??;
        Some(cache::listed_after(&listed, after, limit))
    }

    /// Where `data_group`'s listing stands (`GET /v1/groups/{group}/head`):
    /// its newest sequence, and a version that moves at every change of its
    /// packages (`group_versions`, moved by triggers). From memory while
    /// nothing changed; a group without packages is answered, never kept.
    pub fn group_head(&self, data_group: &str) -> Result<Arc<GroupHead>, ServerError> {
        if let Some(head) = self.group_head_cached(data_group) {
            return Ok(head);
        }
        let generation = self.cache().generation();
        let (newest, version): (i64, Option<i64>) = self.with_conn(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT (SELECT coalesce(max(sequence), 0) FROM packages WHERE data_group = ?1),
                            (SELECT version FROM group_versions WHERE data_group = ?1)",
                )?
                .query_row([data_group], |r| Ok((r.get(0)?, r.get(1)?)))?)
        })?;
        let head = Arc::new(GroupHead {
            data_group: data_group.to_owned(),
            newest: newest.max(0) as u64,
            version: format!("{newest}-{}", version.unwrap_or(0)),
        });
        if newest > 0 || version.is_some() {
            self.cache().keep_head(generation, head.clone());
        }
        Ok(head)
    }

    /// [`group_head`](Self::group_head) from memory: `None` when not kept.
    pub fn group_head_cached(&self, data_group: &str) -> Option<Arc<GroupHead>> {
        self.cache().head(data_group)
    }

    /// The first `limit` packages of `data_group`, in sequence order.
    fn listed_packages_up_to(
        &self,
        data_group: &str,
        limit: usize,
    ) -> Result<Vec<ListedPackage>, ServerError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {LISTED_COLUMNS} FROM packages
                 WHERE data_group = ?1 ORDER BY sequence LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![data_group, limit as i64], listed_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Every package, of one data group or all, in publication order, with
    /// its withdrawal or supersession (`cdx-server packages`).
    pub fn listed_packages(
        &self,
        data_group: Option<&str>,
    ) -> Result<Vec<ListedPackage>, ServerError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {LISTED_COLUMNS} FROM packages
                 WHERE ?1 IS NULL OR data_group = ?1
                 ORDER BY data_group, sequence"
            ))?;
            let rows = stmt.query_map([data_group], listed_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Takes package `id` back: no store should apply it. Stores that have
    /// not applied it pass over it at their next poll and report their
    /// session Canceled with the reason. Journaled in `package_history`
    /// with `by` and the time.
    ///
    /// # Errors
    /// [`ServerError::NotFound`] for an unknown package,
    /// [`ServerError::Conflict`] when it is already withdrawn,
    /// [`ServerError::Invalid`] for an empty reason.
    pub fn withdraw(&self, id: Uuid, by: &str, reason: &str) -> Result<Withdrawn, ServerError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ServerError::Invalid(
                "a withdrawal needs a reason (--reason TEXT): stores record it".into(),
            ));
        }
        let by = if by.trim().is_empty() {
            "unknown"
        } else {
            by.trim()
        };
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let package = tx
                .query_row(
                    &format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE id = ?1"),
                    [id.to_string()],
                    package_from_row,
                )
                .optional()?
                .ok_or_else(|| ServerError::NotFound(format!("no package {id}")))?;
            let earlier: Option<(i64, String, String)> = tx
                .query_row(
                    "SELECT withdrawn_at_ms, withdrawn_by, withdrawn_reason FROM packages
                     WHERE id = ?1 AND withdrawn_at_ms IS NOT NULL",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let Some((at, who, why)) = earlier {
                return Err(ServerError::Conflict(format!(
                    "package {id} was already withdrawn by {who} at {}: {why}",
                    cdx::protocol::rfc3339_ms(at)
                )));
            }
            let withdrawal = Withdrawal {
                reason: reason.to_owned(),
                by: by.to_owned(),
                at_ms: now_ms(),
            };
            tx.execute(
                "UPDATE packages SET withdrawn_at_ms = ?2, withdrawn_by = ?3,
                     withdrawn_reason = ?4, superseded_by = NULL
                 WHERE id = ?1",
                params![id.to_string(), withdrawal.at_ms, by, reason],
            )?;
            tx.execute(
                "INSERT INTO package_history (package_id, event, by, reason, at_ms)
                 VALUES (?1, 'withdrawn', ?2, ?3, ?4)",
                params![id.to_string(), by, reason, withdrawal.at_ms],
            )?;
            let pruned_superseded: u64 = tx.query_row(
                "SELECT COUNT(*) FROM packages WHERE superseded_by = ?1 AND pruned_at_ms IS NOT NULL",
                [id.to_string()],
                |r| r.get(0),
            )?;
            // A withdrawn full package supersedes nothing any more.
            supersede_job(&tx, &package.data_group, &package.job)?;
            let applied_by: Vec<String> = tx
                .prepare(
                    "SELECT channel FROM sessions
                     WHERE direction = 'download' AND subject_id = ?1 AND status = 'Applied'
                     ORDER BY channel",
                )?
                .query_map([id.to_string()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            // Their sessions become Canceled when the stores report passing
            // over it: a store far behind has not yet, and its position is
            // what it reported.
            let waiting: usize = tx.query_row(
                "SELECT COUNT(*) FROM sessions
                 WHERE direction = 'download' AND subject_id = ?1
                   AND status NOT IN ('Applied', 'Canceled')",
                [id.to_string()],
                |r| r.get(0),
            )?;
            // The agents report a pass-over with the superseding package's
            // id in the message (ListedPackage::pass_over_reason).
            let stranded: Vec<String> = tx
                .prepare(
                    "SELECT DISTINCT channel FROM sessions
                     WHERE direction = 'download' AND status = 'Canceled'
                       AND instr(message, ?1) > 0
                     ORDER BY channel",
                )?
                .query_map([format!("superseded by full package {id}")], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            tx.commit()?;
            tracing::warn!(package = %id, sequence = package.sequence, job = %package.job,
                by, reason, waiting, applied_by = applied_by.len(), "withdrew package");
            Ok(Withdrawn {
                package,
                withdrawal,
                applied_by,
                waiting,
                stranded,
                pruned_superseded,
            })
        })
    }

    /// Packages channels applied that were withdrawn later, by channel.
    pub fn applied_withdrawn(&self) -> Result<Vec<AppliedWithdrawn>, ServerError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT s.channel, p.id, p.sequence, p.job, p.withdrawn_reason
                 FROM sessions s JOIN packages p ON p.id = s.subject_id
                 WHERE s.direction = 'download' AND s.status = 'Applied'
                   AND p.withdrawn_at_ms IS NOT NULL
                 ORDER BY s.channel, p.sequence",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(AppliedWithdrawn {
                    channel: r.get(0)?,
                    package_id: parse_uuid(1, &r.get::<_, String>(1)?)?,
                    sequence: r.get::<_, i64>(2)? as u64,
                    job: r.get(3)?,
                    reason: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// Reads the table list of packages published before it was recorded
    /// (from each file's header), then decides their supersession. Run when
    /// the store opens; a package whose file is gone stays unknown.
    pub(crate) fn fill_missing_tables(&self) -> Result<(), ServerError> {
        let missing: Vec<(Uuid, String, String)> = self.with_conn(|conn| {
            let mut stmt =
                conn.prepare("SELECT id, data_group, job FROM packages WHERE tables IS NULL")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    parse_uuid(0, &r.get::<_, String>(0)?)?,
                    r.get(1)?,
                    r.get(2)?,
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        if missing.is_empty() {
            return Ok(());
        }
        let mut jobs = BTreeSet::new();
        let mut found = Vec::new();
        for (id, group, job) in missing {
            match read_tables(&self.package_path(id)) {
                Ok(tables) => found.push((id, tables)),
                Err(e) => tracing::warn!(package = %id, error = %e,
                    "cannot read the package's tables; it is never superseded"),
            }
            jobs.insert((group, job));
        }
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (id, tables) in &found {
                tx.execute(
                    "UPDATE packages SET tables = ?2 WHERE id = ?1",
                    params![id.to_string(), tables_json(tables)],
                )?;
            }
            for (group, job) in &jobs {
                supersede_job(&tx, group, job)?;
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// What `compact` pruned, or would prune.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Compacted {
    /// (package, data group, sequence, file bytes) of each package pruned.
    pub pruned: Vec<(Uuid, String, u64, u64)>,
    pub bytes: u64,
}

impl Store {
    /// Prunes the files of packages no store will download: superseded, or
    /// withdrawn, at least `keep_for` ago (a
    /// store in the middle of downloading one finishes meanwhile). The
    /// package's row stays, so the order stays whole and every store can
    /// still pass over it; its content route answers 410 Gone. `dry_run`
    /// only says what would go.
    pub fn compact(
        &self,
        data_group: Option<&str>,
        keep_for: std::time::Duration,
        dry_run: bool,
    ) -> Result<Compacted, ServerError> {
        let cutoff = now_ms() - i64::try_from(keep_for.as_millis()).unwrap_or(i64::MAX);
        let candidates: Vec<(Uuid, String, u64, u64, String)> = self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, data_group, sequence, bytes, sha256 FROM packages
                 WHERE pruned_at_ms IS NULL AND (?1 IS NULL OR data_group = ?1)
                   AND (withdrawn_at_ms <= ?2
                        OR (superseded_by IS NOT NULL AND superseded_at_ms <= ?2))
                 ORDER BY data_group, sequence",
            )?;
            let rows = stmt.query_map(params![data_group, cutoff], |r| {
                Ok((
                    parse_uuid(0, &r.get::<_, String>(0)?)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                    r.get::<_, i64>(3)? as u64,
                    r.get(4)?,
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        let mut done = Compacted::default();
        for (id, group, sequence, bytes, sha256) in candidates {
            if !dry_run {
                // Marked first: a crash between leaves a file too many,
                // never a listed package without its file.
                self.with_conn(|conn| {
                    conn.execute(
                        "UPDATE packages SET pruned_at_ms = ?2 WHERE id = ?1",
                        params![id.to_string(), now_ms()],
                    )?;
                    Ok(())
                })?;
                for path in [self.package_path(id), self.content_path(&sha256)] {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(ServerError::io(format!("removing {}", path.display()), e))
                        }
                    }
                }
                tracing::info!(package = %id, data_group = %group, sequence, bytes,
                    "pruned a superseded or withdrawn package's file");
            }
            done.bytes += bytes;
            done.pruned.push((id, group, sequence, bytes));
        }
        Ok(done)
    }

    /// Why package `id`'s file was pruned; `None` when it was not.
    pub fn pruned(&self, id: Uuid) -> Result<Option<String>, ServerError> {
        self.with_conn(|conn| {
            let row: Option<(Option<i64>, Option<String>, Option<String>)> = conn
                .query_row(
                    "SELECT pruned_at_ms, superseded_by, withdrawn_reason FROM packages
                     WHERE id = ?1",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            Ok(match row {
                Some((Some(_), _, Some(reason))) => Some(format!("withdrawn: {reason}")),
                Some((Some(_), Some(by), None)) => Some(format!("superseded by {by}")),
                Some((Some(_), None, None)) => Some("no longer needed".into()),
                _ => None,
            })
        })
    }
}

/// [`PACKAGE_COLUMNS`], then the withdrawal and the supersession.
const LISTED_COLUMNS: &str = "id, data_group, job, sequence, kind, bytes, sha256, rows,
    created_at_ms, content_bytes, withdrawn_at_ms, withdrawn_by, withdrawn_reason, superseded_by,
    (SELECT s.sequence FROM packages s WHERE s.id = packages.superseded_by)";

fn listed_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ListedPackage> {
    let package = package_from_row(r)?;
    let withdrawn = match r.get::<_, Option<i64>>(10)? {
        Some(at_ms) => Some(Withdrawal {
            at_ms,
            by: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
            reason: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
        }),
        None => None,
    };
    let superseded_by = match (
        r.get::<_, Option<String>>(13)?,
        r.get::<_, Option<i64>>(14)?,
    ) {
        (Some(id), Some(sequence)) => Some(Supersession {
            id: parse_uuid(13, &id)?,
            sequence: u64::try_from(sequence).unwrap_or(0),
        }),
        _ => None,
    };
    Ok(ListedPackage {
        package,
        withdrawn,
        superseded_by,
    })
}

/// The tables of a package file, from its header.
fn read_tables(path: &Path) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let reader = PackageReader::open(file)?;
    Ok(reader
        .header()
        .tables
        .iter()
        .map(|t| t.name.clone())
        .collect())
}

pub(crate) fn tables_json(tables: &[String]) -> String {
    serde_json::to_string(tables).unwrap_or_else(|_| "[]".into())
}

/// Decides `superseded_by` afresh for every package of `job` in `data_group`.
pub(crate) fn supersede_job(
    conn: &Connection,
    data_group: &str,
    job: &str,
) -> rusqlite::Result<()> {
    let packages: Vec<JobPackage> = conn
        .prepare(
            "SELECT id, sequence, kind, tables, withdrawn_at_ms IS NOT NULL FROM packages
             WHERE data_group = ?1 AND job = ?2",
        )?
        .query_map(params![data_group, job], |r| {
            let tables: Option<String> = r.get(3)?;
            Ok(JobPackage {
                id: parse_uuid(0, &r.get::<_, String>(0)?)?,
                sequence: r.get::<_, i64>(1)? as u64,
                kind: if r.get::<_, String>(2)? == "Full" {
                    PackageKind::Full
                } else {
                    PackageKind::Incremental
                },
                tables: tables.and_then(|t| serde_json::from_str(&t).ok()),
                withdrawn: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    // The time it changed starts compaction's grace period.
    let mut update = conn.prepare_cached(
        "UPDATE packages SET superseded_by = ?2,
             superseded_at_ms = CASE WHEN ?2 IS NULL THEN NULL ELSE ?3 END
         WHERE id = ?1 AND superseded_by IS NOT ?2",
    )?;
    let now = now_ms();
    for (id, by) in supersessions(&packages) {
        update.execute(params![id.to_string(), by.map(|s| s.id.to_string()), now])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(sequence: u64, kind: PackageKind, tables: &[&str]) -> JobPackage {
        JobPackage {
            id: Uuid::from_u128(u128::from(sequence)),
            sequence,
            kind,
            tables: Some(tables.iter().map(|t| (*t).to_owned()).collect()),
            withdrawn: false,
        }
    }

    fn by(result: &[(Uuid, Option<Supersession>)]) -> Vec<Option<u64>> {
        result
            .iter()
            .map(|(_, s)| s.as_ref().map(|s| s.sequence))
            .collect()
    }

    #[test]
    fn a_full_package_supersedes_the_earlier_packages_it_covers() {
        use PackageKind::*;
        let job = [
            pkg(1, Full, &["items", "prices"]),
            pkg(2, Incremental, &["items"]),
            pkg(3, Incremental, &["items", "barcodes"]),
            pkg(4, Full, &["items", "prices"]),
            pkg(5, Incremental, &["prices"]),
        ];
        // 3 changes a table 4 does not carry: applying 4 would not replace it.
        assert_eq!(
            by(&supersessions(&job)),
            [Some(4), Some(4), None, None, None]
        );
    }

    #[test]
    fn the_nearest_later_full_package_that_covers_it_supersedes() {
        use PackageKind::*;
        let job = [
            pkg(1, Incremental, &["items", "barcodes"]),
            pkg(2, Full, &["items"]),
            pkg(3, Full, &["items", "barcodes"]),
            pkg(4, Full, &["items", "barcodes"]),
        ];
        assert_eq!(by(&supersessions(&job)), [Some(3), Some(3), Some(4), None]);
    }

    #[test]
    fn withdrawn_and_unknown_packages_neither_supersede_nor_are_superseded() {
        use PackageKind::*;
        let mut job = vec![
            pkg(1, Incremental, &["items"]),
            pkg(2, Incremental, &["items"]),
            pkg(3, Full, &["items"]),
            pkg(4, Full, &["items"]),
        ];
        job[1].withdrawn = true;
        job[3].withdrawn = true;
        assert_eq!(by(&supersessions(&job)), [Some(3), None, None, None]);
        job[2].tables = None;
        assert_eq!(by(&supersessions(&job)), [None, None, None, None]);
    }
}
