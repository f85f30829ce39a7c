//! Streaming mode: one GET, straight to the file. Fast; a dropped
//! connection means starting over.

use std::path::Path;

use sha2::Sha256;

use super::part::PartFile;
use super::{TransferContext, TransferError};
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
        sink.write(chunk).await?;
        if sink.written > package.bytes {
            break;
        }
        (ctx.progress)(sink.written);
    }
    sink.finish().await
}
