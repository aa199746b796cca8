//! What the real Auth server refuses on its mutual-TLS port, and how the refusal reads:
//! one test per case of issue 4's list. Each also checks that the server goes on
//! serving others. (`crates/tp-auth/tests/mtls.rs` checks the listener alone, with a
//! stand-in service.)

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tp_auth::ca::{self, CaType, Issued};
use tp_auth::usercert::{UserCaSigner, UserIdentity};
use tp_client::{Client, Config, ErrorKind, Target};
use tp_creds::{KeyAlgorithm, PrivateKey};
use tp_proto::proto::UserCertsRequest;
use tp_proto::types::{Metadata, RoleV6};
use tp_tests::cluster::{TestCluster, now};
use tp_tests::pki::{pem, provider};

/// A user certificate for `alice` (role `access`) from `user_ca`, valid from
/// `not_before` to `not_after`.
fn alice_from(
    user_ca: &tp_proto::types::CertAuthorityV2,
    not_before: i64,
    not_after: i64,
) -> Issued {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let id = UserIdentity::new("alice", vec!["access".into()], "example.com");
    let cert_pem = UserCaSigner::new(user_ca)
        .unwrap()
        .issue_tls(
            &id,
            &key.public_key_spki_der().unwrap(),
            not_before,
            not_after,
        )
        .unwrap();
    Issued {
        cert_pem,
        key_pem: key.to_pem().unwrap().to_string(),
    }
}

async fn with_alice(cluster: &TestCluster) -> Issued {
    let admin = cluster.admin().await;
    let mut user = tp_proto::types::UserV2 {
        kind: "user".into(),
        version: "v2".into(),
        metadata: Some(Metadata {
            name: "alice".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    user.spec = Some(tp_proto::types::UserSpecV2 {
        roles: vec!["access".into()],
        ..Default::default()
    });
    admin.create_user(user).await.unwrap();
    alice_from(&cluster.state.user_ca, now() - 60, now() + 3600)
}

fn config(cluster: &TestCluster, tls: Arc<rustls::ClientConfig>) -> Config {
    Config::new()
        .target(Target::Direct {
            addr: cluster.addr.clone(),
            tls,
            server_name: "teleport.cluster.local".into(),
            credential: "test".into(),
        })
        .dial_timeout(Duration::from_secs(5))
}

/// Connects with `tls` and pings; the error text if anything fails.
async fn refusal(cluster: &TestCluster, tls: Arc<rustls::ClientConfig>) -> String {
    // TLS 1.3 lets the client finish its half before the server checks the certificate,
    // so the refusal arrives at connect (tp-client pings) or at the first call.
    match Client::connect(config(cluster, tls)).await {
        Err(e) => chain(&e),
        Ok(c) => match c.ping().await {
            Err(e) => chain(&e),
            Ok(_) => panic!("the server accepted the connection"),
        },
    }
}

/// An error and all its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// The server still serves a well-formed client.
async fn still_serving(cluster: &TestCluster) {
    let admin = cluster.admin().await;
    assert_eq!(admin.ping().await.unwrap().cluster_name, "example.com");
}

/// Error text, lower-cased (rustls names alerts in CamelCase).
fn lower(e: &str) -> String {
    e.to_lowercase()
}

#[tokio::test]
async fn no_client_certificate() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let mut roots = rustls::RootCertStore::empty();
    for c in ca::tls_certs_der(&cluster.state.host_ca) {
        roots.add(CertificateDer::from(c)).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    // As Teleport's Auth server: the handshake completes (a joining host has no
    // certificate yet), and every call but the two joining needs is AccessDenied,
    // saying what is missing.
    let e = match Client::connect(config(&cluster, Arc::new(tls))).await {
        Err(e) => e,
        Ok(_) => panic!("a call without a client certificate was served"),
    };
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string().contains("no client certificate"),
        "the error names the missing certificate: {e}"
    );
    still_serving(&cluster).await;
}

#[tokio::test]
async fn a_certificate_from_a_foreign_ca() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    // Same cluster name, different keys: only the signature tells them apart.
    let foreign = ca::generate("example.com", CaType::User, now()).unwrap();
    let issued = alice_from(&foreign, now() - 60, now() + 3600);
    let e = refusal(&cluster, cluster.client_tls(&issued)).await;
    assert!(
        lower(&e).contains("received fatal alert: unknownca"),
        "the TLS alert names an unknown issuer: {e}"
    );
    still_serving(&cluster).await;
}

#[tokio::test]
async fn an_expired_certificate() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let _ = with_alice(&cluster).await;
    let issued = alice_from(&cluster.state.user_ca, now() - 7200, now() - 3600);
    let e = refusal(&cluster, cluster.client_tls(&issued)).await;
    assert!(
        lower(&e).contains("received fatal alert: certificateexpired"),
        "the TLS alert says the certificate expired: {e}"
    );
    still_serving(&cluster).await;
}

#[tokio::test]
async fn a_host_certificate_where_a_user_is_required() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let proxy = cluster.client(&cluster.host_identity("Proxy")).await;
    // Authenticated: the host identity may ping.
    proxy.ping().await.unwrap();
    let e = proxy.get_current_user().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert_eq!(
        e.status().map(tonic::Status::code),
        Some(tonic::Code::PermissionDenied)
    );
    assert!(
        e.to_string().contains(
            "needs a user certificate; \"proxy.example.com\" is a host identity (system role Proxy)"
        ),
        "{e}"
    );
    let key = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
    let e = proxy
        .generate_user_certs(UserCertsRequest {
            public_key: key
                .ssh_public_key()
                .unwrap()
                .to_openssh()
                .unwrap()
                .into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    assert!(
        e.to_string()
            .contains("GenerateUserCerts needs a user certificate"),
        "{e}"
    );
    // A host whose system role has no API access at all is refused on every call.
    let node = cluster.client_tls(&cluster.host_identity("Node"));
    let e = refusal(&cluster, node).await;
    assert!(e.contains("has no access to this API"), "{e}");
    still_serving(&cluster).await;
}

#[tokio::test]
async fn a_user_certificate_with_a_tampered_subject() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let alice = with_alice(&cluster).await;
    // The genuine certificate works.
    cluster
        .client(&alice)
        .await
        .get_current_user()
        .await
        .unwrap();
    // Rename the holder in the subject: the CA's signature no longer covers it.
    let der = der_of(&alice.cert_pem);
    let at = der
        .windows(5)
        .position(|w| w == b"alice")
        .expect("the user name in the subject");
    let mut forged = der.clone();
    forged[at..at + 5].copy_from_slice(b"admin");
    let forged = Issued {
        cert_pem: pem("CERTIFICATE", &forged),
        key_pem: alice.key_pem.clone(),
    };
    let e = refusal(&cluster, cluster.client_tls(&forged)).await;
    assert!(
        lower(&e).contains("received fatal alert: unknownca"),
        "the TLS alert says no trusted CA signed this certificate: {e}"
    );
    still_serving(&cluster).await;
}

#[tokio::test]
async fn a_non_tls_byte_stream() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    // A client connected before, and still connected after.
    let admin = cluster.admin().await;
    admin.ping().await.unwrap();
    let mut s = TcpStream::connect((cluster.addr.host.as_str(), cluster.addr.port))
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: auth\r\n\r\n")
        .await
        .unwrap();
    // The server closes the connection at once (long before its handshake deadline),
    // answering at most a TLS alert record, never HTTP.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the server closes a non-TLS connection promptly");
    assert!(
        read.is_ok() || got.is_empty(),
        "closed or reset: {read:?} {got:?}"
    );
    assert!(
        got.is_empty() || got[0] == 0x15,
        "only a TLS alert may come back: {got:?}"
    );
    admin.ping().await.unwrap();
    still_serving(&cluster).await;
}

#[tokio::test]
async fn an_oversized_grpc_message() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let admin = cluster.admin().await;
    let huge = RoleV6 {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Some(Metadata {
            name: "huge".into(),
            description: "x".repeat(tp_auth::server::MAX_REQUEST_BYTES + 1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = admin.create_role(huge).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert_eq!(
        e.status().map(tonic::Status::code),
        Some(tonic::Code::ResourceExhausted)
    );
    assert!(
        e.to_string().contains("request message too large")
            && e.to_string().contains("the limit is: 4194304 bytes"),
        "{e}"
    );
    // The same connection goes on serving, and nothing was stored.
    admin.ping().await.unwrap();
    assert_eq!(
        admin.get_role("huge").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    still_serving(&cluster).await;
}

/// The DER of the certificate in `pem`.
fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
