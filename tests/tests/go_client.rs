//! Teleport's reference Go client against a tp Auth server: `client.New` with
//! `client.LoadKeyPair` over direct mutual TLS; the named cases are in
//! `tests/interop-go/cmd/clientcheck`. The cluster bootstraps its own CAs. The local
//! admin identity creates the seed's role and user and has the cluster sign
//! certificates for a key pair the Go side generates; `api-user` then logs in with
//! those certificates, reads its role and is denied the rest, with the error kinds Go's
//! `trace.Is*` recognise.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tp_auth::bootstrap::bootstrap;
use tp_auth::ca;
use tp_auth::listener;
use tp_auth::service::{AuthServer, system_clock};
use tp_auth::store::MemoryStore;
use tp_proto::proto::auth_service_server::AuthServiceServer;
use tp_proto::teleport::clusterconfig::v1::cluster_config_service_server::ClusterConfigServiceServer;
use tp_proto::teleport::trust::v1::trust_service_server::TrustServiceServer;
use tp_proto::teleport::users::v1::users_service_server::UsersServiceServer;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[tokio::test(flavor = "multi_thread")]
async fn teleport_go_client_against_tp_auth() {
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
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(auth.clone()))
            .add_service(UsersServiceServer::new(auth.clone()))
            .add_service(TrustServiceServer::new(auth.clone()))
            .add_service(ClusterConfigServiceServer::new(auth))
            .serve_with_incoming(listener::incoming(l, Arc::new(tls))),
    );

    let dir = tempfile::tempdir().unwrap();
    let host_ca_pem = &state
        .host_ca
        .spec
        .as_ref()
        .unwrap()
        .active_keys
        .as_ref()
        .unwrap()
        .tls[0]
        .cert;
    std::fs::write(dir.path().join("ca.pem"), host_ca_pem).unwrap();
    let admin = ca::issue_host(
        &state.host_ca,
        "admin.example.com",
        "Admin",
        &[],
        now(),
        3600,
    )
    .unwrap();
    let admin_dir = dir.path().join("admin");
    let user_dir = dir.path().join("user");
    std::fs::create_dir(&admin_dir).unwrap();
    std::fs::create_dir(&user_dir).unwrap();
    std::fs::write(admin_dir.join("cert.pem"), &admin.cert_pem).unwrap();
    std::fs::write(admin_dir.join("key.pem"), &admin.key_pem).unwrap();

    let p = |d: &std::path::Path, f: &str| d.join(f).to_string_lossy().into_owned();
    let ca_path = p(dir.path(), "ca.pem");
    let runs = [
        vec![
            addr.clone(),
            p(&admin_dir, "cert.pem"),
            p(&admin_dir, "key.pem"),
            ca_path.clone(),
            "admin".into(),
            user_dir.to_string_lossy().into_owned(),
        ],
        // api-user logs in with the certificates the cluster issued to the Go side.
        vec![
            addr.clone(),
            p(&user_dir, "cert.pem"),
            p(&user_dir, "key.pem"),
            ca_path,
            "user".into(),
        ],
    ];
    for args in runs {
        // The Go program blocks; run it off the runtime that serves the cluster.
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tp_tests::run_go("clientcheck", &args)
        })
        .await
        .unwrap();
        let results: serde_json::Value =
            serde_json::from_str(&out).expect("clientcheck prints JSON");
        let cases = results.as_array().expect("a list of cases");
        assert!(cases.len() >= 3, "{out}");
        for c in cases {
            assert_eq!(c["ok"], true, "{c}");
            eprintln!(
                "go client case ok: {}",
                c["case"].as_str().unwrap_or_default()
            );
        }
    }
}
