//! The server's state: `server.db` (SQLite) and the `packages/` folder.
//!
//! [`Store`] is cheap to clone and shared by every HTTP worker; each call
//! borrows a pooled connection. Calls block: the HTTP layer runs them in
//! `web::block`, never on the event loop. Other concerns add their own
//! `impl Store` blocks: publishing (`publish.rs`), sessions (`sessions.rs`),
//! uploads (`uploads.rs`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row};
use tokio::sync::watch;
use uuid::Uuid;

use super::cache::{Cache, ChannelRow};
use super::credentials;
use super::error::ServerError;
use super::schema::{ADDED_COLUMNS, CACHE_EPOCH, GROUP_VERSIONS, SCHEMA};
use cdx::package::PackageKind;
use cdx::protocol::{now_ms, ListedPackage, PackageInfo};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "server.db";
/// Folder of the package files inside the data directory.
pub const PACKAGES_DIR: &str = "packages";
/// The folder of content-addressed links to package files, for a CDN.
pub const CONTENT_DIR: &str = "content";
/// A writer waiting for another gives up after this long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept for reuse; more are opened on demand and closed.
const MAX_IDLE_CONNECTIONS: usize = 8;

/// A registered channel database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub id: String,
    pub data_group: String,
    pub created_at_ms: i64,
    /// When the channel last made an authenticated call.
    pub last_connection_ms: Option<i64>,
}

/// Handle on a data directory. Clones share the connection pool and the
/// publication signal that wakes long polls.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Bumped after every publication made through this process.
    published: watch::Sender<u64>,
    /// Last connection per channel not yet written to `server.db`: the
    /// request path makes no write of its own ([`Store::flush_connections`]).
    seen: Mutex<HashMap<String, i64>>,
    /// Credentials and listings the request path reads, kept in memory
    /// until the database changes (`cache.rs`).
    cache: Cache,
    /// Base URL under which `content/` is served to agents (a CDN or any
    /// HTTP server), set by `serve --content-url-base`.
    content_url_base: std::sync::OnceLock<String>,
    /// The token operators' routes (`/metrics`, `/console`) require, set by
    /// `serve --admin-token-file` or `CDX_ADMIN_TOKEN`.
    admin_token: std::sync::OnceLock<cdx::config::Secret>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let seen = std::mem::take(self.seen.get_mut().unwrap_or_else(|e| e.into_inner()));
        let idle = self.idle.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(conn) = idle.first_mut() {
            if let Err(e) = write_connections(conn, &seen) {
                tracing::warn!(error = %e, "could not record the channels' last connections");
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.data_dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating when missing) the data directory, its `packages/`
    /// folder and `server.db`.
    pub fn open(data_dir: impl AsRef<Path>) -> Result<Store, ServerError> {
        let data_dir = data_dir.as_ref().to_owned();
        let packages = data_dir.join(PACKAGES_DIR);
        std::fs::create_dir_all(&packages)
            .map_err(|e| ServerError::io(format!("creating {}", packages.display()), e))?;
        let conn = open_connection(&data_dir.join(DB_FILE))?;
        conn.execute_batch(SCHEMA)?;
        add_missing_columns(&conn)?;
        conn.execute_batch(CACHE_EPOCH)?;
        conn.execute_batch(GROUP_VERSIONS)?;
        let (published, _) = watch::channel(0);
        let store = Store {
            inner: Arc::new(Inner {
                data_dir,
                idle: Mutex::new(vec![conn]),
                published,
                seen: Mutex::new(HashMap::new()),
                cache: Cache::default(),
                content_url_base: std::sync::OnceLock::new(),
                admin_token: std::sync::OnceLock::new(),
            }),
        };
        store.fill_missing_tables()?;
        Ok(store)
    }

    /// Makes the operators' routes require `token` (once per store).
    pub fn set_admin_token(&self, token: cdx::config::Secret) -> Result<(), ServerError> {
        self.inner
            .admin_token
            .set(token)
            .map_err(|_| ServerError::Conflict("the admin token is already set".into()))
    }

    /// The token operators' routes require; `None`: they answer loopback
    /// clients only.
    pub fn admin_token(&self) -> Option<&cdx::config::Secret> {
        self.inner.admin_token.get()
    }

    /// Where the file with SHA-256 `sha256` is linked for a CDN or another
    /// HTTP server to serve: `content/<sha256>.cdxpkg`. Content-addressed,
    /// so its name is unguessable without the listing and never changes.
    pub fn content_path(&self, sha256: &str) -> PathBuf {
        self.inner
            .data_dir
            .join(CONTENT_DIR)
            .join(format!("{sha256}.cdxpkg"))
    }

    /// Links `package`'s file into `content/` when that folder exists (made
    /// by `serve --content-url-base`): a hard link, or a copy (with a
    /// warning) where the file system has none. Idempotent.
    pub fn link_content(&self, package: &PackageInfo) -> Result<(), ServerError> {
        let dir = self.inner.data_dir.join(CONTENT_DIR);
        if !dir.is_dir() {
            return Ok(());
        }
        let (from, to) = (
            self.package_path(package.id),
            self.content_path(&package.sha256),
        );
        if to.exists() {
            return Ok(());
        }
        let linked = std::fs::hard_link(&from, &to).or_else(|e| {
            tracing::warn!(package = %package.id, error = %e,
                "cannot hard-link the package into content/; copying it");
            let temp = to.with_extension("tmp");
            std::fs::copy(&from, &temp)?;
            std::fs::rename(&temp, &to)
        });
        match linked {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(ServerError::io(
                format!("linking {} to {}", from.display(), to.display()),
                e,
            )),
            _ => Ok(()),
        }
    }

    /// Lists packages with a `content_url` under `base` (which must be an
    /// absolute `http`/`https` URL), after linking every package published
    /// so far into `content/`.
    ///
    /// # Errors
    /// A base that is not such a URL, or a file that cannot be linked.
    pub fn serve_content_from(&self, base: &str) -> Result<usize, ServerError> {
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .map(|rest| rest.split('/').next().unwrap_or(""));
        let usable = host.is_some_and(|h| !h.is_empty() && !h.contains('@'))
            && !base.contains(['?', '#', ' ']);
        if !usable {
            return Err(ServerError::Invalid(format!(
                "--content-url-base `{base}`: an http:// or https:// URL with a host and no \
                 credentials, query or fragment is needed"
            )));
        }
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        let dir = self.inner.data_dir.join(CONTENT_DIR);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ServerError::io(format!("creating {}", dir.display()), e))?;
        let packages = self.packages(None)?;
        for package in &packages {
            self.link_content(package)?;
        }
        if self.inner.content_url_base.set(base).is_err() {
            return Err(ServerError::Conflict(
                "content is already served from another base URL".into(),
            ));
        }
        Ok(packages.len())
    }

    /// `packages` with their `content_url` when content is served elsewhere.
    pub fn with_content_urls(&self, mut packages: Vec<ListedPackage>) -> Vec<ListedPackage> {
        if let Some(base) = self.inner.content_url_base.get() {
            for p in &mut packages {
                p.package.content_url = Some(format!("{base}{}.cdxpkg", p.package.sha256));
            }
        }
        packages
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// Where the file of package `id` lives.
    pub fn package_path(&self, id: Uuid) -> PathBuf {
        self.inner
            .data_dir
            .join(PACKAGES_DIR)
            .join(format!("{id}.cdxpkg"))
    }

    /// Runs `f` on a pooled connection.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let pooled = self.idle().pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => open_connection(&self.inner.data_dir.join(DB_FILE))?,
        };
        let changes = conn.total_changes();
        let result = f(&mut conn);
        // A write through this process: what memory keeps is stale if it
        // moved the epoch (or if the epoch cannot be read).
        if conn.total_changes() != changes {
            self.inner.cache.saw_epoch(read_epoch(&conn).ok());
        }
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(conn);
        }
        result
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that changes after every publication made through this
    /// process, and, once [`Store::watch_publications`] runs, within a few
    /// milliseconds of one made by another process (`cdx-server publish`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.published.subscribe()
    }

    /// Starts a thread that notices changes made by other processes: it
    /// wakes the long polls on a publication, so that they never re-read
    /// the database on a timer of their own, and drops what memory keeps
    /// of channels and listings (`cache.rs`, kept only while this thread
    /// runs). Every [`PUBLICATION_WATCH`] it reads SQLite's
    /// `PRAGMA data_version` on a connection of its own (a counter in
    /// shared memory that moves when another connection commits: no disk
    /// read, whatever the number of waiting polls), and only when it moved,
    /// the newest package row. The thread ends with the last clone of the
    /// store.
    ///
    /// # Errors
    /// The database cannot be opened, or the thread not started.
    pub fn watch_publications(&self) -> Result<(), ServerError> {
        let conn = open_connection(&self.inner.data_dir.join(DB_FILE))?;
        let newest_package = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row("SELECT COALESCE(MAX(rowid), 0) FROM packages", [], |r| {
                r.get(0)
            })
        };
        let mut version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let mut last = newest_package(&conn)?;
        // Changes by other processes are seen from now on: memory may keep
        // what the request path reads.
        self.inner.cache.enable();
        let store = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("cdx-publications".into())
            .spawn(move || loop {
                std::thread::sleep(PUBLICATION_WATCH);
                let Some(inner) = store.upgrade() else {
                    return;
                };
                // The version first, then what it guards: a commit after
                // this read moves the version again, so the next look
                // sees it, whatever the reads below found.
                match conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
                    Ok(v) if v == version => continue,
                    Ok(v) => {
                        version = v;
                        // A commit by another connection: what memory
                        // keeps is stale if it moved the epoch.
                        inner.cache.saw_epoch(read_epoch(&conn).ok());
                        match newest_package(&conn) {
                            Ok(newest) if newest != last => {
                                last = newest;
                                inner.published.send_modify(|n| *n += 1);
                            }
                            Ok(_) => {}
                            Err(e) => watch_failed(&inner.cache, &e),
                        }
                    }
                    Err(e) => watch_failed(&inner.cache, &e),
                }
            })
            .map_err(|e| ServerError::io("starting the publication watcher", e))?;
        Ok(())
    }

    pub(crate) fn notify_published(&self) {
        self.inner.published.send_modify(|n| *n += 1);
    }

    // === channels ===

    /// Registers channel database `id` in `data_group`. Only a salted
    /// SHA-256 of `secret` is stored.
    pub fn add_channel(&self, id: &str, data_group: &str, secret: &str) -> Result<(), ServerError> {
        validate_name("channel database id", id)?;
        validate_name("data group", data_group)?;
        if secret.is_empty() {
            return Err(ServerError::Invalid("the secret is empty".into()));
        }
        let salt = credentials::new_salt();
        let hash = credentials::hash_secret(&salt, secret);
        self.with_conn(|conn| {
            let inserted = conn.execute(
                "INSERT OR IGNORE INTO channels (id, data_group, secret_salt, secret_sha256, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, data_group, hex::encode(salt), hex::encode(hash), now_ms()],
            )?;
            if inserted == 0 {
                return Err(ServerError::Conflict(format!(
                    "channel database id `{id}` already exists"
                )));
            }
            Ok(())
        })
    }

    pub fn channels(&self) -> Result<Vec<ChannelInfo>, ServerError> {
        let mut channels: Vec<ChannelInfo> = self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, data_group, created_at_ms, last_connection_ms FROM channels ORDER BY id",
            )?;
            let rows = stmt.query_map([], channel_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })?;
        for channel in &mut channels {
            self.overlay_seen(channel);
        }
        Ok(channels)
    }

    pub fn channel(&self, id: &str) -> Result<Option<ChannelInfo>, ServerError> {
        let mut channel = self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, data_group, created_at_ms, last_connection_ms FROM channels WHERE id = ?1",
                    [id],
                    channel_from_row,
                )
                .optional()?)
        })?;
        if let Some(channel) = &mut channel {
            self.overlay_seen(channel);
        }
        Ok(channel)
    }

    /// A last connection seen but not yet written counts as well.
    fn overlay_seen(&self, channel: &mut ChannelInfo) {
        let seen = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&at) = seen.get(&channel.id) {
            channel.last_connection_ms = channel.last_connection_ms.max(Some(at));
        }
    }

    /// Writes the last connections seen since the previous call, in one
    /// transaction. `serve` calls it every second, off the request path.
    pub fn flush_connections(&self) -> Result<(), ServerError> {
        let seen = std::mem::take(&mut *self.inner.seen.lock().unwrap_or_else(|e| e.into_inner()));
        if seen.is_empty() {
            return Ok(());
        }
        let written = self.with_conn(|conn| Ok(write_connections(conn, &seen)?));
        if written.is_err() {
            // Kept for the next flush; a newer time seen meanwhile wins.
            let mut now = self.inner.seen.lock().unwrap_or_else(|e| e.into_inner());
            for (id, at) in seen {
                let kept = now.entry(id).or_insert(at);
                *kept = (*kept).max(at);
            }
        }
        written
    }

    /// Checks a channel's credentials (constant-time compare of the salted
    /// hash) and notes the call as its last connection, in memory: the
    /// request path makes no write, so no request waits for SQLite's writer
    /// lock (an upload's transaction holds it for seconds).
    pub fn authenticate(&self, id: &str, secret: &str) -> Result<ChannelInfo, ServerError> {
        if let Some(known) = self.authenticate_cached(id, secret) {
            return known;
        }
        let generation = self.inner.cache.generation();
        let row = self.with_conn(|conn| {
            let found: Option<(String, String, String, i64)> = conn
                .query_row(
                    "SELECT data_group, secret_salt, secret_sha256, created_at_ms FROM channels WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            Ok(found.map(|(data_group, salt, expected, created_at_ms)| ChannelRow {
                data_group,
                salt: hex::decode(salt).unwrap_or_default(),
                secret_sha256: hex::decode(expected).unwrap_or_default(),
                created_at_ms,
            }))
        })?;
        if let Some(row) = &row {
            self.inner.cache.keep_channel(generation, id, row.clone());
        }
        self.check_secret(id, row.as_ref(), secret)
    }

    /// [`authenticate`](Self::authenticate) from memory, with no database
    /// read: `None` when the channel's row is not kept (read it then, off
    /// the event loop). Costs one SHA-256.
    pub fn authenticate_cached(
        &self,
        id: &str,
        secret: &str,
    ) -> Option<Result<ChannelInfo, ServerError>> {
        let row = self.inner.cache.channel(id)?;
        Some(self.check_secret(id, Some(&row), secret))
    }

    fn check_secret(
        &self,
        id: &str,
        row: Option<&ChannelRow>,
        secret: &str,
    ) -> Result<ChannelInfo, ServerError> {
        let Some(row) = row else {
            return Err(ServerError::UnknownChannel(id.to_owned()));
        };
        if !credentials::verify(&row.salt, &row.secret_sha256, secret) {
            return Err(ServerError::WrongSecret(id.to_owned()));
        }
        let now = now_ms();
        self.inner
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), now);
        Ok(ChannelInfo {
            id: id.to_owned(),
            data_group: row.data_group.clone(),
            created_at_ms: row.created_at_ms,
            last_connection_ms: Some(now),
        })
    }

    // === packages ===

    /// Published packages, of one data group or all, in publication order.
    pub fn packages(&self, data_group: Option<&str>) -> Result<Vec<PackageInfo>, ServerError> {
        let listed = self.listed_packages(data_group)?;
        Ok(listed.into_iter().map(|l| l.package).collect())
    }

    pub fn package(&self, id: Uuid) -> Result<Option<PackageInfo>, ServerError> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {PACKAGE_COLUMNS} FROM packages WHERE id = ?1"),
                    [id.to_string()],
                    package_from_row,
                )
                .optional()?)
        })
    }
}

/// Records last connections, never moving one back.
fn write_connections(conn: &mut Connection, seen: &HashMap<String, i64>) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut update = tx.prepare_cached(
            "UPDATE channels SET last_connection_ms = MAX(COALESCE(last_connection_ms, 0), ?2)
             WHERE id = ?1",
        )?;
        for (id, at) in seen {
            update.execute(params![id, at])?;
        }
    }
    tx.commit()
}

/// Opens one connection with the server's settings.
/// How often [`Store::watch_publications`] looks for another process's
/// publication: the most a long poll waits for one beyond the commit.
pub const PUBLICATION_WATCH: Duration = Duration::from_millis(5);

/// The publication watcher could not read the database: said, then tried
/// again a second later (long polls still wake at their safety re-check).
/// The counter [`CACHE_EPOCH`]'s triggers move.
fn read_epoch(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT n FROM cache_epoch WHERE id = 1", [], |r| r.get(0))
}

fn watch_failed(cache: &Cache, e: &rusqlite::Error) {
    tracing::warn!(error = %e, "could not look for publications by other processes; trying again");
    cache.disable();
    std::thread::sleep(Duration::from_secs(1));
    cache.enable();
}

fn open_connection(path: &Path) -> Result<Connection, ServerError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // 16 KiB pages hold four times the uploaded rows of SQLite's default
    // 4 KiB: a quarter of the page splits as uploads grow the table (about
    // a quarter less time a row, bench/examples/insert_pages.rs). Takes
    // effect only on a new database; an older one keeps its pages.
    // An acknowledged upload must survive a power cut: FULL, not NORMAL.
    conn.execute_batch(
        "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
    )?;
    Ok(conn)
}

/// Brings a `server.db` made by an older version up to [`SCHEMA`].
fn add_missing_columns(conn: &Connection) -> Result<(), ServerError> {
    for (table, column, definition) in ADDED_COLUMNS {
        let exists: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get(0),
        )?;
        if !exists {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Ids, data groups and jobs end up in URLs, file names and logs: keep them
/// to letters, digits, `-`, `_` and `.`.
pub(crate) fn validate_name(what: &str, name: &str) -> Result<(), ServerError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ServerError::Invalid(format!(
            "invalid {what} `{name}`: use 1 to 100 letters, digits, `-`, `_` or `.`"
        )))
    }
}

pub(crate) const PACKAGE_COLUMNS: &str =
    "id, data_group, job, sequence, kind, bytes, sha256, rows, created_at_ms, content_bytes";

pub(crate) fn package_from_row(r: &Row<'_>) -> rusqlite::Result<PackageInfo> {
    let id: String = r.get(0)?;
    let kind: String = r.get(4)?;
    Ok(PackageInfo {
        id: parse_uuid(0, &id)?,
        data_group: r.get(1)?,
        job: r.get(2)?,
        sequence: r.get::<_, i64>(3)? as u64,
        kind: kind_from_str(&kind),
        bytes: r.get::<_, i64>(5)? as u64,
        sha256: r.get(6)?,
        rows: r.get::<_, i64>(7)? as u64,
        created_at_ms: r.get(8)?,
        content_bytes: r.get::<_, Option<i64>>(9)?.map(|n| n as u64),
        content_url: None,
    })
}

fn channel_from_row(r: &Row<'_>) -> rusqlite::Result<ChannelInfo> {
    Ok(ChannelInfo {
        id: r.get(0)?,
        data_group: r.get(1)?,
        created_at_ms: r.get(2)?,
        last_connection_ms: r.get(3)?,
    })
}

pub(crate) fn parse_uuid(column: usize, text: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

fn kind_from_str(kind: &str) -> PackageKind {
    if kind == "Full" {
        PackageKind::Full
    } else {
        PackageKind::Incremental
    }
}
