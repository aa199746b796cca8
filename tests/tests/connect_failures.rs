//! Why a connection failed, in words: each test points `Client::connect` at something
//! that is not a working Teleport endpoint and checks that the error names every attempt
//! (address, mode, credential) with its real cause.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tp_auth::ca;
use tp_client::{Client, Config, ErrorKind};
use tp_creds::{Credentials, Format, IdentityFile, Tls};
use tp_proxy::port::WebPort;
use tp_proxy::web::{WebConfig, router};
use tp_tests::cluster::{TestCluster, now};
use tp_transport::addr::HostPort;
use tp_transport::discovery::ProxySettings;

/// A user identity from `c`, written as an identity file in `dir`.
async fn identity_file(c: &TestCluster, dir: &std::path::Path) -> IdentityFile {
    let b = c.identity_bundle("api-user", &["access"], 3600).await;
    let path = dir.join("identity");
    b.write(Format::File, &path).unwrap();
    IdentityFile::from_path(path)
}

async fn connect_err(creds: &dyn Credentials, addr: &str) -> String {
    let config = Config::new()
        .dial_timeout(Duration::from_secs(10))
        .credentials(creds, &[addr])
        .unwrap();
    let e = Client::connect(config).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionProblem, "{e}");
    // Shown with --nocapture: what a user would read.
    eprintln!("{e}\n");
    e.to_string()
}

/// Asserts that `msg` lists attempt `addr via mode with credential: <cause…>`.
#[track_caller]
fn has_attempt(msg: &str, addr: &str, mode: &str, credential: &str, cause: &str) {
    let line = format!("{addr} via {mode} with {credential}: ");
    let found = msg
        .lines()
        .find(|l| l.trim_start_matches("  - ").starts_with(&line))
        .unwrap_or_else(|| panic!("no {mode} attempt on {addr} in:\n{msg}"));
    assert!(
        found.contains(cause),
        "{mode} attempt lacks {cause:?}:\n{msg}"
    );
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

/// A server config for a web-style TLS server whose certificate the cluster's host CA
/// signed for 127.0.0.1 (so the credential trusts it).
fn web_tls(c: &TestCluster, alpn: &[&str]) -> rustls::ServerConfig {
    let issued = ca::issue_host(
        &c.state.host_ca,
        "proxy.example.com",
        "Proxy",
        &["127.0.0.1".into(), "localhost".into()],
        now(),
        3600,
    )
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(tp_tests::pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_port_is_refused_in_every_mode() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    let id = identity_file(&c, dir.path()).await;
    let closed = closed_port().to_string();
    let msg = connect_err(&id, &closed).await;
    assert!(
        msg.starts_with("all 4 connection attempts failed:"),
        "{msg}"
    );
    let origin = id.origin();
    let refused = format!("cannot connect to {closed}: Connection refused");
    has_attempt(&msg, &closed, "direct", &origin, &refused);
    // The identity file holds an SSH certificate, so the tunnel is tried as well.
    has_attempt(&msg, &closed, "tunnel", &origin, &refused);
    has_attempt(&msg, &closed, "tls-routing", &origin, &refused);
    has_attempt(
        &msg,
        &closed,
        "discovery",
        &origin,
        &format!("GET https://{closed}/webapi/find: {refused}"),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plain_http_server_at_the_web_address_is_named() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    let id = identity_file(&c, dir.path()).await;
    // What nginx or a Go net/http server says to a TLS ClientHello on a plain port.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request")
                    .await;
            });
        }
    });
    let msg = connect_err(&id, &addr).await;
    let origin = id.origin();
    let not_tls =
        format!("{addr} does not speak TLS: it answered plain HTTP (\"HTTP/1.1 400 Bad Request\")");
    has_attempt(&msg, &addr, "direct", &origin, &not_tls);
    has_attempt(&msg, &addr, "tls-routing", &origin, &not_tls);
    has_attempt(&msg, &addr, "discovery", &origin, &not_tls);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_html_page_at_webapi_find_is_not_a_teleport_proxy() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    let id = identity_file(&c, dir.path()).await;
    // An HTTPS server (trusted certificate, HTTP/1.1 only) serving a web page everywhere.
    let acceptor = TlsAcceptor::from(Arc::new(web_tls(&c, &["http/1.1"])));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let page = "<!DOCTYPE html><html><head><title>Acme intranet</title></head></html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    let msg = connect_err(&id, &addr).await;
    let origin = id.origin();
    has_attempt(
        &msg,
        &addr,
        "discovery",
        &origin,
        &format!(
            "GET https://{addr}/webapi/find: this is not a Teleport proxy: HTTP 200 with text/html"
        ),
    );
    let no_h2 = "the server speaks none of the offered protocols (h2): not a Teleport Auth server";
    has_attempt(&msg, &addr, "direct", &origin, no_h2);
    has_attempt(&msg, &addr, "tls-routing", &origin, no_h2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_from_another_cluster_is_explained() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let other = TestCluster::start("proxy.other.example.com:3080").await;
    let addr = c.addr.to_string();

    // The other cluster's identity file trusts only the other cluster's CA: our client
    // refuses the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let id = identity_file(&other, dir.path()).await;
    let msg = connect_err(&id, &addr).await;
    has_attempt(
        &msg,
        &addr,
        "direct",
        &id.origin(),
        &format!(
            "TLS handshake with {addr} failed: the server's certificate is not signed by a CA this credential trusts (a credential from another cluster"
        ),
    );

    // A credential that trusts this cluster but whose certificate the other cluster
    // signed: the server refuses the client certificate, and the dial says so (with TLS
    // 1.3 the refusal arrives after the client's handshake ends).
    let mixed = Tls::new(c.client_tls(&other.host_identity("Admin")));
    let msg = connect_err(&mixed, &addr).await;
    has_attempt(
        &msg,
        &addr,
        "direct",
        &mixed.origin(),
        &format!(
            "TLS handshake with {addr} failed: the server rejected our client certificate: it does not trust the CA that signed it (a credential from another cluster?) (received fatal alert: "
        ),
    );
    c.stop().await;
    other.stop().await;
}

/// A tp proxy web port for cluster `example.com` forwarding Auth connections to
/// `auth`, advertising TLS routing.
async fn proxy(c: &TestCluster, auth: HostPort) -> String {
    proxy_with(c, auth, true).await
}

async fn proxy_with(c: &TestCluster, auth: HostPort, tls_routing: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let mut settings = ProxySettings::default();
    settings.ssh.web_listen_addr = addr.clone();
    settings.ssh.tunnel_listen_addr = "0.0.0.0:3024".into();
    settings.ssh.public_addr = "proxy.example.com:3080".into();
    settings.tls_routing_enabled = tls_routing;
    let web = router(Arc::new(WebConfig::new("example.com", settings)), None);
    let port = WebPort::new("example.com", web_tls(c, &[]), web, auth);
    tokio::spawn(port.serve(l));
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_up_auth_down_says_the_proxy_cannot_reach_it() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    let id = identity_file(&c, dir.path()).await;
    let origin = id.origin();

    // First, with the Auth server up, both proxied modes work on their own.
    let web = proxy(&c, c.addr.clone()).await;
    let material = id.load().unwrap();
    for target in [
        tp_client::Target::TlsRouting {
            web_addr: tp_transport::addr::parse_host_port(
                &web,
                tp_transport::addr::PortRule::Default(443),
            )
            .unwrap(),
            cluster: "example.com".into(),
            tls: material.tls.clone(),
            server_name: material.server_name.clone(),
            credential: origin.clone(),
        },
        tp_client::Target::Discovery {
            web_addr: tp_transport::addr::parse_host_port(
                &web,
                tp_transport::addr::PortRule::Default(443),
            )
            .unwrap(),
            cluster: String::new(),
            tls: material.tls.clone(),
            server_name: material.server_name.clone(),
            ssh: None,
            credential: origin.clone(),
        },
    ] {
        let client = Client::connect(
            Config::new()
                .target(target)
                .dial_timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        assert_eq!(client.ping().await.unwrap().cluster_name, "example.com");
    }

    // Then a proxy whose Auth server is down.
    let web = proxy(&c, closed_port()).await;
    let msg = connect_err(&id, &web).await;
    let closed = "the proxy closed the connection before any Auth server answered: it could not reach its Auth server";
    has_attempt(&msg, &web, "tls-routing", &origin, closed);
    has_attempt(&msg, &web, "discovery", &origin, closed);
    // The web port itself is no Auth server: its certificate does not name one.
    has_attempt(&msg, &web, "direct", &origin, "TLS handshake with");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_without_tls_routing_needs_the_tunnel_and_says_so() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let dir = tempfile::tempdir().unwrap();
    let id = identity_file(&c, dir.path()).await;
    let web = proxy_with(&c, closed_port(), false).await;
    let web_addr =
        tp_transport::addr::parse_host_port(&web, tp_transport::addr::PortRule::Default(443))
            .unwrap();
    let material = id.load().unwrap();

    // With SSH material, discovery follows the proxy to the tunnel it advertises; the
    // error names both the web address and the tunnel (which does not resolve here).
    let msg = connect_err(&id, &web).await;
    has_attempt(
        &msg,
        &web,
        "discovery",
        &id.origin(),
        &format!(
            "the proxy at {web} has TLS routing off; through the reverse tunnel it advertises at proxy.example.com:3024: cannot connect to proxy.example.com:3024"
        ),
    );

    // Without SSH material (a key pair or a raw TLS config), it says what is missing.
    let err = Client::connect(
        Config::new()
            .target(tp_client::Target::Discovery {
                web_addr,
                cluster: String::new(),
                tls: material.tls.clone(),
                server_name: material.server_name.clone(),
                ssh: None,
                credential: id.origin(),
            })
            .dial_timeout(Duration::from_secs(10)),
    )
    .await
    .expect_err("no tunnel credentials");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "the proxy at {web} has TLS routing off, so its Auth server is reachable only through the reverse tunnel at proxy.example.com:3024, which needs an SSH certificate this credential does not carry"
        )),
        "{msg}"
    );
}
