//! Streaming mode: one GET, straight to the file. Fast; a dropped
//! connection means starting over.

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{TransferContext, TransferError, IO_BUFFER};
use crate::hq::{HqClient, HqError};
use cdx::protocol::PackageInfo;

pub(super) async fn fetch(
    ctx: &mut TransferContext<'_>,
    package: &PackageInfo,
    part: &Path,
) -> Result<Sha256, TransferError> {
    let path = HqClient::content_path(package.id);
    let hq_err = |source: HqError| TransferError::Hq {
        package_id: package.id,
        source,
    };
    let resp = ctx
        .hq
        .send(&path, ctx.hq.request(reqwest::Method::GET, &path))
        .await
        .map_err(hq_err)?;
    let mut sink = PartFile::create(part, package).await?;
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        hq_err(HqError::Transport {
            url: ctx.hq.url(&path),
            source: e,
        })
    })? {
        sink.write(&chunk).await?;
        if sink.written > package.bytes {
            break;
        }
        (ctx.progress)(sink.written);
    }
    sink.finish().await
}

/// A `.part` file being written, hashed and counted as it grows.
pub(super) struct PartFile<'a> {
    out: BufWriter<tokio::fs::File>,
    hasher: Sha256,
    pub written: u64,
    package: &'a PackageInfo,
    path: &'a Path,
}

impl<'a> PartFile<'a> {
    pub async fn create(path: &'a Path, package: &'a PackageInfo) -> Result<Self, TransferError> {
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|e| io_error(package, path, e))?;
        Ok(Self::over(file, Sha256::new(), 0, path, package))
    }

    pub fn over(
        file: tokio::fs::File,
        hasher: Sha256,
        written: u64,
        path: &'a Path,
        package: &'a PackageInfo,
    ) -> Self {
        Self {
            out: BufWriter::with_capacity(IO_BUFFER, file),
            hasher,
            written,
            package,
            path,
        }
    }

    pub fn path(&self) -> &'a Path {
        self.path
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), TransferError> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.out
            .write_all(bytes)
            .await
            .map_err(|e| io_error(self.package, self.path, e))
    }

    /// Makes what was written durable.
    pub async fn sync(&mut self) -> Result<(), TransferError> {
        self.out
            .flush()
            .await
            .map_err(|e| io_error(self.package, self.path, e))?;
        self.out
            .get_ref()
            .sync_data()
            .await
            .map_err(|e| io_error(self.package, self.path, e))
    }

    /// Syncs, checks the size against the listing, and yields the hash.
    pub async fn finish(mut self) -> Result<Sha256, TransferError> {
        self.sync().await?;
        if self.written != self.package.bytes {
            return Err(TransferError::Size {
                package_id: self.package.id,
                expected: self.package.bytes,
                got: self.written,
            });
        }
        Ok(self.hasher)
    }
}

pub(super) fn io_error(
    package: &PackageInfo,
    path: &Path,
    source: std::io::Error,
) -> TransferError {
    TransferError::Io {
        package_id: package.id,
        path: path.to_owned(),
        source,
    }
}
