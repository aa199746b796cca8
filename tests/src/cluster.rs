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
        Self::start_on(store, web_proxy_addr, "127.0.0.1:0").await
    }

    /// As [`start_with`](Self::start_with), listening on `bind` (`127.0.0.1:0` for any
    /// free port).
    pub async fn start_on(store: Arc<dyn Store>, web_proxy_addr: &str, bind: &str) -> Self {
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
        let l = bind_retrying(bind).await;
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

    /// Creates user `name` holding `roles` and has the cluster sign certificates for a
    /// new key, valid for `ttl` seconds: an identity bundle as `tpctl auth sign` writes
    /// it (TLS and SSH certificates, the host CA for TLS and as `@cert-authority` lines).
    pub async fn identity_bundle(
        &self,
        name: &str,
        roles: &[&str],
        ttl: i64,
    ) -> tp_creds::IdentityBundle {
        let admin = self.admin().await;
        admin
            .create_user(tp_proto::types::UserV2::new(name, roles))
            .await
            .expect("create the user");
        let key = tp_creds::PrivateKey::generate(tp_creds::KeyAlgorithm::EcdsaP256).expect("a key");
        let spki = tp_creds::pem::encode(
            "PUBLIC KEY",
            &key.public_key_spki_der().expect("the public key"),
        );
        let ssh_pub = key
            .ssh_public_key()
            .expect("the SSH public key")
            .to_openssh()
            .expect("authorized_keys form");
        let certs = admin
            .generate_user_certs(tp_proto::proto::UserCertsRequest {
                username: name.into(),
                tls_public_key: spki.into_bytes(),
                ssh_public_key: ssh_pub.into_bytes(),
                expires: Some(prost_types::Timestamp {
                    seconds: now() + ttl,
                    nanos: 0,
                }),
                route_to_cluster: "example.com".into(),
                ..Default::default()
            })
            .await
            .expect("certificates");
        let text = |b: Vec<u8>| String::from_utf8(b).expect("text");
        let mut b = tp_creds::IdentityBundle::new(key);
        b.tls_cert = Some(text(certs.tls));
        b.ssh_cert = Some(text(certs.ssh));
        b.tls_cas = vec![text(self.host_ca_pem())];
        for k in certs.sshca_certs {
            b.ssh_cas.push(format!(
                "@cert-authority example.com,*.example.com {} type=host\n",
                text(k).trim()
            ));
        }
        b
    }

    /// Creates user `name` holding `roles` (as the admin) and issues a user certificate
    /// for them from the user CA, valid for an hour.
    pub async fn add_user(&self, name: &str, roles: &[&str]) -> Issued {
        self.admin()
            .await
            .create_user(tp_proto::types::UserV2::new(name, roles))
            .await
            .expect("create the user");
        let key = tp_creds::PrivateKey::generate(tp_creds::KeyAlgorithm::EcdsaP256).expect("a key");
        let cert_pem = tp_auth::usercert::UserCaSigner::new(&self.state.user_ca)
            .expect("the user CA")
            .issue_tls(
                &tp_auth::usercert::UserIdentity::new(
                    name,
                    roles.iter().map(|r| (*r).to_string()).collect(),
                    "example.com",
                ),
                &key.public_key_spki_der().expect("the public key"),
                now() - 60,
                now() + 3600,
            )
            .expect("a certificate");
        Issued {
            cert_pem,
            key_pem: key.to_pem().expect("PEM").to_string(),
        }
    }
}

/// Binds `addr`, retrying for a few seconds while the port is still held (a server just
/// killed may take a moment to release it).
async fn bind_retrying(addr: &str) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tries < 50 && e.kind() == std::io::ErrorKind::AddrInUse => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

/// A [`TestCluster`] that can be killed and started again on the same port with the
/// same store, for reconnect tests.
///
/// It runs in a tokio runtime of its own, so [`kill`](Self::kill) is a crash: the
/// runtime is shut down and every task with it — listener, open connections, watch
/// streams — and its sockets are closed at once, with no goodbye to the clients.
/// [`restart`](Self::restart) bootstraps again from the same store (same CAs, same
/// resources), so certificates issued before still work.
#[derive(Debug)]
pub struct RestartableCluster {
    store: Arc<dyn Store>,
    web_proxy_addr: String,
    /// Where it listens, the same across restarts.
    pub addr: HostPort,
    running: Option<(tokio::runtime::Runtime, TestCluster)>,
}

impl RestartableCluster {
    /// Starts cluster `example.com` on a fresh in-memory store and a free loopback port.
    pub async fn start(web_proxy_addr: &str) -> Self {
        let store: Arc<dyn Store> = Arc::new(BackendStore::memory());
        let (rt, cluster) = Self::spawn(store.clone(), web_proxy_addr, "127.0.0.1:0").await;
        Self {
            store,
            web_proxy_addr: web_proxy_addr.to_string(),
            addr: cluster.addr.clone(),
            running: Some((rt, cluster)),
        }
    }

    async fn spawn(
        store: Arc<dyn Store>,
        web_proxy_addr: &str,
        bind: &str,
    ) -> (tokio::runtime::Runtime, TestCluster) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the cluster");
        let (web, bind) = (web_proxy_addr.to_string(), bind.to_string());
        let cluster = rt
            .spawn(async move { TestCluster::start_on(store, &web, &bind).await })
            .await
            .expect("the cluster starts");
        (rt, cluster)
    }

    /// The running cluster. Panics while it is killed.
    pub fn cluster(&self) -> &TestCluster {
        &self.running.as_ref().expect("the cluster is running").1
    }

    /// Kills the server: every task and socket of it is gone when this returns.
    pub async fn kill(&mut self) {
        if let Some((rt, cluster)) = self.running.take() {
            drop(cluster);
            tokio::task::spawn_blocking(move || rt.shutdown_timeout(Duration::from_secs(5)))
                .await
                .expect("runtime shutdown");
        }
    }

    /// Starts the server again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill().await;
        let bind = self.addr.to_string();
        self.running = Some(Self::spawn(self.store.clone(), &self.web_proxy_addr, &bind).await);
    }
}

impl Drop for RestartableCluster {
    fn drop(&mut self) {
        // Dropping a runtime may block, which an async test may not do.
        if let Some((rt, cluster)) = self.running.take() {
            drop(cluster);
            rt.shutdown_background();
        }
    }
}
