//! The conformance suite: the behaviour every [`Backend`] must have.
//!
//! Each public `async fn` checks one behaviour against fresh backends made by an
//! [`Open`] and panics (it is a test) with a message naming what differed.
//! [`conformance_tests!`](crate::conformance_tests) expands to one `#[test]` per
//! behaviour, so a new implementation joins with one line in its tests:
//!
//! ```
//! use std::sync::Arc;
//! use tp_backend::{Backend, MemoryBackend};
//!
//! tp_backend::conformance_tests!(|options| async move {
//!     Ok(Arc::new(MemoryBackend::with_options(options)) as Arc<dyn Backend>)
//! });
//! # fn main() {}
//! ```
//!
//! For a backend that needs files, implement [`Open`] on a type that owns a temporary
//! directory (see `tests/conformance.rs`).
//!
//! An [`Open`] must make a new, empty backend that honours the [`Options`] it is given:
//! the suite passes a [`ManualClock`] (to decide expiry without sleeping),
//! `sweep_interval: None` (so only [`Backend::sweep_expired`] deletes expired items),
//! and sometimes a small `history_limit` or `watch_buffer`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

use crate::backend::Backend;
use crate::clock::ManualClock;
use crate::error::{Error, ErrorKind, Result};
use crate::options::Options;
use crate::types::{Event, Item};
use crate::watch::Watcher;

/// Makes fresh, empty backends for the suite.
pub trait Open: Send + Sync {
    /// A new, empty backend with these options.
    fn open(&self, options: Options) -> BoxFuture<'_, Result<Arc<dyn Backend>>>;
}

impl<F, Fut> Open for F
where
    F: Fn(Options) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Arc<dyn Backend>>> + Send + 'static,
{
    fn open(&self, options: Options) -> BoxFuture<'_, Result<Arc<dyn Backend>>> {
        Box::pin(self(options))
    }
}

/// Runs one behaviour on a fresh two-worker tokio runtime (what the generated tests
/// call).
pub fn run(test: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(test),
        Err(e) => panic!("cannot start a tokio runtime for the conformance suite: {e}"),
    }
}

/// Expands to one `#[test]` per conformance behaviour, each opening backends with the
/// given [`Open`] expression (evaluated once per test).
#[macro_export]
macro_rules! conformance_tests {
    ($open:expr) => {
        $crate::conformance_tests!(@each $open;
            get_missing_is_not_found,
            put_then_get_round_trips,
            revisions_increase_across_keys,
            create_refuses_a_live_item,
            create_many_creates_in_order_and_fails_items_alone,
            reads_never_go_back_in_time,
            update_requires_a_live_item,
            compare_and_swap_checks_the_revision,
            compare_and_delete_checks_the_revision,
            delete_removes_and_reports_missing,
            failed_writes_change_nothing,
            range_selects_the_prefix_in_key_order,
            range_pages_with_start_after,
            delete_range_deletes_only_the_prefix,
            expired_items_are_invisible,
            sweep_deletes_expired_items_with_events,
            watch_delivers_live_events_in_order,
            watch_replays_history_then_live,
            watch_has_no_gap_or_duplicate_under_concurrent_writes,
            watch_from_compacted_history_fails,
            slow_watcher_lags_and_resumes,
            invalid_arguments_are_rejected,
            binary_keys_and_large_values,
            concurrent_creates_have_one_winner,
            concurrent_compare_and_swap_loses_no_update,
            error_messages_name_the_key,
        );
    };
    (@each $open:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::run(async {
                    let open = $open;
                    $crate::conformance::$name(&open).await;
                });
            }
        )*
    };
}

/// The clock's start: a fixed, recent instant.
fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    backend: Arc<dyn Backend>,
    clock: Arc<ManualClock>,
}

async fn setup_with(open: &dyn Open, f: impl FnOnce(Options) -> Options) -> Setup {
    let clock = Arc::new(ManualClock::new(epoch()));
    let options = Options::default()
        .with_clock(clock.clone())
        .with_sweep_interval(None);
    let backend = ok(open.open(f(options)).await, "open a backend");
    Setup { backend, clock }
}

async fn setup(open: &dyn Open) -> Setup {
    setup_with(open, |o| o).await
}

#[track_caller]
fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

#[track_caller]
fn fails<T: fmt::Debug>(r: Result<T>, kind: ErrorKind, what: &str) -> Error {
    match r {
        Err(e) if e.kind() == kind => e,
        Err(e) => panic!("{what}: expected {kind:?}, got: {e}"),
        Ok(v) => panic!("{what}: expected {kind:?}, got Ok({v:?})"),
    }
}

async fn next_event(w: &mut Watcher, what: &str) -> Event {
    match tokio::time::timeout(WAIT, w.recv()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("{what}: the watch failed: {e}"),
        Ok(None) => panic!("{what}: the watch ended"),
        Err(_) => panic!("{what}: no event within {WAIT:?}"),
    }
}

async fn assert_quiet(w: &mut Watcher, what: &str) {
    if let Ok(got) = tokio::time::timeout(Duration::from_millis(100), w.recv()).await {
        panic!("{what}: expected no event, got {got:?}");
    }
}

fn keys(items: &[Item]) -> Vec<Vec<u8>> {
    items.iter().map(|i| i.key.clone()).collect()
}

fn put_event(e: &Event) -> (&[u8], &[u8], i64) {
    match e {
        Event::Put(i) => (&i.key, &i.value, i.revision),
        Event::Delete { .. } => panic!("expected a put event, got {e:?}"),
    }
}

/// `get` of an absent key is `NotFound`.
pub async fn get_missing_is_not_found(open: &dyn Open) {
    let s = setup(open).await;
    fails(
        s.backend.get(b"/nope").await,
        ErrorKind::NotFound,
        "get /nope",
    );
    assert_eq!(ok(s.backend.current_revision().await, "revision"), 0);
}

/// A put is read back with its value, revision and expiry.
pub async fn put_then_get_round_trips(open: &dyn Open) {
    let s = setup(open).await;
    let expires = epoch() + Duration::new(60, 123_456_789);
    let rev = ok(
        s.backend.put(b"/a", b"one".to_vec(), Some(expires)).await,
        "put /a",
    );
    assert!(rev > 0, "the first revision is positive, got {rev}");
    let item = ok(s.backend.get(b"/a").await, "get /a");
    assert_eq!(
        item,
        Item {
            key: b"/a".to_vec(),
            value: b"one".to_vec(),
            revision: rev,
            expires: Some(expires),
        }
    );
    let rev2 = ok(s.backend.put(b"/a", b"two".to_vec(), None).await, "put /a");
    let item = ok(s.backend.get(b"/a").await, "get /a");
    assert_eq!(
        (item.value.as_slice(), item.revision, item.expires),
        (&b"two"[..], rev2, None)
    );
}

/// Every write takes the next revision of one counter shared by all keys.
pub async fn revisions_increase_across_keys(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let mut revs = vec![
        ok(b.put(b"/a", vec![], None).await, "put /a"),
        ok(b.create(b"/b", vec![], None).await, "create /b"),
        ok(b.update(b"/a", vec![1], None).await, "update /a"),
        ok(b.delete(b"/b").await, "delete /b"),
    ];
    let a = ok(b.get(b"/a").await, "get /a");
    revs.push(ok(
        b.compare_and_swap(b"/a", a.revision, vec![2], None).await,
        "cas /a",
    ));
    revs.push(ok(b.compare_and_delete(b"/a", revs[4]).await, "cad /a"));
    let first = revs[0];
    let want: Vec<i64> = (first..first + 6).collect();
    assert_eq!(revs, want, "each write takes the next revision");
    assert_eq!(ok(b.current_revision().await, "revision"), first + 5);
}

/// `create` fails on a live item and succeeds after it is deleted.
pub async fn create_refuses_a_live_item(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    ok(b.create(b"/c", b"1".to_vec(), None).await, "create /c");
    fails(
        b.create(b"/c", b"2".to_vec(), None).await,
        ErrorKind::AlreadyExists,
        "second create /c",
    );
    assert_eq!(ok(b.get(b"/c").await, "get /c").value, b"1");
    ok(b.delete(b"/c").await, "delete /c");
    ok(
        b.create(b"/c", b"3".to_vec(), None).await,
        "create /c again",
    );
    assert_eq!(ok(b.get(b"/c").await, "get /c").value, b"3");
}

/// `create_many` creates in order, one revision and event each, and an item whose key
/// is live (before the call or earlier in it) or invalid fails alone; both durabilities
/// store alike, and a synced batch after an unsynced one keeps the order.
pub async fn create_many_creates_in_order_and_fails_items_alone(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    ok(
        b.create(b"/m/c", b"old".to_vec(), None).await,
        "create /m/c",
    );
    let mut w = ok(b.watch(None).await, "watch");
    let item = |k: &[u8], v: &[u8]| crate::NewItem {
        key: k.to_vec(),
        value: v.to_vec(),
        expires: None,
    };
    let results = ok(
        b.create_many(
            vec![
                item(b"/m/a", b"1"),
                item(b"/m/b", b"2"),
                item(b"/m/a", b"again"),
                item(b"/m/c", b"new"),
                item(b"", b"no key"),
                item(b"/m/d", b"4"),
            ],
            crate::Durability::Process,
        )
        .await,
        "create_many",
    );
    assert_eq!(results.len(), 6, "one result per item");
    let [a, b2, a2, c, empty, d] =
        <[Result<i64>; 6]>::try_from(results).unwrap_or_else(|_| unreachable!("six results"));
    let ra = ok(a, "/m/a");
    let rb = ok(b2, "/m/b");
    fails(a2, ErrorKind::AlreadyExists, "/m/a twice");
    fails(c, ErrorKind::AlreadyExists, "live /m/c");
    fails(empty, ErrorKind::InvalidArgument, "empty key");
    let rd = ok(d, "/m/d");
    assert!(ra < rb && rb < rd, "revisions in order: {ra} {rb} {rd}");
    for (key, value, rev) in [
        (&b"/m/a"[..], &b"1"[..], ra),
        (b"/m/b", b"2", rb),
        (b"/m/c", b"old", 0),
        (b"/m/d", b"4", rd),
    ] {
        let got = ok(b.get(key).await, "get");
        assert_eq!(got.value, value, "{}", String::from_utf8_lossy(key));
        if rev > 0 {
            assert_eq!(got.revision, rev);
        }
    }
    let synced = ok(
        b.create_many(
            vec![item(b"/m/a", b"taken"), item(b"/m/e", b"5")],
            crate::Durability::Synced,
        )
        .await,
        "synced create_many",
    );
    let [a3, e] =
        <[Result<i64>; 2]>::try_from(synced).unwrap_or_else(|_| unreachable!("two results"));
    fails(a3, ErrorKind::AlreadyExists, "/m/a in a synced batch");
    let re = ok(e, "/m/e");
    assert!(rd < re, "a later batch gets a later revision: {rd} {re}");
    assert_eq!(ok(b.get(b"/m/e").await, "get /m/e").value, b"5");
    for (key, rev) in [
        (&b"/m/a"[..], ra),
        (b"/m/b", rb),
        (b"/m/d", rd),
        (b"/m/e", re),
    ] {
        let e = next_event(&mut w, "create_many event").await;
        assert_eq!(put_event(&e).0, key);
        assert_eq!(put_event(&e).2, rev);
    }
    assert_quiet(&mut w, "after create_many").await;
    assert!(
        ok(
            b.create_many(Vec::new(), crate::Durability::Synced).await,
            "empty create_many"
        )
        .is_empty(),
        "nothing to create"
    );
}

/// A `get` returns at least the value of every write that completed before it began,
/// while writes and reads of the same keys run concurrently (a backend that keeps
/// reads in memory must never serve what a committed write replaced).
pub async fn reads_never_go_back_in_time(open: &dyn Open) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let s = setup(open).await;
    let b = s.backend.clone();
    const WRITES: u64 = 300;
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (b, done) = (b.clone(), done.clone());
        tokio::spawn(async move {
            for i in 1..=WRITES {
                let key: &[u8] = if i % 2 == 0 { b"/t/even" } else { b"/t/odd" };
                ok(b.put(key, i.to_be_bytes().to_vec(), None).await, "put");
                if i % 7 == 0 {
                    ok(
                        b.delete(b"/t/gone").await.or_else(|e| match e.kind() {
                            ErrorKind::NotFound => Ok(0),
                            _ => Err(e),
                        }),
                        "delete /t/gone",
                    );
                } else {
                    ok(
                        b.put(b"/t/gone", i.to_be_bytes().to_vec(), None).await,
                        "put /t/gone",
                    );
                }
                done.store(i, Ordering::SeqCst);
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (b, done) = (b.clone(), done.clone());
            tokio::spawn(async move {
                let value = |item: Item| {
                    u64::from_be_bytes(item.value.try_into().unwrap_or_else(|_| panic!("8 bytes")))
                };
                loop {
                    let floor = done.load(Ordering::SeqCst);
                    if floor == WRITES {
                        return;
                    }
                    for key in [&b"/t/even"[..], b"/t/odd"] {
                        // The newest completed write of this key is floor or floor - 1.
                        let newest = if (floor % 2 == 0) == (key == b"/t/even") {
                            floor
                        } else {
                            floor.saturating_sub(1)
                        };
                        match b.get(key).await {
                            Ok(item) => {
                                let v = value(item);
                                assert!(v >= newest, "read {v} after write {newest} completed");
                            }
                            Err(e) if e.kind() == ErrorKind::NotFound => {
                                assert!(newest == 0, "{key:?} missing after write {newest}");
                            }
                            Err(e) => panic!("get: {e}"),
                        }
                    }
                    if floor > 0 && floor % 7 == 0 {
                        // Deleted at `floor` and not written again before the next write.
                        if let Ok(item) = b.get(b"/t/gone").await {
                            let v = value(item);
                            assert!(v > floor, "read {v} after its delete at {floor}");
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    ok(
        writer.await.map_err(|e| Error::invalid(e.to_string())),
        "writer",
    );
    for r in readers {
        ok(r.await.map_err(|e| Error::invalid(e.to_string())), "reader");
    }
}

/// `update` needs a live item.
pub async fn update_requires_a_live_item(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    fails(
        b.update(b"/u", b"1".to_vec(), None).await,
        ErrorKind::NotFound,
        "update of an absent key",
    );
    ok(b.put(b"/u", b"1".to_vec(), None).await, "put /u");
    let rev = ok(b.update(b"/u", b"2".to_vec(), None).await, "update /u");
    assert_eq!(ok(b.get(b"/u").await, "get /u").revision, rev);
}

/// `compare_and_swap` writes only at the expected revision.
pub async fn compare_and_swap_checks_the_revision(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    fails(
        b.compare_and_swap(b"/k", 1, b"x".to_vec(), None).await,
        ErrorKind::NotFound,
        "cas of an absent key",
    );
    let r1 = ok(b.put(b"/k", b"1".to_vec(), None).await, "put /k");
    let r2 = ok(
        b.compare_and_swap(b"/k", r1, b"2".to_vec(), None).await,
        "cas /k at its revision",
    );
    match fails(
        b.compare_and_swap(b"/k", r1, b"3".to_vec(), None).await,
        ErrorKind::CompareFailed,
        "cas /k at a stale revision",
    ) {
        Error::CompareFailed {
            key,
            expected,
            actual,
        } => assert_eq!((key.as_slice(), expected, actual), (&b"/k"[..], r1, r2)),
        e => panic!("unexpected {e}"),
    }
    assert_eq!(ok(b.get(b"/k").await, "get /k").value, b"2");
}

/// `compare_and_delete` deletes only at the expected revision.
pub async fn compare_and_delete_checks_the_revision(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    fails(
        b.compare_and_delete(b"/k", 1).await,
        ErrorKind::NotFound,
        "cad of an absent key",
    );
    let r1 = ok(b.put(b"/k", b"1".to_vec(), None).await, "put /k");
    let r2 = ok(b.put(b"/k", b"2".to_vec(), None).await, "put /k");
    fails(
        b.compare_and_delete(b"/k", r1).await,
        ErrorKind::CompareFailed,
        "cad at a stale revision",
    );
    let r3 = ok(b.compare_and_delete(b"/k", r2).await, "cad /k");
    assert!(r3 > r2);
    fails(b.get(b"/k").await, ErrorKind::NotFound, "get after cad");
}

/// `delete` removes the item; deleting it again is `NotFound`.
pub async fn delete_removes_and_reports_missing(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let r1 = ok(b.put(b"/d", vec![], None).await, "put /d");
    let r2 = ok(b.delete(b"/d").await, "delete /d");
    assert!(r2 > r1);
    fails(b.get(b"/d").await, ErrorKind::NotFound, "get after delete");
    fails(b.delete(b"/d").await, ErrorKind::NotFound, "second delete");
}

/// A failed write takes no revision and emits no event.
pub async fn failed_writes_change_nothing(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let rev = ok(b.put(b"/f", b"v".to_vec(), None).await, "put /f");
    let mut w = ok(b.watch(None).await, "watch");
    fails(
        b.create(b"/f", vec![], None).await,
        ErrorKind::AlreadyExists,
        "create",
    );
    fails(
        b.update(b"/g", vec![], None).await,
        ErrorKind::NotFound,
        "update",
    );
    fails(
        b.compare_and_swap(b"/f", rev + 100, vec![], None).await,
        ErrorKind::CompareFailed,
        "cas",
    );
    fails(b.delete(b"/g").await, ErrorKind::NotFound, "delete");
    fails(
        b.compare_and_delete(b"/f", rev + 100).await,
        ErrorKind::CompareFailed,
        "cad",
    );
    assert_eq!(ok(b.delete_range(b"/none/").await, "delete_range"), 0);
    assert_eq!(ok(b.sweep_expired().await, "sweep"), 0);
    assert_eq!(ok(b.current_revision().await, "revision"), rev);
    assert_quiet(&mut w, "after failed writes").await;
    let item = ok(b.get(b"/f").await, "get /f");
    assert_eq!((item.value.as_slice(), item.revision), (&b"v"[..], rev));
}

/// `range` returns exactly the keys under the prefix, bytewise ordered.
pub async fn range_selects_the_prefix_in_key_order(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let all: &[&[u8]] = &[
        b"/roles",
        b"/roles/",
        b"/roles/b",
        b"/roles/a",
        b"/roles/a/x",
        b"/roles0",
        b"/rolesx",
        b"/roles/\xff",
        b"/roles/\xff\xff",
        b"/users/a",
        b"\xff",
        b"\xff\xff\x00",
    ];
    for k in all {
        ok(b.put(k, k.to_vec(), None).await, "put");
    }
    let page = ok(b.range(b"/roles/", None, 100).await, "range /roles/");
    assert_eq!(
        keys(&page.items),
        [
            &b"/roles/"[..],
            b"/roles/a",
            b"/roles/a/x",
            b"/roles/b",
            b"/roles/\xff",
            b"/roles/\xff\xff"
        ]
        .map(<[u8]>::to_vec)
    );
    assert_eq!(page.next, None);
    assert!(
        page.items.iter().all(|i| i.value == i.key),
        "values match keys"
    );
    let page = ok(b.range(b"\xff", None, 100).await, "range 0xff");
    assert_eq!(
        keys(&page.items),
        [&b"\xff"[..], b"\xff\xff\x00"].map(<[u8]>::to_vec)
    );
    let page = ok(
        b.range(b"/roles/\xff", None, 100).await,
        "range /roles/0xff",
    );
    assert_eq!(keys(&page.items).len(), 2);
    let page = ok(b.range(b"", None, 100).await, "range everything");
    let mut want: Vec<Vec<u8>> = all.iter().map(|k| k.to_vec()).collect();
    want.sort();
    assert_eq!(keys(&page.items), want);
    let page = ok(b.range(b"/nothing", None, 100).await, "empty range");
    assert!(page.items.is_empty() && page.next.is_none());
}

/// Paging with `limit` and `start_after` visits every item once.
pub async fn range_pages_with_start_after(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    for i in 0..10 {
        ok(
            b.put(format!("/p/{i}").as_bytes(), vec![], None).await,
            "put",
        );
    }
    ok(b.put(b"/q", vec![], None).await, "put /q");
    let mut seen = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    let mut pages = 0;
    loop {
        let page = ok(b.range(b"/p/", after.as_deref(), 3).await, "range page");
        pages += 1;
        assert!(page.items.len() <= 3);
        seen.extend(keys(&page.items));
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), page.items.last().map(|i| &i.key));
                after = Some(next);
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    let want: Vec<Vec<u8>> = (0..10).map(|i| format!("/p/{i}").into_bytes()).collect();
    assert_eq!(seen, want);
    assert_eq!(pages, 4, "3 + 3 + 3 + 1");
    // An exact fit has no next page.
    let page = ok(b.range(b"/p/", Some(b"/p/6"), 3).await, "last page");
    assert_eq!((page.items.len(), page.next), (3, None));
    // start_after before the prefix starts at the prefix; after it, nothing.
    let page = ok(
        b.range(b"/p/", Some(b"/a"), 100).await,
        "start before prefix",
    );
    assert_eq!(page.items.len(), 10);
    let page = ok(
        b.range(b"/p/", Some(b"/z"), 100).await,
        "start after prefix",
    );
    assert!(page.items.is_empty());
    let page = ok(
        b.range(b"/p/", Some(b"/p/3x"), 100).await,
        "start between keys",
    );
    assert_eq!(
        page.items.first().map(|i| i.key.clone()),
        Some(b"/p/4".to_vec())
    );
}

/// `delete_range` deletes the prefix's items, one event each, and nothing else.
pub async fn delete_range_deletes_only_the_prefix(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    for k in [&b"/t/a"[..], b"/t/b", b"/t/c/d", b"/t", b"/tt", b"/u"] {
        ok(b.put(k, vec![], None).await, "put");
    }
    let before = ok(b.current_revision().await, "revision");
    let mut w = ok(b.watch(None).await, "watch");
    assert_eq!(ok(b.delete_range(b"/t/").await, "delete_range /t/"), 3);
    for (i, key) in [&b"/t/a"[..], b"/t/b", b"/t/c/d"].iter().enumerate() {
        let e = next_event(&mut w, "delete_range event").await;
        assert_eq!(
            e,
            Event::Delete {
                key: key.to_vec(),
                revision: before + 1 + i as i64
            }
        );
    }
    assert_eq!(ok(b.current_revision().await, "revision"), before + 3);
    let left = ok(b.range(b"", None, 100).await, "range");
    assert_eq!(
        keys(&left.items),
        [&b"/t"[..], b"/tt", b"/u"].map(<[u8]>::to_vec)
    );
    assert_eq!(ok(b.delete_range(b"").await, "delete everything"), 3);
    assert!(ok(b.range(b"", None, 100).await, "range").items.is_empty());
}

/// Expired items are invisible to reads and absent to conditional writes.
pub async fn expired_items_are_invisible(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let at = epoch() + Duration::from_secs(10);
    let rev = ok(b.put(b"/e/1", b"x".to_vec(), Some(at)).await, "put /e/1");
    ok(b.put(b"/e/2", b"y".to_vec(), None).await, "put /e/2");
    s.clock.set(at - Duration::from_nanos(1));
    assert_eq!(ok(b.get(b"/e/1").await, "get before expiry").revision, rev);
    s.clock.set(at);
    fails(b.get(b"/e/1").await, ErrorKind::NotFound, "get at expiry");
    let page = ok(b.range(b"/e/", None, 1).await, "range");
    assert_eq!(
        keys(&page.items),
        [b"/e/2".to_vec()],
        "expired items are skipped"
    );
    assert_eq!(page.next, None, "no next page for only expired items");
    fails(
        b.update(b"/e/1", vec![], None).await,
        ErrorKind::NotFound,
        "update",
    );
    fails(
        b.compare_and_swap(b"/e/1", rev, vec![], None).await,
        ErrorKind::NotFound,
        "cas",
    );
    fails(b.delete(b"/e/1").await, ErrorKind::NotFound, "delete");
    fails(
        b.compare_and_delete(b"/e/1", rev).await,
        ErrorKind::NotFound,
        "cad",
    );
    let rev2 = ok(
        b.create(b"/e/1", b"z".to_vec(), None).await,
        "create over expired",
    );
    assert_eq!(ok(b.get(b"/e/1").await, "get").revision, rev2);
    // An expiry already past at write time is stored but never visible.
    ok(
        b.put(b"/e/3", vec![], Some(epoch())).await,
        "put already expired",
    );
    fails(
        b.get(b"/e/3").await,
        ErrorKind::NotFound,
        "get already expired",
    );
}

/// The sweep deletes expired items with delete events, once.
pub async fn sweep_deletes_expired_items_with_events(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let at = epoch() + Duration::from_secs(5);
    ok(b.put(b"/s/b", vec![], Some(at)).await, "put /s/b");
    ok(b.put(b"/s/a", vec![], Some(at)).await, "put /s/a");
    ok(
        b.put(b"/s/c", vec![], Some(at + Duration::from_secs(5)))
            .await,
        "put /s/c",
    );
    ok(b.put(b"/s/d", vec![], None).await, "put /s/d");
    let mut w = ok(b.watch(None).await, "watch");
    let before = ok(b.current_revision().await, "revision");
    assert_eq!(ok(b.sweep_expired().await, "sweep before expiry"), 0);
    s.clock.set(at);
    assert_eq!(ok(b.sweep_expired().await, "sweep"), 2);
    assert_eq!(ok(b.sweep_expired().await, "second sweep"), 0);
    for (i, key) in [&b"/s/a"[..], b"/s/b"].iter().enumerate() {
        let e = next_event(&mut w, "sweep event").await;
        assert_eq!(
            e,
            Event::Delete {
                key: key.to_vec(),
                revision: before + 1 + i as i64
            },
            "expired keys are deleted in key order"
        );
    }
    assert_quiet(&mut w, "after the sweep").await;
    let page = ok(b.range(b"/s/", None, 10).await, "range");
    assert_eq!(keys(&page.items), [b"/s/c".to_vec(), b"/s/d".to_vec()]);
}

/// Live events arrive in revision order with their content.
pub async fn watch_delivers_live_events_in_order(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    ok(b.put(b"/before", vec![], None).await, "put /before");
    let start = ok(b.current_revision().await, "revision");
    let mut w = ok(b.watch(None).await, "watch");
    assert_eq!(
        w.position(),
        start,
        "a new watch starts at the current revision"
    );
    let expires = epoch() + Duration::from_secs(100);
    let r1 = ok(
        b.create(b"/w", b"1".to_vec(), Some(expires)).await,
        "create",
    );
    let r2 = ok(b.put(b"/w", b"2".to_vec(), None).await, "put");
    let r3 = ok(b.delete(b"/w").await, "delete");
    assert_eq!(
        next_event(&mut w, "first").await,
        Event::Put(Item {
            key: b"/w".to_vec(),
            value: b"1".to_vec(),
            revision: r1,
            expires: Some(expires),
        })
    );
    let e = next_event(&mut w, "second").await;
    assert_eq!(put_event(&e), (&b"/w"[..], &b"2"[..], r2));
    assert_eq!(
        next_event(&mut w, "third").await,
        Event::Delete {
            key: b"/w".to_vec(),
            revision: r3
        }
    );
    assert_eq!(w.position(), r3);
    assert_quiet(&mut w, "after the writes").await;
}

/// `watch(Some(r))` replays the events after `r`, then continues live; a watcher's
/// position resumes it exactly.
pub async fn watch_replays_history_then_live(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let mut revs = Vec::new();
    for i in 0..5u8 {
        revs.push(ok(b.put(&[b'/', b'h', i], vec![i], None).await, "put"));
    }
    let mut w = ok(b.watch(Some(revs[1])).await, "watch from the second write");
    for want in &revs[2..] {
        assert_eq!(next_event(&mut w, "replayed").await.revision(), *want);
    }
    let live = ok(b.delete(&[b'/', b'h', 0]).await, "delete");
    assert_eq!(next_event(&mut w, "live").await.revision(), live);
    // From zero: the whole (retained) history.
    let mut all = ok(b.watch(Some(0)).await, "watch from 0");
    assert_eq!(next_event(&mut all, "first").await.revision(), revs[0]);
    assert_eq!(next_event(&mut all, "second").await.revision(), revs[1]);
    let pos = all.position();
    drop(all);
    let mut resumed = ok(b.watch(Some(pos)).await, "resume");
    assert_eq!(
        next_event(&mut resumed, "resumed").await.revision(),
        revs[2]
    );
    // From the future: only what comes after it.
    let mut future = ok(b.watch(Some(live + 2)).await, "watch from the future");
    ok(b.put(b"/f1", vec![], None).await, "put");
    ok(b.put(b"/f2", vec![], None).await, "put");
    let r = ok(b.put(b"/f3", vec![], None).await, "put");
    assert_eq!(next_event(&mut future, "future").await.revision(), r);
}

/// Watches started while writers run see every revision once, in order.
pub async fn watch_has_no_gap_or_duplicate_under_concurrent_writes(open: &dyn Open) {
    let s = setup(open).await;
    let b = s.backend.clone();
    const N: i64 = 300;
    let writer = tokio::spawn(async move {
        for i in 0..N {
            let key = format!("/c/{}", i % 7);
            let r = if i % 5 == 4 {
                b.delete_range(key.as_bytes()).await.map(|_| ())
            } else {
                b.put(key.as_bytes(), i.to_le_bytes().to_vec(), None)
                    .await
                    .map(|_| ())
            };
            if let Err(e) = r {
                panic!("write {i}: {e}");
            }
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let b = &s.backend;
    let mut watchers = vec![ok(b.watch(Some(0)).await, "watch from 0")];
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
        watchers.push(ok(b.watch(None).await, "watch from now"));
        let pos = ok(b.current_revision().await, "revision") / 2;
        watchers.push(ok(b.watch(Some(pos)).await, "watch from the middle"));
    }
    if let Err(e) = writer.await {
        panic!("the writer failed: {e}");
    }
    let last = ok(b.current_revision().await, "revision");
    for (n, w) in watchers.iter_mut().enumerate() {
        let mut expect = w.position() + 1;
        while expect <= last {
            let e = next_event(w, &format!("watcher {n}")).await;
            assert_eq!(
                e.revision(),
                expect,
                "watcher {n}: revisions are dense and ordered"
            );
            expect += 1;
        }
        assert_quiet(w, &format!("watcher {n} after the last write")).await;
    }
}

/// A watch from before the retained history is `Compacted`; from inside it works.
pub async fn watch_from_compacted_history_fails(open: &dyn Open) {
    let s = setup_with(open, |o| o.with_history_limit(5)).await;
    let b = &s.backend;
    for i in 0..20u8 {
        ok(b.put(&[b'/', i], vec![], None).await, "put");
    }
    let last = ok(b.current_revision().await, "revision");
    match fails(b.watch(Some(1)).await, ErrorKind::Compacted, "watch from 1") {
        Error::Compacted {
            requested,
            compacted,
        } => assert_eq!((requested, compacted), (1, last - 5)),
        e => panic!("unexpected {e}"),
    }
    fails(
        b.watch(Some(last - 6)).await,
        ErrorKind::Compacted,
        "just too old",
    );
    let mut w = ok(b.watch(Some(last - 5)).await, "the oldest retained start");
    for r in last - 4..=last {
        assert_eq!(next_event(&mut w, "retained").await.revision(), r);
    }
    ok(b.watch(None).await, "watch from now");
}

/// A watcher that falls more than the watch buffer behind gets `Lagged` with its
/// position, the stream ends, and it resumes from that position.
pub async fn slow_watcher_lags_and_resumes(open: &dyn Open) {
    let s = setup_with(open, |o| o.with_watch_buffer(4)).await;
    let b = &s.backend;
    let mut w = ok(b.watch(None).await, "watch");
    let start = w.position();
    for i in 0..40u8 {
        ok(b.put(&[b'/', b'l', i], vec![i], None).await, "put");
    }
    let position = match tokio::time::timeout(WAIT, w.recv()).await {
        Ok(Some(Err(Error::Lagged { position, buffer }))) => {
            assert_eq!(buffer, 4);
            position
        }
        other => panic!("expected Lagged, got {other:?}"),
    };
    assert_eq!(position, start, "nothing was delivered before the lag");
    assert!(w.recv().await.is_none(), "the stream ends after Lagged");
    let mut resumed = ok(b.watch(Some(position)).await, "resume");
    for r in start + 1..=start + 40 {
        assert_eq!(next_event(&mut resumed, "resumed").await.revision(), r);
    }
}

/// Bad input is `InvalidArgument`, never a panic.
pub async fn invalid_arguments_are_rejected(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let inv = ErrorKind::InvalidArgument;
    fails(b.get(b"").await, inv, "get of an empty key");
    fails(b.put(b"", vec![], None).await, inv, "put of an empty key");
    fails(
        b.create(b"", vec![], None).await,
        inv,
        "create of an empty key",
    );
    fails(
        b.update(b"", vec![], None).await,
        inv,
        "update of an empty key",
    );
    fails(
        b.compare_and_swap(b"", 1, vec![], None).await,
        inv,
        "cas of an empty key",
    );
    fails(b.delete(b"").await, inv, "delete of an empty key");
    fails(
        b.compare_and_delete(b"", 1).await,
        inv,
        "cad of an empty key",
    );
    fails(b.range(b"/", None, 0).await, inv, "range with limit 0");
    fails(b.watch(Some(-1)).await, inv, "watch from -1");
    let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
    let e = fails(
        b.put(b"/x", vec![], Some(before_epoch)).await,
        inv,
        "expiry before 1970",
    );
    assert!(e.to_string().contains("\"/x\""), "names the key: {e}");
    let far = UNIX_EPOCH + Duration::from_secs(400 * 365 * 86_400);
    fails(
        b.put(b"/x", vec![], Some(far)).await,
        inv,
        "expiry after 2262",
    );
    assert_eq!(
        ok(b.current_revision().await, "revision"),
        0,
        "nothing was written"
    );
    let page = ok(
        b.range(b"/", None, usize::MAX).await,
        "range with a huge limit",
    );
    assert!(page.items.is_empty());
}

/// Keys and values are arbitrary bytes: non-UTF-8, NUL, empty and large values.
pub async fn binary_keys_and_large_values(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let key: &[u8] = b"/bin/\x00\xff\xfe\x80";
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    ok(b.put(key, big.clone(), None).await, "put a 1 MiB value");
    assert_eq!(ok(b.get(key).await, "get").value, big);
    ok(
        b.put(b"/bin/empty", vec![], None).await,
        "put an empty value",
    );
    assert_eq!(
        ok(b.get(b"/bin/empty").await, "get").value,
        Vec::<u8>::new()
    );
    let page = ok(b.range(b"/bin/", None, 10).await, "range");
    assert_eq!(keys(&page.items), [key.to_vec(), b"/bin/empty".to_vec()]);
    let e = fails(b.get(b"/bin/\xff\x00").await, ErrorKind::NotFound, "get");
    assert!(
        e.to_string().contains("/bin/\u{fffd}\\0"),
        "lossy key in message: {e}"
    );
}

/// Of concurrent creates of one key, exactly one succeeds.
pub async fn concurrent_creates_have_one_winner(open: &dyn Open) {
    let s = setup(open).await;
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let b = s.backend.clone();
            tokio::spawn(async move { b.create(b"/race", vec![i], None).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(_)) => wins += 1,
            Ok(Err(e)) if e.kind() == ErrorKind::AlreadyExists => {}
            Ok(Err(e)) => panic!("unexpected error: {e}"),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(ok(s.backend.current_revision().await, "revision"), 1);
}

/// Concurrent read-modify-write loops with compare-and-swap lose no update.
pub async fn concurrent_compare_and_swap_loses_no_update(open: &dyn Open) {
    let s = setup(open).await;
    ok(s.backend.put(b"/n", b"0".to_vec(), None).await, "put /n");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let b = s.backend.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    loop {
                        let item = b.get(b"/n").await?;
                        let n: u64 = String::from_utf8_lossy(&item.value).parse().unwrap_or(0);
                        let next = (n + 1).to_string().into_bytes();
                        match b.compare_and_swap(b"/n", item.revision, next, None).await {
                            Ok(_) => break,
                            Err(e) if e.kind() == ErrorKind::CompareFailed => continue,
                            Err(e) => return Err(e),
                        }
                    }
                }
                Ok::<(), Error>(())
            })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(r) => ok(r, "increment"),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    assert_eq!(ok(s.backend.get(b"/n").await, "get /n").value, b"40");
}

/// Error messages name the key and what was expected.
pub async fn error_messages_name_the_key(open: &dyn Open) {
    let s = setup(open).await;
    let b = &s.backend;
    let e = fails(b.get(b"/roles/admin").await, ErrorKind::NotFound, "get");
    assert!(e.to_string().contains("\"/roles/admin\" not found"), "{e}");
    let r = ok(b.create(b"/roles/admin", vec![], None).await, "create");
    let e = fails(
        b.create(b"/roles/admin", vec![], None).await,
        ErrorKind::AlreadyExists,
        "create",
    );
    assert!(
        e.to_string().contains("\"/roles/admin\" already exists"),
        "{e}"
    );
    let e = fails(
        b.compare_and_swap(b"/roles/admin", r + 7, vec![], None)
            .await,
        ErrorKind::CompareFailed,
        "cas",
    );
    let msg = e.to_string();
    assert!(
        msg.contains("\"/roles/admin\"")
            && msg.contains(&format!("expected revision {}", r + 7))
            && msg.contains(&format!("at revision {r}")),
        "{msg}"
    );
}
