//! Both halves of the reverse tunnel against each other over loopback TCP: the client
//! half reaches the "Auth server" (an echo server) through the server half; refusals
//! come back as the proxy's own words.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tp_creds::{KeyAlgorithm, PrivateKey, SshHostIdentity, SshIdentity, SshMaterial};
use tp_transport::addr::HostPort;
use tp_transport::proxy_env::ProxyMatcher;
use tp_transport::tunnel::{TunnelServer, open};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Pki {
    user_ca: ssh_key::PrivateKey,
    host_ca: ssh_key::PrivateKey,
}

fn ssh_key() -> ssh_key::PrivateKey {
    PrivateKey::generate(KeyAlgorithm::Ed25519)
        .unwrap()
        .to_ssh()
        .unwrap()
}

/// A tunnel server on loopback forwarding to an echo "Auth server"; returns its address.
async fn server(pki: &Pki) -> HostPort {
    server_with(pki, |t| t).await
}

/// [`server`], with `adjust` applied to the tunnel server.
async fn server_with(pki: &Pki, adjust: impl FnOnce(TunnelServer) -> TunnelServer) -> HostPort {
    let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let host = ssh_key();
    let cert = SshHostIdentity::new("proxy", "example.com", "Proxy")
        .sign(host.public_key(), &pki.host_ca, now() - 60, now() + 3600)
        .unwrap();
    let pair = tp_ssh::KeyPair::new(&host)
        .unwrap()
        .with_certificate(cert)
        .unwrap();
    let cfg = tp_ssh::ServerConfig::new(
        Arc::new(pair),
        vec![tp_ssh::fingerprint(pki.user_ca.public_key())],
    );
    let auth = HostPort {
        host: "127.0.0.1".into(),
        port: echo_addr.port(),
    };
    let tunnel = adjust(TunnelServer::new(cfg, auth));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, peer)) = l.accept().await {
            let t = tunnel.clone();
            tokio::spawn(async move {
                let _ = t.serve(s, Some(peer.ip())).await;
            });
        }
    });
    HostPort {
        host: "127.0.0.1".into(),
        port,
    }
}

fn material(pki: &Pki, roles: Vec<String>) -> SshMaterial {
    material_logging_in_as(pki, roles, "alice")
}

/// Teleport user `alice`'s material whose certificate's login (first principal) is
/// `login`.
fn material_logging_in_as(pki: &Pki, roles: Vec<String>, login: &str) -> SshMaterial {
    let key = ssh_key();
    let mut id = SshIdentity::user("alice", roles, "example.com");
    id.logins = vec![login.into()];
    let cert = id
        .sign(key.public_key(), &pki.user_ca, now() - 60, now() + 3600)
        .unwrap();
    let mut extensions_fixed = cert.clone();
    if id.roles.is_empty() {
        // A certificate without Teleport roles at all (not even an empty list).
        let mut b = ssh_key::certificate::Builder::new_with_random_nonce(
            &mut ssh_key::rand_core::OsRng,
            key.public_key().key_data().clone(),
            now() - 60,
            now() + 3600,
        )
        .unwrap();
        b.cert_type(ssh_key::certificate::CertType::User).unwrap();
        b.valid_principal("alice").unwrap();
        extensions_fixed = b.sign(&pki.user_ca).unwrap();
    }
    SshMaterial {
        signer: Arc::new(key),
        certificate: extensions_fixed,
        host_cas: vec![pki.host_ca.public_key().clone()],
        user: login.into(),
    }
}

#[tokio::test]
async fn the_client_half_reaches_the_auth_server_through_the_server_half() {
    let pki = Pki {
        user_ca: ssh_key(),
        host_ca: ssh_key(),
    };
    let addr = server(&pki).await;
    let mut s = open(
        &addr,
        &material(&pki, vec!["access".into()]),
        &ProxyMatcher::default(),
    )
    .await
    .unwrap();
    s.write_all(b"hello auth").await.unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello auth");
}

#[tokio::test]
async fn refusals_say_why() {
    let pki = Pki {
        user_ca: ssh_key(),
        host_ca: ssh_key(),
    };
    let addr = server(&pki).await;
    // No teleport-roles extension: Teleport's proxy refuses such certificates.
    let e = open(&addr, &material(&pki, vec![]), &ProxyMatcher::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("SSH tunnel to {addr}: ")), "{e}");
    // A host CA the client does not trust.
    let mut m = material(&pki, vec!["access".into()]);
    m.host_cas = vec![ssh_key().public_key().clone()];
    let e = open(&addr, &m, &ProxyMatcher::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("host key"), "{e}");
    // No host CA at all: said plainly, before any dial.
    m.host_cas.clear();
    let e = open(&addr, &m, &ProxyMatcher::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the credential trusts no SSH host CA, so the proxy cannot be verified"),
        "{e}"
    );
    // A user CA the server does not trust.
    let other = Pki {
        user_ca: ssh_key(),
        host_ca: pki.host_ca.clone(),
    };
    let e = open(
        &addr,
        &material(&other, vec!["access".into()]),
        &ProxyMatcher::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("authentication"), "{e}");
}

#[tokio::test]
async fn ssh_layer_refusals_name_the_reason() {
    let pki = Pki {
        user_ca: ssh_key(),
        host_ca: ssh_key(),
    };
    let addr = server(&pki).await;

    // An expired user certificate.
    let mut m = material(&pki, vec!["access".into()]);
    let key = ssh_key();
    let mut id = SshIdentity::user("alice", vec!["access".into()], "example.com");
    id.logins = vec!["alice".into()];
    m.certificate = id
        .sign(key.public_key(), &pki.user_ca, now() - 7200, now() - 3600)
        .unwrap();
    m.signer = Arc::new(key);
    let e = open(&addr, &m, &ProxyMatcher::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("authentication"), "{e}");

    // A host certificate presented as a user.
    let key = ssh_key();
    let mut host = SshHostIdentity::new("alice", "example.com", "Node");
    host.principals = vec!["alice".into()];
    m.certificate = host
        .sign(key.public_key(), &pki.user_ca, now() - 60, now() + 3600)
        .unwrap();
    m.signer = Arc::new(key);
    let e = open(&addr, &m, &ProxyMatcher::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("authentication"), "{e}");

    // A `session` channel: refused with Teleport's words.
    let good = material(&pki, vec!["access".into()]);
    let cfg = tp_transport::tunnel::client_config(&good, &addr).unwrap();
    let tcp = tokio::net::TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .unwrap();
    let session = tp_ssh::Client::connect(tcp, Arc::new(cfg)).await.unwrap();
    let e = session
        .open_channel("session", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Cannot open new SSH session on reverse tunnel"),
        "{e}"
    );
    // And a transport dial to anything but the Auth server.
    let mut req = tp_ssh::teleport::DialRequest::auth_server();
    req.address = "10.0.0.1:22".into();
    let e = tp_ssh::teleport::dial_transport(&session, &req)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("this proxy only reaches its Auth server"), "{e}");
}

#[tokio::test]
async fn each_user_holds_at_most_the_cap_and_is_told_so() {
    let pki = Pki {
        user_ca: ssh_key(),
        host_ca: ssh_key(),
    };
    let addr = server_with(&pki, |t| t.with_max_per_user(2)).await;
    let m = material(&pki, vec!["access".into()]);
    let first = open(&addr, &m, &ProxyMatcher::default()).await.unwrap();
    // The cap is per Teleport user (the certificate's key ID), whatever login the
    // certificate names.
    let root = material_logging_in_as(&pki, vec!["access".into()], "root");
    let second = open(&addr, &root, &ProxyMatcher::default()).await.unwrap();
    let e = open(&addr, &m, &ProxyMatcher::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("too many tunnel connections for user \"alice\" (at most 2 at once)"),
        "{e}"
    );
    // A connection given back frees its slot.
    drop(first);
    let mut third = None;
    for _ in 0..50 {
        if let Ok(s) = open(&addr, &m, &ProxyMatcher::default()).await {
            third = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut third = third.expect("a slot after one was given back");
    third.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    third.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    drop(second);
}
