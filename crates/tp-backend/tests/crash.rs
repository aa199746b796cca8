//! Durability: a child process (this test binary, re-executed) makes acknowledged
//! writes and is killed with SIGKILL at a random point; the reopened database holds
//! every acknowledged write, those acknowledged with `Durability::Process` (not synced
//! to disk) included.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use tp_backend::{Backend, Durability, ErrorKind, NewItem, Options, SqliteBackend};

/// Set in the child: the database path.
const CHILD_DB: &str = "TP_BACKEND_CRASH_CHILD_DB";
/// Set in the child: the round, so keys never repeat across rounds.
const CHILD_ROUND: &str = "TP_BACKEND_CRASH_CHILD_ROUND";
const WRITERS: usize = 3;

fn value_for(key: &str) -> Vec<u8> {
    format!("value of {key} ").repeat(20).into_bytes()
}

/// The child: writes forever, printing `ACK PUT <key>` / `ACK DEL <key>` after each
/// acknowledged write (and `ACK TRY-DEL <key>` before a delete, which may or may not
/// survive a crash until it is acknowledged). A no-op unless the parent set [`CHILD_DB`].
#[test]
fn crash_child() {
    #[allow(
        clippy::disallowed_methods,
        reason = "the parent test selects the child role through the environment"
    )]
    let (Ok(path), Ok(round)) = (std::env::var(CHILD_DB), std::env::var(CHILD_ROUND)) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let options = Options::default().with_sweep_interval(None);
        let backend: Arc<dyn Backend> =
            Arc::new(SqliteBackend::open_with(&path, options).await.unwrap());
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let b = backend.clone();
                let round = round.clone();
                tokio::spawn(async move {
                    for i in 0..1_000_000u32 {
                        let key = format!("/crash/{round}/{w}/{i:07}");
                        if w == 0 {
                            // One writer's creates are acknowledged before any sync.
                            let item = NewItem {
                                key: key.clone().into_bytes(),
                                value: value_for(&key),
                                expires: None,
                            };
                            let created = b.create_many(vec![item], Durability::Process).await;
                            created.unwrap().pop().unwrap().unwrap();
                        } else {
                            b.put(key.as_bytes(), value_for(&key), None).await.unwrap();
                        }
                        ack("PUT", &key);
                        if i % 5 == 4 {
                            let old = format!("/crash/{round}/{w}/{:07}", i - 3);
                            // Announced first: once this is printed, a crash may or
                            // may not have deleted the key.
                            ack("TRY-DEL", &old);
                            b.delete(old.as_bytes()).await.unwrap();
                            ack("DEL", &old);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn ack(what: &str, key: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {what} {key}").unwrap();
    out.flush().unwrap();
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Put,
    Deleting,
    Deleted,
}

/// Runs one child until it has acknowledged `kill_after` writes, kills it, and records
/// every acknowledgement it printed.
fn crash_round(path: &Path, round: u32, kill_after: usize, acked: &mut BTreeMap<String, State>) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, path)
        .env(CHILD_ROUND, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    let mut killed = false;
    // Lines printed before the kill were acknowledged too: read to the end.
    for line in stdout.lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        match rest.split_once(' ') {
            Some(("PUT", key)) => acked.insert(key.to_string(), State::Put),
            Some(("TRY-DEL", key)) => acked.insert(key.to_string(), State::Deleting),
            Some(("DEL", key)) => acked.insert(key.to_string(), State::Deleted),
            _ => panic!("unexpected child output {line:?}"),
        };
        seen += 1;
        if seen == kill_after && !killed {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(
        killed,
        "the child exited ({status}) after {seen} acknowledgements"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status}");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tp.db");
    let mut acked = BTreeMap::new();
    for round in 0..4u32 {
        let kill_after = 20 + (RandomState::new().hash_one(round) % 500) as usize;
        crash_round(&path, round, kill_after, &mut acked);
        let backend =
            SqliteBackend::open_blocking(&path, Options::default().with_sweep_interval(None))
                .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for (key, state) in &acked {
                match (state, backend.get(key.as_bytes()).await) {
                    (State::Put, Ok(item)) => assert_eq!(item.value, value_for(key), "{key}"),
                    (State::Put, Err(e)) => {
                        panic!(
                            "round {round} (killed after {kill_after}): acknowledged put lost: {e}"
                        )
                    }
                    (State::Deleting, Ok(item)) => assert_eq!(item.value, value_for(key), "{key}"),
                    (State::Deleting | State::Deleted, Err(e))
                        if e.kind() == ErrorKind::NotFound => {}
                    (State::Deleting, Err(e)) => panic!("round {round}: reading {key}: {e}"),
                    (State::Deleted, r) => {
                        panic!("round {round}: acknowledged delete of {key} lost: {r:?}")
                    }
                }
            }
            let revision = backend.current_revision().await.unwrap();
            let writes = acked
                .values()
                .map(|s| if *s == State::Deleted { 2 } else { 1 })
                .sum::<i64>();
            assert!(
                revision >= writes,
                "revision {revision} < {writes} acknowledged writes"
            );
        });
        eprintln!(
            "round {round}: killed after {kill_after} acknowledgements; all {} acknowledged keys so far are as acknowledged",
            acked.len()
        );
    }
}
