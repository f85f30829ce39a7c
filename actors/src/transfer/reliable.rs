//! Reliable mode: the package moves in HTTP Range chunks. Each chunk is
//! confirmed (its position and length checked, its bytes hashed and handed
//! to the OS) before the next is asked for, so a dropped connection or a
//! killed agent costs at most one chunk: the next try resumes from the last
//! confirmed byte. Plain Range requests
//! work with any HTTP server or CDN, not only `cdx-server`.

use std::path::Path;

use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::Sha256;
use std::io::Seek;

use super::part::{io_error, PartFile};
use super::{hash_file, stopping, TransferContext, TransferError};
use crate::hq::{HqClient, HqError};
use cdx::protocol::PackageInfo;

/// Returns the hash of the whole file and where this try resumed from.
pub(super) async fn fetch(
    ctx: &mut TransferContext<'_>,
    package: &PackageInfo,
    part: &Path,
) -> Result<(Sha256, u64), TransferError> {
    let (mut file, resumed_from) = open_confirmed_prefix(part, package).await?;
    let mut etag: Option<String> = None;
    while file.written < package.bytes {
        if stopping(ctx.stop) {
            return Err(TransferError::Interrupted {
                package_id: package.id,
                bytes: file.written,
            });
        }
        match fetch_chunk(ctx, package, &mut file, &mut etag).await {
            Ok(()) => {}
            // Every byte received is on its way to disk, in order: the
            // next try resumes after the last of them.
            Err(source) if file.written > resumed_from => {
                return Err(TransferError::Partial {
                    bytes: file.written,
                    source: Box::new(source),
                })
            }
            Err(e) => return Err(e),
        }
        file.flush().await?;
        (ctx.progress)(file.written);
    }
    Ok((file.finish().await?, resumed_from))
}

/// Opens the `.part` file, keeping what earlier tries confirmed.
async fn open_confirmed_prefix<'a>(
    part: &'a Path,
    package: &'a PackageInfo,
) -> Result<(PartFile<'a>, u64), TransferError> {
    let have = match tokio::fs::metadata(part).await {
        Ok(m) if m.len() <= package.bytes => m.len(),
        _ => 0,
    };
    if have == 0 {
        return Ok((PartFile::create(part, package).await?, 0));
    }
    let (hasher, hashed) = hash_file(part, have)
        .await
        .map_err(|e| io_error(package, part, e))?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(part)
        .and_then(|mut f| {
            f.set_len(hashed)?;
            f.seek(std::io::SeekFrom::Start(hashed))?;
            Ok(f)
        })
        .map_err(|e| io_error(package, part, e))?;
    tracing::info!(package = %package.id, bytes = hashed, "resuming download");
    Ok((PartFile::over(f, hasher, hashed, part, package), hashed))
}

/// Fetches the next chunk into `file`. When the server sends the whole
/// file instead (it ignores ranges, or the file changed), starts over and
/// takes the whole file.
async fn fetch_chunk(
    ctx: &mut TransferContext<'_>,
    package: &PackageInfo,
    file: &mut PartFile<'_>,
    etag: &mut Option<String>,
) -> Result<(), TransferError> {
    let start = file.written;
    let end = (start + ctx.chunk_bytes).min(package.bytes) - 1;
    let path = HqClient::content_path(package.id);
    let mut req = ctx
        .hq
        .request(reqwest::Method::GET, &path)
        .header(RANGE, format!("bytes={start}-{end}"));
    if let Some(tag) = etag.as_deref() {
        req = req.header(IF_RANGE, tag);
    }
    let hq_err = |source: HqError| TransferError::Hq {
        package_id: package.id,
        source,
    };
    let mut resp = ctx.hq.send(&path, req).await.map_err(hq_err)?;
    if etag.is_none() {
        *etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
    }
    let target_end = match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            check_content_range(package, &resp, start, end)?;
            end + 1
        }
        // A server may answer a range with the whole file (some do when
        // the range covers it all); from offset 0 that is just the file.
        StatusCode::OK => {
            if start > 0 {
                tracing::warn!(package = %package.id, "server sent the whole file; starting over");
                file.reset().await?;
            }
            package.bytes
        }
        other => {
            return Err(TransferError::Range {
                package_id: package.id,
                detail: format!("HTTP {other}"),
            })
        }
    };
    let url = ctx.hq.url(&path);
    while let Some(bytes) = resp.chunk().await.map_err(|e| {
        hq_err(HqError::Transport {
            url: url.clone(),
            source: e,
        })
    })? {
        file.write(bytes).await?;
        if file.written > target_end {
            return Err(TransferError::Range {
                package_id: package.id,
                detail: format!("more bytes than the {} asked for", target_end - start),
            });
        }
    }
    if file.written != target_end {
        return Err(TransferError::Size {
            package_id: package.id,
            expected: target_end,
            got: file.written,
        });
    }
    Ok(())
}

fn check_content_range(
    package: &PackageInfo,
    resp: &reqwest::Response,
    start: u64,
    end: u64,
) -> Result<(), TransferError> {
    let header = resp
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = format!("bytes {start}-{end}/{}", package.bytes);
    if header != expected {
        return Err(TransferError::Range {
            package_id: package.id,
            detail: format!("Content-Range `{header}`, expected `{expected}`"),
        });
    }
    Ok(())
}
