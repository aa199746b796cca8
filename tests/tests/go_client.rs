//! Teleport's reference Go client against a tp Auth server: `client.New` with
//! `client.LoadKeyPair` over direct mutual TLS; the named cases are in
//! `tests/interop-go/cmd/clientcheck`. The admin identity creates the seed's role and
//! user; `api-user` can read its role and is denied the rest, with the error kinds Go's
//! `trace.Is*` recognise.

use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tp_auth::listener;
use tp_auth::service::{AuthServer, system_clock};
use tp_auth::store::MemoryStore;
use tp_proto::proto::auth_service_server::AuthServiceServer;
use tp_proto::teleport::clusterconfig::v1::cluster_config_service_server::ClusterConfigServiceServer;
use tp_proto::teleport::users::v1::users_service_server::UsersServiceServer;
use tp_tests::pki::{Ca, write_key_pair};

#[tokio::test(flavor = "multi_thread")]
async fn teleport_go_client_against_tp_auth() {
    let user_ca = Ca::new("example.com");
    let host_ca = Ca::new("example.com");
    let (chain, key) = host_ca.server();
    let tls = listener::server_config(chain, key, vec![user_ca.der(), host_ca.der()]).unwrap();
    let auth = AuthServer::new(
        "example.com",
        Arc::new(MemoryStore::new()),
        vec![user_ca.der().to_vec()],
        vec![host_ca.der().to_vec()],
        system_clock(),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(auth.clone()))
            .add_service(UsersServiceServer::new(auth.clone()))
            .add_service(ClusterConfigServiceServer::new(auth))
            .serve_with_incoming(listener::incoming(l, Arc::new(tls))),
    );

    let dir = tempfile::tempdir().unwrap();
    for (who, creds) in [
        (
            "admin",
            host_ca.identity("admin.example.com", "Admin", false),
        ),
        ("user", user_ca.identity("api-user", "api-role", false)),
    ] {
        let d = dir.path().join(who);
        std::fs::create_dir(&d).unwrap();
        write_key_pair(&d, &creds, &host_ca).unwrap();
        let path = |f: &str| d.join(f).to_string_lossy().into_owned();
        let (cert, key, ca) = (path("cert.pem"), path("key.pem"), path("ca.pem"));
        let addr = addr.clone();
        let who = who.to_string();
        // The Go program blocks; run it off the runtime that serves the cluster.
        let out = tokio::task::spawn_blocking(move || {
            tp_tests::run_go("clientcheck", &[&addr, &cert, &key, &ca, &who])
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
