//! The dialers against real sockets on loopback: a TLS server that plays the Auth
//! server, an HTTP CONNECT proxy, and a TLS-routing front that reads the ClientHello
//! without consuming it.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tp_transport::addr::HostPort;
use tp_transport::alpn::{self, Route};
use tp_transport::dial::{self, DialError};
use tp_transport::proxy_env::ProxyMatcher;

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
        server: leaf(vec![alpn::CLUSTER_LOCAL.into()]),
        client: leaf(vec!["alice".into()]),
    }
}

fn server_config(pki: &Pki, alpn_protos: &[&str]) -> Arc<ServerConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let mut c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    c.alpn_protocols = alpn_protos.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(c)
}

fn client_config(pki: &Pki) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![pki.client.0.clone()], pki.client.1.clone_key())
        .unwrap();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

/// A TLS server that answers one connection: handshake, then echo one line.
async fn auth_server(config: Arc<ServerConfig>) -> HostPort {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = TlsAcceptor::from(config.clone());
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let mut buf = [0u8; 5];
                    if tls.read_exact(&mut buf).await.is_ok() {
                        let _ = tls.write_all(&buf).await;
                        let _ = tls.flush().await;
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

async fn ping_pong<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"hello").await.unwrap();
    s.flush().await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
}

#[tokio::test]
async fn direct_mutual_tls_with_h2() {
    let pki = pki();
    let addr = auth_server(server_config(&pki, &["h2"])).await;
    let mut tls = dial::direct(
        &addr,
        client_config(&pki),
        alpn::CLUSTER_LOCAL,
        &ProxyMatcher::default(),
    )
    .await
    .unwrap();
    ping_pong(&mut tls).await;
}

#[tokio::test]
async fn a_server_without_h2_is_named_as_not_teleport() {
    let pki = pki();
    let addr = auth_server(server_config(&pki, &[])).await;
    let e = dial::direct(
        &addr,
        client_config(&pki),
        alpn::CLUSTER_LOCAL,
        &ProxyMatcher::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            DialError::NoH2 {
                negotiated: None,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("not a Teleport Auth endpoint"),
        "{e}"
    );
}

#[tokio::test]
async fn refused_port_and_untrusted_server_are_explained() {
    let pki = pki();
    // A port nobody listens on.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    drop(l);
    let e = dial::direct(
        &closed,
        client_config(&pki),
        alpn::CLUSTER_LOCAL,
        &ProxyMatcher::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DialError::Tcp { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to {closed}")),
        "{e}"
    );

    // A server whose certificate another CA signed.
    let other = self::pki();
    let addr = auth_server(server_config(&other, &["h2"])).await;
    let e = dial::direct(
        &addr,
        client_config(&pki),
        alpn::CLUSTER_LOCAL,
        &ProxyMatcher::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, DialError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("TLS handshake"), "{e}");
}

/// A one-shot HTTP CONNECT proxy that splices to whatever the request names; answers
/// 407 when `require_auth` and no Proxy-Authorization header came.
async fn connect_proxy(require_auth: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        if require_auth && !head.contains("Proxy-Authorization: Basic ") {
            s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                .await
                .unwrap();
            return;
        }
        let target = head.split_whitespace().nth(1).unwrap().to_string();
        let mut upstream = TcpStream::connect(target).await.unwrap();
        s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .unwrap();
        let _ = tokio::io::copy_bidirectional(&mut s, &mut upstream).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn through_an_http_connect_proxy() {
    let pki = pki();
    let addr = auth_server(server_config(&pki, &["h2"])).await;
    // Loopback destinations are never proxied, so ask the matcher about a public name
    // and tunnel to the loopback test server through the proxy it picks.
    let proxy_url = connect_proxy(false).await;
    let matcher = ProxyMatcher::builder()
        .https_proxy(&proxy_url)
        .build()
        .unwrap();
    let proxy = matcher
        .proxy_for("teleport.example.com", 443)
        .unwrap()
        .clone();
    let s = TcpStream::connect((proxy.addr.host.as_str(), proxy.addr.port))
        .await
        .unwrap();
    let tunnel = dial::http_connect(s, &proxy, &addr).await.unwrap();
    let mut tls = dial::tls(
        tunnel,
        client_config(&pki),
        alpn::CLUSTER_LOCAL,
        "via proxy",
    )
    .await
    .unwrap();
    ping_pong(&mut tls).await;

    let proxy_url = connect_proxy(true).await;
    let matcher = ProxyMatcher::builder()
        .https_proxy(&proxy_url)
        .build()
        .unwrap();
    let proxy = matcher
        .proxy_for("teleport.example.com", 443)
        .unwrap()
        .clone();
    let s = TcpStream::connect((proxy.addr.host.as_str(), proxy.addr.port))
        .await
        .unwrap();
    let e = dial::http_connect(s, &proxy, &addr).await.unwrap_err();
    assert!(e.to_string().contains("407"), "{e}");
}

#[tokio::test]
async fn tls_routing_offers_the_auth_protocol_and_is_forwarded_untouched() {
    let pki = pki();
    let auth = auth_server(server_config(&pki, &["h2"])).await;
    // The proxy's web port: peek the ClientHello, check the route, then forward the raw
    // stream (hello included) to the Auth server, which terminates TLS.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    let (routed_tx, routed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut seen = Vec::new();
        let hello = loop {
            let mut chunk = [0u8; 512];
            let n = s.read(&mut chunk).await.unwrap();
            seen.extend_from_slice(&chunk[..n]);
            if let Some(h) = alpn::peek_client_hello(&seen).unwrap() {
                break h;
            }
        };
        let _ = routed_tx.send(alpn::route(&hello.alpn).unwrap());
        let mut upstream = TcpStream::connect((auth.host.as_str(), auth.port))
            .await
            .unwrap();
        upstream.write_all(&seen).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut s, &mut upstream).await;
    });
    let mut tls = dial::tls_routing(
        &web,
        "example.com",
        client_config(&pki),
        alpn::CLUSTER_LOCAL,
        &ProxyMatcher::default(),
    )
    .await
    .unwrap();
    ping_pong(&mut tls).await;
    assert_eq!(
        routed_rx.await.unwrap(),
        Route::Auth {
            cluster: "example.com".into()
        }
    );
}

#[tokio::test]
async fn the_connector_reports_a_refused_client_certificate() {
    use std::time::Duration;
    use tp_transport::connector::{Connector, Target};
    // The server trusts another CA for client certificates but presents one our CA
    // signed: with TLS 1.3 our handshake completes, and the refusal comes as an alert
    // on the first read — which the connector waits for.
    let pki = pki();
    let stranger = self::pki();
    let mut roots = RootCertStore::empty();
    roots.add(stranger.ca.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = auth_server(Arc::new(config)).await;
    let connector = Connector::new(
        vec![Target::Direct {
            addr: addr.clone(),
            tls: client_config(&pki),
            server_name: alpn::CLUSTER_LOCAL.into(),
            credential: "alice's identity".into(),
        }],
        Duration::from_secs(5),
        ProxyMatcher::default(),
    );
    let e = connector.dial().await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "{addr} via direct with alice's identity: TLS handshake with {addr} failed: the server rejected our client certificate"
        )),
        "{msg}"
    );
}
