//! Reconnects: the Auth server is killed (its runtime shut down: every socket closed at
//! once) and started again on the same port and store. A client left idle carries on
//! with its next call, and a watcher resumes with a fresh INIT, nothing replayed twice.

use std::time::Duration;

use futures_util::StreamExt;
use tp_client::{Client, Config, ErrorKind, Target};
use tp_proto::proto::event::Resource as R;
use tp_proto::proto::{Event, Operation, Watch};
use tp_proto::types::{Metadata, RoleV6, WatchKind};
use tp_tests::cluster::RestartableCluster;

fn role(name: &str) -> RoleV6 {
    RoleV6 {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Some(Metadata {
            name: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn admin(rc: &RestartableCluster) -> Client {
    let c = rc.cluster();
    let target = Target::Direct {
        addr: rc.addr.clone(),
        tls: c.client_tls(&c.host_identity("Admin")),
        server_name: "teleport.cluster.local".into(),
        credential: "admin identity".into(),
    };
    Client::connect(
        Config::new()
            .target(target)
            .dial_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap()
}

/// The next event within 10 s, as (operation, role name or "").
async fn next(
    events: &mut (impl futures_util::Stream<Item = tp_client::Result<Event>> + Unpin),
) -> (Operation, String) {
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("an event, not an error");
    let op = Operation::try_from(ev.r#type).unwrap();
    let name = match ev.resource {
        Some(R::Role(r)) => r.metadata.unwrap().name,
        Some(R::ResourceHeader(h)) => h.metadata.unwrap().name,
        _ => String::new(),
    };
    (op, name)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_client_carries_on_after_a_restart() {
    let mut rc = RestartableCluster::start("proxy.example.com:3080").await;
    let client = admin(&rc).await;
    client.create_role(role("before")).await.unwrap();
    assert!(client.get_role("before").await.is_ok());

    // Down: reads are retried, then fail naming the attempt.
    rc.kill().await;
    let e = client.get_role("before").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionProblem, "{e}");
    assert!(
        e.to_string().contains(&format!(
            "{} via direct with admin identity: cannot connect",
            rc.addr
        )),
        "{e}"
    );

    // Up again on the same port: the same Client works, reads and writes.
    rc.restart().await;
    let r = client.get_role("before").await.unwrap();
    assert_eq!(r.metadata.unwrap().name, "before");
    client.create_role(role("after")).await.unwrap();
    assert_eq!(
        client
            .get_roles()
            .await
            .unwrap()
            .iter()
            .filter(|r| {
                let n = &r.metadata.as_ref().unwrap().name;
                n == "before" || n == "after"
            })
            .count(),
        2
    );

    // Killed and restarted while idle, with no call in between.
    rc.kill().await;
    rc.restart().await;
    assert_eq!(client.ping().await.unwrap().cluster_name, "example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_resumes_after_a_restart_with_a_fresh_init() {
    let mut rc = RestartableCluster::start("proxy.example.com:3080").await;
    let client = admin(&rc).await;
    let mut events = client
        .watch_events(Watch {
            kinds: vec![WatchKind {
                kind: "role".into(),
                ..Default::default()
            }],
            allow_partial_success: false,
        })
        .await
        .unwrap();
    assert_eq!(next(&mut events).await.0, Operation::Init);
    client.create_role(role("one")).await.unwrap();
    assert_eq!(next(&mut events).await, (Operation::Put, "one".into()));

    rc.kill().await;
    rc.restart().await;
    // The stream resubscribes by itself: a new INIT says "re-read the state", and
    // nothing from before the restart is delivered again.
    assert_eq!(next(&mut events).await.0, Operation::Init);
    client.create_role(role("two")).await.unwrap();
    client.delete_role("one").await.unwrap();
    assert_eq!(next(&mut events).await, (Operation::Put, "two".into()));
    assert_eq!(next(&mut events).await, (Operation::Delete, "one".into()));
    // Nothing else is pending.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), events.next())
            .await
            .is_err()
    );
}
