//! Measures download speed: `curl` (then `sync` of its file) against the
//! agent's streaming and reliable transfers (which hash, write and sync),
//! all from the same in-process `cdx-server` on 127.0.0.1, each to a file
//! on the same disk.
//!
//! `cargo run --release --example transfer_speed -- [MiB]`

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use cdx::config::{Secret, ServerConfig, TransferMode};
use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};
use cdx::protocol::PackageInfo;
use cdx_actors::hq::HqClient;
use cdx_actors::transfer::{self, TransferContext};
use cdx_server::{self as server, PublishSpec};
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

    let out = dir.path().join("out");
    let curl = time_curl(&hq.url(), &package, &out)?;
    let config = ServerConfig {
        url: hq.url(),
        channel_id: "bench".into(),
        secret: Secret::new("secret"),
        connect_timeout: std::time::Duration::from_secs(5),
        request_timeout: std::time::Duration::from_secs(30),
    };
    // Each mode runs twice, in both orders: the disk's state after a run
    // favours or hinders the run after it.
    let time = |mode| time_agent(&config, &package, &out, mode);
    let s1 = time(TransferMode::Streaming)?;
    let r1 = time(TransferMode::Reliable)?;
    let r2 = time(TransferMode::Reliable)?;
    let s2 = time(TransferMode::Streaming)?;
    let (streaming, reliable) = ((s1 + s2) / 2.0, (r1 + r2) / 2.0);
    let rate = |secs: f64| package.bytes as f64 / secs / 1e6;
    if let Some(c) = curl {
        println!("curl+sync: {:>7.1} MB/s", rate(c));
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
        replaces: Vec::new(),
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

/// Each run starts with no dirty pages of the one before, which would
/// otherwise be written back during it.
fn settle(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::process::Command::new("sync").status();
}

fn time_curl(url: &str, package: &PackageInfo, dir: &Path) -> anyhow::Result<Option<f64>> {
    settle(dir);
    std::fs::create_dir_all(dir)?;
    let out = &dir.join("curl.bin");
    let started = Instant::now();
    let status = std::process::Command::new("curl")
        .args(["-s", "-f", "-u", "bench:secret", "-o"])
        .arg(out)
        .arg(format!(
            "{url}{}",
            cdx::protocol::package_content_path(package.id)
        ))
        .status();
    // The agent syncs a package to disk before it renames it; so does this.
    let synced = status.and_then(|s| {
        std::process::Command::new("sync").arg(out).status()?;
        Ok(s)
    });
    match synced {
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
    settle(dir);
    actix_rt::System::new().block_on(async {
        let hq = HqClient::new(config)?;
        let stop = AtomicBool::new(false);
        let mut progress = |_| {};
        let mut ctx = TransferContext {
            hq: &hq,
            dir,
            mode,
            chunk_bytes: std::env::var("CHUNK_MIB")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(64u64)
                << 20,
            stop: &stop,
            progress: &mut progress,
        };
        let started = Instant::now();
        transfer::download(&mut ctx, package).await?;
        Ok(started.elapsed().as_secs_f64())
    })
}
