//! What every poll reads, kept in memory: each channel's credentials and
//! each data group's listing, so that a busy or polling fleet costs the
//! database nothing while nothing changes.
//!
//! Everything is dropped whenever the channels or packages change: the
//! database's `cache_epoch` counter, moved by triggers on those tables
//! (`schema.rs`), is read after every write through this process
//! (`Store::with_conn` sees SQLite's change counter move), and within
//! [`super::store::PUBLICATION_WATCH`] after another process's commit
//! (`cdx-server channels add`, `publish`, `withdraw`: the publication
//! watcher sees `PRAGMA data_version` move). A store's last connection,
//! a status report or an upload moves no epoch and drops nothing.
//! An entry read before a change is never kept after it: it is stored only
//! if the generation it was read under is still current.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cdx::protocol::{GroupHead, ListedPackage};

/// A data group with more packages listed than this is not kept (its
/// listing is read from the database each time): memory stays bounded
/// whatever the history.
pub const MAX_CACHED_PACKAGES: usize = 10_000;

/// A channel's row, as authentication needs it.
#[derive(Debug, Clone)]
pub struct ChannelRow {
    pub data_group: String,
    pub salt: Vec<u8>,
    pub secret_sha256: Vec<u8>,
    pub created_at_ms: i64,
}

#[derive(Default)]
pub struct Cache {
    /// Off until something watches for other processes' changes (the
    /// publication watcher): a store opened by a command keeps nothing.
    enabled: AtomicBool,
    generation: AtomicU64,
    /// The database's `cache_epoch` when last read; `None` before.
    epoch: Mutex<Option<i64>>,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    generation: u64,
    /// Known channels only: an unknown id is read from the database each
    /// time, so ids made up by a caller take no memory.
    channels: HashMap<String, Arc<ChannelRow>>,
    /// `None`: more packages than [`MAX_CACHED_PACKAGES`], read each time.
    listings: HashMap<String, Option<Arc<Vec<ListedPackage>>>>,
    /// Groups with packages only: a head asked of a made-up group is read
    /// from the database each time, and takes no memory.
    heads: HashMap<String, Arc<GroupHead>>,
}

impl Cache {
    /// The generation now: read it before reading the database, and hand
    /// it to `keep_*` with what was read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The database changed: everything kept is stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The database's epoch read after a change: everything kept is stale
    /// when it moved, or could not be read (`None`).
    pub fn saw_epoch(&self, epoch: Option<i64>) {
        let mut last = self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        if epoch.is_none() || *last != epoch {
            *last = epoch;
            self.invalidate();
        }
    }

    /// Whether it keeps anything (changes by other processes are watched).
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Keeps what it is given from now on.
    pub fn enable(&self) {
        self.invalidate();
        self.enabled.store(true, Ordering::Release);
    }

    /// Keeps nothing and forgets what it kept (changes by other processes
    /// are not being watched).
    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Release);
        self.invalidate();
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.generation();
        if entries.generation != now || !self.enabled.load(Ordering::Acquire) {
            entries.channels.clear();
            entries.listings.clear();
            entries.heads.clear();
            entries.generation = now;
        }
        entries
    }

    /// The channel `id` as kept; `None` when not kept (or unknown).
    pub fn channel(&self, id: &str) -> Option<Arc<ChannelRow>> {
        self.entries().channels.get(id).cloned()
    }

    /// Keeps channel `id`'s row. Unknown ids are never kept: the map stays
    /// as big as the channels, whatever ids callers make up.
    pub fn keep_channel(&self, generation: u64, id: &str, row: ChannelRow) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries();
        if entries.generation == generation {
            entries.channels.insert(id.to_owned(), Arc::new(row));
        }
    }

    /// Every package listed for `data_group`, in sequence order, if kept:
    /// `Some(None)` for a group known to list too many to keep.
    pub fn listing(&self, data_group: &str) -> Option<Option<Arc<Vec<ListedPackage>>>> {
        self.entries().listings.get(data_group).cloned()
    }

    /// Keeps `listed` (every package of `data_group`), or, with more than
    /// [`MAX_CACHED_PACKAGES`], that the group is too big to keep.
    pub fn keep_listing(&self, generation: u64, data_group: &str, listed: Vec<ListedPackage>) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let kept = (listed.len() <= MAX_CACHED_PACKAGES).then(|| Arc::new(listed));
        let mut entries = self.entries();
        if entries.generation == generation {
            entries.listings.insert(data_group.to_owned(), kept);
        }
    }
}

impl Cache {
    /// The head of `data_group` as kept.
    pub fn head(&self, data_group: &str) -> Option<Arc<GroupHead>> {
        self.entries().heads.get(data_group).cloned()
    }

    /// Keeps `head`. Keep only the heads of groups that have packages, so
    /// that made-up group names take no memory.
    pub fn keep_head(&self, generation: u64, head: Arc<GroupHead>) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries();
        if entries.generation == generation {
            entries.heads.insert(head.data_group.clone(), head);
        }
    }
}

/// At most `limit` of `listed` (in sequence order) above `after`.
pub fn listed_after(listed: &[ListedPackage], after: u64, limit: usize) -> Vec<ListedPackage> {
    let start = listed.partition_point(|l| l.package.sequence <= after);
    listed[start..].iter().take(limit).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str) -> ChannelRow {
        ChannelRow {
            data_group: group.into(),
            salt: vec![1],
            secret_sha256: vec![2],
            created_at_ms: 3,
        }
    }

    /// What was read before a change is not kept after it, and a change
    /// drops everything kept.
    #[test]
    fn a_change_drops_what_was_kept_and_refuses_what_was_read_before_it() {
        let cache = Cache::default();
        cache.keep_channel(cache.generation(), "store-1", row("off"));
        assert!(cache.channel("store-1").is_none(), "kept while disabled");
        cache.enable();
        let before = cache.generation();
        cache.keep_channel(before, "store-1", row("a"));
        assert_eq!(cache.channel("store-1").unwrap().data_group, "a");
        assert!(cache.channel("nobody").is_none());
        assert!(cache.channel("store-2").is_none());

        let read_at = cache.generation();
        cache.invalidate();
        assert!(cache.channel("store-1").is_none(), "kept across a change");
        cache.keep_channel(read_at, "store-1", row("stale"));
        assert!(
            cache.channel("store-1").is_none(),
            "kept a read from before the change"
        );
        cache.keep_channel(cache.generation(), "store-1", row("b"));
        assert_eq!(cache.channel("store-1").unwrap().data_group, "b");

        // The epoch: the first read and every move drop what is kept; the
        // same epoch again (a write to another table) drops nothing.
        cache.saw_epoch(Some(7));
        cache.keep_channel(cache.generation(), "store-1", row("c"));
        cache.saw_epoch(Some(7));
        assert!(
            cache.channel("store-1").is_some(),
            "dropped for an unmoved epoch"
        );
        cache.saw_epoch(Some(8));
        assert!(
            cache.channel("store-1").is_none(),
            "kept across a moved epoch"
        );
        cache.keep_channel(cache.generation(), "store-1", row("d"));
        cache.saw_epoch(None);
        assert!(
            cache.channel("store-1").is_none(),
            "kept though the epoch was unread"
        );
    }
}
