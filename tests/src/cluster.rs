//! A real Auth server for tests: bootstrapped CAs, mutual TLS on a loopback port, every
//! service tp serves, and clients with identities its CAs issue.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tp_auth::bootstrap::{ClusterState, bootstrap};
use tp_auth::ca::{self, Issued};
use tp_auth::listener;
use tp_auth::service::{AuthServer, system_clock};
use tp_auth::store::{BackendStore, Store};
use tp_client::{Client, Config, Target};
use tp_transport::addr::HostPort;

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A running Auth server for cluster `example.com`.
#[derive(Debug)]
pub struct TestCluster {
    /// The cluster's name and CAs.
    pub state: ClusterState,
    /// Where the Auth server listens.
    pub addr: HostPort,
    /// The Auth server itself (for server-side calls such as
    /// [`AuthServer::list_audit_events`]).
    pub auth: AuthServer,
    server: tokio::task::JoinHandle<()>,
}

impl TestCluster {
    /// Bootstraps an in-memory cluster and serves it on a loopback port; invite URLs
    /// name `web_proxy_addr`.
    pub async fn start(web_proxy_addr: &str) -> Self {
        Self::start_with(Arc::new(BackendStore::memory()), web_proxy_addr).await
    }

    /// Bootstraps cluster `example.com` in `store` (or reuses what a previous start
    /// left there) and serves it on a loopback port.
    pub async fn start_with(store: Arc<dyn Store>, web_proxy_addr: &str) -> Self {
        let state = bootstrap(store.as_ref(), Some("example.com"), now())
            .await
            .expect("bootstrap");
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
        .expect("server certificate");
        let cas: Vec<CertificateDer<'static>> = ca::tls_certs_der(&state.user_ca)
            .into_iter()
            .chain(ca::tls_certs_der(&state.host_ca))
            .map(CertificateDer::from)
            .collect();
        let tls = listener::server_config(
            vec![CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).expect("cert PEM")],
            PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("key PEM"),
            cas,
        )
        .expect("server TLS");
        let auth = AuthServer::for_cluster(&state, store, system_clock())
            .with_web_proxy_addr(web_proxy_addr);
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = HostPort {
            host: "127.0.0.1".into(),
            port: l.local_addr().expect("local addr").port(),
        };
        let serve = tp_auth::server::serve(auth.clone(), listener::incoming(l, Arc::new(tls)));
        let server = tokio::spawn(async move {
            let _ = serve.await;
        });
        Self {
            state,
            addr,
            auth,
            server,
        }
    }

    /// Stops serving (connections already open end with their clients).
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }

    /// A host identity (`Admin`, `Proxy`, ...) from the cluster's host CA.
    pub fn host_identity(&self, system_role: &str) -> Issued {
        ca::issue_host(
            &self.state.host_ca,
            &format!("{}.example.com", system_role.to_lowercase()),
            system_role,
            &[],
            now(),
            3600,
        )
        .expect("host identity")
    }

    /// The host CA certificate (PEM), which clients trust.
    pub fn host_ca_pem(&self) -> Vec<u8> {
        self.state
            .host_ca
            .spec
            .as_ref()
            .and_then(|s| s.active_keys.as_ref())
            .and_then(|k| k.tls.first())
            .map(|k| k.cert.clone())
            .unwrap_or_default()
    }

    /// A client TLS configuration presenting `issued` and trusting the host CA.
    pub fn client_tls(&self, issued: &Issued) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for c in ca::tls_certs_der(&self.state.host_ca) {
            roots.add(CertificateDer::from(c)).expect("host CA");
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::pki::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert PEM")],
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key PEM"),
            )
            .expect("client TLS");
        tls.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(tls)
    }

    /// A connected client with `issued`'s identity.
    pub async fn client(&self, issued: &Issued) -> Client {
        let target = Target::Direct {
            addr: self.addr.clone(),
            tls: self.client_tls(issued),
            server_name: "teleport.cluster.local".into(),
            credential: "test".into(),
        };
        Client::connect(
            Config::new()
                .target(target)
                .dial_timeout(Duration::from_secs(5)),
        )
        .await
        .expect("connect to the test cluster")
    }

    /// A client as the local admin identity.
    pub async fn admin(&self) -> Client {
        self.client(&self.host_identity("Admin")).await
    }
}
