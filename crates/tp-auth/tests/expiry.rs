//! Join tokens and invite tokens expire as backend items: the backend's clock hides
//! them, its sweep deletes them and watchers see the deletion. And the audit log never
//! shows a join token's secret name.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use tp_auth::store::BackendStore;
use tp_backend::{Backend, ManualClock, MemoryBackend, Options};
use tp_client::{ErrorKind, UserTokenType};
use tp_proto::proto::{Operation, Watch, event::Resource as R};
use tp_proto::types::{Metadata, ProvisionTokenSpecV2, ProvisionTokenV2, WatchKind};
use tp_tests::cluster::TestCluster;

fn secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_with_their_backend_items() {
    let start = UNIX_EPOCH + Duration::from_secs(secs(SystemTime::now()) as u64);
    let clock = Arc::new(ManualClock::new(start));
    let backend = Arc::new(MemoryBackend::with_options(
        Options::default()
            .with_clock(clock.clone())
            .with_sweep_interval(None),
    ));
    let c = TestCluster::start_with(
        Arc::new(BackendStore::new(backend.clone())),
        "proxy.example.com:3080",
    )
    .await;
    let admin = c.admin().await;

    let expires = secs(start) + 600;
    admin
        .create_token(ProvisionTokenV2 {
            kind: "token".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: "0123456789abcdef".into(),
                expires: Some(prost_types::Timestamp {
                    seconds: expires,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            spec: Some(ProvisionTokenSpecV2 {
                roles: vec!["Node".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let item = backend.get(b"/token/0123456789abcdef").await.unwrap();
    assert_eq!(
        item.expires,
        Some(UNIX_EPOCH + Duration::from_secs(expires as u64))
    );

    admin
        .create_user(tp_proto::types::UserV2::new("alice", &["access"]))
        .await
        .unwrap();
    let invite = admin
        .create_reset_password_token("alice", UserTokenType::Invite, Duration::from_secs(3600))
        .await
        .unwrap();
    let id = invite.metadata.unwrap().name;
    let item = backend
        .get(format!("/user_token/{id}").as_bytes())
        .await
        .unwrap();
    // The Auth server dates the invite by the system clock, which may have moved on a
    // second or more since `start` on a busy machine.
    let expiry = item.expires.expect("the invite item expires");
    let ttl_from_start = expiry.duration_since(start).unwrap();
    assert!(
        (Duration::from_secs(3600)..Duration::from_secs(3660)).contains(&ttl_from_start),
        "the invite's TTL is the item's expiry: {ttl_from_start:?} after the test started"
    );

    let mut events = admin
        .watch_events(Watch {
            kinds: vec![WatchKind {
                kind: "token".into(),
                ..Default::default()
            }],
            allow_partial_success: false,
        })
        .await
        .unwrap();
    assert_eq!(
        events.next().await.unwrap().unwrap().r#type,
        Operation::Init as i32
    );

    // Ten minutes on: the join token is gone, the invite is not.
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        admin
            .get_token("0123456789abcdef")
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(admin.get_reset_password_token(&id).await.is_ok());
    assert_eq!(backend.sweep_expired().await.unwrap(), 1);
    let del = events.next().await.unwrap().unwrap();
    assert_eq!(del.r#type, Operation::Delete as i32);
    let Some(R::ResourceHeader(h)) = del.resource else {
        panic!("a DELETE carries a header")
    };
    assert_eq!(
        (h.kind.as_str(), h.metadata.unwrap().name.as_str()),
        ("token", "0123456789abcdef"),
        "the sweep's deletion reaches watchers"
    );

    // An hour on: the invite is gone too.
    clock.advance(Duration::from_secs(3100));
    assert_eq!(
        admin
            .get_reset_password_token(&id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // The audit log names the token only masked, and never the invite's id.
    let events = c.auth.list_audit_events("", 100).await.unwrap().events;
    let token_event = events
        .iter()
        .find(|e| e.event == "join_token.create")
        .unwrap();
    assert_eq!(token_event.name, "************cdef");
    let invite_event = events
        .iter()
        .find(|e| e.event == "reset_password_token.create")
        .unwrap();
    assert_eq!(invite_event.name, "alice");
    let all = format!("{events:?}");
    assert!(
        !all.contains("0123456789abcdef") && !all.contains(&id),
        "{all}"
    );
}
