//! The `Backend` trait.

use std::fmt;
use std::time::SystemTime;

use futures_util::future::BoxFuture;

use crate::error::Result;
use crate::types::{Item, Page};
use crate::watch::Watcher;

/// An item to store with [`Backend::create_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// When it expires, if it does.
    pub expires: Option<SystemTime>,
}

/// How far a write must get before [`Backend::create_many`] acknowledges it.
///
/// It is a floor: a backend that syncs every commit treats both the same. The in-memory
/// backend keeps nothing across a restart and ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Durability {
    /// On stable storage: the write survives a crash of the process and of the machine
    /// (power loss) once acknowledged.
    #[default]
    Synced,
    /// Handed to the operating system: the write survives a crash of the process
    /// (`kill -9`) once acknowledged, and a crash of the machine once the backend has
    /// synced it: with the next [`Synced`](Self::Synced) write, and in the background
    /// soon after (SQLite: within [`Options::sweep_interval`](crate::Options)). Order
    /// holds across a crash of the machine too: whatever was written before a write
    /// that survived survives with it.
    ///
    /// For records written on every call whose loss in a power cut is tolerable, as
    /// audit events are: Teleport's own file audit log does not sync at all.
    Process,
}

/// The future every [`Backend`] method returns.
pub type BackendFuture<'a, T> = BoxFuture<'a, Result<T>>;

/// Key-value storage with revisions, expiry and a change stream.
///
/// Every method copies what it needs from its arguments before returning, so the future
/// borrows only the backend. Each successful write takes the next revision of the
/// backend's single counter and emits one [`Event`](crate::Event) per key it changes;
/// a failed call changes nothing. "Live" below means present and not expired: reads
/// never return expired items and conditional writes treat them as absent.
///
/// Implementations must pass the [`conformance`](crate::conformance) suite.
pub trait Backend: Send + Sync + fmt::Debug + 'static {
    /// The live item at `key`; [`NotFound`](crate::Error::NotFound) otherwise.
    fn get(&self, key: &[u8]) -> BackendFuture<'_, Item>;

    /// Up to `limit` (at least 1) live items whose keys start with `prefix` (all items
    /// for an empty prefix) and sort after `start_after` when given, in key order.
    /// [`Page::next`] is set when more follow.
    fn range(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> BackendFuture<'_, Page>;

    /// Stores a new item; [`AlreadyExists`](crate::Error::AlreadyExists) if a live one
    /// has the key. Returns the new revision.
    fn create(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64>;

    /// Stores new items as [`create`](Self::create) would, in order, each with its own
    /// revision and event; a backend that commits to disk commits them together (one
    /// commit for many audit events, say). One result per item: an item whose key is
    /// live, or is invalid, fails alone. The outer error (storage failing) means none
    /// was stored.
    ///
    /// `durability` says how far the commit must get before this returns; the default
    /// creates them one by one, each fully durable.
    fn create_many(
        &self,
        items: Vec<NewItem>,
        _durability: Durability,
    ) -> BackendFuture<'_, Vec<Result<i64>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(self.create(&item.key, item.value, item.expires).await);
            }
            Ok(out)
        })
    }

    /// Stores an item whatever was there. Returns the new revision.
    fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64>;

    /// Replaces a live item; [`NotFound`](crate::Error::NotFound) if there is none.
    /// Returns the new revision.
    fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64>;

    /// Replaces the live item only if it is at `expected_revision`:
    /// [`CompareFailed`](crate::Error::CompareFailed) if it is at another,
    /// [`NotFound`](crate::Error::NotFound) if there is none. Returns the new revision.
    fn compare_and_swap(
        &self,
        key: &[u8],
        expected_revision: i64,
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64>;

    /// Deletes the live item; [`NotFound`](crate::Error::NotFound) if there is none.
    /// Returns the revision of the deletion.
    fn delete(&self, key: &[u8]) -> BackendFuture<'_, i64>;

    /// Deletes the live item only if it is at `expected_revision` (errors as for
    /// [`compare_and_swap`](Self::compare_and_swap)). Returns the revision of the
    /// deletion.
    fn compare_and_delete(&self, key: &[u8], expected_revision: i64) -> BackendFuture<'_, i64>;

    /// Deletes every stored item whose key starts with `prefix` (everything for an empty
    /// prefix), in key order, one revision and one delete event each, atomically.
    /// Expired items not yet swept are deleted too (their delete events were still owed
    /// to watchers). Returns how many items were deleted.
    fn delete_range(&self, prefix: &[u8]) -> BackendFuture<'_, u64>;

    /// The newest revision (0 before the first write).
    fn current_revision(&self) -> BackendFuture<'_, i64>;

    /// Deletes every expired item now, in key order, one revision and one delete event
    /// each. Returns how many were deleted. Backends run this periodically when
    /// [`Options::sweep_interval`](crate::Options::sweep_interval) is set.
    fn sweep_expired(&self) -> BackendFuture<'_, u64>;

    /// Watches changes after revision `from` (after the current revision for `None`):
    /// first the retained history, then live changes, in revision order, with no gap or
    /// duplicate. [`Compacted`](crate::Error::Compacted) if events after `from` are no
    /// longer retained. See [`Watcher`] for lagging and resuming.
    ///
    /// To keep a consistent copy: start the watch, then read with
    /// [`range`](Self::range), and apply an event only when its revision is newer than
    /// the copy's item (or, for deletes, than the copy's item at that key).
    fn watch(&self, from: Option<i64>) -> BackendFuture<'_, Watcher>;
}
