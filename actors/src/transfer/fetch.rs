//! Fetching a package's bytes with plain HTTP GETs and Range requests, so
//! any HTTP server or CDN can serve packages, not only `cdx-server`.
//!
//! Every byte received goes to the `.part` file in order, so after a drop
//! or a killed agent the file's length is where the next try resumes
//! (`Range: bytes=N-`, with `If-Range` once an `ETag` is known; the `ETag`
//! is kept beside the `.part` file, so a resume after a restart has it too). Reliable
//! mode asks for `chunk_bytes` at a time and confirms each chunk (its
//! position and length) before the next; streaming mode asks for the whole
//! rest at once: one GET per try, the fast path.
//!
//! A server that answers a range with other bytes fails the try as a
//! permanent failure and never feeds the `.part` file a wrong byte: after a
//! 200 with the whole file from a later byte the file is emptied (the next
//! try starts over); a wrong `Content-Range` writes nothing; of a body
//! longer than asked only the bytes asked for are kept.

use std::path::Path;

use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::Sha256;
use std::io::Seek;

use super::part::{io_error, PartFile};
use super::{hash_file, stopping, TransferContext, TransferError};
use crate::hq::{HqClient, HqError};
use cdx::config::TransferMode;
use cdx::protocol::PackageInfo;

/// Bytes received between two hand-overs of the `.part` file to the OS.
const FLUSH_EVERY: u64 = 1 << 20;

/// Returns the hash of the whole file and where this try resumed from.
pub(super) async fn fetch(
    ctx: &mut TransferContext<'_>,
    package: &PackageInfo,
    part: &Path,
) -> Result<(Sha256, u64), TransferError> {
    let (mut file, resumed_from) = open_confirmed_prefix(part, package).await?;
    let chunk_bytes = match ctx.mode {
        TransferMode::Reliable => ctx.chunk_bytes,
        TransferMode::Streaming => u64::MAX,
    };
    let api = ctx.hq.url(&HqClient::content_path(package.id));
    let mut source = source_url(ctx.hq, package);
    // The validator of the bytes on disk and the URL it came from, kept
    // beside them so that every resume (after a drop, a failed try or a
    // restart) carries `If-Range`. Another server's ETag means nothing
    // here: then the final SHA-256 check alone vouches for the bytes.
    let mut validator = Validator::load(etag_path(part), &source, resumed_from > 0).await;
    while file.written < package.bytes {
        if stopping(ctx.stop) {
            return Err(TransferError::Interrupted {
                package_id: package.id,
                bytes: file.written,
            });
        }
        let fetched = fetch_range(
            ctx,
            package,
            &source,
            &mut file,
            &mut validator,
            chunk_bytes,
        )
        .await;
        // What reached the file is handed to the OS even when the try
        // failed: a killed agent resumes after it.
        file.flush().await?;
        match fetched {
            // A content URL that answers with an HTTP error (a CDN not
            // synced yet, a base URL gone) never blocks the store: the
            // same bytes come from the API.
            Err(TransferError::Hq {
                source: HqError::Status { status, .. },
                ..
            }) if source != api => {
                tracing::warn!(package = %package.id, status,
                    content_url = %cdx::package::shown(&source),
                    "the package's content_url failed; downloading from the API");
                source = api.clone();
                validator = Validator::load(etag_path(part), &source, false).await;
                continue;
            }
            other => other?,
        }
        (ctx.progress)(file.written);
    }
    let done = file.finish().await?;
    validator.forget().await;
    Ok((done, resumed_from))
}

/// The strong `ETag` of the bytes on disk and the URL it came from, kept
/// in a file beside them as soon as a response names it.
struct Validator {
    file: std::path::PathBuf,
    source: String,
    tag: Option<String>,
}

impl Validator {
    /// The kept validator when resuming from `source`, else none (and the
    /// file of an earlier download removed).
    async fn load(file: std::path::PathBuf, source: &str, resuming: bool) -> Validator {
        let tag = if resuming {
            tokio::fs::read_to_string(&file)
                .await
                .ok()
                .and_then(|kept| {
                    let (url, tag) = kept.split_once('\n')?;
                    (url == source && !tag.trim().is_empty()).then(|| tag.trim().to_owned())
                })
        } else {
            let _ = tokio::fs::remove_file(&file).await;
            None
        };
        Validator {
            file,
            source: source.to_owned(),
            tag,
        }
    }

    /// Records `tag` (written at once: a streaming GET may be the only
    /// response before the agent is killed).
    async fn learn(&mut self, tag: &str) {
        if self.tag.as_deref() == Some(tag) {
            return;
        }
        self.tag = Some(tag.to_owned());
        if let Err(e) = tokio::fs::write(&self.file, format!("{}\n{tag}", self.source)).await {
            tracing::debug!(file = %self.file.display(), error = %e,
                "cannot keep the ETag beside the partial file");
        }
    }

    async fn forget(self) {
        let _ = tokio::fs::remove_file(&self.file).await;
    }
}

/// Where the package's bytes come from: its `content_url` (a CDN, fetched
/// without credentials) when the listing gives a usable one, otherwise the
/// API's content route.
/// A plain `http://` URL is refused when the API itself is `https://`:
/// the package would cross the network in clear text.
fn source_url(hq: &HqClient, package: &PackageInfo) -> String {
    let api = hq.url(&HqClient::content_path(package.id));
    let Some(url) = package.content_url.as_deref() else {
        return api;
    };
    let usable =
        url.starts_with("https://") || (url.starts_with("http://") && !api.starts_with("https://"));
    if usable {
        return url.to_owned();
    }
    tracing::warn!(package = %package.id, content_url = %cdx::package::shown(url),
        "the listing's content_url is not an https URL (or not http with an http API); \
         downloading from the API");
    api
}

/// Where the `ETag` of a `.part` file's bytes is kept.
fn etag_path(part: &Path) -> std::path::PathBuf {
    part.with_extension("part.etag")
}

/// Opens the `.part` file, keeping what earlier tries received.
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

/// Fetches up to `chunk_bytes` from where `file` ends. From the first byte,
/// a request for the whole file is a plain GET; any other asks for a range.
async fn fetch_range(
    ctx: &mut TransferContext<'_>,
    package: &PackageInfo,
    url: &str,
    file: &mut PartFile<'_>,
    validator: &mut Validator,
    chunk_bytes: u64,
) -> Result<(), TransferError> {
    let start = file.written;
    let end = start.saturating_add(chunk_bytes).min(package.bytes) - 1;
    let whole_file = start == 0 && end + 1 == package.bytes;
    let path = HqClient::content_path(package.id);
    let mut req = if url == ctx.hq.url(&path) {
        ctx.hq.request(reqwest::Method::GET, &path)
    } else {
        ctx.hq.plain(reqwest::Method::GET, url)
    };
    if !(whole_file && ctx.mode == TransferMode::Streaming) {
        req = req.header(RANGE, format!("bytes={start}-{end}"));
        if let Some(tag) = validator.tag.as_deref() {
            req = req.header(IF_RANGE, tag);
        }
    }
    let hq_err = |source: HqError| TransferError::Hq {
        package_id: package.id,
        source,
    };
    let range_err = |detail: String| TransferError::Range {
        package_id: package.id,
        detail,
    };
    let mut resp = ctx.hq.send_to(url, req).await.map_err(hq_err)?;
    // The validator of what this response sends. A weak one never matches
    // `If-Range` (RFC 9110): sending it would turn every later range into
    // the whole file.
    let tag = resp
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|tag| !tag.starts_with("W/"))
        .map(str::to_owned);
    if let Some(tag) = tag {
        validator.learn(&tag).await;
    }
    let target_end = match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            check_content_range(package, &resp, start, end)?;
            end + 1
        }
        // The whole file, asked for or as the answer to a range covering it.
        StatusCode::OK if start == 0 => package.bytes,
        StatusCode::OK => {
            // The server ignored the range, or the file changed: nothing on
            // disk can be trusted to continue. Start over on the next try.
            file.reset().await?;
            return Err(range_err(format!(
                "HTTP 200 and the whole file to a request for bytes {start}-{end}; \
                 the download starts over"
            )));
        }
        other => return Err(range_err(format!("HTTP {other}"))),
    };
    let mut flushed = file.written;
    while let Some(mut bytes) = resp.chunk().await.map_err(|e| {
        hq_err(HqError::Transport {
            url: url.to_owned(),
            source: e,
        })
    })? {
        let room = target_end - file.written;
        if bytes.len() as u64 > room {
            // Keep what was asked for, never a byte more.
            bytes.truncate(room as usize);
            file.write(bytes).await?;
            return Err(range_err(format!(
                "more than the {} bytes asked for",
                target_end - start
            )));
        }
        file.write(bytes).await?;
        if file.written - flushed >= FLUSH_EVERY {
            // A long GET (streaming mode) hands its bytes to the OS as it
            // goes, so a killed agent resumes after them.
            file.flush().await?;
            flushed = file.written;
            (ctx.progress)(file.written);
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
