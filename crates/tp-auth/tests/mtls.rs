//! The Auth server's mutual-TLS listener and identity decoding over real sockets:
//! who gets in, who is refused, and what the server learns about the caller.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tp_auth::identity;
use tp_auth::listener::{self, PeerInfo};
use tp_client::{Client, Config, Target};
use tp_proto::proto::auth_service_server::{AuthService, AuthServiceServer};
use tp_proto::proto::{PingRequest, PingResponse};
use tp_transport::addr::HostPort;
use tp_transport::alpn;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(cluster: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cluster);
        dn.push(DnType::OrganizationName, cluster);
        p.distinguished_name = dn;
        Self {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf with a Teleport user subject, valid `days_from_now` (negative: expired).
    fn user(
        &self,
        name: &str,
        roles: &[&str],
        expired: bool,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        for r in roles {
            dn.push(DnType::OrganizationName, *r);
        }
        dn.push(DnType::LocalityName, name);
        dn.push(
            DnType::CustomDnType(vec![2, 5, 4, 17]),
            r#"{"logins":["alice","root"]}"#,
        );
        dn.push(DnType::CustomDnType(vec![1, 3, 9999, 1, 7]), "example.com");
        p.distinguished_name = dn;
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 2);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn server(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![
            alpn::CLUSTER_LOCAL.to_string(),
            "*.teleport.cluster.local".to_string(),
        ])
        .unwrap()
        .signed_by(&key, &self.issuer)
        .unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// Answers Ping with what it decoded from the caller's certificate.
struct WhoAmI {
    user_ca: Vec<u8>,
    host_ca: Vec<u8>,
}

#[tonic::async_trait]
impl AuthService for WhoAmI {
    async fn ping(&self, req: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        let peer = req
            .extensions()
            .get::<PeerInfo>()
            .ok_or_else(|| Status::unauthenticated("no peer"))?;
        let leaf = peer
            .certs
            .first()
            .ok_or_else(|| Status::unauthenticated("no certificate"))?;
        let id = identity::from_certificate(
            leaf,
            std::slice::from_ref(&self.user_ca),
            std::slice::from_ref(&self.host_ca),
        )
        .map_err(|e| Status::permission_denied(e.to_string()))?;
        Ok(Response::new(PingResponse {
            cluster_name: id.teleport_cluster.clone(),
            server_version: format!(
                "{}|{}|{:?}|{}",
                id.username,
                id.groups.join(","),
                id.signer,
                id.traits["logins"].join(",")
            ),
            ..Default::default()
        }))
    }
}

struct Cluster {
    user_ca: Ca,
    host_ca: Ca,
    addr: HostPort,
}

async fn cluster() -> Cluster {
    let user_ca = Ca::new("example.com");
    let host_ca = Ca::new("example.com");
    let (chain, key) = host_ca.server();
    let config = listener::server_config(chain, key, vec![user_ca.der(), host_ca.der()]).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    let svc = WhoAmI {
        user_ca: user_ca.der().to_vec(),
        host_ca: host_ca.der().to_vec(),
    };
    let incoming = listener::incoming(l, Arc::new(config));
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(svc))
            .serve_with_incoming(incoming),
    );
    Cluster {
        user_ca,
        host_ca,
        addr,
    }
}

fn client_tls(
    trust: &Ca,
    creds: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der()).unwrap();
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match creds {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

async fn connect(c: &Cluster, tls: Arc<ClientConfig>, mode: &str) -> tp_client::Result<Client> {
    let target = match mode {
        "direct" => Target::Direct {
            addr: c.addr.clone(),
            tls,
            server_name: alpn::CLUSTER_LOCAL.into(),
            credential: "test".into(),
        },
        // What a proxy forwards untouched: ALPN teleport-auth@… first, then h2.
        _ => Target::TlsRouting {
            web_addr: c.addr.clone(),
            cluster: "example.com".into(),
            tls,
            server_name: alpn::CLUSTER_LOCAL.into(),
            credential: "test".into(),
        },
    };
    Client::connect(
        Config::new()
            .target(target)
            .dial_timeout(Duration::from_secs(5)),
    )
    .await
}

#[tokio::test]
async fn a_user_certificate_gets_in_and_its_identity_reaches_the_handler() {
    let c = cluster().await;
    for mode in ["direct", "tls-routing"] {
        // One role: rcgen's DistinguishedName keeps one value per attribute type, so
        // multi-valued O is exercised where certificates are built with tp-creds.
        let tls = client_tls(
            &c.host_ca,
            Some(c.user_ca.user("alice", &["api-role"], false)),
        );
        let client = connect(&c, tls, mode)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let p = client.ping().await.unwrap();
        assert_eq!(p.cluster_name, "example.com");
        assert_eq!(
            p.server_version, "alice|api-role|UserCa|alice,root",
            "{mode}"
        );
    }
}

#[tokio::test]
async fn a_host_certificate_is_attributed_to_the_host_ca() {
    let c = cluster().await;
    let tls = client_tls(
        &c.host_ca,
        Some(c.host_ca.user("proxy-1.example.com", &["Proxy"], false)),
    );
    let p = connect(&c, tls, "direct")
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert!(
        p.server_version
            .starts_with("proxy-1.example.com|Proxy|HostCa"),
        "{}",
        p.server_version
    );
}

#[tokio::test]
async fn no_certificate_a_foreign_ca_and_an_expired_certificate_are_refused() {
    let c = cluster().await;
    let stranger = Ca::new("evil.example.com");
    for (what, creds) in [
        ("no client certificate", None),
        (
            "a foreign CA",
            Some(stranger.user("alice", &["access"], false)),
        ),
        (
            "an expired certificate",
            Some(c.user_ca.user("alice", &["access"], true)),
        ),
    ] {
        let tls = client_tls(&c.host_ca, creds);
        // TLS 1.3 lets the client finish before the server rejects its certificate, so
        // the refusal shows either at connect or at the first call.
        let refused = match connect(&c, tls, "direct").await {
            Err(_) => true,
            Ok(client) => client.ping().await.is_err(),
        };
        assert!(refused, "{what} must be refused");
    }
}

#[tokio::test]
async fn non_tls_bytes_do_not_disturb_the_listener() {
    let c = cluster().await;
    let mut s = TcpStream::connect((c.addr.host.as_str(), c.addr.port))
        .await
        .unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    drop(s);
    let tls = client_tls(
        &c.host_ca,
        Some(c.user_ca.user("alice", &["access"], false)),
    );
    assert!(
        connect(&c, tls, "direct")
            .await
            .unwrap()
            .ping()
            .await
            .is_ok()
    );
}
