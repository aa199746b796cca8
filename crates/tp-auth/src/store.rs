//! The Auth server's view of storage: resources by kind and name, each with an opaque
//! revision for conditional updates, and a change stream for watchers.
//!
//! [`Store`] is what the services use. [`BackendStore`] implements it on any
//! [`tp_backend::Backend`] (SQLite for a real cluster, [`tp_backend::MemoryBackend`] for
//! tests), so the services never see keys or encodings.
//!
//! # Layout in the backend
//!
//! - A resource of kind `k` named `n` is the item at key `/<k>/<n>` (for example
//!   `/role/editor`, `/cert_authority/user/example.com`), where `<k>` is
//!   [`Kind::as_str`]; its value is the resource's protobuf encoding (audit events:
//!   JSON). Names may contain `/`; the kind ends at the second `/`.
//! - A revision is the backend's revision of the item, as a decimal string.
//! - An expiry (tokens, invites) is the backend item's expiry, so the backend's clock
//!   decides when a token stops working and its sweep tells watchers it is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use prost::Message;
use tp_backend::{Backend, Error as BackendError, Event};

/// The kinds of resource the Auth server stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// `types.RoleV6`.
    Role,
    /// `types.UserV2` (with its secrets).
    User,
    /// `types.ProvisionTokenV2`.
    Token,
    /// `types.UserTokenV3` (invite and reset tokens).
    UserToken,
    /// `types.CertAuthorityV2` (with private keys).
    CertAuthority,
    /// `types.ClusterNameV2`.
    ClusterName,
    /// An audit event ([`crate::audit::AuditEvent`], JSON), named so that names sort by
    /// time.
    AuditEvent,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 7] = [
        Self::Role,
        Self::User,
        Self::Token,
        Self::UserToken,
        Self::CertAuthority,
        Self::ClusterName,
        Self::AuditEvent,
    ];

    /// Teleport's kind string (`audit` for audit events, which Teleport keeps outside
    /// its resource storage); also the first segment of the storage key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::User => "user",
            Self::Token => "token",
            Self::UserToken => "user_token",
            Self::CertAuthority => "cert_authority",
            Self::ClusterName => "cluster_name",
            Self::AuditEvent => "audit",
        }
    }

    /// The kind whose [`as_str`](Self::as_str) is `s`.
    pub fn from_str_opt(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The key prefix of this kind: `/<kind>/`.
    fn prefix(self) -> Vec<u8> {
        format!("/{}/", self.as_str()).into_bytes()
    }

    /// The key of resource `name`.
    fn key(self, name: &str) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(name.as_bytes());
        k
    }
}

/// The kind and name a storage key holds, if it is one of ours.
fn parse_key(key: &[u8]) -> Option<(Kind, String)> {
    let s = std::str::from_utf8(key).ok()?.strip_prefix('/')?;
    let (kind, name) = s.split_once('/')?;
    Some((Kind::from_str_opt(kind)?, name.to_string()))
}

/// A stored resource: its encoded bytes and revision.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// The resource name.
    pub name: String,
    /// The encoded message.
    pub value: Vec<u8>,
    /// The opaque revision of this version.
    pub revision: String,
    /// When the item expires (seconds since the epoch), if it does.
    pub expires: Option<i64>,
}

impl std::fmt::Debug for Item {
    // The value is left out: stored values include private keys and password hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Item")
            .field("name", &self.name)
            .field("value_len", &self.value.len())
            .field("revision", &self.revision)
            .field("expires", &self.expires)
            .finish()
    }
}

impl Item {
    /// Decodes the stored message.
    pub fn decode<M: Message + Default>(&self) -> Result<M, StoreError> {
        M::decode(self.value.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.name)))
    }

    fn from_backend(item: tp_backend::Item) -> Option<(Kind, Self)> {
        let (kind, name) = parse_key(&item.key)?;
        Some((
            kind,
            Self {
                name,
                value: item.value,
                revision: item.revision.to_string(),
                expires: item.expires.map(to_secs),
            },
        ))
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// No such resource.
    NotFound,
    /// The resource exists already.
    AlreadyExists,
    /// The expected revision did not match.
    CompareFailed,
    /// A stored value cannot be decoded.
    Corrupt(String),
    /// The storage itself failed.
    Unavailable(String),
    /// A watcher fell too far behind the writers and was closed (the message says how
    /// far); watch again and re-read the state.
    Lagged(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::AlreadyExists => f.write_str("already exists"),
            Self::CompareFailed => f.write_str("revision does not match"),
            Self::Corrupt(e) => write!(f, "stored value is corrupt: {e}"),
            Self::Unavailable(e) => write!(f, "storage unavailable: {e}"),
            Self::Lagged(e) => write!(f, "watcher closed: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<BackendError> for StoreError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound { .. } => Self::NotFound,
            BackendError::AlreadyExists { .. } => Self::AlreadyExists,
            BackendError::CompareFailed { .. } => Self::CompareFailed,
            e @ BackendError::Lagged { .. } => Self::Lagged(e.to_string()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// A change to a stored resource, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A resource was written (created, updated or replaced).
    Put {
        /// Its kind.
        kind: Kind,
        /// The stored item.
        item: Item,
    },
    /// A resource was deleted (explicitly, or because it expired).
    Delete {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
    },
}

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The changes a [`Store::watch`] delivers, in commit order. It ends after an error
/// ([`StoreError::Lagged`] when the watcher fell behind) or when the store goes away.
pub type ChangeStream = BoxStream<'static, Result<Change, StoreError>>;

/// Resources by kind and name. Expired items are invisible to every call, and a
/// conditional write treats them as absent; the store's clock decides expiry.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// One resource.
    fn get(&self, kind: Kind, name: &str) -> StoreFuture<'_, Item>;
    /// Up to `limit` resources whose names sort at or after `start`, in name order.
    fn list(&self, kind: Kind, start: &str, limit: usize) -> StoreFuture<'_, Vec<Item>>;
    /// Stores a new resource; `AlreadyExists` if one has the name. Returns the
    /// revision.
    fn create(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> StoreFuture<'_, String>;
    /// Stores new resources of `kind`, given as (name, value, expiry), as
    /// [`create`](Self::create) would, in order; committed together where the backend
    /// commits to disk, acknowledged once as durable as `durability` asks. One result
    /// per resource (each fails alone); the outer error means none was stored. The
    /// default creates them one by one.
    fn create_many(
        &self,
        kind: Kind,
        items: Vec<(String, Vec<u8>, Option<i64>)>,
        _durability: tp_backend::Durability,
    ) -> StoreFuture<'_, Vec<Result<String, StoreError>>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(items.len());
            for (name, value, expires) in items {
                out.push(self.create(kind, &name, value, expires).await);
            }
            Ok(out)
        })
    }
    /// Stores a resource whatever was there. Returns the revision.
    fn put(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> StoreFuture<'_, String>;
    /// Replaces an existing resource, only at `expected_revision` when given. Returns
    /// the new revision.
    fn update(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        expected_revision: Option<&str>,
    ) -> StoreFuture<'_, String>;
    /// Deletes a resource; `NotFound` if absent.
    fn delete(&self, kind: Kind, name: &str) -> StoreFuture<'_, ()>;
    /// Every change committed after this call returns, in commit order, with no gap.
    /// A watcher that falls too far behind gets [`StoreError::Lagged`] and its stream
    /// ends.
    fn watch(&self) -> StoreFuture<'_, ChangeStream>;
}

fn to_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Seconds since the epoch as a time; before 1970 is the epoch (long expired).
fn from_secs(s: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

/// A [`Store`] on a [`tp_backend::Backend`] (see the module docs for the key layout).
#[derive(Debug, Clone)]
pub struct BackendStore {
    backend: Arc<dyn Backend>,
}

impl BackendStore {
    /// A store on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self { backend }
    }

    /// A store on a fresh [`tp_backend::MemoryBackend`] (tests; keeps nothing).
    pub fn memory() -> Self {
        Self::new(Arc::new(tp_backend::MemoryBackend::new()))
    }

    /// The backend underneath.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }
}

impl Store for BackendStore {
    fn get(&self, kind: Kind, name: &str) -> StoreFuture<'_, Item> {
        let key = kind.key(name);
        Box::pin(async move {
            let item = self.backend.get(&key).await?;
            Item::from_backend(item)
                .map(|(_, i)| i)
                .ok_or_else(|| StoreError::Corrupt("a stored key is not a resource key".into()))
        })
    }

    fn list(&self, kind: Kind, start: &str, limit: usize) -> StoreFuture<'_, Vec<Item>> {
        let prefix = kind.prefix();
        let start_key = (!start.is_empty()).then(|| kind.key(start));
        Box::pin(async move {
            let mut out = Vec::with_capacity(limit.min(1024));
            if limit == 0 {
                return Ok(out);
            }
            // `start` is inclusive and the backend's `start_after` is not: take the item
            // at `start` itself first.
            if let Some(k) = &start_key {
                match self.backend.get(k).await {
                    Ok(item) => out.extend(Item::from_backend(item).map(|(_, i)| i)),
                    Err(BackendError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let mut after = start_key;
            while out.len() < limit {
                let page = self
                    .backend
                    .range(&prefix, after.as_deref(), limit - out.len())
                    .await?;
                out.extend(
                    page.items
                        .into_iter()
                        .filter_map(Item::from_backend)
                        .map(|(_, i)| i),
                );
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            Ok(out)
        })
    }

    fn create(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> StoreFuture<'_, String> {
        let key = kind.key(name);
        Box::pin(async move {
            let rev = self
                .backend
                .create(&key, value, expires.map(from_secs))
                .await?;
            Ok(rev.to_string())
        })
    }

    fn create_many(
        &self,
        kind: Kind,
        items: Vec<(String, Vec<u8>, Option<i64>)>,
        durability: tp_backend::Durability,
    ) -> StoreFuture<'_, Vec<Result<String, StoreError>>> {
        let items = items
            .into_iter()
            .map(|(name, value, expires)| tp_backend::NewItem {
                key: kind.key(&name),
                value,
                expires: expires.map(from_secs),
            })
            .collect();
        Box::pin(async move {
            Ok(self
                .backend
                .create_many(items, durability)
                .await?
                .into_iter()
                .map(|r| r.map(|rev| rev.to_string()).map_err(StoreError::from))
                .collect())
        })
    }

    fn put(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> StoreFuture<'_, String> {
        let key = kind.key(name);
        Box::pin(async move {
            let rev = self
                .backend
                .put(&key, value, expires.map(from_secs))
                .await?;
            Ok(rev.to_string())
        })
    }

    fn update(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        expected_revision: Option<&str>,
    ) -> StoreFuture<'_, String> {
        let key = kind.key(name);
        let expected = expected_revision.map(|r| r.parse::<i64>().ok());
        Box::pin(async move {
            let expires = expires.map(from_secs);
            let rev = match expected {
                None => self.backend.update(&key, value, expires).await?,
                Some(Some(r)) => {
                    self.backend
                        .compare_and_swap(&key, r, value, expires)
                        .await?
                }
                // Not a revision this store ever issued: it cannot match, but a missing
                // item is still reported as missing.
                Some(None) => {
                    self.backend.get(&key).await?;
                    return Err(StoreError::CompareFailed);
                }
            };
            Ok(rev.to_string())
        })
    }

    fn delete(&self, kind: Kind, name: &str) -> StoreFuture<'_, ()> {
        let key = kind.key(name);
        Box::pin(async move {
            self.backend.delete(&key).await?;
            Ok(())
        })
    }

    fn watch(&self) -> StoreFuture<'_, ChangeStream> {
        Box::pin(async move {
            let watcher = self.backend.watch(None).await?;
            let stream = watcher.filter_map(|event| async move {
                match event {
                    Ok(Event::Put(item)) => {
                        Item::from_backend(item).map(|(kind, item)| Ok(Change::Put { kind, item }))
                    }
                    Ok(Event::Delete { key, .. }) => {
                        parse_key(&key).map(|(kind, name)| Ok(Change::Delete { kind, name }))
                    }
                    Err(e) => Some(Err(e.into())),
                }
            });
            Ok(stream.boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tp_backend::{ManualClock, MemoryBackend, Options};

    fn store_at(clock: &Arc<ManualClock>) -> BackendStore {
        BackendStore::new(Arc::new(MemoryBackend::with_options(
            Options::default()
                .with_clock(clock.clone())
                .with_sweep_interval(None),
        )))
    }

    #[tokio::test]
    async fn create_update_delete_and_expiry() {
        let clock = Arc::new(ManualClock::new(from_secs(0)));
        let s = store_at(&clock);
        let r1 = s
            .create(Kind::Role, "a", b"1".to_vec(), None)
            .await
            .unwrap();
        assert_eq!(
            s.create(Kind::Role, "a", b"x".to_vec(), None).await,
            Err(StoreError::AlreadyExists)
        );
        assert_eq!(
            s.update(Kind::Role, "a", b"2".to_vec(), None, Some("stale"))
                .await,
            Err(StoreError::CompareFailed)
        );
        assert_eq!(
            s.update(Kind::Role, "a", b"2".to_vec(), None, Some("999"))
                .await,
            Err(StoreError::CompareFailed)
        );
        assert_eq!(
            s.update(Kind::Role, "b", b"2".to_vec(), None, Some("stale"))
                .await,
            Err(StoreError::NotFound)
        );
        let r2 = s
            .update(Kind::Role, "a", b"2".to_vec(), None, Some(&r1))
            .await
            .unwrap();
        assert_ne!(r1, r2);
        assert_eq!(s.get(Kind::Role, "a").await.unwrap().value, b"2");
        assert_eq!(
            s.get(Kind::User, "a").await,
            Err(StoreError::NotFound),
            "kinds are separate"
        );
        s.delete(Kind::Role, "a").await.unwrap();
        assert_eq!(s.delete(Kind::Role, "a").await, Err(StoreError::NotFound));

        s.create(Kind::Token, "t", b"t".to_vec(), Some(100))
            .await
            .unwrap();
        clock.set(from_secs(99));
        let t = s.get(Kind::Token, "t").await.unwrap();
        assert_eq!(t.expires, Some(100));
        clock.set(from_secs(100));
        assert_eq!(
            s.get(Kind::Token, "t").await,
            Err(StoreError::NotFound),
            "expired"
        );
        s.create(Kind::Token, "t", b"again".to_vec(), None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn keys_are_kind_slash_name() {
        let s = BackendStore::memory();
        s.create(
            Kind::CertAuthority,
            "user/example.com",
            b"ca".to_vec(),
            None,
        )
        .await
        .unwrap();
        s.create(Kind::UserToken, "x", vec![], None).await.unwrap();
        let item = s
            .backend()
            .get(b"/cert_authority/user/example.com")
            .await
            .unwrap();
        assert_eq!(item.value, b"ca");
        assert_eq!(
            s.get(Kind::CertAuthority, "user/example.com")
                .await
                .unwrap()
                .name,
            "user/example.com"
        );
        assert!(
            s.list(Kind::User, "", 10).await.unwrap().is_empty(),
            "/user/ does not list /user_token/"
        );
    }

    #[tokio::test]
    async fn changes_are_published_in_order() {
        let s = BackendStore::memory();
        let mut rx = s.watch().await.unwrap();
        s.create(Kind::Role, "a", b"1".to_vec(), None)
            .await
            .unwrap();
        s.put(Kind::Role, "a", b"2".to_vec(), None).await.unwrap();
        let _ = s.create(Kind::Role, "a", b"x".to_vec(), None).await;
        s.backend()
            .put(b"/not-a-kind/x", vec![], None)
            .await
            .unwrap();
        s.delete(Kind::Role, "a").await.unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(rx.next().await.unwrap().unwrap());
        }
        assert!(matches!(&got[0], Change::Put { item, .. } if item.value == b"1"));
        assert!(matches!(&got[1], Change::Put { item, .. } if item.value == b"2"));
        assert_eq!(
            got[2],
            Change::Delete {
                kind: Kind::Role,
                name: "a".into()
            },
            "a failed write publishes nothing and foreign keys are skipped"
        );
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_closed_with_lagged() {
        let s = BackendStore::new(Arc::new(MemoryBackend::with_options(
            Options::default().with_watch_buffer(4),
        )));
        let mut rx = s.watch().await.unwrap();
        for i in 0..64 {
            s.put(Kind::Role, &format!("r{i}"), vec![], None)
                .await
                .unwrap();
        }
        let mut lagged = None;
        while let Some(c) = rx.next().await {
            if let Err(e) = c {
                lagged = Some(e);
            }
        }
        assert!(
            matches!(&lagged, Some(StoreError::Lagged(m)) if m.contains("behind")),
            "{lagged:?}"
        );
    }

    #[tokio::test]
    async fn list_pages_in_name_order() {
        let s = BackendStore::memory();
        for n in ["c", "a", "b", "d"] {
            s.create(Kind::Role, n, vec![], None).await.unwrap();
        }
        s.create(Kind::User, "aa", vec![], None).await.unwrap();
        let names = |v: Vec<Item>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
        assert_eq!(
            names(s.list(Kind::Role, "", 3).await.unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(s.list(Kind::Role, "c", 3).await.unwrap()),
            ["c", "d"],
            "the start is inclusive"
        );
        assert_eq!(
            names(s.list(Kind::Role, "bb", 1).await.unwrap()),
            ["c"],
            "a start that is not a name"
        );
        assert!(s.list(Kind::Role, "", 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn state_survives_reopening_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sqlite.db");
        let rev = {
            let s = BackendStore::new(Arc::new(
                tp_backend::SqliteBackend::open(&path).await.unwrap(),
            ));
            s.create(Kind::Role, "a", b"1".to_vec(), None)
                .await
                .unwrap()
        };
        let s = BackendStore::new(Arc::new(
            tp_backend::SqliteBackend::open(&path).await.unwrap(),
        ));
        let item = s.get(Kind::Role, "a").await.unwrap();
        assert_eq!((item.value.as_slice(), item.revision), (&b"1"[..], rev));
    }
}
