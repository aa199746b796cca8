//! A cluster on SQLite survives a restart: the same cluster name and CAs (so
//! certificates issued before the restart still work), and the roles and users created
//! before it.

use std::path::Path;
use std::sync::Arc;

use tp_auth::ca::Issued;
use tp_auth::store::{BackendStore, Store};
use tp_backend::SqliteBackend;
use tp_proto::proto::UserCertsRequest;
use tp_proto::resource::{Resource, parse};
use tp_proto::types::UserV2;
use tp_tests::cluster::TestCluster;

async fn open(path: &Path) -> Arc<dyn Store> {
    Arc::new(BackendStore::new(Arc::new(
        SqliteBackend::open(path).await.unwrap(),
    )))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_from_the_same_database_keeps_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("backend/sqlite.db");

    let c = TestCluster::start_with(open(&db).await, "proxy.example.com:3080").await;
    let admin = c.admin().await;
    let Resource::Role(role) = parse(
        "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  allow:\n    rules: [{resources: [role], verbs: [read]}]\n",
        "t",
    )
    .unwrap()
    .remove(0) else {
        unreachable!()
    };
    admin.create_role(role).await.unwrap();
    admin
        .create_user(UserV2::new("api-user", &["api-role"]))
        .await
        .unwrap();
    let role_before = admin.get_role("api-role").await.unwrap();
    let user_before = admin.get_user("api-user", false).await.unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: "api-user".into(),
            tls_public_key: key.public_key_pem().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap();
    let api_user = Issued {
        cert_pem: String::from_utf8(certs.tls).unwrap(),
        key_pem: key.serialize_pem(),
    };
    let state_before = c.state.clone();
    drop(admin);
    c.stop().await;

    // A new store on the same file, as a restarted tpd opens it.
    let c = TestCluster::start_with(open(&db).await, "proxy.example.com:3080").await;
    assert_eq!(c.state.name, state_before.name);
    assert_eq!(
        c.state.user_ca, state_before.user_ca,
        "the user CA (with its keys) is reused"
    );
    assert_eq!(c.state.host_ca, state_before.host_ca);
    let admin = c.admin().await;
    assert_eq!(admin.get_role("api-role").await.unwrap(), role_before);
    assert_eq!(
        admin.get_user("api-user", false).await.unwrap(),
        user_before
    );
    assert!(
        admin.get_role("editor").await.is_ok(),
        "the presets are still there"
    );

    // The certificate issued before the restart still identifies api-user.
    let user = c.client(&api_user).await;
    assert_eq!(
        user.get_role("api-role")
            .await
            .unwrap()
            .metadata
            .unwrap()
            .name,
        "api-role"
    );
    assert_eq!(
        user.get_users(false).await.unwrap_err().kind(),
        tp_client::ErrorKind::AccessDenied
    );

    // And the audit log kept what happened before the restart.
    let events = c.auth.list_audit_events("", 100).await.unwrap().events;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.event.as_str(), e.name.as_str()))
        .collect();
    assert!(
        seen.starts_with(&[
            ("role.created", "api-role"),
            ("user.create", "api-user"),
            ("cert.create", "api-user")
        ]),
        "{seen:?}"
    );
}
