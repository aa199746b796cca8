//! The SQLite backend.
//!
//! Schema (version 1, marked with `PRAGMA application_id` so a foreign database is
//! refused rather than written into):
//!
//! - `items(key BLOB PRIMARY KEY, value BLOB, revision INTEGER, expires INTEGER)`:
//!   the current items; `expires` is nanoseconds since the epoch.
//! - `events(revision INTEGER PRIMARY KEY, kind INTEGER, key BLOB, value BLOB,
//!   expires INTEGER)`: the newest changes (kind 0 = put, 1 = delete), written in the
//!   same transaction as the change they describe. Watches replay the newest
//!   [`Options::history_limit`] of them; older rows are deleted in batches of an eighth
//!   of the limit (see [`prune_batch`]), so the table holds up to 1.125 × the limit.
//!   Put events carry their value, so retained history costs that many values of
//!   extra space; it is what lets a watcher resume after a restart.
//! - `meta(name TEXT PRIMARY KEY, value INTEGER)`: `revision` (the newest revision) and
//!   `compacted` (the newest revision whose event row was deleted).
//!
//! Writes go through one connection under a mutex, in `BEGIN IMMEDIATE` transactions,
//! and are announced to live watchers after the commit while the mutex is still held,
//! so live events leave in revision order. Reads use a second connection (WAL lets it
//! read while the writer writes). One process should open a database at a time: a
//! second process's writes are stored correctly but its watchers and ours do not see
//! each other's live events.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::ready;
use futures_util::stream::{self, StreamExt};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use tokio::sync::broadcast;

use crate::backend::{Backend, BackendFuture, Durability, NewItem};
use crate::clock::Clock;
use crate::error::{Error, KeyDisplay, Result};
use crate::options::Options;
use crate::sweeper::{self, SweeperGuard};
use crate::types::{
    Cond, Event, Item, Page, check_cond, check_from, check_key, check_limit, check_write,
    from_nanos, prefix_end, to_nanos,
};
use crate::watch::{Watcher, live};

/// `PRAGMA application_id` of a tp backend database ("tpB1").
const APPLICATION_ID: i64 = 0x7470_4231;
/// The schema version this build reads and writes.
const SCHEMA_VERSION: i64 = 1;
/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many pages the write-ahead log takes before a commit checkpoints it.
const WAL_CHECKPOINT_PAGES: u32 = 8192;
/// How many events one history read fetches.
const HISTORY_PAGE: i64 = 256;

const SCHEMA: &str = "
CREATE TABLE items (
    key BLOB PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    revision INTEGER NOT NULL,
    expires INTEGER
);
CREATE INDEX items_expires ON items (expires) WHERE expires IS NOT NULL;
CREATE TABLE events (
    revision INTEGER PRIMARY KEY NOT NULL,
    kind INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB,
    expires INTEGER
);
CREATE TABLE meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
";

const KIND_PUT: i64 = 0;
const KIND_DELETE: i64 = 1;

/// The embedded default [`Backend`]: one SQLite file in WAL mode with
/// `synchronous=FULL`, so a write is on disk before it is acknowledged and survives a
/// crash of the process (or the machine). The exception is a
/// [`create_many`](Backend::create_many) that asks for [`Durability::Process`]: it is
/// committed with `synchronous=NORMAL` (in the log, not yet synced: it survives the
/// process dying), and the log is synced with the next synced commit or by the
/// background thread within [`Options::sweep_interval`].
///
/// The database file is created with mode 0600 and missing parent directories with
/// 0700 (existing ones are left alone). Cloning gives another handle to the same
/// database. All SQLite work runs on tokio's blocking pool (or inline when called
/// outside a tokio runtime), never on an async worker thread.
///
/// ```
/// use tp_backend::{Backend, SqliteBackend};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let backend = SqliteBackend::open(dir.path().join("tp.db")).await?;
/// let revision = backend.create(b"/roles/admin", b"spec".to_vec(), None).await?;
/// let item = backend.get(b"/roles/admin").await?;
/// assert_eq!((item.value.as_slice(), item.revision), (&b"spec"[..], revision));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
    _sweeper: Option<Arc<SweeperGuard>>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    location: String,
    writer: Mutex<Writer>,
    reader: Mutex<Connection>,
    /// The newest committed revision (also in `Writer`), readable without waiting for a
    /// write.
    revision: AtomicI64,
    changes: broadcast::Sender<Event>,
    options: Options,
    /// Items recently read, served without the blocking pool (see [`ReadCache`]).
    cache: Mutex<ReadCache>,
    /// Set by a [`Durability::Process`] commit, cleared by a synced one: whether the
    /// write-ahead log may hold commits not yet on stable storage.
    unsynced: AtomicBool,
    /// The write-ahead log (`<path>-wal`), synced by the background pass.
    wal: PathBuf,
}

/// Items this process read recently, so that hot keys (roles, users, CAs, read on
/// every call) are served from memory. Every write of this process drops the keys it
/// changed, under the same lock that publishes its revision, and a read fills the
/// cache only if no write committed while it ran: so the cache never returns what a
/// committed write replaced. Expiry is checked on every hit. Writes by another process
/// to the same file are not seen: one process writes a database at a time (tpd locks
/// its data directory).
#[derive(Debug, Default)]
struct ReadCache {
    items: std::collections::HashMap<Vec<u8>, Item>,
    /// The sum of the cached values' sizes.
    bytes: usize,
}

/// The most value bytes the read cache holds; it starts over when full.
const READ_CACHE_BYTES: usize = 32 << 20;

#[derive(Debug)]
struct Writer {
    conn: Connection,
    revision: i64,
    /// The newest revision a watch cannot start from: the history limit's floor
    /// (events at or below it may still be stored, but are no longer replayed).
    compacted: i64,
    /// The newest revision whose event row is deleted (`meta.compacted`).
    pruned: i64,
    /// What the connection's `synchronous` is set to: `FULL` for
    /// [`Durability::Synced`], `NORMAL` for [`Durability::Process`].
    synchronous: Durability,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` with default [`Options`].
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, Options::default()).await
    }

    /// Opens (creating if needed) the database at `path`.
    pub async fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        on_blocking_pool(&location, move || Self::open_blocking(path, options)).await
    }

    /// [`open_with`](Self::open_with) for callers outside async code: it blocks the
    /// calling thread while it opens the file, so never call it on a tokio worker.
    pub fn open_blocking(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let options = options.normalized();
        prepare_file(&path, &location)?;
        let mut writer = connect(&path, &location)?;
        let (revision, pruned) = init_schema(&mut writer, &location)?;
        let compacted = pruned.max(history_floor(revision, options.history_limit));
        let reader = connect(&path, &location)?;
        reader
            .execute_batch("PRAGMA query_only = ON;")
            .map_err(|e| Error::storage(&location, "open the database (read connection)", e))?;
        let inner = Arc::new(Inner {
            location,
            writer: Mutex::new(Writer {
                conn: writer,
                revision,
                compacted,
                pruned,
                synchronous: Durability::Synced,
            }),
            reader: Mutex::new(reader),
            revision: AtomicI64::new(revision),
            changes: broadcast::channel(options.watch_buffer).0,
            options,
            cache: Mutex::new(ReadCache::default()),
            unsynced: AtomicBool::new(false),
            wal: wal_path(&path),
            path,
        });
        let sweeper = inner.options.sweep_interval.and_then(|interval| {
            sweeper::spawn(Arc::downgrade(&inner), interval, Inner::background_pass).map(Arc::new)
        });
        tracing::debug!(path = %inner.location, revision, "opened the SQLite backend");
        Ok(Self {
            inner,
            _sweeper: sweeper,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool.
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> BackendFuture<'static, T> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let location = inner.location.clone();
            on_blocking_pool(&location, move || f(&inner)).await
        })
    }
}

/// Runs `f` on tokio's blocking pool, or inline outside a tokio runtime.
async fn on_blocking_pool<T: Send + 'static>(
    location: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::storage(location, "run a blocking database task", e)))
}

/// SQLite's write-ahead log beside the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Creates missing parent directories (0700) and the file (0600).
fn prepare_file(path: &Path, location: &str) -> Result<()> {
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    let mut file = OpenOptions::new();
    file.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        dirs.mode(0o700);
        file.mode(0o600);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        dirs.create(dir)
            .map_err(|e| Error::storage(dir.display().to_string(), "create the directory", e))?;
    }
    let file = file
        .open(path)
        .map_err(|e| Error::storage(location, "create the database file", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata()
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = location,
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "the database file is readable by other users; it holds secrets (chmod 600)"
            );
        }
    }
    drop(file);
    Ok(())
}

/// Opens a connection with WAL (checkpointed every [`WAL_CHECKPOINT_PAGES`] pages),
/// `synchronous=FULL` and a busy timeout.
fn connect(path: &Path, location: &str) -> Result<Connection> {
    let op = "open the database";
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::storage(location, op, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| Error::storage(location, op, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| Error::storage(location, op, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::storage(
            location,
            op,
            format!("cannot switch to WAL journal mode (it stays {mode:?})"),
        ));
    }
    // A checkpoint copies the log into the database and syncs both; under a stream of
    // small commits (an audit event per issued certificate) SQLite's default of one per
    // 1000 pages (4 MiB) spends more on syncs than on the copying. The log may grow to
    // about 32 MiB before a checkpoint starts over at its beginning.
    conn.execute_batch(&format!(
        "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES};"
    ))
    .map_err(|e| Error::storage(location, op, e))?;
    // Durability rests on this setting: check it took.
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .map_err(|e| Error::storage(location, op, e))?;
    if synchronous != 2 {
        return Err(Error::storage(
            location,
            op,
            format!("cannot set synchronous=FULL (it stays {synchronous})"),
        ));
    }
    Ok(conn)
}

/// Creates the schema in a new database or checks an existing one's; returns the
/// newest and the compacted revision.
fn init_schema(conn: &mut Connection, location: &str) -> Result<(i64, i64)> {
    let op = "open the database (check its schema)";
    let err = |e: rusqlite::Error| Error::storage(location, op, e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let app_id: i64 = tx
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if app_id == 0 && version == 0 {
        let objects: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(err)?;
        if objects > 0 {
            return Err(Error::storage(
                location,
                op,
                format!(
                    "not a tp backend database: it holds {objects} other schema objects and \
                     no tp application id"
                ),
            ));
        }
        tx.execute_batch(SCHEMA).map_err(err)?;
        tx.execute_batch(&format!(
            "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
        ))
        .map_err(err)?;
    } else if app_id != APPLICATION_ID {
        return Err(Error::storage(
            location,
            op,
            format!(
                "not a tp backend database: application_id is {app_id:#x}, expected \
                 {APPLICATION_ID:#x}"
            ),
        ));
    } else if version != SCHEMA_VERSION {
        return Err(Error::storage(
            location,
            op,
            format!(
                "schema version {version} is not supported (this build reads version \
                 {SCHEMA_VERSION})"
            ),
        ));
    }
    let meta = |name: &str| -> Result<i64> {
        tx.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .map_err(err)
    };
    let (revision, compacted) = (meta("revision")?, meta("compacted")?);
    tx.commit().map_err(err)?;
    Ok((revision, compacted))
}

/// The newest revision outside the replayable history of `limit` events when the
/// newest revision is `revision`.
fn history_floor(revision: i64, limit: u64) -> i64 {
    revision.saturating_sub(i64::try_from(limit).unwrap_or(i64::MAX))
}

/// How many replayable-history-expired event rows accumulate before they are deleted
/// (in one statement): an eighth of the history limit, at least one.
fn prune_batch(limit: u64) -> i64 {
    i64::try_from(limit / 8).unwrap_or(i64::MAX).max(1)
}

/// The clock's time in nanoseconds since the epoch, clamped to what is storable.
fn now_nanos(clock: &dyn Clock) -> i64 {
    match clock.now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// A write in progress: allocates revisions and records events.
struct WriteTx<'a> {
    tx: Transaction<'a>,
    location: &'a str,
    now: i64,
    revision: i64,
    events: Vec<Event>,
}

impl WriteTx<'_> {
    fn err<'s>(
        &'s self,
        op: impl FnOnce() -> String + 's,
    ) -> impl FnOnce(rusqlite::Error) -> Error + 's {
        // Only a failure pays for naming the operation.
        move |e| Error::storage(self.location, op(), e)
    }

    /// The revision of the live item at `key`.
    fn live_revision(&self, key: &[u8]) -> Result<Option<i64>> {
        self.tx
            .prepare_cached(
                "SELECT revision FROM items WHERE key = ?1 AND (expires IS NULL OR expires > ?2)",
            )
            .and_then(|mut s| {
                s.query_row(rusqlite::params![key, self.now], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err(|| format!("read {}", KeyDisplay(key))))
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>, expires: Option<i64>) -> Result<i64> {
        // An upsert changes its row; `None` would mean SQLite wrote nothing.
        self.put_where(key, value, expires, false)?.ok_or_else(|| {
            Error::storage(
                self.location,
                format!("write {}", KeyDisplay(key)),
                "the write changed no row",
            )
        })
    }

    /// Creates the item at `key` unless a live one is there (then `None`), in one
    /// statement: the insert replaces only an expired item that the sweeper has not
    /// deleted yet.
    fn create(&mut self, key: &[u8], value: Vec<u8>, expires: Option<i64>) -> Result<Option<i64>> {
        self.put_where(key, value, expires, true)
    }

    /// Writes the item and its event; with `absent`, only if no live item is at `key`
    /// (`None` when one is).
    fn put_where(
        &mut self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<i64>,
        absent: bool,
    ) -> Result<Option<i64>> {
        let revision = self.revision + 1;
        let err = self.err(|| format!("write {}", KeyDisplay(key)));
        let written = (|| {
            let changed = if absent {
                self.tx
                    .prepare_cached(
                        "INSERT INTO items (key, value, revision, expires) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                             revision = excluded.revision, expires = excluded.expires
                         WHERE items.expires IS NOT NULL AND items.expires <= ?5",
                    )?
                    .execute(rusqlite::params![key, value, revision, expires, self.now])?
            } else {
                self.tx
                    .prepare_cached(
                        "INSERT INTO items (key, value, revision, expires) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                             revision = excluded.revision, expires = excluded.expires",
                    )?
                    .execute(rusqlite::params![key, value, revision, expires])?
            };
            if changed == 0 {
                return Ok(false);
            }
            self.tx
                .prepare_cached(
                    "INSERT INTO events (revision, kind, key, value, expires)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(rusqlite::params![revision, KIND_PUT, key, value, expires])?;
            Ok(true)
        })()
        .map_err(err)?;
        if !written {
            return Ok(None);
        }
        self.revision = revision;
        self.events.push(Event::Put(Item {
            key: key.to_vec(),
            value,
            revision,
            expires: expires.map(from_nanos),
        }));
        Ok(Some(revision))
    }

    fn delete(&mut self, key: &[u8]) -> Result<i64> {
        let revision = self.revision + 1;
        let err = self.err(|| format!("delete {}", KeyDisplay(key)));
        (|| {
            self.tx
                .prepare_cached("DELETE FROM items WHERE key = ?1")?
                .execute([key])?;
            self.tx
                .prepare_cached("INSERT INTO events (revision, kind, key) VALUES (?1, ?2, ?3)")?
                .execute(rusqlite::params![revision, KIND_DELETE, key])?;
            Ok(())
        })()
        .map_err(err)?;
        self.revision = revision;
        self.events.push(Event::Delete {
            key: key.to_vec(),
            revision,
        });
        Ok(revision)
    }

    /// Every stored key (expired or not) matching `sql`, which selects `key` with
    /// parameters `params`, in key order.
    fn keys(&self, sql: &str, params: impl rusqlite::Params, op: &str) -> Result<Vec<Vec<u8>>> {
        self.tx
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.query_map(params, |r| r.get::<_, Vec<u8>>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(self.err(|| op.to_string()))
    }
}

impl Inner {
    fn lock_writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.writer
            .lock()
            .map_err(|_| Error::storage(&self.location, "lock", "the writer lock is poisoned"))
    }

    fn lock_reader(&self) -> Result<MutexGuard<'_, Connection>> {
        self.reader
            .lock()
            .map_err(|_| Error::storage(&self.location, "lock", "the reader lock is poisoned"))
    }

    fn now(&self) -> i64 {
        now_nanos(&*self.options.clock)
    }

    fn lock_cache(&self) -> MutexGuard<'_, ReadCache> {
        // The cache holds copies only: a panic while it was held leaves nothing to undo
        // but the entry being changed, so it is cleared rather than refused.
        self.cache.lock().unwrap_or_else(|poisoned| {
            let mut cache = poisoned.into_inner();
            *cache = ReadCache::default();
            cache
        })
    }

    /// The live item at `key` if the read cache has it (expired entries are dropped).
    fn cached(&self, key: &[u8]) -> Option<Item> {
        let now = self.now();
        let mut cache = self.lock_cache();
        let item = cache.items.get(key)?;
        if item
            .expires
            .is_some_and(|t| to_nanos(t).is_none_or(|t| t <= now))
        {
            if let Some(old) = cache.items.remove(key) {
                cache.bytes -= old.value.len();
            }
            return None;
        }
        Some(item.clone())
    }

    /// [`get`](Self::get), remembering the item unless a write committed meanwhile.
    fn get_and_cache(&self, key: &[u8]) -> Result<Item> {
        let before = self.revision.load(Ordering::Acquire);
        let item = self.get(key)?;
        let mut cache = self.lock_cache();
        if self.revision.load(Ordering::Acquire) == before {
            if cache.bytes + item.value.len() > READ_CACHE_BYTES {
                *cache = ReadCache::default();
            }
            cache.bytes += item.value.len();
            if let Some(old) = cache.items.insert(key.to_vec(), item.clone()) {
                cache.bytes -= old.value.len();
            }
        }
        Ok(item)
    }

    /// Runs `f` in one transaction; commits its events, prunes history and announces
    /// the events in order. The commit is on stable storage before this returns.
    fn write<T>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        self.write_as(Durability::Synced, f)
    }

    /// [`write`](Self::write), acknowledged once as durable as `durability` asks.
    fn write_as<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>,
    ) -> Result<T> {
        let now = self.now();
        let mut guard = self.lock_writer()?;
        let w = &mut *guard;
        let (base, pruned) = (w.revision, w.pruned);
        let err = |op: &'static str| move |e| Error::storage(&self.location, op, e);
        if w.synchronous != durability {
            // In WAL mode, FULL syncs the log at every commit; NORMAL leaves it to the
            // operating system until a checkpoint (or a later FULL commit) syncs it.
            // Either way a commit is in the log, so it survives the process dying.
            let level = match durability {
                Durability::Synced => "FULL",
                Durability::Process => "NORMAL",
            };
            w.conn
                .pragma_update(None, "synchronous", level)
                .map_err(err("set how commits are synced"))?;
            w.synchronous = durability;
        }
        let tx = w
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("begin a write"))?;
        let mut wtx = WriteTx {
            tx,
            location: &self.location,
            now,
            revision: base,
            events: Vec::new(),
        };
        let out = f(&mut wtx)?;
        let WriteTx {
            tx,
            revision,
            events,
            ..
        } = wtx;
        if events.is_empty() {
            // Nothing changed: the transaction rolls back when dropped.
            return Ok(out);
        }
        let floor = w
            .compacted
            .max(history_floor(revision, self.options.history_limit));
        // Deleting the rows below the floor a batch at a time, rather than a few at
        // every commit, spares most commits the pages the deletion dirties.
        let new_pruned = if floor - pruned >= prune_batch(self.options.history_limit) {
            floor
        } else {
            pruned
        };
        (|| {
            let mut meta = tx.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?;
            meta.execute(rusqlite::params!["revision", revision])?;
            if new_pruned > pruned {
                tx.prepare_cached("DELETE FROM events WHERE revision <= ?1")?
                    .execute([new_pruned])?;
                meta.execute(rusqlite::params!["compacted", new_pruned])?;
            }
            Ok(())
        })()
        .map_err(err("record the revision"))?;
        tx.commit().map_err(err("commit a write"))?;
        // Under the writer lock, so the flag follows the order of the commits: a synced
        // commit syncs the whole log, earlier unsynced commits included.
        self.unsynced
            .store(durability == Durability::Process, Ordering::Release);
        w.revision = revision;
        w.compacted = floor;
        w.pruned = new_pruned;
        {
            // Drop what this commit changed and publish its revision together, so a read
            // that overlapped the commit does not fill the cache (see `ReadCache`).
            let mut cache = self.lock_cache();
            for event in &events {
                let key = match event {
                    Event::Put(item) => &item.key,
                    Event::Delete { key, .. } => key,
                };
                if let Some(old) = cache.items.remove(key) {
                    cache.bytes -= old.value.len();
                }
            }
            self.revision.store(revision, Ordering::Release);
        }
        for event in events {
            // No receivers is fine: nobody watches.
            let _ = self.changes.send(event);
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
        let expires = check_write(key, expires)?;
        self.write(|tx| {
            if matches!(cond, Cond::Absent) {
                return tx
                    .create(key, value, expires)?
                    .ok_or_else(|| Error::AlreadyExists { key: key.to_vec() });
            }
            check_cond(key, tx.live_revision(key)?, cond)?;
            tx.put(key, value, expires)
        })
    }

    /// Creates `items` in one transaction (one commit): an invalid or live key fails
    /// that item alone.
    fn create_many(&self, items: Vec<NewItem>, durability: Durability) -> Result<Vec<Result<i64>>> {
        let checked: Vec<(NewItem, Result<Option<i64>>)> = items
            .into_iter()
            .map(|i| {
                let expires = check_write(&i.key, i.expires);
                (i, expires)
            })
            .collect();
        self.write_as(durability, |tx| {
            let mut out = Vec::with_capacity(checked.len());
            for (item, expires) in checked {
                let expires = match expires {
                    Ok(e) => e,
                    Err(e) => {
                        out.push(Err(e));
                        continue;
                    }
                };
                out.push(match tx.create(&item.key, item.value, expires)? {
                    Some(revision) => Ok(revision),
                    None => Err(Error::AlreadyExists { key: item.key }),
                });
            }
            Ok(out)
        })
    }

    fn delete_one(&self, key: &[u8], cond: Cond) -> Result<i64> {
        check_key(key)?;
        self.write(|tx| {
            check_cond(key, tx.live_revision(key)?, cond)?;
            tx.delete(key)
        })
    }

    fn delete_range(&self, prefix: &[u8]) -> Result<u64> {
        let op = format!("list keys under {}", KeyDisplay(prefix));
        self.write(|tx| {
            let keys = match prefix_end(prefix) {
                Some(end) => tx.keys(
                    "SELECT key FROM items WHERE key >= ?1 AND key < ?2 ORDER BY key",
                    rusqlite::params![prefix, end],
                    &op,
                )?,
                None => tx.keys(
                    "SELECT key FROM items WHERE key >= ?1 ORDER BY key",
                    [prefix],
                    &op,
                )?,
            };
            for key in &keys {
                tx.delete(key)?;
            }
            Ok(keys.len() as u64)
        })
    }

    /// The background thread's pass: deletes expired items, then syncs commits made
    /// with [`Durability::Process`] since the last sync.
    fn background_pass(&self) -> Result<u64> {
        let swept = self.sweep();
        let synced = self.sync_process_writes();
        synced.and(swept)
    }

    /// Puts the write-ahead log on stable storage if a [`Durability::Process`] commit
    /// may have left it unsynced. `fsync` writes back the file whichever descriptor
    /// asks, so this needs neither SQLite's descriptor nor the writer lock: every
    /// commit acknowledged before the flag was taken is in the log by then.
    fn sync_process_writes(&self) -> Result<()> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let synced = std::fs::File::open(&self.wal).and_then(|f| f.sync_data());
        match synced {
            Ok(()) => Ok(()),
            // A checkpoint that truncated the log synced everything first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                self.unsynced.store(true, Ordering::Release);
                Err(Error::storage(
                    self.wal.display().to_string(),
                    "sync the write-ahead log",
                    e,
                ))
            }
        }
    }

    fn sweep(&self) -> Result<u64> {
        self.write(|tx| {
            let keys = tx.keys(
                "SELECT key FROM items WHERE expires IS NOT NULL AND expires <= ?1 ORDER BY key",
                [tx.now],
                "list expired keys",
            )?;
            for key in &keys {
                tx.delete(key)?;
            }
            Ok(keys.len() as u64)
        })
    }

    fn get(&self, key: &[u8]) -> Result<Item> {
        check_key(key)?;
        let now = self.now();
        let conn = self.lock_reader()?;
        conn.prepare_cached(
            "SELECT value, revision, expires FROM items
             WHERE key = ?1 AND (expires IS NULL OR expires > ?2)",
        )
        .and_then(|mut s| {
            s.query_row(rusqlite::params![key, now], |r| {
                Ok(Item {
                    key: key.to_vec(),
                    value: r.get(0)?,
                    revision: r.get(1)?,
                    expires: r.get::<_, Option<i64>>(2)?.map(from_nanos),
                })
            })
            .optional()
        })
        .map_err(|e| Error::storage(&self.location, format!("read {}", KeyDisplay(key)), e))?
        .ok_or_else(|| Error::NotFound { key: key.to_vec() })
    }

    fn range(&self, prefix: &[u8], start_after: Option<&[u8]>, limit: usize) -> Result<Page> {
        check_limit(limit)?;
        let now = self.now();
        let (lower_op, lower) = match start_after {
            Some(after) if after >= prefix => (">", after),
            _ => (">=", prefix),
        };
        let end = prefix_end(prefix);
        let upper = if end.is_some() { "AND key < ?4" } else { "" };
        let sql = format!(
            "SELECT key, value, revision, expires FROM items
             WHERE key {lower_op} ?1 {upper} AND (expires IS NULL OR expires > ?2)
             ORDER BY key LIMIT ?3"
        );
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let conn = self.lock_reader()?;
        let row = |r: &rusqlite::Row<'_>| {
            Ok(Item {
                key: r.get(0)?,
                value: r.get(1)?,
                revision: r.get(2)?,
                expires: r.get::<_, Option<i64>>(3)?.map(from_nanos),
            })
        };
        let mut items = conn
            .prepare_cached(&sql)
            .and_then(|mut s| match &end {
                Some(end) => s
                    .query_map(rusqlite::params![lower, now, fetch, end], row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
                None => s
                    .query_map(rusqlite::params![lower, now, fetch], row)?
                    .collect::<rusqlite::Result<Vec<_>>>(),
            })
            .map_err(|e| {
                Error::storage(
                    &self.location,
                    format!("list keys under {}", KeyDisplay(prefix)),
                    e,
                )
            })?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| i.key.clone())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Subscribes to live events; returns the receiver, the start revision and the
    /// newest revision at the moment of subscribing.
    fn subscribe(&self, from: Option<i64>) -> Result<(broadcast::Receiver<Event>, i64, i64)> {
        check_from(from)?;
        // Under the writer lock, so the receiver gets exactly the events after `newest`.
        let w = self.lock_writer()?;
        let rx = self.changes.subscribe();
        let start = from.unwrap_or(w.revision);
        if start < w.compacted {
            return Err(Error::Compacted {
                requested: start,
                compacted: w.compacted,
            });
        }
        Ok((rx, start, w.revision))
    }

    /// Up to [`HISTORY_PAGE`] events after `after`, up to `until`.
    fn history_page(&self, after: i64, until: i64) -> Result<Vec<Event>> {
        let conn = self.lock_reader()?;
        let rows = conn
            .prepare_cached(
                "SELECT revision, kind, key, value, expires FROM events
                 WHERE revision > ?1 AND revision <= ?2 ORDER BY revision LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(rusqlite::params![after, until, HISTORY_PAGE], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| Error::storage(&self.location, "read the event history", e))?;
        // Pruning removes the oldest events; a gap at the start means it overtook us.
        let first = rows.first().map_or(until + 1, |r| r.0);
        if first != after + 1 {
            return Err(Error::Compacted {
                requested: after,
                compacted: first - 1,
            });
        }
        rows.into_iter()
            .map(|(revision, kind, key, value, expires)| match kind {
                KIND_PUT => Ok(Event::Put(Item {
                    key,
                    value: value.unwrap_or_default(),
                    revision,
                    expires: expires.map(from_nanos),
                })),
                KIND_DELETE => Ok(Event::Delete { key, revision }),
                other => Err(Error::storage(
                    &self.location,
                    "read the event history",
                    format!("event {revision} has unknown kind {other}"),
                )),
            })
            .collect()
    }
}

/// Where a history replay stands.
enum Replay {
    Reading {
        inner: Arc<Inner>,
        after: i64,
        until: i64,
    },
    Done,
}

/// The retained events in `(after, until]`, read a page at a time on the blocking pool.
fn replay(
    inner: Arc<Inner>,
    after: i64,
    until: i64,
) -> impl futures_util::Stream<Item = Result<Event>> + Send + 'static {
    stream::unfold(
        Replay::Reading {
            inner,
            after,
            until,
        },
        |state| async move {
            let Replay::Reading {
                inner,
                after,
                until,
            } = state
            else {
                return None;
            };
            if after >= until {
                return None;
            }
            let location = inner.location.clone();
            let reader = Arc::clone(&inner);
            let page = on_blocking_pool(&location, move || reader.history_page(after, until)).await;
            match page {
                Ok(events) => {
                    let after = events.last().map_or(until, Event::revision);
                    let next = Replay::Reading {
                        inner,
                        after,
                        until,
                    };
                    Some((stream::iter(events.into_iter().map(Ok)).left_stream(), next))
                }
                Err(e) => Some((stream::once(ready(Err(e))).right_stream(), Replay::Done)),
            }
        },
    )
    .flatten()
}

impl Backend for SqliteBackend {
    fn get(&self, key: &[u8]) -> BackendFuture<'_, Item> {
        if let Some(item) = self.inner.cached(key) {
            return Box::pin(std::future::ready(Ok(item)));
        }
        let key = key.to_vec();
        self.run(move |i| i.get_and_cache(&key))
    }

    fn range(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> BackendFuture<'_, Page> {
        let prefix = prefix.to_vec();
        let start_after = start_after.map(<[u8]>::to_vec);
        self.run(move |i| i.range(&prefix, start_after.as_deref(), limit))
    }

    fn create(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        let key = key.to_vec();
        self.run(move |i| i.write_one(&key, value, expires, Cond::Absent))
    }

    fn create_many(
        &self,
        items: Vec<NewItem>,
        durability: Durability,
    ) -> BackendFuture<'_, Vec<Result<i64>>> {
        self.run(move |i| i.create_many(items, durability))
    }

    fn put(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        let key = key.to_vec();
        self.run(move |i| i.write_one(&key, value, expires, Cond::Any))
    }

    fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        let key = key.to_vec();
        self.run(move |i| i.write_one(&key, value, expires, Cond::Present))
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected_revision: i64,
        value: Vec<u8>,
        expires: Option<SystemTime>,
    ) -> BackendFuture<'_, i64> {
        let key = key.to_vec();
        let cond = Cond::Revision(expected_revision);
        self.run(move |i| i.write_one(&key, value, expires, cond))
    }

    fn delete(&self, key: &[u8]) -> BackendFuture<'_, i64> {
        let key = key.to_vec();
        self.run(move |i| i.delete_one(&key, Cond::Present))
    }

    fn compare_and_delete(&self, key: &[u8], expected_revision: i64) -> BackendFuture<'_, i64> {
        let key = key.to_vec();
        let cond = Cond::Revision(expected_revision);
        self.run(move |i| i.delete_one(&key, cond))
    }

    fn delete_range(&self, prefix: &[u8]) -> BackendFuture<'_, u64> {
        let prefix = prefix.to_vec();
        self.run(move |i| i.delete_range(&prefix))
    }

    fn current_revision(&self) -> BackendFuture<'_, i64> {
        Box::pin(ready(Ok(self.inner.revision.load(Ordering::Acquire))))
    }

    fn sweep_expired(&self) -> BackendFuture<'_, u64> {
        self.run(Inner::sweep)
    }

    fn watch(&self, from: Option<i64>) -> BackendFuture<'_, Watcher> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let location = inner.location.clone();
            let subscriber = Arc::clone(&inner);
            let (rx, start, newest) =
                on_blocking_pool(&location, move || subscriber.subscribe(from)).await?;
            let buffer = inner.options.watch_buffer;
            let stream = replay(inner, start, newest).chain(live(rx, start.max(newest), buffer));
            Ok(Watcher::new(start, stream.boxed()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(inner: &Inner) -> i64 {
        let w = inner.lock_writer().unwrap();
        w.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    fn unsynced(inner: &Inner) -> bool {
        inner.unsynced.load(Ordering::Acquire)
    }

    fn item(key: &str) -> NewItem {
        NewItem {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            expires: None,
        }
    }

    #[test]
    fn process_writes_wait_for_the_next_synced_write_or_the_background_pass() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().with_sweep_interval(None);
        let b = SqliteBackend::open_blocking(dir.path().join("tp.db"), options).unwrap();
        let i = &*b.inner;
        assert!(!unsynced(i), "a new database has nothing unsynced");
        assert_eq!(synchronous(i), 2, "FULL by default");

        i.create_many(vec![item("/a")], Durability::Process)
            .unwrap()[0]
            .as_ref()
            .unwrap();
        assert!(unsynced(i), "a process-durable commit is not synced");
        assert_eq!(synchronous(i), 1, "NORMAL for it");
        assert!(i.wal.exists(), "the log is where it is synced from");
        i.background_pass().unwrap();
        assert!(!unsynced(i), "the background pass syncs the log");

        i.create_many(vec![item("/b")], Durability::Process)
            .unwrap()[0]
            .as_ref()
            .unwrap();
        assert!(unsynced(i));
        i.write_one(b"/c", b"v".to_vec(), None, Cond::Any).unwrap();
        assert!(
            !unsynced(i),
            "a synced commit syncs the earlier ones with it"
        );
        assert_eq!(synchronous(i), 2, "back to FULL");

        // Nothing changed: no commit, nothing to sync.
        i.create_many(vec![item("/c")], Durability::Process)
            .unwrap()[0]
            .as_ref()
            .unwrap_err();
        assert!(
            !unsynced(i),
            "a batch that stored nothing committed nothing"
        );
        for key in ["/a", "/b", "/c"] {
            assert_eq!(i.get(key.as_bytes()).unwrap().value, b"v", "{key}");
        }
    }

    #[test]
    fn the_background_thread_syncs_process_writes() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().with_sweep_interval(Some(Duration::from_millis(10)));
        let b = SqliteBackend::open_blocking(dir.path().join("tp.db"), options).unwrap();
        let i = &*b.inner;
        i.create_many(vec![item("/a")], Durability::Process)
            .unwrap()[0]
            .as_ref()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while unsynced(i) {
            assert!(
                std::time::Instant::now() < deadline,
                "the sweeper thread never synced the log"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_log_checkpoints_at_its_own_size_not_sqlites_default() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default().with_sweep_interval(None);
        let b = SqliteBackend::open_blocking(dir.path().join("tp.db"), options).unwrap();
        let w = b.inner.lock_writer().unwrap();
        let pages: u32 = w
            .conn
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pages, WAL_CHECKPOINT_PAGES);
    }

    /// The number of stored event rows and the oldest one's revision.
    fn event_rows(inner: &Inner) -> (i64, i64) {
        let w = inner.lock_writer().unwrap();
        w.conn
            .query_row(
                "SELECT count(*), coalesce(min(revision), 0) FROM events",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    }

    fn compacted_at(inner: &Inner, from: i64) -> Option<i64> {
        match inner.subscribe(Some(from)) {
            Ok(_) => None,
            Err(Error::Compacted { compacted, .. }) => Some(compacted),
            Err(e) => panic!("watch from {from}: {e}"),
        }
    }

    fn put_n(inner: &Inner, n: usize) {
        for _ in 0..n {
            inner.write_one(b"/k", vec![], None, Cond::Any).unwrap();
        }
    }

    #[test]
    fn expired_history_is_deleted_in_batches_and_its_floor_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tp.db");
        let options = Options::default()
            .with_sweep_interval(None)
            .with_history_limit(64);
        let b = SqliteBackend::open_blocking(&path, options.clone()).unwrap();
        let i = &*b.inner;
        assert_eq!(prune_batch(64), 8);
        put_n(i, 64 + 7);
        assert_eq!(
            event_rows(i),
            (71, 1),
            "seven past the limit, one short of a batch: no row deleted yet"
        );
        assert_eq!(compacted_at(i, 6), Some(7), "yet the floor is exact");
        assert_eq!(compacted_at(i, 7), None);
        put_n(i, 1);
        assert_eq!(event_rows(i), (64, 9), "a batch of eight deleted at once");
        put_n(i, 7);
        assert_eq!(event_rows(i), (71, 9));
        drop(b);

        let b = SqliteBackend::open_blocking(&path, options).unwrap();
        let i = &*b.inner;
        assert_eq!(
            compacted_at(i, 14),
            Some(15),
            "the floor comes from the newest revision and the limit, not the deleted rows"
        );
        assert_eq!(compacted_at(i, 15), None);
    }

    #[test]
    fn a_create_replaces_only_an_expired_item() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::clock::ManualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_000),
        ));
        let options = Options::default()
            .with_sweep_interval(None)
            .with_clock(clock.clone());
        let b = SqliteBackend::open_blocking(dir.path().join("tp.db"), options).unwrap();
        let i = &*b.inner;
        let soon = Some(UNIX_EPOCH + Duration::from_secs(1_010));
        let first = i
            .write_one(b"/t", b"1".to_vec(), soon, Cond::Absent)
            .unwrap();
        let live = i.write_one(b"/t", b"2".to_vec(), None, Cond::Absent);
        assert!(matches!(live, Err(Error::AlreadyExists { .. })), "{live:?}");
        let batch = i
            .create_many(vec![item("/t")], Durability::Process)
            .unwrap();
        assert!(
            matches!(batch[0], Err(Error::AlreadyExists { .. })),
            "{batch:?}"
        );
        assert_eq!(
            i.get(b"/t").unwrap().value,
            b"1",
            "the live item is untouched"
        );
        assert_eq!(
            b.inner.revision.load(Ordering::Acquire),
            first,
            "no revision spent"
        );

        clock.advance(Duration::from_secs(10));
        let batch = i
            .create_many(vec![item("/t")], Durability::Process)
            .unwrap();
        let second = *batch[0].as_ref().unwrap();
        assert_eq!(second, first + 1);
        let got = i.get(b"/t").unwrap();
        assert_eq!(
            (got.value.as_slice(), got.revision, got.expires),
            (&b"v"[..], second, None)
        );
    }
}
