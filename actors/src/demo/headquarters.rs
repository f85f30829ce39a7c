//! The demo's headquarters: a `cdx-server` on its own thread, publishing
//! the generated retail data set.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cdx::retail::{self, DataSetSize, GeneratedPackage};
use cdx_server::{self as server, PublishSpec, RunningServer};

use super::SEED;

pub struct Headquarters {
    server: RunningServer,
    channel_id: String,
    data_group: String,
    secret: String,
}

pub struct Published {
    pub packages: u64,
    pub rows: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Headquarters {
    pub fn start(dir: &Path, channel_id: &str, data_group: &str) -> anyhow::Result<Self> {
        let server = server::spawn(dir, "127.0.0.1:0").context("starting cdx-server")?;
        let secret = uuid::Uuid::new_v4().simple().to_string();
        server
            .store()
            .add_channel(channel_id, data_group, &secret)
            .context("registering the channel database")?;
        Ok(Self {
            server,
            channel_id: channel_id.into(),
            data_group: data_group.into(),
            secret,
        })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    pub fn publish_initial(&self, size: DataSetSize) -> anyhow::Result<Published> {
        self.publish_all(retail::initial_packages(size, SEED))
    }

    /// Publishes one round of incremental packages; returns how many.
    pub fn publish_incremental(&self, size: DataSetSize, round: u64) -> anyhow::Result<u64> {
        Ok(self
            .publish_all(retail::incremental_packages(size, SEED, round))?
            .packages)
    }

    fn publish_all(&self, packages: Vec<GeneratedPackage>) -> anyhow::Result<Published> {
        let started = Instant::now();
        let mut published = Published {
            packages: 0,
            rows: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
        };
        for package in packages {
            let job = package.job.clone();
            let info = self
                .publish(package)
                .with_context(|| format!("publishing job {job}"))?;
            published.packages += 1;
            published.rows += info.rows;
            published.bytes += info.bytes;
        }
        published.elapsed = started.elapsed();
        Ok(published)
    }

    /// Streams a generated package into the server; nothing is collected.
    fn publish(&self, package: GeneratedPackage) -> anyhow::Result<cdx::protocol::PackageInfo> {
        let spec = PublishSpec {
            data_group: self.data_group.clone(),
            job: package.job,
            replaces: Vec::new(),
            kind: package.kind,
            tables: package.tables,
        };
        let rows = package.rows;
        let published = self
            .server
            .store()
            .publish(spec, |writer| Ok(retail::write_rows(rows, writer)?))?;
        Ok(published)
    }

    pub fn uploaded_rows(&self, table: &str) -> anyhow::Result<u64> {
        Ok(self
            .server
            .store()
            .uploaded_row_count(&self.channel_id, table)?)
    }

    pub fn stop(self) -> anyhow::Result<()> {
        self.server.stop().context("stopping cdx-server")
    }
}
