//! The web port on loopback: discovery JSON read back by the client side's own
//! interpreter, JSON errors for bad requests, Auth connections forwarded untouched,
//! and non-TLS bytes refused without harm.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tp_proxy::port::WebPort;
use tp_proxy::web::{WebConfig, router};
use tp_transport::addr::HostPort;
use tp_transport::discovery::{self, ProxySettings};
use tp_transport::{alpn, dial};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Pki {
    ca: CertificateDer<'static>,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        Self {
            ca: issuer.der().clone(),
            issuer,
        }
    }

    fn leaf(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn server(&self, name: &str, alpn: &[&str]) -> ServerConfig {
        let (chain, key) = self.leaf(name);
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        c
    }

    fn client(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(c)
    }
}

/// A stand-in Auth server: TLS with h2, echoes five bytes.
async fn auth(pki: &Pki) -> HostPort {
    let acceptor = TlsAcceptor::from(Arc::new(pki.server(alpn::CLUSTER_LOCAL, &["h2"])));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut b = [0u8; 5];
                    if tls.read_exact(&mut b).await.is_ok() {
                        let _ = tls.write_all(&b).await;
                    }
                }
            });
        }
    });
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

async fn web_port(pki: &Pki, auth_addr: HostPort) -> HostPort {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let mut proxy = ProxySettings::default();
    proxy.ssh.web_listen_addr = format!("127.0.0.1:{port}");
    proxy.ssh.tunnel_listen_addr = "127.0.0.1:3024".into();
    proxy.ssh.public_addr = "proxy.example.com:3080".into();
    let web = router(Arc::new(WebConfig::new("example.com", proxy)), None);
    let wp = WebPort::new(
        "example.com",
        pki.server("proxy.example.com", &[]),
        web,
        auth_addr,
    );
    tokio::spawn(wp.serve(l));
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

/// One HTTP/1.1 request over TLS; returns (status, content type, body).
async fn https(
    pki: &Pki,
    addr: &HostPort,
    method: &str,
    path: &str,
) -> (u16, Option<String>, Vec<u8>) {
    let tcp = TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .unwrap();
    let name = ServerName::try_from("proxy.example.com").unwrap();
    let mut tls = TlsConnector::from(pki.client(&["http/1.1"]))
        .connect(name, tcp)
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: proxy.example.com\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response header");
    let head = String::from_utf8_lossy(&resp[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let ct = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-type: ")
            .map(str::to_string)
    });
    (status, ct, resp[split + 4..].to_vec())
}

#[tokio::test]
async fn discovery_json_is_what_the_client_side_expects() {
    let pki = Pki::new();
    let web = web_port(&pki, auth(&pki).await).await;
    for path in ["/webapi/ping", "/webapi/find", "/webapi/ping/local"] {
        let (status, ct, body) = https(&pki, &web, "GET", path).await;
        let ping = discovery::interpret(status, ct.as_deref(), &body)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(ping.cluster_name, "example.com");
        // The web public address names the host; the tunnel listener gives the port.
        assert_eq!(
            ping.proxy.tunnel_addr(None).unwrap().to_string(),
            "proxy.example.com:3024"
        );
        assert_eq!(ping.auth.kind.is_empty(), path == "/webapi/find", "{path}");
    }
}

#[tokio::test]
async fn bad_requests_get_json_errors_with_status_codes() {
    let pki = Pki::new();
    let web = web_port(&pki, auth(&pki).await).await;
    for (method, path, status) in [
        ("GET", "/nope", 404),
        ("POST", "/webapi/ping", 405),
        ("GET", "/webapi/ping/okta", 404),
    ] {
        let (got, ct, body) = https(&pki, &web, method, path).await;
        assert_eq!(got, status, "{method} {path}");
        let e = discovery::interpret(got, ct.as_deref(), &body).unwrap_err();
        assert!(
            matches!(e, discovery::DiscoveryError::ProxyError { .. }),
            "{method} {path}: {e}"
        );
    }
}

#[tokio::test]
async fn auth_alpn_is_forwarded_untouched_to_the_auth_server() {
    let pki = Pki::new();
    let web = web_port(&pki, auth(&pki).await).await;
    let mut tls = dial::tls_routing(
        &web,
        "example.com",
        pki.client(&["h2"]),
        alpn::CLUSTER_LOCAL,
        &Default::default(),
    )
    .await
    .unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut b = [0u8; 5];
    tls.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"hello");

    // Another cluster's Auth protocol is refused.
    let e = dial::tls_routing(
        &web,
        "other.example.com",
        pki.client(&["h2"]),
        alpn::CLUSTER_LOCAL,
        &Default::default(),
    )
    .await;
    assert!(e.is_err());
}

#[tokio::test]
async fn non_tls_bytes_are_dropped_and_the_port_keeps_serving() {
    let pki = Pki::new();
    let web = web_port(&pki, auth(&pki).await).await;
    let mut plain = TcpStream::connect((web.host.as_str(), web.port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /webapi/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = plain.read_to_end(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "plain HTTP is closed without an answer");
    let (status, _, _) = https(&pki, &web, "GET", "/webapi/ping").await;
    assert_eq!(status, 200);
}
