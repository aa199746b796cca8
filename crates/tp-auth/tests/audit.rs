//! The audit log over real mutual TLS: a create, a denied create and a certificate
//! issuance each leave an event naming who, what, and how it ended.

use std::time::SystemTime;

use tp_auth::audit::start_at;
use tp_auth::ca::Issued;
use tp_client::ErrorKind;
use tp_proto::proto::UserCertsRequest;
use tp_proto::resource::{Resource, parse};
use tp_proto::types::{RoleV6, UserV2};
use tp_tests::cluster::TestCluster;

fn role(yaml: &str) -> RoleV6 {
    match parse(yaml, "t").unwrap().remove(0) {
        Resource::Role(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_denied_create_and_certificates_are_audited() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let since = start_at(SystemTime::now());
    let admin = c.admin().await;
    let admin_name = c
        .auth
        .list_audit_events("", 1000)
        .await
        .unwrap()
        .events
        .len();
    assert_eq!(admin_name, 0, "bootstrap audits nothing");

    // A create.
    admin
        .create_role(role(
            "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  allow:\n    rules: [{resources: [role], verbs: [read]}]\n",
        ))
        .await
        .unwrap();
    admin
        .create_user(UserV2::new("api-user", &["api-role"]))
        .await
        .unwrap();

    // GenerateUserCerts: the admin for api-user, then api-user for itself.
    let key = rcgen::KeyPair::generate().unwrap();
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: "api-user".into(),
            tls_public_key: key.public_key_pem().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap();
    let api = c
        .client(&Issued {
            cert_pem: String::from_utf8(certs.tls).unwrap(),
            key_pem: key.serialize_pem(),
        })
        .await;
    let key2 = rcgen::KeyPair::generate().unwrap();
    api.generate_user_certs(UserCertsRequest {
        tls_public_key: key2.public_key_pem().into_bytes(),
        ..Default::default()
    })
    .await
    .unwrap();

    // A denied create, and a denied impersonation.
    let denied = api
        .create_role(role(
            "kind: role\nversion: v7\nmetadata: {name: sneaky}\nspec: {}\n",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::AccessDenied);
    let impersonation = api
        .generate_user_certs(UserCertsRequest {
            username: "admin".into(),
            tls_public_key: key2.public_key_pem().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(impersonation.kind(), ErrorKind::AccessDenied);

    // A failed create (the role exists) is audited as a failure, too.
    let dup = admin
        .create_role(role(
            "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec: {}\n",
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);

    let page = c.auth.list_audit_events(&since, 1000).await.unwrap();
    assert_eq!(page.next, None);
    let got: Vec<_> = page
        .events
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.user.as_str(),
                e.kind.as_str(),
                e.name.as_str(),
                e.success,
            )
        })
        .collect();
    let admin_user = page.events[0].user.clone();
    assert!(!admin_user.is_empty(), "the admin's identity is named");
    let a = admin_user.as_str();
    assert_eq!(
        got,
        [
            ("role.created", a, "role", "api-role", true),
            ("user.create", a, "user", "api-user", true),
            ("cert.create", a, "user", "api-user", true),
            ("cert.create", "api-user", "user", "api-user", true),
            ("role.created", "api-user", "role", "sneaky", false),
            ("cert.create", "api-user", "user", "admin", false),
            ("role.created", a, "role", "api-role", false),
        ]
    );
    let denied_event = &page.events[4];
    assert!(
        denied_event.error.contains("access") || denied_event.error.contains("denied"),
        "the error is recorded: {denied_event:?}"
    );
    assert!(
        page.events[6].error.contains("already exists"),
        "{:?}",
        page.events[6]
    );
    assert!(page.events.iter().all(|e| e.cluster_name == "example.com"));
    assert!(
        page.events
            .windows(2)
            .all(|w| w[0].id < w[1].id && w[0].time <= w[1].time),
        "ordered by time"
    );
    // Events live in the backend under /audit/ and never expire.
    assert!(page.events.iter().all(|e| e.id.len() > 20));
}
