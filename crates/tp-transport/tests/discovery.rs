//! Web-proxy discovery over real sockets: `WebClient::find` against small local servers
//! — a Teleport-shaped answer, an older proxy without `/webapi/find`, an HTML page, a
//! plain HTTP server on the TLS port, an SSH banner, and a port nobody listens on.

use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tp_transport::addr::HostPort;
use tp_transport::dial::DialError;
use tp_transport::discovery::DiscoveryError;
use tp_transport::web::{FindError, WebClient, WebError};

/// A Teleport 17 proxy's `/webapi/find` answer (TLS routing on).
const TELEPORT_FIND: &str = r#"{"auth":{"type":"","second_factor":"","private_key_policy":"","device_trust":{},"load_all_cas":false},"proxy":{"kube":{"enabled":true,"listen_addr":"0.0.0.0:3080"},"ssh":{"listen_addr":"0.0.0.0:3023","tunnel_listen_addr":"0.0.0.0:3024","web_listen_addr":"0.0.0.0:3080","public_addr":"teleport.example.com:443","dial_timeout":30000000000},"db":{"mysql_listen_addr":"0.0.0.0:3080"},"tls_routing_enabled":true},"server_version":"17.4.8","min_client_version":"16.0.0-aa","cluster_name":"example.com","automatic_upgrades":false,"auto_update":{"tools_version":"17.4.8","tools_auto_update":false},"edition":"oss","fips":false}"#;

struct Pki {
    ca: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        server: (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ),
    }
}

fn client(pki: &Pki, addr: &HostPort) -> WebClient {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    WebClient::new(addr.clone(), Arc::new(c))
}

type Handler = Arc<dyn Fn(&str) -> (u16, Option<&'static str>, String) + Send + Sync>;

/// Serves HTTP/1.1 on `stream` once: reads the request head, answers with `handler`.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    handler: &Handler,
    paths: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read_exact(&mut b).await.is_err() {
            return;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    paths.lock().unwrap().push(path.clone());
    let (status, ct, body) = handler(&path);
    let mut resp = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = ct {
        resp.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    resp.push_str("Connection: close\r\n\r\n");
    resp.push_str(&body);
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// An HTTPS server (or plain HTTP when `tls` is false) answering with `handler`; returns
/// its address and the paths it was asked for.
async fn server(pki: &Pki, tls: bool, handler: Handler) -> (HostPort, Arc<Mutex<Vec<String>>>) {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, handler, seen) = (acceptor.clone(), handler.clone(), seen.clone());
            tokio::spawn(async move {
                if tls {
                    if let Ok(t) = acceptor.accept(s).await {
                        answer(t, &handler, &seen).await;
                    }
                } else {
                    // A plain HTTP server answers 400 to the TLS ClientHello.
                    let mut s = s;
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let (status, _, body) = handler("");
                    let resp = format!(
                        "HTTP/1.1 {status} Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.shutdown().await;
                }
            });
        }
    });
    (
        HostPort {
            host: "127.0.0.1".into(),
            port,
        },
        paths,
    )
}

fn json(body: &str) -> (u16, Option<&'static str>, String) {
    (200, Some("application/json"), body.to_string())
}

#[tokio::test]
async fn a_teleport_answer_is_parsed() {
    let pki = pki();
    let (addr, paths) = server(&pki, true, Arc::new(|_| json(TELEPORT_FIND))).await;
    let found = client(&pki, &addr).find().await.unwrap();
    assert_eq!(found.cluster_name, "example.com");
    assert!(found.proxy.tls_routing_enabled);
    assert_eq!(
        found.proxy.tunnel_addr(None).unwrap().to_string(),
        "teleport.example.com:443"
    );
    assert_eq!(*paths.lock().unwrap(), ["/webapi/find"]);
}

#[tokio::test]
async fn an_older_proxy_without_find_is_asked_ping() {
    let pki = pki();
    let (addr, paths) = server(
        &pki,
        true,
        Arc::new(|path| {
            if path == "/webapi/ping" {
                json(r#"{"proxy":{"ssh":{"tunnel_listen_addr":"0.0.0.0:3024","public_addr":"p.example.com:3080"}},"cluster_name":"old.example.com","server_version":"13.0.0"}"#)
            } else {
                (
                    404,
                    Some("application/json"),
                    r#"{"error":{"message":"not found"}}"#.into(),
                )
            }
        }),
    )
    .await;
    let found = client(&pki, &addr).find().await.unwrap();
    assert_eq!(found.cluster_name, "old.example.com");
    assert_eq!(
        found.proxy.tunnel_addr(None).unwrap().to_string(),
        "p.example.com:3024"
    );
    assert_eq!(*paths.lock().unwrap(), ["/webapi/find", "/webapi/ping"]);
}

#[tokio::test]
async fn an_html_page_is_not_a_teleport_proxy() {
    let pki = pki();
    let (addr, _) = server(
        &pki,
        true,
        Arc::new(|_| {
            (
                200,
                Some("text/html; charset=utf-8"),
                "<!doctype html><html><title>Welcome to nginx!</title></html>".into(),
            )
        }),
    )
    .await;
    let e = client(&pki, &addr).find().await.unwrap_err();
    assert!(
        matches!(
            e,
            FindError::Answer {
                source: DiscoveryError::NotTeleportProxy { .. },
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "GET https://{addr}/webapi/find: this is not a Teleport proxy: HTTP 200 with text/html"
        )),
        "{msg}"
    );
    assert!(msg.contains("Welcome to nginx"), "{msg}");

    // Some other service's JSON, and a JSON error without Teleport's shape.
    let (addr, _) = server(&pki, true, Arc::new(|_| json(r#"{"status":"UP"}"#))).await;
    let e = client(&pki, &addr).find().await.unwrap_err();
    assert!(
        e.to_string().contains("this is not a Teleport proxy"),
        "{e}"
    );
    let (addr, _) = server(
        &pki,
        true,
        Arc::new(|_| (500, Some("application/json"), r#"{"oops":1}"#.into())),
    )
    .await;
    let e = client(&pki, &addr).find().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("this is not a Teleport proxy: HTTP 500"),
        "{e}"
    );

    // A proxy's own error keeps its message.
    let (addr, _) = server(
        &pki,
        true,
        Arc::new(|_| {
            (
                503,
                Some("application/json"),
                r#"{"error":{"message":"proxy is shutting down"}}"#.into(),
            )
        }),
    )
    .await;
    let e = client(&pki, &addr).find().await.unwrap_err();
    assert!(
        e.to_string()
            .ends_with("proxy answered HTTP 503: proxy is shutting down"),
        "{e}"
    );
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_named() {
    let pki = pki();
    let (addr, _) = server(
        &pki,
        false,
        Arc::new(|_| {
            (
                400,
                Some("text/plain"),
                "Client sent an HTTP request to an HTTPS server.".into(),
            )
        }),
    )
    .await;
    let e = client(&pki, &addr).find().await.unwrap_err();
    let FindError::Request { source, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        matches!(source.as_ref(), WebError::Dial(DialError::NotTls { .. })),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "{addr} does not speak TLS: it answered plain HTTP (\"HTTP/1.1 400 Bad Request\")"
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn an_ssh_port_is_named() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"SSH-2.0-Teleport\r\n").await;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        }
    });
    let e = client(&pki(), &addr).find().await.unwrap_err();
    assert!(
        e.to_string()
            .contains("does not speak TLS: it answered SSH (\"SSH-2.0-Teleport\")"),
        "{e}"
    );
}

#[tokio::test]
async fn a_closed_port_is_refused_and_an_untrusted_certificate_explained() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr().unwrap().port(),
    };
    drop(l);
    let e = client(&pki(), &closed).find().await.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "GET https://{closed}/webapi/find: cannot connect to {closed}: "
        )),
        "{e}"
    );

    // A proxy whose web certificate another CA signed.
    let (addr, _) = server(&pki(), true, Arc::new(|_| json(TELEPORT_FIND))).await;
    let e = client(&pki(), &addr).find().await.unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "TLS handshake with {addr} failed: the server's certificate is not signed by a CA this credential trusts"
        )),
        "{e}"
    );
}
