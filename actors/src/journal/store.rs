//! The message database: sessions in sled, behind a small blocking API.
//!
//! sled is beta and may fail to open after a crash, so an unreadable
//! database is moved aside and a fresh one started: nothing in it is the
//! system of record (the channel database and the server are).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bincode::Options;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::model::{DownloadSession, UploadSession};

/// sled's default cache is 1 GiB; a journal needs little.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// How long a reopen waits for sled's own threads to let go of the lock.
const REOPEN_LOCK_WAIT: Duration = Duration::from_secs(2);
const REOPEN_PAUSE: Duration = Duration::from_millis(20);
/// No stored session comes near this; a corrupt length claim stops here.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("message database {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("message database: {0}")]
    Sled(#[from] sled::Error),
    #[error("message database record {key}: {source}")]
    Decode { key: String, source: bincode::Error },
    #[error("message database: cannot move the unreadable database aside: {0}")]
    Quarantine(std::io::Error),
}

/// Stored values are wrapped so that a later format can be told apart:
/// records are written as `V3` and read as any.
#[derive(Serialize, Deserialize)]
enum Envelope<Old, Mid, New> {
    V1(Old),
    V2(Mid),
    V3(New),
}

/// A record type and the layouts its `V1` and `V2` records were written in.
pub(super) trait Stored: Serialize + DeserializeOwned {
    type V1: DeserializeOwned + Into<Self>;
    type V2: DeserializeOwned + Into<Self>;
}

impl Stored for DownloadSession {
    /// Before `PackageInfo::content_bytes`.
    type V1 = super::model::DownloadSessionV1;
    /// Before `PackageInfo::content_url`.
    type V2 = super::model::DownloadSessionV2;
}

impl Stored for UploadSession {
    type V1 = UploadSession;
    type V2 = UploadSession;
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_RECORD_BYTES)
        .reject_trailing_bytes()
}

fn encode<T: Stored>(value: &T) -> Vec<u8> {
    codec()
        .serialize(&Envelope::<(), (), &T>::V3(value))
        .expect("sessions are far below the record limit")
}

fn decode<T: Stored>(key: &[u8], bytes: &[u8]) -> Result<T, JournalError> {
    match codec().deserialize::<Envelope<T::V1, T::V2, T>>(bytes) {
        Ok(Envelope::V1(old)) => Ok(old.into()),
        Ok(Envelope::V2(old)) => Ok(old.into()),
        Ok(Envelope::V3(v)) => Ok(v),
        Err(source) => Err(JournalError::Decode {
            key: hex::encode(key),
            source,
        }),
    }
}

/// The message database, reopened after an I/O error: sled keeps failing
/// once a write failed (a full disk, say), so the store drops its handle
/// and opens the database again at the next call, once the cause is gone,
/// without a restart of the agent. Clones share the handle.
#[derive(Clone)]
pub struct JournalStore {
    path: PathBuf,
    open: Arc<Mutex<Option<Trees>>>,
}

#[derive(Clone)]
struct Trees {
    db: sled::Db,
    downloads: sled::Tree,
    uploads: sled::Tree,
}

impl JournalStore {
    /// Opens the message database at `path`. Returns also where an
    /// unreadable database was moved to, if it was.
    pub fn open(path: &Path) -> Result<(Self, Option<PathBuf>), JournalError> {
        let (trees, aside) = open_or_quarantine(path)?;
        let store = Self {
            path: path.to_owned(),
            open: Arc::new(Mutex::new(Some(trees))),
        };
        Ok((store, aside))
    }

    /// Opens an existing message database as it is: never creates one and
    /// never moves an unreadable one aside (for reading it while the agent
    /// is stopped).
    pub fn open_existing(path: &Path) -> Result<Self, JournalError> {
        if !path.exists() {
            return Err(JournalError::Open {
                path: path.to_owned(),
                source: sled::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no message database here (has the agent ever run with this configuration?)",
                )),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            open: Arc::new(Mutex::new(Some(try_open(path)?))),
        })
    }

    /// The open database, opened again if an error closed it. A reopen
    /// never moves the database aside: the error that closed it was the
    /// machine's, and sled's own threads may hold its lock for a moment
    /// after the handle is dropped, so a locked database is waited for.
    fn trees(&self) -> Result<Trees, JournalError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(trees) = open.as_ref() {
            return Ok(trees.clone());
        }
        let mut waited = Duration::ZERO;
        let trees = loop {
            match try_open(&self.path) {
                Err(JournalError::Open { source, .. })
                    if is_locked(&source) && waited < REOPEN_LOCK_WAIT =>
                {
                    std::thread::sleep(REOPEN_PAUSE);
                    waited += REOPEN_PAUSE;
                }
                result => break result?,
            }
        };
        tracing::info!(path = %self.path.display(), "message database reopened");
        *open = Some(trees.clone());
        Ok(trees)
    }

    /// Runs `op`; after an error of sled's, closes the database so that the
    /// next call opens it afresh.
    fn with<T>(
        &self,
        op: impl FnOnce(&Trees) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let trees = self.trees()?;
        let result = op(&trees);
        if let Err(JournalError::Sled(e)) = &result {
            tracing::warn!(error = %e, "message database failed; it is reopened at the next call");
            drop(trees);
            self.close();
        }
        result
    }

    fn close(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        *open = None;
    }

    pub fn put_download(&self, s: &DownloadSession) -> Result<(), JournalError> {
        self.with(|t| {
            t.downloads.insert(s.id.as_bytes(), encode(s))?;
            Ok(())
        })
    }

    pub fn put_upload(&self, s: &UploadSession) -> Result<(), JournalError> {
        self.with(|t| {
            t.uploads.insert(s.id.as_bytes(), encode(s))?;
            Ok(())
        })
    }

    pub fn download(&self, id: Uuid) -> Result<Option<DownloadSession>, JournalError> {
        self.with(|t| {
            t.downloads
                .get(id.as_bytes())?
                .map(|v| decode(id.as_bytes(), &v))
                .transpose()
        })
    }

    /// Sessions newest first (keys are UUIDv7, so key order is time order).
    /// A record that does not decode is skipped with a warning: the
    /// journal is not the system of record, and one bad record must not
    /// stop the agent.
    pub fn downloads(&self) -> Result<Vec<DownloadSession>, JournalError> {
        self.recent_downloads(usize::MAX)
    }

    pub fn uploads(&self) -> Result<Vec<UploadSession>, JournalError> {
        self.recent_uploads(usize::MAX)
    }

    /// The `limit` newest download sessions, newest first.
    pub fn recent_downloads(&self, limit: usize) -> Result<Vec<DownloadSession>, JournalError> {
        self.with(|t| scan(&t.downloads, limit))
    }

    pub fn recent_uploads(&self, limit: usize) -> Result<Vec<UploadSession>, JournalError> {
        self.with(|t| scan(&t.uploads, limit))
    }

    /// Removes final sessions last changed before `before_ms`; returns how many.
    pub fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        let mut removed = 0;
        for s in self.downloads()? {
            if s.status.is_final() && s.updated_at_ms < before_ms {
                self.with(|t| Ok(t.downloads.remove(s.id.as_bytes())?))?;
                removed += 1;
            }
        }
        for s in self.uploads()? {
            if s.status.is_final() && s.updated_at_ms < before_ms {
                self.with(|t| Ok(t.uploads.remove(s.id.as_bytes())?))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Makes every write so far durable (sled otherwise loses up to 500 ms).
    pub fn flush(&self) -> Result<(), JournalError> {
        self.with(|t| {
            t.db.flush()?;
            Ok(())
        })
    }
}

/// Opens the database; an unreadable one (not one that is locked, or on a
/// full or read-only disk) is moved aside and a new one started.
fn open_or_quarantine(path: &Path) -> Result<(Trees, Option<PathBuf>), JournalError> {
    match try_open(path) {
        Ok(trees) => Ok((trees, None)),
        Err(JournalError::Open { source, .. }) if path.exists() && !is_environmental(&source) => {
            let aside = quarantine_path(path);
            tracing::error!(error = %source, moved_to = %aside.display(),
                "message database unreadable; starting a new one");
            std::fs::rename(path, &aside).map_err(JournalError::Quarantine)?;
            Ok((try_open(path)?, Some(aside)))
        }
        Err(e) => Err(e),
    }
}

/// An error of the machine, not of the database's files: moving the
/// database aside would lose it for nothing.
fn is_environmental(e: &sled::Error) -> bool {
    use std::io::ErrorKind::*;
    is_locked(e)
        || matches!(e, sled::Error::Io(io) if cdx::failure::is_disk_full(io)
            || matches!(io.kind(), WouldBlock | PermissionDenied | ReadOnlyFilesystem))
}

/// sled's "could not acquire lock" (an `ErrorKind::Other` I/O error).
fn is_locked(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io)
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock"))
}

fn try_open(path: &Path) -> Result<Trees, JournalError> {
    let open_err = |source| JournalError::Open {
        path: path.to_owned(),
        source,
    };
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .open()
        .map_err(open_err)?;
    Ok(Trees {
        downloads: db.open_tree("downloads").map_err(open_err)?,
        uploads: db.open_tree("uploads").map_err(open_err)?,
        db,
    })
}

fn scan<T: Stored>(tree: &sled::Tree, limit: usize) -> Result<Vec<T>, JournalError> {
    let mut found = Vec::new();
    for entry in tree.iter().rev() {
        if found.len() == limit {
            break;
        }
        let (k, v) = entry?;
        match decode(&k, &v) {
            Ok(s) => found.push(s),
            Err(e) => tracing::warn!(error = %e, "skipped an unreadable message database record"),
        }
    }
    Ok(found)
}

fn quarantine_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{}", cdx::protocol::now_ms()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use cdx::package::PackageKind;
    use cdx::status::DownloadStatus;

    use super::*;
    use cdx::protocol::PackageInfo;

    fn package(seq: u64) -> PackageInfo {
        PackageInfo {
            id: Uuid::new_v4(),
            job: "1040".into(),
            sequence: seq,
            kind: PackageKind::Full,
            bytes: 10,
            sha256: "ab".into(),
            rows: 1,
            data_group: "default".into(),
            created_at_ms: 0,
            content_bytes: None,
            content_url: None,
        }
    }

    /// Sessions survive a close and reopen once flushed, newest listed first.
    #[test]
    fn sessions_survive_reopen_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let (store, aside) = JournalStore::open(&path).unwrap();
        assert!(aside.is_none());
        let first = DownloadSession::new(package(1), DownloadStatus::Available, None);
        let mut second = DownloadSession::new(package(2), DownloadStatus::Available, None);
        second.transition(
            DownloadStatus::DownloadFailed,
            Some("connection reset".into()),
        );
        store.put_download(&first).unwrap();
        store.put_download(&second).unwrap();
        store.flush().unwrap();
        drop(store);
        let (store, _) = JournalStore::open(&path).unwrap();
        let all = store.downloads().unwrap();
        assert_eq!(all, vec![second.clone(), first]);
        assert_eq!(all[0].attempts, 1);
        assert_eq!(all[0].last_error.as_deref(), Some("connection reset"));
    }

    /// An unreadable message database is moved aside and a fresh one opened.
    #[test]
    fn corrupt_database_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        std::fs::write(&path, b"this is not a sled directory").unwrap();
        let (store, aside) = JournalStore::open(&path).unwrap();
        let aside = aside.expect("the corrupt database was moved");
        assert!(aside.exists());
        assert_eq!(store.downloads().unwrap().len(), 0);
    }

    /// A record that does not decode is skipped, not an error that stops
    /// every later read; the records around it still read.
    #[test]
    fn undecodable_record_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JournalStore::open(&dir.path().join("j")).unwrap();
        let good = DownloadSession::new(package(1), DownloadStatus::Available, None);
        store.put_download(&good).unwrap();
        store
            .with(|t| Ok(t.downloads.insert(b"k", &[0xff; 3][..])?))
            .unwrap();
        assert_eq!(store.downloads().unwrap(), vec![good]);
        let err = decode::<DownloadSession>(b"k", &[0xff; 3]).unwrap_err();
        assert!(err.to_string().contains("6b"), "{err}");
    }

    /// A record written before `PackageInfo` had `content_bytes` (an
    /// agent upgraded in place) still reads.
    #[test]
    fn records_of_the_previous_layout_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JournalStore::open(&dir.path().join("j")).unwrap();
        let session = DownloadSession::new(package(1), DownloadStatus::Suspended, None);
        let old = crate::journal::model::DownloadSessionV1::from_current(&session);
        let bytes = codec().serialize(&Envelope::<_, (), ()>::V1(&old)).unwrap();
        store
            .with(|t| Ok(t.downloads.insert(session.id.as_bytes(), bytes)?))
            .unwrap();
        assert_eq!(store.downloads().unwrap(), vec![session.clone()]);
        // And one written before `content_url`, with its `content_bytes`.
        let mut session = DownloadSession::new(package(2), DownloadStatus::Requested, None);
        session.package.content_bytes = Some(1234);
        let old = crate::journal::model::DownloadSessionV2::from_current(&session);
        let bytes = codec().serialize(&Envelope::<(), _, ()>::V2(&old)).unwrap();
        store
            .with(|t| Ok(t.downloads.insert(session.id.as_bytes(), bytes)?))
            .unwrap();
        assert!(store.downloads().unwrap().contains(&session));
    }

    /// A closed database (as after an I/O error) is opened again at the
    /// next call and keeps what was flushed.
    #[test]
    fn closed_database_reopens_at_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JournalStore::open(&dir.path().join("j")).unwrap();
        let s = DownloadSession::new(package(1), DownloadStatus::Available, None);
        store.put_download(&s).unwrap();
        store.flush().unwrap();
        store.close();
        assert_eq!(store.downloads().unwrap(), vec![s]);
    }

    /// Pruning removes old final sessions and keeps open ones.
    #[test]
    fn prune_keeps_open_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JournalStore::open(&dir.path().join("j")).unwrap();
        let mut done = DownloadSession::new(package(1), DownloadStatus::Available, None);
        done.transition(DownloadStatus::Applied, None);
        let open = DownloadSession::new(package(2), DownloadStatus::Requested, None);
        store.put_download(&done).unwrap();
        store.put_download(&open).unwrap();
        assert_eq!(store.prune(i64::MAX).unwrap(), 1);
        let left = store.downloads().unwrap();
        assert_eq!(left, vec![open]);
    }
}
