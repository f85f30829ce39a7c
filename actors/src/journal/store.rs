//! The message database: sessions in sled, behind a small blocking API.
//!
//! sled is beta and may fail to open after a crash, so an unreadable
//! database is moved aside and a fresh one started: nothing in it is the
//! system of record (the channel database and the server are).

use std::path::{Path, PathBuf};

use bincode::Options;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use super::model::{DownloadSession, UploadSession};

/// sled's default cache is 1 GiB; a journal needs little.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;
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

/// Stored values are wrapped so that a later format can be told apart.
#[derive(Serialize, Deserialize)]
enum Envelope<T> {
    V1(T),
}

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_RECORD_BYTES)
        .reject_trailing_bytes()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    codec()
        .serialize(&Envelope::V1(value))
        .expect("sessions are far below the record limit")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, JournalError> {
    match codec().deserialize::<Envelope<T>>(bytes) {
        Ok(Envelope::V1(v)) => Ok(v),
        Err(source) => Err(JournalError::Decode {
            key: hex::encode(key),
            source,
        }),
    }
}

#[derive(Clone)]
pub struct JournalStore {
    db: sled::Db,
    downloads: sled::Tree,
    uploads: sled::Tree,
}

impl JournalStore {
    /// Opens the message database at `path`. Returns also where an
    /// unreadable database was moved to, if it was.
    pub fn open(path: &Path) -> Result<(Self, Option<PathBuf>), JournalError> {
        match Self::try_open(path) {
            Ok(store) => Ok((store, None)),
            Err(first) if path.exists() => {
                let aside = quarantine_path(path);
                tracing::error!(error = %first, moved_to = %aside.display(),
                    "message database unreadable; starting a new one");
                std::fs::rename(path, &aside).map_err(JournalError::Quarantine)?;
                Ok((Self::try_open(path)?, Some(aside)))
            }
            Err(e) => Err(e),
        }
    }

    fn try_open(path: &Path) -> Result<Self, JournalError> {
        let open_err = |source| JournalError::Open {
            path: path.to_owned(),
            source,
        };
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(open_err)?;
        Ok(Self {
            downloads: db.open_tree("downloads").map_err(open_err)?,
            uploads: db.open_tree("uploads").map_err(open_err)?,
            db,
        })
    }

    pub fn put_download(&self, s: &DownloadSession) -> Result<(), JournalError> {
        self.downloads.insert(s.id.as_bytes(), encode(s))?;
        Ok(())
    }

    pub fn put_upload(&self, s: &UploadSession) -> Result<(), JournalError> {
        self.uploads.insert(s.id.as_bytes(), encode(s))?;
        Ok(())
    }

    pub fn download(&self, id: Uuid) -> Result<Option<DownloadSession>, JournalError> {
        self.downloads
            .get(id.as_bytes())?
            .map(|v| decode(id.as_bytes(), &v))
            .transpose()
    }

    /// Sessions newest first (keys are UUIDv7, so key order is time order).
    pub fn downloads(&self) -> impl Iterator<Item = Result<DownloadSession, JournalError>> {
        scan(&self.downloads)
    }

    pub fn uploads(&self) -> impl Iterator<Item = Result<UploadSession, JournalError>> {
        scan(&self.uploads)
    }

    /// Removes final sessions last changed before `before_ms`; returns how many.
    pub fn prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        let mut removed = 0;
        for s in self.downloads().collect::<Result<Vec<_>, _>>()? {
            if s.status.is_final() && s.updated_at_ms < before_ms {
                self.downloads.remove(s.id.as_bytes())?;
                removed += 1;
            }
        }
        for s in self.uploads().collect::<Result<Vec<_>, _>>()? {
            if s.status.is_final() && s.updated_at_ms < before_ms {
                self.uploads.remove(s.id.as_bytes())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Makes every write so far durable (sled otherwise loses up to 500 ms).
    pub fn flush(&self) -> Result<(), JournalError> {
        self.db.flush()?;
        Ok(())
    }
}

fn scan<T: DeserializeOwned>(tree: &sled::Tree) -> impl Iterator<Item = Result<T, JournalError>> {
    tree.iter().rev().map(|entry| {
        let (k, v) = entry?;
        decode(&k, &v)
    })
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
        let all: Vec<_> = store.downloads().collect::<Result<_, _>>().unwrap();
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
        assert_eq!(store.downloads().count(), 0);
    }

    /// A record that does not decode is an error naming its key, not a panic.
    #[test]
    fn undecodable_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = JournalStore::open(&dir.path().join("j")).unwrap();
        store.downloads.insert(b"k", &[0xff; 3][..]).unwrap();
        let err = store.downloads().next().unwrap().unwrap_err();
        assert!(err.to_string().contains("6b"), "{err}");
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
        let left: Vec<_> = store.downloads().collect::<Result<_, _>>().unwrap();
        assert_eq!(left, vec![open]);
    }
}
