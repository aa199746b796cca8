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
