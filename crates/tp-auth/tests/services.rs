//! The Auth services over real mutual TLS, driven by tp-client: the seed's walkthrough
//! (an admin creates `api-role` and `api-user`; `api-user` may read its role and nothing
//! else), Teleport's error kinds, conditional updates, pagination and tokens.

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tp_auth::listener;
use tp_auth::service::AuthServer;
use tp_auth::store::BackendStore;
use tp_client::{Client, ErrorKind};
use tp_proto::proto::ListRolesRequest;
use tp_proto::proto::auth_service_server::AuthServiceServer;
use tp_proto::resource::{Resource, parse};
use tp_proto::teleport::clusterconfig::v1::cluster_config_service_server::ClusterConfigServiceServer;
use tp_proto::teleport::users::v1::users_service_server::UsersServiceServer;
use tp_proto::types::{Metadata, ProvisionTokenSpecV2, ProvisionTokenV2, RoleV6, UserV2};
use tp_tests::pki::{Ca, client_tls, connect};
use tp_transport::addr::HostPort;

struct Cluster {
    user_ca: Ca,
    host_ca: Ca,
    addr: HostPort,
}

impl Cluster {
    async fn start() -> Self {
        let user_ca = Ca::new("example.com");
        let host_ca = Ca::new("example.com");
        let (chain, key) = host_ca.server();
        let tls = listener::server_config(chain, key, vec![user_ca.der(), host_ca.der()]).unwrap();
        let auth = AuthServer::new(
            "example.com",
            Arc::new(BackendStore::memory()),
            vec![user_ca.der().to_vec()],
            vec![host_ca.der().to_vec()],
            tp_auth::service::system_clock(),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = HostPort {
            host: "127.0.0.1".into(),
            port: l.local_addr().unwrap().port(),
        };
        tokio::spawn(
            Server::builder()
                .add_service(AuthServiceServer::new(auth.clone()))
                .add_service(UsersServiceServer::new(auth.clone()))
                .add_service(ClusterConfigServiceServer::new(auth))
                .serve_with_incoming(listener::incoming(l, Arc::new(tls))),
        );
        Self {
            user_ca,
            host_ca,
            addr,
        }
    }

    async fn admin(&self) -> Client {
        connect(
            &self.addr,
            client_tls(
                &self.host_ca,
                Some(self.host_ca.identity("admin.example.com", "Admin", false)),
            ),
            "direct",
        )
        .await
        .unwrap()
    }

    async fn user(&self, name: &str, role: &str) -> Client {
        connect(
            &self.addr,
            client_tls(
                &self.host_ca,
                Some(self.user_ca.identity(name, role, false)),
            ),
            "direct",
        )
        .await
        .unwrap()
    }
}

fn role_from_yaml(yaml: &str) -> RoleV6 {
    match parse(yaml, "test").unwrap().remove(0) {
        Resource::Role(r) => r,
        other => panic!("{other:?}"),
    }
}

fn seed_role() -> RoleV6 {
    role_from_yaml(
        "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  allow:\n    rules: [{resources: [role], verbs: [read]}]\n",
    )
}

#[tokio::test]
async fn the_seed_walkthrough() {
    let c = Cluster::start().await;
    let admin = c.admin().await;
    let created = admin.create_role(seed_role()).await.unwrap();
    assert!(
        !created.metadata.as_ref().unwrap().revision.is_empty(),
        "the stored role carries a revision"
    );
    admin
        .create_user(UserV2::new("api-user", &["api-role"]))
        .await
        .unwrap();

    let api = c.user("api-user", "api-role").await;
    let role = api.get_role("api-role").await.unwrap();
    assert_eq!(role.spec.unwrap().allow.unwrap().rules[0].verbs, ["read"]);
    let e = api.get_users(false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(
        e.to_string(),
        r#"access denied to perform action "list" on "user""#
    );
    let e = api
        .create_role(role_from_yaml(
            "kind: role\nversion: v7\nmetadata: {name: sneaky}\nspec: {}\n",
        ))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied);
    // It may read the roles it holds, and (with read on role) others too.
    assert_eq!(
        api.get_role("nope").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(api.ping().await.unwrap().cluster_name, "example.com");
    assert_eq!(
        api.get_cluster_name()
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_name,
        "example.com"
    );
}

#[tokio::test]
async fn error_kinds_and_conditional_updates() {
    let c = Cluster::start().await;
    let admin = c.admin().await;
    let stored = admin.create_role(seed_role()).await.unwrap();
    let e = admin.create_role(seed_role()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(e.to_string(), r#"role "api-role" already exists"#);

    // Update at the current revision works once; the stale revision then fails.
    let mut next = stored.clone();
    next.spec.as_mut().unwrap().allow.as_mut().unwrap().logins = vec!["ops".into()];
    let updated = admin.update_role(next.clone()).await.unwrap();
    assert_ne!(
        updated.metadata.as_ref().unwrap().revision,
        stored.metadata.as_ref().unwrap().revision
    );
    let e = admin.update_role(next).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CompareFailed, "{e}");

    // A role in use cannot be deleted; a missing one is NotFound.
    admin
        .create_user(UserV2::new("api-user", &["api-role"]))
        .await
        .unwrap();
    assert_eq!(
        admin.delete_role("api-role").await.unwrap_err().kind(),
        ErrorKind::BadParameter
    );
    admin.delete_user("api-user").await.unwrap();
    admin.delete_role("api-role").await.unwrap();
    assert_eq!(
        admin.delete_role("api-role").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // A user whose role does not exist is refused.
    assert_eq!(
        admin
            .create_user(UserV2::new("x", &["ghost"]))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // An invalid role is a bad parameter.
    let mut bad = seed_role();
    bad.version = "v99".into();
    assert_eq!(
        admin.create_role(bad).await.unwrap_err().kind(),
        ErrorKind::BadParameter
    );
}

#[tokio::test]
async fn roles_page_and_upsert_returns_the_stored_role() {
    let c = Cluster::start().await;
    let admin = c.admin().await;
    for i in 0..7 {
        let mut r = seed_role();
        r.metadata.as_mut().unwrap().name = format!("role-{i}");
        admin.upsert_role(r).await.unwrap();
    }
    let page = admin
        .list_roles(ListRolesRequest {
            limit: 3,
            start_key: String::new(),
            filter: None,
        })
        .await
        .unwrap();
    assert_eq!(page.roles.len(), 3);
    assert_eq!(page.next_key, "role-3");
    let all = admin.get_roles().await.unwrap();
    assert_eq!(all.len(), 7);
}

#[tokio::test]
async fn join_tokens() {
    let c = Cluster::start().await;
    let admin = c.admin().await;
    let token = ProvisionTokenV2 {
        kind: "token".into(),
        version: "v2".into(),
        metadata: Some(Metadata {
            name: "6f1b2a7c".into(),
            ..Default::default()
        }),
        spec: Some(ProvisionTokenSpecV2 {
            roles: vec!["Node".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    admin.create_token(token.clone()).await.unwrap();
    assert_eq!(
        admin.create_token(token.clone()).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    let got = admin.get_token("6f1b2a7c").await.unwrap();
    assert_eq!(got.spec.unwrap().join_method, "token");
    assert_eq!(admin.get_tokens().await.unwrap().len(), 1);
    admin.delete_token("6f1b2a7c").await.unwrap();
    assert_eq!(
        admin.get_token("6f1b2a7c").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn invite_then_set_password_once() {
    use std::time::Duration;
    use tp_client::UserTokenType;
    use tp_proto::proto::ChangeUserAuthenticationRequest;

    let c = Cluster::start().await;
    let admin = c.admin().await;
    admin.create_role(seed_role()).await.unwrap();
    admin
        .create_user(UserV2::new("api-user", &["api-role"]))
        .await
        .unwrap();

    let e = admin
        .create_reset_password_token(
            "api-user",
            UserTokenType::Invite,
            Duration::from_secs(49 * 3600),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadParameter, "{e}");
    let token = admin
        .create_reset_password_token("api-user", UserTokenType::Invite, Duration::ZERO)
        .await
        .unwrap();
    let id = token.metadata.as_ref().unwrap().name.clone();
    let spec = token.spec.clone().unwrap();
    assert_eq!(token.sub_kind, "invite");
    assert_eq!(
        spec.url,
        format!("https://example.com:3080/web/invite/{id}")
    );
    let ttl =
        token.metadata.as_ref().unwrap().expires.unwrap().seconds - spec.created.unwrap().seconds;
    assert_eq!(ttl, 3600, "invites last an hour by default");

    // The proxy completes it; the token is looked up by possession of its ID.
    let proxy = connect(
        &c.addr,
        client_tls(
            &c.host_ca,
            Some(c.host_ca.identity("proxy-1.example.com", "Proxy", false)),
        ),
        "direct",
    )
    .await
    .unwrap();
    assert_eq!(
        proxy
            .get_reset_password_token(&id)
            .await
            .unwrap()
            .spec
            .unwrap()
            .user,
        "api-user"
    );
    let change = |pw: &str| ChangeUserAuthenticationRequest {
        token_id: id.clone(),
        new_password: pw.as_bytes().to_vec(),
        ..Default::default()
    };
    assert_eq!(
        proxy
            .change_user_authentication(change("short"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::BadParameter
    );
    proxy
        .change_user_authentication(change("a long enough password"))
        .await
        .unwrap();
    assert_eq!(
        proxy
            .change_user_authentication(change("a long enough password"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "a token works once"
    );

    let with_secrets = admin.get_user("api-user", true).await.unwrap();
    let hash = with_secrets.spec.unwrap().local_auth.unwrap().password_hash;
    assert!(String::from_utf8(hash).unwrap().starts_with("$argon2id$"));
    let without = admin.get_user("api-user", false).await.unwrap();
    assert!(
        without.spec.unwrap().local_auth.is_none(),
        "secrets only on request"
    );
    // The proxy may not read secrets.
    assert_eq!(
        proxy.get_user("api-user", true).await.unwrap_err().kind(),
        ErrorKind::AccessDenied
    );

    // A password reset clears the password until the new token is used.
    admin
        .create_reset_password_token("api-user", UserTokenType::Password, Duration::ZERO)
        .await
        .unwrap();
    let cleared = admin.get_user("api-user", true).await.unwrap();
    assert!(cleared.spec.unwrap().local_auth.is_none());
}

#[tokio::test]
async fn a_watcher_sees_init_then_puts_and_deletes() {
    use futures_util::StreamExt;
    use tp_proto::proto::{Operation, Watch, event::Resource as R};
    use tp_proto::types::WatchKind;

    let c = Cluster::start().await;
    let admin = c.admin().await;
    let watch = |kind: &str| Watch {
        kinds: vec![WatchKind {
            kind: kind.into(),
            ..Default::default()
        }],
        allow_partial_success: false,
    };
    let mut events = admin.watch_events(watch("role")).await.unwrap();
    let init = events.next().await.unwrap().unwrap();
    assert_eq!(init.r#type, Operation::Init as i32);
    let Some(R::WatchStatus(status)) = init.resource else {
        panic!("INIT carries the watch status")
    };
    assert_eq!(status.spec.unwrap().kinds[0].kind, "role");

    admin.create_role(seed_role()).await.unwrap();
    let put = events.next().await.unwrap().unwrap();
    assert_eq!(put.r#type, Operation::Put as i32);
    let Some(R::Role(r)) = put.resource else {
        panic!("a PUT carries the role")
    };
    assert_eq!(r.metadata.unwrap().name, "api-role");
    // Other kinds are not sent.
    admin
        .create_user(UserV2::new("someone", &["api-role"]))
        .await
        .unwrap();
    admin.delete_user("someone").await.unwrap();
    admin.delete_role("api-role").await.unwrap();
    let del = events.next().await.unwrap().unwrap();
    assert_eq!(del.r#type, Operation::Delete as i32);
    let Some(R::ResourceHeader(h)) = del.resource else {
        panic!("a DELETE carries a header")
    };
    assert_eq!(
        (h.kind.as_str(), h.metadata.unwrap().name.as_str()),
        ("role", "api-role")
    );

    // A user may not watch what it may not read; with partial success the kind is dropped.
    admin.create_role(seed_role()).await.unwrap();
    let api = c.user("api-user", "api-role").await;
    let refused = |r: tp_client::Result<_>| match r {
        Err(e) => e.kind(),
        Ok(_) => panic!("the watch must be refused"),
    };
    assert_eq!(
        refused(api.watch_events(watch("user")).await),
        ErrorKind::AccessDenied
    );
    let both = Watch {
        kinds: vec![
            WatchKind {
                kind: "user".into(),
                ..Default::default()
            },
            WatchKind {
                kind: "role".into(),
                ..Default::default()
            },
        ],
        allow_partial_success: true,
    };
    let mut events = api.watch_events(both).await.unwrap();
    let Some(R::WatchStatus(status)) = events.next().await.unwrap().unwrap().resource else {
        panic!()
    };
    let kinds: Vec<String> = status
        .spec
        .unwrap()
        .kinds
        .into_iter()
        .map(|k| k.kind)
        .collect();
    assert_eq!(kinds, ["role"]);
    assert_eq!(
        refused(
            api.watch_events(Watch {
                kinds: vec![],
                allow_partial_success: false
            })
            .await
        ),
        ErrorKind::AccessDenied
    );
}
