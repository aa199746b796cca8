//! The in-memory backend.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use futures_util::FutureExt;
use futures_util::future::ready;
use futures_util::stream::{self, StreamExt};
use tokio::sync::broadcast;

use crate::backend::{Backend, BackendFuture};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::sweeper::{self, SweeperGuard};
use crate::types::{
    Cond, Event, Item, Page, check_cond, check_from, check_key, check_limit, check_write,
    prefix_end,
};
use crate::watch::{Watcher, live};

/// A [`Backend`] in memory, for unit tests and clusters that keep nothing.
///
/// Cloning gives another handle to the same store.
///
/// ```
/// use tp_backend::{Backend, MemoryBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tp_backend::Error> {
/// let backend = MemoryBackend::new();
/// let revision = backend.put(b"/roles/admin", b"spec".to_vec(), None).await?;
/// assert_eq!(backend.get(b"/roles/admin").await?.revision, revision);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
    _sweeper: Option<Arc<SweeperGuard>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changes: broadcast::Sender<Event>,
    options: Options,
}

#[derive(Debug, Default)]
struct State {
    items: BTreeMap<Vec<u8>, Item>,
    revision: i64,
    /// The newest revision whose event has been dropped from `history`.
    compacted: i64,
    history: VecDeque<Event>,
}

impl State {
    fn live(&self, key: &[u8], now: SystemTime) -> Option<&Item> {
        self.items.get(key).filter(|i| !i.is_expired_at(now))
    }
}

/// A write in progress: allocates revisions and collects events.
struct Tx<'a> {
    state: &'a mut State,
    events: Vec<Event>,
}

impl Tx<'_> {
    fn put(&mut self, key: &[u8], value: Vec<u8>, expires: Option<SystemTime>) -> i64 {
        self.state.revision += 1;
        let item = Item {
            key: key.to_vec(),
            value,
            revision: self.state.revision,
            expires,
        };
        self.state.items.insert(key.to_vec(), item.clone());
        self.events.push(Event::Put(item));
        self.state.revision
    }

    fn delete(&mut self, key: &[u8]) -> i64 {
        self.state.revision += 1;
        self.state.items.remove(key);
        self.events.push(Event::Delete {
            key: key.to_vec(),
            revision: self.state.revision,
        });
        self.state.revision
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty store with default [`Options`].
    pub fn new() -> Self {
        Self::with_options(Options::default())
    }

    /// An empty store.
    pub fn with_options(options: Options) -> Self {
        let options = options.normalized();
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            changes: broadcast::channel(options.watch_buffer).0,
            options,
        });
        let sweeper = shared.options.sweep_interval.and_then(|interval| {
            sweeper::spawn(Arc::downgrade(&shared), interval, Shared::sweep).map(Arc::new)
        });
        Self {
            shared,
            _sweeper: sweeper,
        }
    }
}

impl Shared {
    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        // A poisoned lock means a panic mid-update; refuse rather than serve
        // possibly half-written state.
        self.state
            .lock()
            .map_err(|_| Error::storage("memory", "lock", "the store lock is poisoned"))
    }

    fn now(&self) -> SystemTime {
        self.options.clock.now()
    }

    /// Runs `f` as one atomic write, then records and announces its events in order.
    fn write<T>(&self, f: impl FnOnce(&mut Tx<'_>, SystemTime) -> Result<T>) -> Result<T> {
        let now = self.now();
        let mut guard = self.lock()?;
        let mut tx = Tx {
            state: &mut guard,
            events: Vec::new(),
        };
        let out = f(&mut tx, now)?;
        let events = tx.events;
        let state = &mut *guard;
        let limit = usize::try_from(self.options.history_limit).unwrap_or(usize::MAX);
        for event in events {
            state.history.push_back(event.clone());
            // No receivers is fine: nobody watches.
            let _ = self.changes.send(event);
        }
        while state.history.len() > limit {
            if let Some(dropped) = state.history.pop_front() {
                state.compacted = dropped.revision();
            }
        }
        Ok(out)
    }

    fn write_one(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
        cond: Cond,
    ) -> Result<i64> {
        check_write(key, expires)?;
        self.write(|tx, now| {
            check_cond(key, tx.state.live(key, now).map(|i| i.revision), cond)?;
            Ok(tx.put(key, value, expires))
        })
    }

    fn delete_one(&self, key: &[u8], cond: Cond) -> Result<i64> {
        check_key(key)?;
        self.write(|tx, now| {
            check_cond(key, tx.state.live(key, now).map(|i| i.revision), cond)?;
            Ok(tx.delete(key))
        })
    }

    fn range(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Page> {
        check_limit(limit)?;
        let now = self.now();
        let state = self.lock()?;
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let upper = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        // `BTreeMap::range` panics on an inverted range: a start after the prefix's end
        // selects nothing.
        if let (Bound::Excluded(start), Bound::Excluded(end)) = (&lower, &upper)
            && start >= end
        {
            return Ok(Page::default());
        }
        let mut items: Vec<Item> = state
            .items
            .range((lower, upper))
            .map(|(_, item)| item)
            .filter(|item| !item.is_expired_at(now))
            .take(limit.saturating_add(1))
            .cloned()
            .collect();
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| i.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    fn delete_range(&self, prefix: &[u8]) -> Result<u64> {
        self.write(|tx, _| {
            let upper = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
            let keys: Vec<Vec<u8>> = tx
                .state
                .items
                .range::<[u8], _>((Bound::Included(prefix), upper.as_ref().map(Vec::as_slice)))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &keys {
                tx.delete(key);
            }
            Ok(keys.len() as u64)
        })
    }

    fn sweep(&self) -> Result<u64> {
        self.write(|tx, now| {
            let keys: Vec<Vec<u8>> = tx
                .state
                .items
                .values()
                .filter(|i| i.is_expired_at(now))
                .map(|i| i.key.clone())
                .collect();
            for key in &keys {
                tx.delete(key);
            }
            Ok(keys.len() as u64)
        })
    }

    fn watch(&self, from: Option<i64>) -> Result<Watcher> {
        check_from(from)?;
        let state = self.lock()?;
        // Subscribing under the lock: the receiver gets exactly the events after the
        // history snapshot below.
        let rx = self.changes.subscribe();
        let start = from.unwrap_or(state.revision);
        if start < state.compacted {
            return Err(Error::Compacted {
                requested: start,
                compacted: state.compacted,
            });
        }
        let history: Vec<Result<Event>> = state
            .history
            .iter()
            .filter(|e| e.revision() > start)
            .cloned()
            .map(Ok)
            .collect();
        let after = start.max(state.revision);
        drop(state);
        let stream = stream::iter(history).chain(live(rx, after, self.options.watch_buffer));
        Ok(Watcher::new(start, stream.boxed()))
    }
}

impl Backend for MemoryBackend {
    fn get(&self, key: &[u8]) -> BackendFuture<'_, Item> {
        let r = check_key(key).and_then(|()| {
            let now = self.shared.now();
            self.shared
                .lock()?
                .live(key, now)
                .cloned()
                .ok_or_else(|| Error::NotFound { key: key.to_vec() })
        });
        ready(r).boxed()
    }

    fn range(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> BackendFuture<'_, Page> {
        ready(self.shared.range(prefix, start_after, limit)).boxed()
    }

    fn create(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        ready(self.shared.write_one(key, value, expires, Cond::Absent)).boxed()
    }

    fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        ready(self.shared.write_one(key, value, expires, Cond::Any)).boxed()
    }

    fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        ready(self.shared.write_one(key, value, expires, Cond::Present)).boxed()
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected_revision: i64,
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        let cond = Cond::Revision(expected_revision);
        ready(self.shared.write_one(key, value, expires, cond)).boxed()
    }

    fn delete(&self, key: &[u8]) -> BackendFuture<'_, i64> {
        ready(self.shared.delete_one(key, Cond::Present)).boxed()
    }

    fn compare_and_delete(&self, key: &[u8], expected_revision: i64) -> BackendFuture<'_, i64> {
        let cond = Cond::Revision(expected_revision);
        ready(self.shared.delete_one(key, cond)).boxed()
    }

    fn delete_range(&self, prefix: &[u8]) -> BackendFuture<'_, u64> {
        ready(self.shared.delete_range(prefix)).boxed()
    }

    fn current_revision(&self) -> BackendFuture<'_, i64> {
        ready(self.shared.lock().map(|s| s.revision)).boxed()
    }

    fn sweep_expired(&self) -> BackendFuture<'_, u64> {
        ready(self.shared.sweep()).boxed()
    }

    fn watch(&self, from: Option<i64>) -> BackendFuture<'_, Watcher> {
        ready(self.shared.watch(from)).boxed()
    }
}
