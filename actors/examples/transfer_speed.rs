//! Measures download speed: `curl` against the agent's streaming and
//! reliable transfers, all from the same in-process `cdx-server` on
//! 127.0.0.1, each to a file on the same disk.
//!
//! `cargo run --release -p cdx-actors --example transfer_speed -- [MiB]`

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use cdx::config::{Secret, ServerConfig, TransferMode};
use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};
use cdx::protocol::PackageInfo;
use cdx::server::{self, PublishSpec};
use cdx_actors::hq::HqClient;
use cdx_actors::transfer::{self, TransferContext};
use rand::RngCore;

const BLOB: usize = 1 << 20;

fn main() -> anyhow::Result<()> {
    let mib: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(512);
    let dir = tempfile::tempdir()?;
    let hq = server::spawn(dir.path().join("hq"), "127.0.0.1:0")?;
    hq.store().add_channel("bench", "default", "secret")?;
    let package = publish_incompressible(&hq, mib)?;
    println!("package: {} bytes", package.bytes);

    let curl = time_curl(&hq.url(), &package, &dir.path().join("curl.bin"))?;
    let config = ServerConfig {
        url: hq.url(),
        channel_id: "bench".into(),
        secret: Secret::new("secret"),
        connect_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_secs(30),
    };
    let streaming = time_agent(
        &config,
        &package,
        &dir.path().join("s"),
        TransferMode::Streaming,
    )?;
    let reliable = time_agent(
        &config,
        &package,
        &dir.path().join("r"),
        TransferMode::Reliable,
    )?;
    let ranges = time_ranges(&config, &package)?;
    println!(
        "8 MiB ranges, discarded: {:.1} MB/s",
        package.bytes as f64 / ranges / 1e6
    );
    let rate = |secs: f64| package.bytes as f64 / secs / 1e6;
    if let Some(c) = curl {
        println!("curl:      {:>7.1} MB/s", rate(c));
        println!(
            "streaming: {:>7.1} MB/s ({:.2}x curl)",
            rate(streaming),
            c / streaming
        );
        println!(
            "reliable:  {:>7.1} MB/s ({:.2}x streaming)",
            rate(reliable),
            streaming / reliable
        );
    } else {
        println!("streaming: {:>7.1} MB/s (curl not found)", rate(streaming));
        println!(
            "reliable:  {:>7.1} MB/s ({:.2}x streaming)",
            rate(reliable),
            streaming / reliable
        );
    }
    Ok(())
}

/// A package of `mib` random 1 MiB blobs: zstd cannot shrink it, so the
/// file is as big as asked.
fn publish_incompressible(hq: &server::RunningServer, mib: usize) -> anyhow::Result<PackageInfo> {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: false,
    };
    let spec = PublishSpec {
        data_group: "default".into(),
        job: "bench".into(),
        kind: PackageKind::Full,
        tables: vec![TableSchema {
            name: "blobs".into(),
            columns: vec![
                column("id", ColumnType::Integer),
                column("data", ColumnType::Blob),
            ],
            key: vec!["id".into()],
        }],
    };
    let mut rng = rand::thread_rng();
    Ok(hq.store().publish(spec, |w| {
        w.table(0)?;
        let mut data = vec![0u8; BLOB];
        for id in 0..mib as i64 {
            rng.fill_bytes(&mut data);
            w.upsert(&[Value::Integer(id), Value::Blob(data.clone())])?;
        }
        Ok(())
    })?)
}

fn time_curl(url: &str, package: &PackageInfo, out: &Path) -> anyhow::Result<Option<f64>> {
    let started = Instant::now();
    let status = std::process::Command::new("curl")
        .args(["-s", "-f", "-u", "bench:secret", "-o"])
        .arg(out)
        .arg(format!(
            "{url}{}",
            cdx::protocol::package_content_path(package.id)
        ))
        .status();
    match status {
        Ok(s) if s.success() => Ok(Some(started.elapsed().as_secs_f64())),
        Ok(s) => anyhow::bail!("curl failed: {s}"),
        Err(_) => Ok(None),
    }
}

fn time_agent(
    config: &ServerConfig,
    package: &PackageInfo,
    dir: &Path,
    mode: TransferMode,
) -> anyhow::Result<f64> {
    actix_rt::System::new().block_on(async {
        let hq = HqClient::new(config)?;
        let stop = AtomicBool::new(false);
        let mut progress = |_| {};
        let mut ctx = TransferContext {
            hq: &hq,
            dir,
            mode,
            chunk_bytes: 8 << 20,
            stop: &stop,
            progress: &mut progress,
        };
        let started = Instant::now();
        transfer::download(&mut ctx, package).await?;
        Ok(started.elapsed().as_secs_f64())
    })
}

fn time_ranges(config: &ServerConfig, package: &PackageInfo) -> anyhow::Result<f64> {
    actix_rt::System::new().block_on(async {
        let hq = HqClient::new(config)?;
        let path = cdx::protocol::package_content_path(package.id);
        let started = Instant::now();
        let mut at = 0u64;
        while at < package.bytes {
            let end = (at + (8 << 20)).min(package.bytes) - 1;
            let req = hq
                .request(reqwest::Method::GET, &path)
                .header("Range", format!("bytes={at}-{end}"));
            let mut resp = hq.send(&path, req).await?;
            while let Some(c) = resp.chunk().await? {
                at += c.len() as u64;
            }
        }
        Ok(started.elapsed().as_secs_f64())
    })
}
