//! Random operation sequences give identical results on the in-memory and the SQLite
//! backend: every return value, every error kind, the final contents and the full
//! event stream.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use tp_backend::{
    Backend, ErrorKind, Event, Item, ManualClock, MemoryBackend, Options, Page, SqliteBackend,
};

const KEYS: &[&[u8]] = &[
    b"/a",
    b"/a/b",
    b"/a/c",
    b"/b",
    b"/b/a",
    b"/ab",
    b"\xff",
    b"\xff\x00",
];
const PREFIXES: &[&[u8]] = &[b"", b"/", b"/a", b"/a/", b"/b/", b"\xff", b"/z"];

#[derive(Debug, Clone)]
enum Rev {
    /// The revision of the key's live item (0 if none).
    Current,
    Literal(i64),
}

#[derive(Debug, Clone)]
enum Op {
    Get(usize),
    Range(usize, Option<usize>, usize),
    Create(usize, u8, Option<u64>),
    Put(usize, u8, Option<u64>),
    Update(usize, u8, Option<u64>),
    Cas(usize, Rev, u8, Option<u64>),
    Delete(usize),
    Cad(usize, Rev),
    DeleteRange(usize),
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0..KEYS.len();
    let ttl = prop::option::weighted(0.4, 1..5u64);
    let rev = prop_oneof![3 => Just(Rev::Current), 1 => (0..30i64).prop_map(Rev::Literal)];
    prop_oneof![
        2 => key.clone().prop_map(Op::Get),
        2 => (0..PREFIXES.len(), prop::option::of(0..KEYS.len()), 1..4usize)
            .prop_map(|(p, a, l)| Op::Range(p, a, l)),
        3 => (key.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::Create(k, v, t)),
        4 => (key.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::Put(k, v, t)),
        2 => (key.clone(), any::<u8>(), ttl.clone()).prop_map(|(k, v, t)| Op::Update(k, v, t)),
        3 => (key.clone(), rev.clone(), any::<u8>(), ttl).prop_map(|(k, r, v, t)| Op::Cas(k, r, v, t)),
        2 => key.clone().prop_map(Op::Delete),
        2 => (key, rev).prop_map(|(k, r)| Op::Cad(k, r)),
        1 => (0..PREFIXES.len()).prop_map(Op::DeleteRange),
        2 => (1..4u64).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

#[derive(Debug, PartialEq)]
enum Out {
    Item(Item),
    Page(Page),
    Rev(i64),
    Count(u64),
}

type Res = Result<Out, ErrorKind>;

async fn apply(b: &dyn Backend, op: &Op, now: SystemTime, rev: i64) -> Res {
    let exp = |t: &Option<u64>| t.map(|s| now + Duration::from_secs(s));
    let r = match op {
        Op::Get(k) => b.get(KEYS[*k]).await.map(Out::Item),
        Op::Range(p, a, l) => b
            .range(PREFIXES[*p], a.map(|a| KEYS[a]), *l)
            .await
            .map(Out::Page),
        Op::Create(k, v, t) => b.create(KEYS[*k], vec![*v], exp(t)).await.map(Out::Rev),
        Op::Put(k, v, t) => b.put(KEYS[*k], vec![*v], exp(t)).await.map(Out::Rev),
        Op::Update(k, v, t) => b.update(KEYS[*k], vec![*v], exp(t)).await.map(Out::Rev),
        Op::Cas(k, _, v, t) => b
            .compare_and_swap(KEYS[*k], rev, vec![*v], exp(t))
            .await
            .map(Out::Rev),
        Op::Delete(k) => b.delete(KEYS[*k]).await.map(Out::Rev),
        Op::Cad(k, _) => b.compare_and_delete(KEYS[*k], rev).await.map(Out::Rev),
        Op::DeleteRange(p) => b.delete_range(PREFIXES[*p]).await.map(Out::Count),
        Op::Sweep => b.sweep_expired().await.map(Out::Count),
        Op::Advance(_) => return Ok(Out::Count(0)),
    };
    r.map_err(|e| e.kind())
}

async fn drain(b: &dyn Backend, w: &mut tp_backend::Watcher) -> Vec<Event> {
    let last = b.current_revision().await.unwrap();
    let mut events = Vec::new();
    while w.position() < last {
        let e = tokio::time::timeout(Duration::from_secs(10), w.recv())
            .await
            .expect("event within 10s")
            .expect("stream open")
            .expect("no error");
        events.push(e);
    }
    events
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let clock = Arc::new(ManualClock::new(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ));
        let options = Options::default()
            .with_clock(clock.clone())
            .with_sweep_interval(None);
        let dir = tempfile::tempdir().unwrap();
        let mem = MemoryBackend::with_options(options.clone());
        let sql = SqliteBackend::open_with(dir.path().join("tp.db"), options)
            .await
            .unwrap();
        let mut mem_w = mem.watch(Some(0)).await.unwrap();
        let mut sql_w = sql.watch(Some(0)).await.unwrap();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Advance(s) = op {
                clock.advance(Duration::from_secs(*s));
                continue;
            }
            let rev = match op {
                Op::Cas(k, r, ..) | Op::Cad(k, r) => match r {
                    Rev::Literal(n) => *n,
                    Rev::Current => mem.get(KEYS[*k]).await.map_or(0, |i| i.revision),
                },
                _ => 0,
            };
            let now = tp_backend::Clock::now(&*clock);
            let m = apply(&mem, op, now, rev).await;
            let s = apply(&sql, op, now, rev).await;
            prop_assert_eq!(&m, &s, "op {} {:?}", i, op);
        }
        let all_m = mem.range(b"", None, 1000).await.unwrap();
        let all_s = sql.range(b"", None, 1000).await.unwrap();
        prop_assert_eq!(all_m, all_s, "final contents");
        prop_assert_eq!(
            mem.current_revision().await.unwrap(),
            sql.current_revision().await.unwrap()
        );
        let em = drain(&mem, &mut mem_w).await;
        let es = drain(&sql, &mut sql_w).await;
        prop_assert_eq!(em, es, "event streams");
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_sqlite_agree(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
