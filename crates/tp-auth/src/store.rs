//! The Auth server's view of storage: resources by kind and name, each with an opaque
//! revision for conditional updates.
//!
//! [`Store`] is what the services use. [`MemoryStore`] implements it in memory (tests,
//! and a cluster that keeps nothing); a `tp-backend` backend (SQLite, etcd) sits under
//! it through an adapter, so the services never see keys or encodings.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use prost::Message;

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
}

impl Kind {
    /// Teleport's kind string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::User => "user",
            Self::Token => "token",
            Self::UserToken => "user_token",
            Self::CertAuthority => "cert_authority",
            Self::ClusterName => "cluster_name",
        }
    }
}

/// A stored resource: its protobuf bytes and revision.
#[derive(Debug, Clone, PartialEq, Eq)]
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

impl Item {
    /// Decodes the stored message.
    pub fn decode<M: Message + Default>(&self) -> Result<M, StoreError> {
        M::decode(self.value.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", self.name)))
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
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::AlreadyExists => f.write_str("already exists"),
            Self::CompareFailed => f.write_str("revision does not match"),
            Self::Corrupt(e) => write!(f, "stored value is corrupt: {e}"),
            Self::Unavailable(e) => write!(f, "storage unavailable: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

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
    /// A resource was deleted.
    Delete {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
    },
}

/// How many changes a watcher may fall behind before it is cut off.
pub const WATCH_BUFFER: usize = 1024;

/// A boxed store future.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Resources by kind and name. `now` is seconds since the epoch, passed in so expiry is
/// decided by the caller's clock.
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// One resource; expired items are not found.
    fn get(&self, kind: Kind, name: &str, now: i64) -> StoreFuture<'_, Item>;
    /// Up to `limit` resources whose names sort at or after `start`, in name order.
    fn list(&self, kind: Kind, start: &str, limit: usize, now: i64) -> StoreFuture<'_, Vec<Item>>;
    /// Stores a new resource; `AlreadyExists` if one (unexpired) has the name.
    fn create(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        now: i64,
    ) -> StoreFuture<'_, String>;
    /// Stores a resource whatever was there.
    fn put(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> StoreFuture<'_, String>;
    /// Replaces an existing resource, only at `expected_revision` when given.
    fn update(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        expected_revision: Option<&str>,
        now: i64,
    ) -> StoreFuture<'_, String>;
    /// Deletes a resource; `NotFound` if absent.
    fn delete(&self, kind: Kind, name: &str, now: i64) -> StoreFuture<'_, ()>;
    /// Every change from now on, in commit order. A receiver that falls more than
    /// [`WATCH_BUFFER`] changes behind gets `Lagged` and must start over.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change>;
}

#[derive(Debug, Default)]
struct Inner {
    items: BTreeMap<(Kind, String), Item>,
    next_revision: u64,
}

impl Inner {
    fn live(&self, kind: Kind, name: &str, now: i64) -> Option<&Item> {
        self.items
            .get(&(kind, name.to_string()))
            .filter(|i| i.expires.is_none_or(|e| e > now))
    }

    /// Stores a new version and returns it.
    fn store(&mut self, kind: Kind, name: &str, value: Vec<u8>, expires: Option<i64>) -> Item {
        self.next_revision += 1;
        let item = Item {
            name: name.to_string(),
            value,
            revision: format!("{:016x}", self.next_revision),
            expires,
        };
        self.items.insert((kind, name.to_string()), item.clone());
        item
    }
}

/// A [`Store`] in memory.
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    changes: tokio::sync::broadcast::Sender<Change>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            changes: tokio::sync::broadcast::channel(WATCH_BUFFER).0,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Inner) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A poisoned lock means another request panicked mid-update; refuse rather than
        // serve possibly half-written state.
        let mut g = self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("store lock poisoned".into()))?;
        f(&mut g)
    }

    /// Stores and announces a new version, under the lock so watchers see writes in
    /// commit order.
    fn write(
        &self,
        i: &mut Inner,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> String {
        let item = i.store(kind, name, value, expires);
        let revision = item.revision.clone();
        // No receivers is fine: nobody watches.
        let _ = self.changes.send(Change::Put { kind, item });
        revision
    }
}

impl Store for MemoryStore {
    fn get(&self, kind: Kind, name: &str, now: i64) -> StoreFuture<'_, Item> {
        let r = self.with(|i| i.live(kind, name, now).cloned().ok_or(StoreError::NotFound));
        Box::pin(async move { r })
    }

    fn list(&self, kind: Kind, start: &str, limit: usize, now: i64) -> StoreFuture<'_, Vec<Item>> {
        let r = self.with(|i| {
            Ok(i.items
                .range((kind, start.to_string())..)
                .filter(|((k, _), it)| *k == kind && it.expires.is_none_or(|e| e > now))
                .take(limit)
                .map(|(_, it)| it.clone())
                .collect())
        });
        Box::pin(async move { r })
    }

    fn create(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        now: i64,
    ) -> StoreFuture<'_, String> {
        let r = self.with(|i| {
            if i.live(kind, name, now).is_some() {
                return Err(StoreError::AlreadyExists);
            }
            Ok(self.write(i, kind, name, value, expires))
        });
        Box::pin(async move { r })
    }

    fn put(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
    ) -> StoreFuture<'_, String> {
        let r = self.with(|i| Ok(self.write(i, kind, name, value, expires)));
        Box::pin(async move { r })
    }

    fn update(
        &self,
        kind: Kind,
        name: &str,
        value: Vec<u8>,
        expires: Option<i64>,
        expected_revision: Option<&str>,
        now: i64,
    ) -> StoreFuture<'_, String> {
        let r = self.with(|i| {
            let current = i.live(kind, name, now).ok_or(StoreError::NotFound)?;
            if expected_revision.is_some_and(|rev| rev != current.revision) {
                return Err(StoreError::CompareFailed);
            }
            Ok(self.write(i, kind, name, value, expires))
        });
        Box::pin(async move { r })
    }

    fn delete(&self, kind: Kind, name: &str, now: i64) -> StoreFuture<'_, ()> {
        let r = self.with(|i| {
            if i.live(kind, name, now).is_none() {
                return Err(StoreError::NotFound);
            }
            i.items.remove(&(kind, name.to_string()));
            let _ = self.changes.send(Change::Delete {
                kind,
                name: name.to_string(),
            });
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_update_delete_and_expiry() {
        let s = MemoryStore::new();
        let r1 = s
            .create(Kind::Role, "a", b"1".to_vec(), None, 0)
            .await
            .unwrap();
        assert_eq!(
            s.create(Kind::Role, "a", b"x".to_vec(), None, 0).await,
            Err(StoreError::AlreadyExists)
        );
        assert_eq!(
            s.update(Kind::Role, "a", b"2".to_vec(), None, Some("stale"), 0)
                .await,
            Err(StoreError::CompareFailed)
        );
        let r2 = s
            .update(Kind::Role, "a", b"2".to_vec(), None, Some(&r1), 0)
            .await
            .unwrap();
        assert_ne!(r1, r2);
        assert_eq!(s.get(Kind::Role, "a", 0).await.unwrap().value, b"2");
        assert_eq!(
            s.get(Kind::User, "a", 0).await,
            Err(StoreError::NotFound),
            "kinds are separate"
        );
        s.delete(Kind::Role, "a", 0).await.unwrap();
        assert_eq!(
            s.delete(Kind::Role, "a", 0).await,
            Err(StoreError::NotFound)
        );

        s.create(Kind::Token, "t", b"t".to_vec(), Some(100), 0)
            .await
            .unwrap();
        assert!(s.get(Kind::Token, "t", 99).await.is_ok());
        assert_eq!(
            s.get(Kind::Token, "t", 100).await,
            Err(StoreError::NotFound),
            "expired"
        );
        s.create(Kind::Token, "t", b"again".to_vec(), None, 100)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn changes_are_published_in_order() {
        let s = MemoryStore::new();
        let mut rx = s.subscribe();
        s.create(Kind::Role, "a", b"1".to_vec(), None, 0)
            .await
            .unwrap();
        s.put(Kind::Role, "a", b"2".to_vec(), None).await.unwrap();
        let _ = s.create(Kind::Role, "a", b"x".to_vec(), None, 0).await;
        s.delete(Kind::Role, "a", 0).await.unwrap();
        let got: Vec<Change> = (0..3).map(|_| rx.try_recv().unwrap()).collect();
        assert!(matches!(&got[0], Change::Put { item, .. } if item.value == b"1"));
        assert!(matches!(&got[1], Change::Put { item, .. } if item.value == b"2"));
        assert_eq!(
            got[2],
            Change::Delete {
                kind: Kind::Role,
                name: "a".into()
            }
        );
        assert!(rx.try_recv().is_err(), "a failed write publishes nothing");
    }

    #[tokio::test]
    async fn list_pages_in_name_order() {
        let s = MemoryStore::new();
        for n in ["c", "a", "b", "d"] {
            s.create(Kind::Role, n, vec![], None, 0).await.unwrap();
        }
        s.create(Kind::User, "aa", vec![], None, 0).await.unwrap();
        let names = |v: Vec<Item>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
        assert_eq!(
            names(s.list(Kind::Role, "", 3, 0).await.unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(s.list(Kind::Role, "c", 3, 0).await.unwrap()),
            ["c", "d"],
            "the start is inclusive"
        );
    }
}
