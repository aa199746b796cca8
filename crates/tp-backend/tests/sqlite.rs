//! SQLite-specific behaviour: persistence across reopen, files and permissions, foreign
//! files, the background sweeper, use outside a runtime.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tp_backend::{Backend, ErrorKind, Event, ManualClock, Options, SqliteBackend};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn quiet_options(clock: Arc<ManualClock>) -> Options {
    Options::default()
        .with_clock(clock)
        .with_sweep_interval(None)
}

#[tokio::test]
async fn reopen_keeps_items_revisions_history_and_expiry() {
    let dir = tempdir();
    let path = dir.path().join("tp.db");
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000)));
    let expires = UNIX_EPOCH + Duration::new(2_000, 42);
    let (r1, r2) = {
        let b = SqliteBackend::open_with(&path, quiet_options(clock.clone()))
            .await
            .unwrap();
        let r1 = b.put(b"/a", b"1".to_vec(), Some(expires)).await.unwrap();
        let r2 = b.put(b"/b", b"2".to_vec(), None).await.unwrap();
        b.delete(b"/b").await.unwrap();
        (r1, r2)
    };
    let b = SqliteBackend::open_with(&path, quiet_options(clock.clone()))
        .await
        .unwrap();
    assert_eq!(b.path(), path);
    let a = b.get(b"/a").await.unwrap();
    assert_eq!(
        (a.value.as_slice(), a.revision, a.expires),
        (&b"1"[..], r1, Some(expires))
    );
    assert_eq!(b.get(b"/b").await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(b.current_revision().await.unwrap(), r2 + 1);
    assert_eq!(
        b.put(b"/c", vec![], None).await.unwrap(),
        r2 + 2,
        "revisions continue"
    );
    let mut w = b.watch(Some(0)).await.unwrap();
    let mut revs = Vec::new();
    for _ in 0..4 {
        revs.push(w.recv().await.unwrap().unwrap().revision());
    }
    assert_eq!(revs, [r1, r2, r2 + 1, r2 + 2], "history survives a reopen");
    clock.set(expires);
    assert_eq!(b.get(b"/a").await.unwrap_err().kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn compaction_survives_reopen() {
    let dir = tempdir();
    let path = dir.path().join("tp.db");
    let clock = Arc::new(ManualClock::new(UNIX_EPOCH));
    {
        let b = SqliteBackend::open_with(&path, quiet_options(clock.clone()).with_history_limit(3))
            .await
            .unwrap();
        for i in 0..10u8 {
            b.put(&[b'/', i], vec![], None).await.unwrap();
        }
    }
    let b = SqliteBackend::open_with(&path, quiet_options(clock).with_history_limit(100))
        .await
        .unwrap();
    let e = b.watch(Some(1)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Compacted, "{e}");
    let mut w = b.watch(Some(7)).await.unwrap();
    assert_eq!(w.recv().await.unwrap().unwrap().revision(), 8);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempdir();
    let path = dir.path().join("tp.db");
    std::fs::write(&path, "this is not an SQLite database\n".repeat(200)).unwrap();
    let e = SqliteBackend::open(&path).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Storage);
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not a database"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        "this is not an SQLite database\n".repeat(200).into_bytes(),
        "the file is left alone"
    );
}

#[tokio::test]
async fn another_programs_sqlite_database_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY);")
            .unwrap();
    }
    let msg = SqliteBackend::open(&path).await.unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("not a tp backend database"),
        "{msg}"
    );
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("DROP TABLE accounts; PRAGMA application_id = 7;")
            .unwrap();
    }
    let msg = SqliteBackend::open(&path).await.unwrap_err().to_string();
    assert!(msg.contains("application_id is 0x7"), "{msg}");
}

#[tokio::test]
async fn a_directory_at_the_path_is_a_clear_error() {
    let dir = tempdir();
    let msg = SqliteBackend::open(dir.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

#[cfg(unix)]
#[tokio::test]
async fn creates_the_file_0600_and_missing_directories_0700() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempdir();
    let path = dir.path().join("state/tp/tp.db");
    let b = SqliteBackend::open(&path).await.unwrap();
    b.put(b"/k", vec![], None).await.unwrap();
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&dir.path().join("state/tp")), 0o700);
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("state/tp/tp.db-wal");
    assert_eq!(
        mode(&wal),
        0o600,
        "SQLite gives its WAL the database's mode"
    );
}

#[tokio::test]
async fn the_background_sweeper_deletes_expired_items() {
    let dir = tempdir();
    let options = Options::default().with_sweep_interval(Some(Duration::from_millis(20)));
    let b = SqliteBackend::open_with(dir.path().join("tp.db"), options)
        .await
        .unwrap();
    let mut w = b.watch(None).await.unwrap();
    let expires = SystemTime::now() + Duration::from_millis(50);
    let rev = b.put(b"/ttl", vec![], Some(expires)).await.unwrap();
    assert!(matches!(w.recv().await, Some(Ok(Event::Put(_)))));
    let e = tokio::time::timeout(Duration::from_secs(10), w.recv())
        .await
        .expect("the sweeper deletes within 10s")
        .unwrap()
        .unwrap();
    assert_eq!(
        e,
        Event::Delete {
            key: b"/ttl".to_vec(),
            revision: rev + 1
        }
    );
}

#[test]
fn works_without_a_tokio_runtime() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    // Outside a runtime the work runs inline: the first poll completes.
    fn now<T>(f: impl Future<Output = T>) -> T {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("pending outside a runtime"),
        }
    }
    let dir = tempdir();
    let options = Options::default().with_sweep_interval(None);
    let b = SqliteBackend::open_blocking(dir.path().join("tp.db"), options).unwrap();
    let rev = now(b.put(b"/k", b"v".to_vec(), None)).unwrap();
    assert_eq!(now(b.get(b"/k")).unwrap().revision, rev);
    let b2 = now(SqliteBackend::open(dir.path().join("tp2.db"))).unwrap();
    assert_eq!(now(b2.current_revision()).unwrap(), 0);
}
