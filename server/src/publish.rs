//! Publishing a package: sequence assignment under a lock, streaming write,
//! atomic commit.
//!
//! A [`Publication`] holds an exclusive lock on `publish-<group>.lock` from
//! [`Store::begin`] until it is committed or dropped, so the data group's
//! next sequence cannot be taken by a concurrent publisher, in this process
//! or another. Rows go straight from the caller into a [`PackageWriter`] over
//! a temporary file: nothing is held in memory. [`Publication::commit`]
//! finishes the package, fsyncs it, renames it into `packages/`, then inserts
//! its row: the row is the commit point, so a crash leaves at most an orphan
//! file. Dropping an uncommitted publication deletes its temporary file.

use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::path::PathBuf;

use rusqlite::{params, TransactionBehavior};
use uuid::Uuid;

use super::error::ServerError;
use super::store::{validate_name, Store};
use cdx::package::{PackageHeader, PackageKind, PackageWriter, TableSchema, FORMAT_VERSION};
use cdx::protocol::{now_ms, PackageInfo};

/// The writer a publication streams rows into.
pub type PackageFileWriter = PackageWriter<BufWriter<File>>;

/// What to publish: everything of the header except what the server assigns
/// (id, sequence, time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSpec {
    pub data_group: String,
    /// The scheduler job, such as "1040".
    pub job: String,
    pub kind: PackageKind,
    pub tables: Vec<TableSchema>,
    /// The tables whose definition a full package replaces.
    pub replaces: Vec<String>,
}

/// A package being written. See the module documentation.
pub struct Publication {
    store: Store,
    header: PackageHeader,
    temp_path: PathBuf,
    writer: Option<PackageFileWriter>,
    committed: bool,
    /// Holds the group's publish lock until the publication ends.
    _lock: File,
}

impl Store {
    /// Starts a package of `spec.data_group`: takes the group's publish lock
    /// (waiting for a concurrent publisher), assigns the next sequence, and
    /// writes the header to a temporary file.
    pub fn begin(&self, spec: PublishSpec) -> Result<Publication, ServerError> {
        validate_name("data group", &spec.data_group)?;
        validate_name("job", &spec.job)?;
        let lock_path = self
            .data_dir()
            .join(format!("publish-{}.lock", spec.data_group));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ServerError::io(format!("opening {}", lock_path.display()), e))?;
        lock.lock()
            .map_err(|e| ServerError::io(format!("locking {}", lock_path.display()), e))?;

        let sequence = self.with_conn(|conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(sequence), 0) + 1 FROM packages WHERE data_group = ?1",
                [&spec.data_group],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })?;
        let mut header = PackageHeader {
            format_version: FORMAT_VERSION,
            package_id: Uuid::new_v4(),
            data_group: spec.data_group,
            job: spec.job,
            sequence,
            kind: spec.kind,
            created_at_ms: now_ms(),
            replaces: spec.replaces,
            tables: spec.tables,
        };
        // Version 3 only when it replaces a definition: every other package
        // stays readable by agents that predate it.
        header.format_version = header.needed_version();
        let temp_path = self
            .data_dir()
            .join(super::store::PACKAGES_DIR)
            .join(format!(".{}.cdxpkg.tmp", header.package_id));
        let file = File::create(&temp_path)
            .map_err(|e| ServerError::io(format!("creating {}", temp_path.display()), e))?;
        // From here on, Drop removes the temporary file on any error.
        let mut publication = Publication {
            store: self.clone(),
            header,
            temp_path,
            writer: None,
            committed: false,
            _lock: lock,
        };
        publication.writer = Some(PackageWriter::new(
            BufWriter::new(file),
            &publication.header,
        )?);
        Ok(publication)
    }

    /// Publishes one package: [`Store::begin`], `rows` streams the body into
    /// the writer, [`Publication::commit`]. If `rows` fails, nothing is
    /// published and its error is returned.
    pub fn publish<F>(&self, spec: PublishSpec, rows: F) -> Result<PackageInfo, ServerError>
    where
        F: FnOnce(&mut PackageFileWriter) -> Result<(), ServerError>,
    {
        let mut publication = self.begin(spec)?;
        rows(publication.writer())?;
        publication.commit()
    }
}

impl Publication {
    /// The header being written, with the assigned id and sequence.
    pub fn header(&self) -> &PackageHeader {
        &self.header
    }

    /// The writer to stream `table`/`upsert`/`delete` frames into.
    pub fn writer(&mut self) -> &mut PackageFileWriter {
        self.writer
            .as_mut()
            .expect("the writer exists until commit consumes the publication")
    }

    /// Finishes the package and makes it visible: fsync, rename into
    /// `packages/`, insert its row (plus an Available download session for
    /// every channel of the group), wake long polls.
    pub fn commit(mut self) -> Result<PackageInfo, ServerError> {
        let writer = self.writer.take().expect("commit runs once");
        let (out, written) = writer.finish()?;
        let file = out
            .into_inner()
            .map_err(|e| ServerError::io("flushing the package", e.into_error()))?;
        file.sync_all()
            .map_err(|e| ServerError::io(format!("syncing {}", self.temp_path.display()), e))?;
        drop(file);

        let final_path = self.store.package_path(self.header.package_id);
        std::fs::rename(&self.temp_path, &final_path)
            .map_err(|e| ServerError::io(format!("renaming to {}", final_path.display()), e))?;
        sync_dir(final_path.parent().expect("packages/ is a folder"));

        let info = PackageInfo {
            id: self.header.package_id,
            data_group: self.header.data_group.clone(),
            job: self.header.job.clone(),
            sequence: self.header.sequence,
            kind: self.header.kind,
            bytes: written.bytes,
            sha256: written.sha256,
            rows: written.rows,
            created_at_ms: self.header.created_at_ms,
            content_bytes: Some(written.content_bytes),
            content_url: None,
        };
        // Linked before it is listed, so a CDN in front of `content/` has it.
        if let Err(e) = self.store.link_content(&info) {
            let _ = std::fs::remove_file(&final_path);
            return Err(e);
        }
        let tables: Vec<String> = self.header.tables.iter().map(|t| t.name.clone()).collect();
        if let Err(e) = self
            .store
            .with_conn(|conn| insert_package(conn, &info, &tables))
        {
            let _ = std::fs::remove_file(&final_path);
            return Err(e);
        }
        self.committed = true;
        self.store.notify_published();
        tracing::info!(
            package = %info.id, data_group = %info.data_group, job = %info.job,
            sequence = info.sequence, bytes = info.bytes, rows = info.rows,
            "published package"
        );
        Ok(info)
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        if !self.committed {
            drop(self.writer.take());
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

/// Inserts the package's row and, for a full package, marks the earlier
/// packages of its job it supersedes: one transaction, so a store never
/// lists the new package without its consequences.
fn insert_package(
    conn: &mut rusqlite::Connection,
    info: &PackageInfo,
    tables: &[String],
) -> Result<(), ServerError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO packages (id, data_group, job, sequence, kind, bytes, sha256, rows,
             created_at_ms, content_bytes, tables)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            info.id.to_string(),
            info.data_group,
            info.job,
            info.sequence as i64,
            info.kind.name(),
            info.bytes as i64,
            info.sha256,
            info.rows as i64,
            info.created_at_ms,
            info.content_bytes.map(|n| n as i64),
            super::lifecycle::tables_json(tables),
        ],
    )?;
    if info.kind == cdx::package::PackageKind::Full {
        super::lifecycle::supersede_job(&tx, &info.data_group, &info.job)?;
    }
    let channels: Vec<String> = {
        let mut stmt = tx.prepare("SELECT id FROM channels WHERE data_group = ?1")?;
        let rows = stmt.query_map([&info.data_group], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    for channel in channels {
        super::sessions::ensure_download_session(&tx, &channel, info)?;
    }
    tx.commit()?;
    Ok(())
}

/// Makes a rename durable. Best effort: not every platform can open a folder.
fn sync_dir(dir: &std::path::Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}
