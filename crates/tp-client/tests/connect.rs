//! Client::connect over real mutual TLS on loopback: the racer picks the path that
//! works, and a failure lists every attempt with its cause.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Server;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};
use tp_client::{Client, Config, ErrorKind, Target};
use tp_proto::proto::auth_service_server::{AuthService, AuthServiceServer};
use tp_proto::proto::{PingRequest, PingResponse};
use tp_transport::addr::HostPort;

struct Pki {
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    Pki {
        ca: ca.der().clone(),
        server: leaf(vec!["teleport.cluster.local".into()]),
        client: leaf(vec!["alice".into()]),
    }
}

fn roots(pki: &Pki) -> Arc<RootCertStore> {
    let mut r = RootCertStore::empty();
    r.add(pki.ca.clone()).unwrap();
    Arc::new(r)
}

fn client_tls(pki: &Pki) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki))
        .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
        .unwrap();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

/// A TLS stream as tonic's server wants it.
#[derive(Debug)]
struct Conn(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

struct Pinger;

#[tonic::async_trait]
impl AuthService for Pinger {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            cluster_name: "example.com".into(),
            ..Default::default()
        }))
    }
}

async fn mtls_auth_server(pki: &Pki) -> HostPort {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(pki), provider())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming = futures_util::stream::unfold((listener, acceptor), |(l, a)| async move {
        loop {
            let (tcp, _) = l.accept().await.ok()?;
            if let Ok(tls) = a.accept(tcp).await {
                return Some((Ok::<_, std::io::Error>(Conn(tls)), (l, a)));
            }
        }
    })
    .boxed();
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(Pinger))
            .serve_with_incoming(incoming),
    );
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

fn closed_port() -> HostPort {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

fn direct(addr: HostPort, tls: Arc<ClientConfig>) -> Target {
    Target::Direct {
        addr,
        tls,
        server_name: "teleport.cluster.local".into(),
        credential: "test identity".into(),
    }
}

#[tokio::test]
async fn connect_races_targets_and_pings() {
    let pki = pki();
    let good = mtls_auth_server(&pki).await;
    let config = Config::new()
        .target(direct(closed_port(), client_tls(&pki)))
        .target(direct(good, client_tls(&pki)))
        .dial_timeout(Duration::from_secs(5));
    let client = Client::connect(config).await.unwrap();
    assert_eq!(client.ping().await.unwrap().cluster_name, "example.com");
}

#[tokio::test]
async fn connect_failure_lists_every_attempt() {
    let pki = pki();
    let stranger = self::pki();
    let server = mtls_auth_server(&stranger).await;
    let refused = closed_port();
    let config = Config::new()
        .target(direct(refused.clone(), client_tls(&pki)))
        .target(direct(server.clone(), client_tls(&pki)))
        .dial_timeout(Duration::from_secs(5));
    let e = Client::connect(config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionProblem);
    let msg = e.to_string();
    assert!(msg.contains("all 2 connection attempts failed"), "{msg}");
    assert!(
        msg.contains(&format!(
            "{refused} via direct with test identity: cannot connect"
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{server} via direct with test identity: TLS handshake"
        )),
        "{msg}"
    );
}
