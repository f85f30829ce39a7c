//! Moving a package from the server into the working folder, in either
//! transfer mode, and verifying it. Plain async functions over an
//! [`HqClient`]; the poller decides when to call them again.
//!
//! A package is written to `<id>.cdxpkg.part`, checked against the size
//! and SHA-256 the server listed, made durable, and only then renamed to
//! `<id>.cdxpkg`: a file with the final name was complete when named.
//! Should the disk lose bytes of it later, [`matches_listing`] tells.
//!
//! Both modes keep every byte received: a try that fails resumes after the
//! last byte on disk with an HTTP Range request. They differ in how much
//! one request asks for: reliable mode `chunk_bytes` at a time, each
//! checked before the next; streaming mode the whole rest in one GET.

mod fetch;
mod part;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use cdx::config::TransferMode;
use cdx::failure::FailureClass;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use crate::hq::{HqClient, HqError};
use cdx::protocol::PackageInfo;

/// Read and write buffer size: small buffers are a known slowdown.
const IO_BUFFER: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub enum TransferError {
    #[error("package {package_id}: {source}")]
    Hq { package_id: Uuid, source: HqError },
    #[error("package {package_id}: {path}: {source}")]
    Io {
        package_id: Uuid,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "package {package_id}: the download ended at {got} bytes, the server listed {expected}"
    )]
    Size {
        package_id: Uuid,
        expected: u64,
        got: u64,
    },
    #[error("package {package_id}: SHA-256 mismatch: the server listed {expected}, the download has {actual}")]
    Checksum {
        package_id: Uuid,
        expected: String,
        actual: String,
    },
    #[error("package {package_id}: the server answered a range request with {detail}")]
    Range { package_id: Uuid, detail: String },
    /// The working folder's disk cannot take the package (and a margin):
    /// checked before a byte is downloaded, so the message database on the
    /// same disk keeps room to write.
    #[error(
        "package {package_id}: not enough free space in {}: the download needs {needed} \
         bytes, {available} are free",
        path.display()
    )]
    NoSpace {
        package_id: Uuid,
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error(
        "package {package_id}: download interrupted by shutdown at {bytes} bytes (kept to resume)"
    )]
    Interrupted { package_id: Uuid, bytes: u64 },
}

impl TransferError {
    /// The network, the server's state and the local disk are transient; a
    /// file that is not what was listed, or a server that answers a range
    /// with something else, is permanent.
    pub fn class(&self) -> FailureClass {
        match self {
            Self::Hq { source, .. } => source.class(),
            Self::Io { .. } | Self::NoSpace { .. } | Self::Interrupted { .. } => {
                FailureClass::Transient
            }
            Self::Size { .. } | Self::Checksum { .. } | Self::Range { .. } => {
                FailureClass::Permanent
            }
        }
    }
}

/// A package fully in the working folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub bytes: u64,
    /// Bytes already on disk from an earlier, interrupted try.
    pub resumed_from: u64,
}

/// Where a package's files live in the working folder.
pub fn package_path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("{id}.cdxpkg"))
}

pub fn part_path(dir: &Path, id: Uuid) -> PathBuf {
    dir.join(format!("{id}.cdxpkg.part"))
}

/// What a transfer needs besides the package.
pub struct TransferContext<'a> {
    pub hq: &'a HqClient,
    pub dir: &'a Path,
    pub mode: TransferMode,
    /// Bytes one request asks for in reliable mode.
    pub chunk_bytes: u64,
    /// Set at shutdown: a reliable transfer stops after the chunk in hand.
    pub stop: &'a AtomicBool,
    /// Called with the bytes on disk as they grow.
    pub progress: &'a mut dyn FnMut(u64),
}

/// Downloads `package` into the working folder, or finds it there already.
pub async fn download(
    ctx: &mut TransferContext<'_>,
    package: &PackageInfo,
) -> Result<Downloaded, TransferError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| TransferError::Io {
            package_id: package.id,
            path,
            source,
        }
    };
    tokio::fs::create_dir_all(ctx.dir)
        .await
        .map_err(io(ctx.dir))?;
    let done = package_path(ctx.dir, package.id);
    if matches_listing(&done, package).await {
        return Ok(Downloaded {
            path: done,
            bytes: package.bytes,
            resumed_from: package.bytes,
        });
    }
    let part = part_path(ctx.dir, package.id);
    check_free_space(ctx.dir, package, &part)?;
    let (hasher, resumed_from) = fetch::fetch(ctx, package, &part).await?;
    let actual = hex::encode(hasher.finalize());
    if actual != package.sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(TransferError::Checksum {
            package_id: package.id,
            expected: package.sha256.clone(),
            actual,
        });
    }
    tokio::fs::rename(&part, &done).await.map_err(io(&done))?;
    sync_dir(ctx.dir).await;
    Ok(Downloaded {
        path: done,
        bytes: package.bytes,
        resumed_from,
    })
}

/// Whether the file at `path` has the size and SHA-256 the listing gives
/// `package` (false when it cannot be read).
pub async fn matches_listing(path: &Path, package: &PackageInfo) -> bool {
    match hash_file(path, u64::MAX).await {
        Ok((hasher, len)) => {
            len == package.bytes && hex::encode(hasher.finalize()) == package.sha256
        }
        Err(_) => false,
    }
}

/// Hashes the first `limit` bytes of `path`; returns the hasher and the bytes read.
async fn hash_file(path: &Path, limit: u64) -> std::io::Result<(Sha256, u64)> {
    let file = tokio::fs::File::open(path).await?;
    let mut reader = file.take(limit);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; IO_BUFFER];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((hasher, total));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// Room kept free beyond a package, for the message database and the logs
/// on the same disk.
const FREE_SPACE_MARGIN: u64 = 16 * 1024 * 1024;

/// Refuses to start a download that the disk cannot hold with a margin:
/// filling the disk would fail the message database too.
fn check_free_space(dir: &Path, package: &PackageInfo, part: &Path) -> Result<(), TransferError> {
    let have = std::fs::metadata(part).map_or(0, |m| m.len().min(package.bytes));
    let needed = package.bytes - have + FREE_SPACE_MARGIN;
    match free_space(dir) {
        Ok(available) if available < needed => Err(TransferError::NoSpace {
            package_id: package.id,
            path: dir.to_owned(),
            needed,
            available,
        }),
        Ok(_) => Ok(()),
        Err(source) => Err(TransferError::Io {
            package_id: package.id,
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Bytes an unprivileged process may still write on the disk of `dir`.
pub fn free_space(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The rename is durable only once the folder is synced.
async fn sync_dir(dir: &Path) {
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
}

fn stopping(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
