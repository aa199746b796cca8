//! WatchEvents is fed by the backend's watch: a watcher that stops reading is closed
//! with a clear LimitExceeded error once it falls more than the backend's watch buffer
//! behind, instead of the server buffering without limit.

use std::sync::Arc;

use futures_util::StreamExt as _;
use tp_auth::store::BackendStore;
use tp_backend::{MemoryBackend, Options};
use tp_client::ErrorKind;
use tp_proto::proto::{Operation, Watch};
use tp_proto::resource::{Resource, parse};
use tp_proto::types::WatchKind;
use tp_tests::cluster::TestCluster;

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_that_stops_reading_is_closed_with_a_clear_error() {
    let backend = MemoryBackend::with_options(Options::default().with_watch_buffer(8));
    let c = TestCluster::start_with(
        Arc::new(BackendStore::new(Arc::new(backend))),
        "proxy.example.com:3080",
    )
    .await;
    let admin = c.admin().await;
    let mut events = admin
        .watch_events(Watch {
            kinds: vec![WatchKind {
                kind: "role".into(),
                ..Default::default()
            }],
            allow_partial_success: false,
        })
        .await
        .unwrap();
    let init = events.next().await.unwrap().unwrap();
    assert_eq!(init.r#type, Operation::Init as i32);

    // Large roles fill the transport's windows quickly; then the backend's buffer.
    let description = "x".repeat(32 * 1024);
    for i in 0..400 {
        let Resource::Role(mut role) = parse(
            &format!("kind: role\nversion: v7\nmetadata: {{name: r{i}}}\nspec: {{}}\n"),
            "t",
        )
        .unwrap()
        .remove(0) else {
            unreachable!()
        };
        role.metadata.as_mut().unwrap().description = description.clone();
        admin.upsert_role(role).await.unwrap();
    }

    let mut puts = 0;
    let error = loop {
        match events.next().await {
            Some(Ok(e)) => {
                assert_eq!(e.r#type, Operation::Put as i32);
                puts += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("the stream ended without an error after {puts} events"),
        }
    };
    assert!(puts < 400, "the watcher was cut off ({puts} events)");
    assert_eq!(error.kind(), ErrorKind::LimitExceeded, "{error}");
    assert!(error.to_string().contains("fell too far behind"), "{error}");
}
