//! A cluster that bootstrapped its own CAs: the Auth server's certificate and the local
//! admin identity come from its host CA, and the trust service hands out CAs with keys
//! only to callers that may read secrets.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tp_auth::bootstrap::bootstrap;
use tp_auth::ca::{self, Issued};
use tp_auth::listener;
use tp_auth::service::{AuthServer, system_clock};
use tp_auth::store::MemoryStore;
use tp_client::{Client, Config, ErrorKind, Target};
use tp_proto::proto::auth_service_server::AuthServiceServer;
use tp_proto::teleport::trust::v1::trust_service_server::TrustServiceServer;
use tp_transport::addr::HostPort;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn client(issued: &Issued, roots: &[Vec<u8>]) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(CertificateDer::from(r.clone())).unwrap();
    }
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_client_auth_cert(chain, key)
            .unwrap();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

#[tokio::test]
async fn trust_service_on_a_bootstrapped_cluster() {
    let store = Arc::new(MemoryStore::new());
    let state = bootstrap(store.as_ref(), Some("example.com"), now())
        .await
        .unwrap();
    let server = ca::issue_host(
        &state.host_ca,
        "auth.example.com",
        "Auth",
        &[
            "teleport.cluster.local".into(),
            "*.teleport.cluster.local".into(),
        ],
        now(),
        3600,
    )
    .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap();
    let cas: Vec<CertificateDer<'static>> = ca::tls_certs_der(&state.user_ca)
        .into_iter()
        .chain(ca::tls_certs_der(&state.host_ca))
        .map(CertificateDer::from)
        .collect();
    let tls = listener::server_config(chain, key, cas).unwrap();
    let auth = AuthServer::for_cluster(&state, store, system_clock());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(auth.clone()))
            .add_service(TrustServiceServer::new(auth))
            .serve_with_incoming(listener::incoming(l, Arc::new(tls))),
    );
    let host_roots = ca::tls_certs_der(&state.host_ca);
    let connect = |issued: Issued| {
        let target = Target::Direct {
            addr: addr.clone(),
            tls: client(&issued, &host_roots),
            server_name: "teleport.cluster.local".into(),
            credential: "test".into(),
        };
        Client::connect(
            Config::new()
                .target(target)
                .dial_timeout(Duration::from_secs(5)),
        )
    };

    let admin = connect(
        ca::issue_host(
            &state.host_ca,
            "admin.example.com",
            "Admin",
            &[],
            now(),
            3600,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let with_keys = admin
        .get_cert_authority("user", "example.com", true)
        .await
        .unwrap();
    assert!(
        !with_keys
            .spec
            .as_ref()
            .unwrap()
            .active_keys
            .as_ref()
            .unwrap()
            .tls[0]
            .key
            .is_empty(),
        "admin reads secrets"
    );
    assert_eq!(
        admin
            .get_cert_authorities("host", false)
            .await
            .unwrap()
            .len(),
        1
    );

    let proxy = connect(
        ca::issue_host(
            &state.host_ca,
            "proxy.example.com",
            "Proxy",
            &[],
            now(),
            3600,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let public = proxy
        .get_cert_authority("host", "example.com", false)
        .await
        .unwrap();
    let keys = public.spec.unwrap().active_keys.unwrap();
    assert!(
        keys.tls[0].key.is_empty() && keys.ssh[0].private_key.is_empty(),
        "no secrets without the right to read them"
    );
    assert!(!keys.tls[0].cert.is_empty());
    assert_eq!(
        proxy
            .get_cert_authority("host", "example.com", true)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AccessDenied
    );
    assert_eq!(
        proxy
            .get_cert_authority("host", "nope.example.com", false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn certificates_issued_by_the_cluster_log_a_user_in() {
    use tp_proto::proto::UserCertsRequest;
    use tp_proto::resource::{Resource, parse};
    use tp_proto::types::{Metadata, UserSpecV2, UserV2};
    use tp_proto::wrappers::{LabelValues, StringValues};

    let store = Arc::new(MemoryStore::new());
    let state = bootstrap(store.as_ref(), Some("example.com"), now())
        .await
        .unwrap();
    let server = ca::issue_host(
        &state.host_ca,
        "auth.example.com",
        "Auth",
        &["teleport.cluster.local".into()],
        now(),
        3600,
    )
    .unwrap();
    let cas: Vec<CertificateDer<'static>> = ca::tls_certs_der(&state.user_ca)
        .into_iter()
        .chain(ca::tls_certs_der(&state.host_ca))
        .map(CertificateDer::from)
        .collect();
    let tls = listener::server_config(
        vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).unwrap(),
        cas,
    )
    .unwrap();
    let auth = AuthServer::for_cluster(&state, store, system_clock());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(auth.clone()))
            .add_service(
                tp_proto::teleport::users::v1::users_service_server::UsersServiceServer::new(auth),
            )
            .serve_with_incoming(listener::incoming(l, Arc::new(tls))),
    );
    let host_roots = ca::tls_certs_der(&state.host_ca);
    let connect = |issued: Issued| {
        let target = Target::Direct {
            addr: addr.clone(),
            tls: client(&issued, &host_roots),
            server_name: "teleport.cluster.local".into(),
            credential: "test".into(),
        };
        Client::connect(
            Config::new()
                .target(target)
                .dial_timeout(Duration::from_secs(5)),
        )
    };
    let admin = connect(
        ca::issue_host(
            &state.host_ca,
            "admin.example.com",
            "Admin",
            &[],
            now(),
            3600,
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let Resource::Role(role) = parse(
        "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  options: {max_session_ttl: 2h}\n  allow:\n    logins: ['{{internal.logins}}', deploy]\n    rules: [{resources: [role], verbs: [read]}]\n",
        "t",
    )
    .unwrap()
    .remove(0) else {
        unreachable!()
    };
    admin.create_role(role).await.unwrap();
    let traits = LabelValues {
        values: [(
            "logins".to_string(),
            StringValues {
                values: vec!["api".into()],
            },
        )]
        .into(),
    };
    admin
        .create_user(UserV2 {
            kind: "user".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: "api-user".into(),
                ..Default::default()
            }),
            spec: Some(UserSpecV2 {
                roles: vec!["api-role".into()],
                traits: Some(traits),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();

    // The admin signs certificates for api-user's keys (as `tctl auth sign` does),
    // asking for 100 hours; the role caps them at 2.
    let tls_key = rcgen::KeyPair::generate().unwrap();
    let ssh_key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: "api-user".into(),
            tls_public_key: tls_key.public_key_pem().into_bytes(),
            ssh_public_key: ssh_key.public_key().to_openssh().unwrap().into_bytes(),
            expires: Some(prost_types::Timestamp {
                seconds: now() + 100 * 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let ssh_cert =
        ssh_key::Certificate::from_openssh(std::str::from_utf8(&certs.ssh).unwrap().trim())
            .unwrap();
    assert_eq!(
        ssh_cert.valid_principals(),
        ["api", "deploy", "-teleport-internal-join"],
        "traits expanded"
    );
    let lifetime = ssh_cert.valid_before() as i64 - now();
    assert!(
        (7000..=7300).contains(&lifetime),
        "capped at the role's 2h: {lifetime}"
    );
    assert_eq!(certs.tlsca_certs.len(), 1);

    // api-user logs in with them: may read its role, may not list users.
    let issued = Issued {
        cert_pem: String::from_utf8(certs.tls).unwrap(),
        key_pem: tls_key.serialize_pem(),
    };
    let api = connect(issued).await.unwrap();
    assert!(api.get_role("api-role").await.is_ok());
    assert_eq!(
        api.get_users(false).await.unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
    // It may renew its own certificates, not anybody else's.
    let own = UserCertsRequest {
        tls_public_key: tls_key.public_key_pem().into_bytes(),
        ..Default::default()
    };
    assert!(api.generate_user_certs(own.clone()).await.is_ok());
    let other = UserCertsRequest {
        username: "admin".into(),
        ..own
    };
    assert_eq!(
        api.generate_user_certs(other).await.unwrap_err().kind(),
        ErrorKind::AccessDenied
    );
}
