//! `GET`/`HEAD /v1/packages/{id}/content`: a package file, resumable.
//!
//! `actix_files::NamedFile` serves the bytes and handles `Range` (206 with
//! `Content-Range`, 416 past the end) and `Content-Length`. Its own `ETag`
//! (inode, size, mtime) and `Last-Modified` are turned off: the `ETag` is the
//! package's SHA-256 in quotes, stable across copies and restarts. NamedFile
//! ignores `If-Range`, so it is decided here: a `Range` is honoured only when
//! `If-Range` is absent or equals the `ETag` exactly (strong comparison; a
//! date never matches), otherwise the whole file is sent with 200.

use actix_files::NamedFile;
use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream;
use tokio::io::AsyncReadExt as _;
use uuid::Uuid;

use super::auth::Authenticated;
use super::error::ServerError;
use super::offload::blocking;
use super::store::Store;
use cdx::protocol::ErrorBody;

/// Chunk size of a full-file response sent here (not by NamedFile).
const CHUNK: usize = 64 * 1024;

pub(crate) async fn package_content(
    req: HttpRequest,
    channel: Authenticated,
    store: web::Data<Store>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ServerError> {
    let id = id.into_inner();
    let lookup = store.clone();
    let package = blocking(move || lookup.package(id))
        .await?
        .filter(|p| p.data_group == channel.data_group)
        .ok_or_else(|| {
            ServerError::NotFound(format!(
                "no package {id} in data group `{}`",
                channel.data_group
            ))
        })?;
    let lookup = store.clone();
    if let Some(why) = blocking(move || lookup.pruned(id)).await? {
        return Err(ServerError::Gone(format!(
            "package {id} was pruned at headquarters ({why}); list the packages again: \
             a store passes over it"
        )));
    }
    let path = store.package_path(id);
    let etag = format!("\"{}\"", package.sha256);

    let range_allowed = match req.headers().get(header::IF_RANGE) {
        None => true,
        Some(if_range) => if_range.as_bytes() == etag.as_bytes(),
    };
    let mut response = if range_allowed || !req.headers().contains_key(header::RANGE) {
        let file = NamedFile::open_async(&path)
            .await
            .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?
            .use_etag(false)
            .use_last_modified(false)
            .disable_content_disposition();
        file.into_response(&req)
    } else {
        whole_file(&path).await?
    };
    // NamedFile answers a range covering the whole file with 200; the
    // protocol promises 206 to every honoured range.
    if range_allowed && response.status() == StatusCode::OK {
        let whole = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|r| covers_whole_file(r, package.bytes));
        if whole {
            response.head_mut().status = StatusCode::PARTIAL_CONTENT;
            let range = format!("bytes 0-{}/{}", package.bytes - 1, package.bytes);
            if let Ok(value) = HeaderValue::from_str(&range) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
        }
    }
    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        let content_range = response.headers().get(header::CONTENT_RANGE).cloned();
        response = HttpResponse::RangeNotSatisfiable().json(ErrorBody {
            error: format!(
                "range not satisfiable: package {id} has {} bytes",
                package.bytes
            ),
        });
        if let Some(content_range) = content_range {
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, content_range);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// The whole file with 200, streamed in chunks.
async fn whole_file(path: &std::path::Path) -> Result<HttpResponse, ServerError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?
        .len();
    let chunks = stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((web::Bytes::from(buf), file)))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .body(SizedStream::new(len, Box::pin(chunks))))
}

/// Whether the first range of a `Range` header asks for every byte of a
/// file of `len` bytes: `bytes=0-`, `bytes=0-B` with B at or past the last
/// byte, or `bytes=-K` with K at least the length.
fn covers_whole_file(range: &str, len: u64) -> bool {
    let Some(first) = range
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split(',').next())
    else {
        return false;
    };
    let Some((a, b)) = first.trim().split_once('-') else {
        return false;
    };
    let (a, b) = (a.trim(), b.trim());
    if len == 0 {
        return false;
    }
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(0), Ok(last)) => last >= len - 1,
        (Ok(0), Err(_)) => b.is_empty(),
        (Err(_), Ok(suffix)) => a.is_empty() && suffix >= len,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::covers_whole_file;

    #[test]
    fn ranges_covering_the_whole_file() {
        for r in [
            "bytes=0-",
            "bytes=0-99",
            "bytes=0-500",
            "bytes=-100",
            "bytes=-101",
            "bytes=0-, 5-6",
        ] {
            assert!(covers_whole_file(r, 100), "{r}");
        }
        for r in [
            "bytes=1-",
            "bytes=0-98",
            "bytes=-99",
            "bytes=5-6, 0-",
            "items=0-",
            "bytes=x-",
        ] {
            assert!(!covers_whole_file(r, 100), "{r}");
        }
    }
}
