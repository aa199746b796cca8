//! The audit log: one event per mutating call and per certificate issued, successful or
//! not, appended to the store under kind [`Kind::AuditEvent`] (backend keys
//! `/audit/<id>`).
//!
//! An event's id is its time in nanoseconds since the epoch, zero-padded to 20 digits,
//! then `-` and 8 hex digits drawn at random once per [`AuditLog`] (so that several Auth
//! servers sharing a backend never collide, while one log's times never repeat). Ids
//! therefore sort by time, and events never expire. Within one [`AuditLog`] times are
//! strictly increasing, so events of one server list in the order they were appended.
//! Values are JSON ([`AuditEvent`]), with Teleport's field names where Teleport has one
//! (`event`, `time`, `user`, `success`, `error`, `cluster_name`).
//!
//! One writer task stores the events: every append queued while it commits goes into
//! its next commit, and each append returns once its event is stored.
//!
//! How durable an event is before its append returns depends on what it records
//! ([`durability`]): an event recording a change of stored state (a role created, a
//! password set) is synced to disk as the change itself was; an event recording only
//! that something was issued or tried (`cert.create`, `user.login`, on every login and
//! renewal) is stored with [`Durability::Process`]: safe from a crash of the Auth
//! server at once, and on disk within about a second. That is what Teleport's own file
//! audit log gives every event (it writes without syncing).
//!
//! Secrets never reach the log: join-token names are masked ([`mask`]) and invite or
//! reset token ids are not recorded (the event names the user instead).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use tp_backend::Durability;

use crate::store::{Kind, Store, StoreError};

/// The most events one [`AuditLog::list`] call returns.
pub const MAX_AUDIT_PAGE: usize = 1000;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The event's id (its storage name); set by [`AuditLog::list`], not stored in the
    /// value.
    #[serde(skip)]
    pub id: String,
    /// What happened, in Teleport's event-type spelling: `role.created`,
    /// `user.delete`, `cert.create`, ...
    pub event: String,
    /// When, as RFC 3339 in UTC with nine fractional digits (so times sort as
    /// strings); set by [`AuditLog::append`].
    pub time: String,
    /// Who asked: the user name in the caller's certificate (a host identity's name for
    /// the built-in admin and proxy), or empty when the caller could not be identified.
    pub user: String,
    /// The kind of resource acted on (`role`, `user`, `token`, ...).
    pub kind: String,
    /// The resource's name (masked for join tokens).
    pub name: String,
    /// Whether the call succeeded.
    pub success: bool,
    /// Why it failed (empty on success).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// The cluster the event happened in.
    #[serde(default)]
    pub cluster_name: String,
}

impl AuditEvent {
    /// An event for `event` by `user` on `kind`/`name` that ended with `outcome`.
    pub fn new(
        event: &str,
        user: &str,
        kind: &str,
        name: &str,
        outcome: Result<(), String>,
    ) -> Self {
        let (success, error) = match outcome {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e),
        };
        Self {
            id: String::new(),
            event: event.into(),
            time: String::new(),
            user: user.into(),
            kind: kind.into(),
            name: name.into(),
            success,
            error,
            cluster_name: String::new(),
        }
    }
}

/// A page of [`AuditLog::list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditPage {
    /// The events, oldest first.
    pub events: Vec<AuditEvent>,
    /// When more follow: the id to pass as `start` for the next page.
    pub next: Option<String>,
}

/// Appends events to a store and lists them.
#[derive(Debug)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    cluster_name: String,
    last_nanos: AtomicI64,
    /// This log's random id suffix (hex).
    instance: String,
    /// The queue of the task that writes events in batches (started by the first
    /// append, so the log can be made outside a runtime).
    writer: std::sync::OnceLock<mpsc::Sender<Pending>>,
}

/// An event waiting for the writer: its id, its encoding, how durable it must be, and
/// who waits for the commit.
struct Pending {
    id: String,
    value: Vec<u8>,
    durability: Durability,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// How durable an event of type `event` must be before its append returns: events that
/// only record an issuance or an attempt (`cert.create`, `user.login`), written on
/// every login and certificate renewal, are [`Durability::Process`]; every other event
/// records a change of stored state and is [`Durability::Synced`] like the change.
pub fn durability(event: &str) -> Durability {
    match event {
        "cert.create" | "user.login" => Durability::Process,
        _ => Durability::Synced,
    }
}

/// How many times the writer lets other tasks run to gather appends for one commit,
/// while each turn brings more.
const MAX_GATHER_TURNS: usize = 8;

/// The most events one commit writes.
const MAX_BATCH: usize = 256;

/// The most events waiting for the writer; appends wait beyond it.
const MAX_QUEUED: usize = 4096;

/// Starts the task that writes queued events to `store`: every event waiting when it
/// looks (up to [`MAX_BATCH`]) in one [`Store::create_many`], so many calls share one
/// commit (and, on a backend that syncs commits to disk, one sync). Each append still
/// returns only once its event is stored, as durable as the most demanding event of
/// its batch asks.
fn start_writer(store: Arc<dyn Store>) -> mpsc::Sender<Pending> {
    let (tx, mut rx) = mpsc::channel::<Pending>(MAX_QUEUED);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            gather(&mut rx, &mut batch).await;
            let durability = batch_durability(&batch);
            let mut items = Vec::with_capacity(batch.len());
            let mut waiting = Vec::with_capacity(batch.len());
            for p in batch.drain(..) {
                items.push((p.id, p.value, None));
                waiting.push(p.done);
            }
            match store.create_many(Kind::AuditEvent, items, durability).await {
                Ok(results) => {
                    for (done, r) in waiting.into_iter().zip(results) {
                        let _ = done.send(r.map(|_| ()));
                    }
                }
                Err(e) => {
                    for done in waiting {
                        let _ = done.send(Err(e.clone()));
                    }
                }
            }
        }
    });
    tx
}

/// What a batch's commit must give: synced if any of its events asks for it.
fn batch_durability(batch: &[Pending]) -> Durability {
    if batch.iter().any(|p| p.durability == Durability::Synced) {
        Durability::Synced
    } else {
        Durability::Process
    }
}

/// Under load, more appends are on their way while the first of a batch arrives: lets
/// the tasks ready to run take a turn and adds what they queued, for as long as each
/// turn brings more (at most [`MAX_GATHER_TURNS`]). Alone, an append costs one turn.
async fn gather(rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>) {
    for _ in 0..MAX_GATHER_TURNS {
        if batch.len() >= MAX_BATCH {
            return;
        }
        tokio::task::yield_now().await;
        let before = batch.len();
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        if batch.len() == before {
            return;
        }
    }
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `t` (nanoseconds since the epoch) as RFC 3339 in UTC with all nine fractional
/// digits, so that times compare as strings.
fn rfc3339_nanos(t: i64) -> String {
    /// Appends `n`'s last `width` decimal digits.
    fn digits(out: &mut String, n: u32, width: u32) {
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
        }
    }
    // An i64 of nanoseconds is always within years 1677 to 2262.
    let Ok(d) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t)) else {
        return String::new();
    };
    // Written digit by digit: every certificate issuance stamps an event, and the
    // formatting machinery costs more than the arithmetic.
    let mut out = String::with_capacity(30);
    digits(&mut out, u32::try_from(d.year()).unwrap_or(0), 4);
    for (sep, n, width) in [
        ('-', u32::from(u8::from(d.month())), 2),
        ('-', u32::from(d.day()), 2),
        ('T', u32::from(d.hour()), 2),
        (':', u32::from(d.minute()), 2),
        (':', u32::from(d.second()), 2),
        ('.', d.nanosecond(), 9),
    ] {
        out.push(sep);
        digits(&mut out, n, width);
    }
    out.push('Z');
    out
}

/// Eight random hex digits naming one log among the Auth servers sharing a backend
/// (without randomness, the time alone: ids then stay unique within this server).
fn instance_suffix() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut b) {
        Ok(()) => hex::encode(b),
        Err(_) => {
            tracing::warn!("no randomness for the audit log's id suffix; using 00000000");
            "00000000".into()
        }
    }
}

/// The smallest id at or after `t`: pass it as `start` to list the events since `t`.
pub fn start_at(t: SystemTime) -> String {
    format!("{:020}", nanos(t))
}

/// Masks a secret name the way Teleport's audit log does: the first three quarters of
/// its characters become `*`.
pub fn mask(name: &str) -> String {
    let n = name.chars().count();
    let hidden = n * 3 / 4;
    name.chars()
        .enumerate()
        .map(|(i, c)| if i < hidden { '*' } else { c })
        .collect()
}

impl AuditLog {
    /// A log for cluster `cluster_name` in `store`.
    pub fn new(store: Arc<dyn Store>, cluster_name: impl Into<String>) -> Self {
        Self {
            store,
            cluster_name: cluster_name.into(),
            last_nanos: AtomicI64::new(0),
            instance: instance_suffix(),
            writer: std::sync::OnceLock::new(),
        }
    }

    /// A time after every time this log handed out before (nanoseconds).
    fn next_nanos(&self) -> i64 {
        let now = nanos(SystemTime::now());
        let prev = self
            .last_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last.saturating_add(1)))
            })
            .unwrap_or(now);
        now.max(prev.saturating_add(1))
    }

    /// Stamps `event` with the time and cluster and appends it; returns its id once it
    /// is stored, as durable as [`durability`] says for its type. Events appended
    /// together are committed together.
    pub async fn append(&self, mut event: AuditEvent) -> Result<String, StoreError> {
        let t = self.next_nanos();
        event.time = rfc3339_nanos(t);
        if event.cluster_name.is_empty() {
            event.cluster_name = self.cluster_name.clone();
        }
        let durability = durability(&event.event);
        let value = serde_json::to_vec(&event)
            .map_err(|e| StoreError::Unavailable(format!("encoding an audit event: {e}")))?;
        let id = format!("{t:020}-{}", self.instance);
        let (done, stored) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the audit log's writer stopped".into());
        self.writer
            .get_or_init(|| start_writer(self.store.clone()))
            .send(Pending {
                id: id.clone(),
                value,
                durability,
                done,
            })
            .await
            .map_err(|_| stopped())?;
        stored.await.map_err(|_| stopped())??;
        Ok(id)
    }

    /// Up to `limit` (at most [`MAX_AUDIT_PAGE`]) events with ids at or after `start`
    /// (all for an empty `start`; see [`start_at`] to start from a time), oldest first.
    pub async fn list(&self, start: &str, limit: usize) -> Result<AuditPage, StoreError> {
        let limit = limit.clamp(1, MAX_AUDIT_PAGE);
        let mut items = self.store.list(Kind::AuditEvent, start, limit + 1).await?;
        let next = (items.len() > limit)
            .then(|| items.pop().map(|i| i.name))
            .flatten();
        let mut events = Vec::with_capacity(items.len());
        for item in items {
            let mut e: AuditEvent = serde_json::from_slice(&item.value)
                .map_err(|e| StoreError::Corrupt(format!("audit event {}: {e}", item.name)))?;
            e.id = item.name;
            events.push(e);
        }
        Ok(AuditPage { events, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BackendStore;

    #[tokio::test]
    async fn events_list_in_order_and_page() {
        let log = AuditLog::new(Arc::new(BackendStore::memory()), "example.com");
        let before = start_at(SystemTime::now());
        for i in 0..5 {
            log.append(AuditEvent::new(
                "role.created",
                "admin",
                "role",
                &format!("r{i}"),
                if i == 3 { Err("denied".into()) } else { Ok(()) },
            ))
            .await
            .unwrap();
        }
        let page = log.list("", 3).await.unwrap();
        let names: Vec<_> = page.events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["r0", "r1", "r2"]);
        let rest = log.list(page.next.as_deref().unwrap(), 3).await.unwrap();
        assert_eq!(rest.events.len(), 2);
        assert_eq!(rest.next, None);
        let failed = &rest.events[0];
        assert_eq!((failed.success, failed.error.as_str()), (false, "denied"));
        assert_eq!(failed.cluster_name, "example.com");
        assert!(
            failed.time.ends_with('Z') && failed.time.len() > 20,
            "{}",
            failed.time
        );
        assert_eq!(log.list(&before, 10).await.unwrap().events.len(), 5);
        let later = start_at(SystemTime::now() + std::time::Duration::from_secs(60));
        assert!(log.list(&later, 10).await.unwrap().events.is_empty());
    }

    fn pending(durability: Durability) -> Pending {
        Pending {
            id: String::new(),
            value: Vec::new(),
            durability,
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn a_batch_is_synced_if_any_of_its_events_asks() {
        use Durability::{Process, Synced};
        assert_eq!(
            batch_durability(&[pending(Process), pending(Process)]),
            Process
        );
        assert_eq!(
            batch_durability(&[pending(Process), pending(Synced), pending(Process)]),
            Synced
        );
        assert_eq!(batch_durability(&[pending(Synced)]), Synced);
    }

    /// The writer waits for appends that ready tasks are about to make (some a few turns
    /// away), and alone it takes just what is there.
    #[tokio::test(flavor = "current_thread")]
    async fn gather_takes_the_appends_ready_tasks_are_making() {
        let (tx, mut rx) = mpsc::channel(64);
        for i in 0..10 {
            let tx = tx.clone();
            tokio::spawn(async move {
                for _ in 0..i % 3 {
                    tokio::task::yield_now().await;
                }
                let _ = tx.send(pending(Durability::Process)).await;
            });
        }
        let mut batch = vec![pending(Durability::Process)];
        gather(&mut rx, &mut batch).await;
        assert_eq!(batch.len(), 11, "the first and all ten on their way");

        let mut alone = vec![pending(Durability::Process)];
        gather(&mut rx, &mut alone).await;
        assert_eq!(alone.len(), 1, "nothing else was coming");
    }

    #[test]
    fn only_issuance_and_login_events_skip_the_disk_sync() {
        for event in ["cert.create", "user.login"] {
            assert_eq!(durability(event), Durability::Process, "{event}");
        }
        for event in [
            "role.created",
            "role.updated",
            "role.deleted",
            "user.create",
            "user.update",
            "user.delete",
            "user.password_change",
            "instance.join",
            "an.unknown_event",
        ] {
            assert_eq!(durability(event), Durability::Synced, "{event}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_each_stored_before_they_return() {
        let dir = tempfile::tempdir().unwrap();
        let backend = tp_backend::SqliteBackend::open(dir.path().join("audit.db"))
            .await
            .unwrap();
        let store: Arc<dyn Store> = Arc::new(BackendStore::new(Arc::new(backend)));
        let log = Arc::new(AuditLog::new(store.clone(), "example.com"));
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let (log, store) = (log.clone(), store.clone());
                tokio::spawn(async move {
                    let id = log
                        .append(AuditEvent::new(
                            "cert.create",
                            "alice",
                            "user",
                            &format!("u{i}"),
                            Ok(()),
                        ))
                        .await
                        .unwrap();
                    // Stored (and committed) by the time append returns.
                    store.get(Kind::AuditEvent, &id).await.unwrap();
                    id
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 300);
        let listed = log.list("", MAX_AUDIT_PAGE).await.unwrap().events;
        assert_eq!(listed.len(), 300);
        assert_eq!(
            listed.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
            ids,
            "listed in id (time) order"
        );
    }

    #[tokio::test]
    async fn two_logs_on_one_backend_never_collide() {
        let store: Arc<dyn Store> = Arc::new(BackendStore::memory());
        let (a, b) = (
            AuditLog::new(store.clone(), "example.com"),
            AuditLog::new(store.clone(), "example.com"),
        );
        // Same nanosecond on both servers: the ids differ by their logs' suffixes.
        a.last_nanos.store(i64::MAX - 10, Ordering::SeqCst);
        b.last_nanos.store(i64::MAX - 10, Ordering::SeqCst);
        let ev = || AuditEvent::new("cert.create", "alice", "user", "alice", Ok(()));
        let (ia, ib) = (a.append(ev()).await.unwrap(), b.append(ev()).await.unwrap());
        assert_eq!(ia[..20], ib[..20], "same time");
        assert_ne!(ia, ib);
        let again = a.append(ev()).await.unwrap();
        assert!(
            again > ia && again.ends_with(&ia[20..]),
            "{again} after {ia}"
        );
        assert_eq!(a.list("", 10).await.unwrap().events.len(), 3);
    }

    #[test]
    fn times_have_a_fixed_width() {
        assert_eq!(
            rfc3339_nanos(1_500_000_000),
            "1970-01-01T00:00:01.500000000Z"
        );
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339_nanos(i64::MAX), "2262-04-11T23:47:16.854775807Z");
        assert_eq!(rfc3339_nanos(i64::MIN), "1677-09-21T00:12:43.145224192Z");
    }

    #[test]
    fn mask_hides_three_quarters() {
        assert_eq!(mask("abcdefgh"), "******gh");
        assert_eq!(mask(""), "");
    }
}
