//! Joining with a provision token against the real Auth server, with tp-client's
//! `join` module: the two calls open without a client certificate, the certificates a
//! proxy gets and what its identity may do, and every refusal (unknown, expired or
//! wrong-role token; the Admin role; a bad host ID; a CA pin of another cluster), each
//! audited with the token masked.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tp_auth::ca::Issued;
use tp_client::ErrorKind;
use tp_client::join::{JoinConfig, fetch_cluster_ca, register_using_token};
use tp_creds::{KeyAlgorithm, PrivateKey};
use tp_proto::types::{
    Metadata, ProvisionTokenSpecV2, ProvisionTokenV2, RegisterUsingTokenRequest,
};
use tp_tests::cluster::{TestCluster, now};

async fn add_token(cluster: &TestCluster, name: &str, roles: &[&str], expires: i64) {
    cluster
        .admin()
        .await
        .create_token(ProvisionTokenV2 {
            kind: "token".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: name.into(),
                expires: Some(prost_types::Timestamp {
                    seconds: expires,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            spec: Some(ProvisionTokenSpecV2 {
                roles: roles.iter().map(|r| r.to_string()).collect(),
                join_method: "token".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A join request for role `role` with token `token` and a fresh key; the key too.
fn request(token: &str, role: &str) -> (RegisterUsingTokenRequest, PrivateKey) {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let spki = key.public_key_spki_der().unwrap();
    let ssh = key.ssh_public_key().unwrap().to_openssh().unwrap();
    (
        RegisterUsingTokenRequest {
            host_id: "0b5c6a1e-5f3e-4e0c-9d47-1f2a3b4c5d6e".into(),
            node_name: "proxy-1".into(),
            role: role.into(),
            token: token.into(),
            additional_principals: vec!["proxy.example.com".into(), "127.0.0.1".into()],
            public_tls_key: tp_creds::pem::encode("PUBLIC KEY", &spki).into_bytes(),
            public_ssh_key: ssh.into_bytes(),
            ..Default::default()
        },
        key,
    )
}

/// The `instance.join` audit events so far.
async fn joins(cluster: &TestCluster) -> Vec<tp_auth::audit::AuditEvent> {
    let page = cluster.auth.list_audit_events("", 1000).await.unwrap();
    page.events
        .into_iter()
        .filter(|e| e.event == "instance.join")
        .collect()
}

fn pin_of(cluster: &TestCluster) -> String {
    let der = CertificateDer::from_pem_slice(&cluster.host_ca_pem()).unwrap();
    tp_creds::cert::ca_pin(&der, "host CA").unwrap()
}

#[tokio::test]
async fn a_proxy_joins_with_a_token_and_gets_a_proxy_identity() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let pin = pin_of(&cluster);
    let cfg = JoinConfig::new(cluster.addr.clone(), vec![pin.clone()]);

    // Open without a certificate: the host CA, which the pin matches.
    let cas = fetch_cluster_ca(&cfg).await.unwrap();
    assert_eq!(cas.len(), 1);
    assert_eq!(tp_creds::cert::ca_pin(&cas[0], "ca").unwrap(), pin);

    add_token(&cluster, "join-token-0123456789", &["Proxy"], now() + 600).await;
    let (req, key) = request("join-token-0123456789", "proxy");
    let certs = register_using_token(&cfg, req.clone()).await.unwrap();

    // X.509: CN <host id>.<cluster>, O Proxy, the principals as names.
    let tls = String::from_utf8(certs.tls.clone()).unwrap();
    let der = CertificateDer::from_pem_slice(tls.as_bytes()).unwrap();
    let id = tp_creds::TlsIdentity::from_certificate_der(&der, "joined").unwrap();
    assert_eq!(id.username, format!("{}.example.com", req.host_id));
    assert_eq!(id.groups, ["Proxy"]);
    tp_creds::cert::check_x509_key(&der, &key, "joined").unwrap();
    // Long-lived, as Teleport's host certificates are (replaced by CA rotation).
    let validity = tp_creds::cert::x509_validity(&der, "joined").unwrap();
    assert!((validity.not_after - now() - tp_auth::service::HOST_CERT_TTL).abs() < 120);
    // SSH: a host certificate for the same key with Teleport's extensions.
    let ssh =
        tp_creds::cert::parse_ssh_cert(std::str::from_utf8(&certs.ssh).unwrap(), "ssh").unwrap();
    let host = tp_creds::SshHostIdentity::from_certificate(&ssh, "ssh").unwrap();
    assert_eq!(host.role, "Proxy");
    assert_eq!(host.cluster, "example.com");
    for p in [
        req.host_id.as_str(),
        "proxy-1",
        "proxy.example.com",
        "127.0.0.1",
    ] {
        assert!(host.principals.iter().any(|x| x == p), "{p}: {host:?}");
    }
    assert_eq!(certs.tlsca_certs, [cluster.host_ca_pem()]);
    assert_eq!(certs.sshca_certs.len(), 1);

    // The identity works as a proxy's: it reads the user CA, nothing more.
    let joined = cluster
        .client(&Issued {
            cert_pem: tls,
            key_pem: key.to_pem().unwrap().to_string(),
        })
        .await;
    assert!(
        joined
            .get_cert_authority("user", "example.com", false)
            .await
            .is_ok()
    );
    let e = joined.get_users(false).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");

    // A `token` method token stays usable until it expires (several hosts may join).
    let (again, _) = request("join-token-0123456789", "Proxy");
    register_using_token(&cfg, again).await.unwrap();

    // Audited, the token masked.
    let joins = joins(&cluster).await;
    assert_eq!(joins.len(), 2);
    assert!(
        joins
            .iter()
            .all(|e| e.success && !e.name.contains("join-token"))
    );
}

#[tokio::test]
async fn join_refusals_say_what_they_may_and_are_audited() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let cfg = JoinConfig::new(cluster.addr.clone(), vec![pin_of(&cluster)]);
    add_token(&cluster, "node-only-token-000", &["Node"], now() + 600).await;
    add_token(&cluster, "expired-token-00000", &["Proxy"], now() - 5).await;

    // Unknown, expired, or for another role: one message, which check failed unsaid.
    for token in [
        "no-such-token-0000",
        "expired-token-00000",
        "node-only-token-000",
    ] {
        let (req, _) = request(token, "Proxy");
        let e = register_using_token(&cfg, req).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{token}: {e}");
        assert!(e.to_string().contains("the join token is not valid"), "{e}");
    }
    // Nothing joins as the administrator; a host ID must be ID-like.
    let (req, _) = request("node-only-token-000", "Admin");
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadParameter, "{e}");
    assert!(
        e.to_string()
            .contains("\"Admin\" is not a system role a host can join as")
    );
    let (mut req, _) = request("node-only-token-000", "Node");
    req.host_id = "../etc".into();
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadParameter, "{e}");
    assert!(e.to_string().contains("hostID"), "{e}");

    // Nor as the Auth server, under a built-in identity's name, with the Auth server's
    // names, or with an empty token.
    let (req, _) = request("node-only-token-000", "auth");
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadParameter, "{e}");
    let (mut req, _) = request("node-only-token-000", "Node");
    req.host_id = "admin".into();
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert!(e.to_string().contains("built-in identities"), "{e}");
    let (mut req, _) = request("node-only-token-000", "Node");
    req.dns_names = vec!["*.teleport.cluster.local".into()];
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert!(e.to_string().contains("names the Auth server"), "{e}");
    let (req, _) = request("", "Node");
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BadParameter, "{e}");
    // A token of another join method is no `token` token.
    let admin = cluster.admin().await;
    let mut iam = admin.get_token("node-only-token-000").await.unwrap();
    iam.metadata.as_mut().unwrap().name = "iam-method-token-00".into();
    iam.metadata.as_mut().unwrap().revision.clear();
    iam.spec.as_mut().unwrap().join_method = "iam".into();
    admin.create_token(iam).await.unwrap();
    let (req, _) = request("iam-method-token-00", "Node");
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert!(e.to_string().contains("the join token is not valid"), "{e}");

    // A pin of another cluster: refused before the token is sent.
    let other = JoinConfig::new(
        cluster.addr.clone(),
        vec![format!("sha256:{}", "00".repeat(32))],
    );
    let (req, _) = request("node-only-token-000", "Node");
    let e = register_using_token(&other, req).await.unwrap_err();
    assert!(e.to_string().contains("matches none of the CA pins"), "{e}");

    let joins = joins(&cluster).await;
    assert_eq!(
        joins.len(),
        10,
        "every refused attempt is audited: {joins:?}"
    );
    assert!(
        joins
            .iter()
            .all(|e| !e.success && !e.name.contains("token"))
    );
}

#[tokio::test]
async fn failed_joins_are_limited_per_address() {
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let cfg = JoinConfig::new(cluster.addr.clone(), vec![pin_of(&cluster)]);
    add_token(&cluster, "good-proxy-token-00", &["Proxy"], now() + 600).await;
    for i in 0..tp_auth::service::MAX_FAILED_JOINS {
        let (req, _) = request(&format!("guess-{i:04}-000000"), "Proxy");
        let e = register_using_token(&cfg, req).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{e}");
    }
    // Now even the right token is refused from this address, saying why.
    let (req, _) = request("good-proxy-token-00", "Proxy");
    let e = register_using_token(&cfg, req).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    assert!(
        e.to_string().contains("too many failed join attempts"),
        "{e}"
    );
}

/// A client with no certificate reaches the two joining calls and nothing else: every
/// other call is AccessDenied before any handler runs, so none is audited.
#[tokio::test]
async fn anonymous_callers_reach_only_the_joining_calls() {
    use std::sync::Arc;
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&cluster.host_ca_pem()).unwrap())
        .unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(tp_tests::pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tp_transport::connector::Connector::new(
        vec![tp_client::Target::Direct {
            addr: cluster.addr.clone(),
            tls: Arc::new(tls),
            server_name: "teleport.cluster.local".into(),
            credential: "none".into(),
        }],
        std::time::Duration::from_secs(5),
        Default::default(),
    );
    let channel = tonic::transport::Endpoint::from_static("http://teleport.cluster.local")
        .connect_with_connector(connector)
        .await
        .unwrap();
    let c = tp_client::Client::from_channel(channel).with_read_retries(0);
    let count = || async {
        cluster
            .auth
            .list_audit_events("", 1000)
            .await
            .unwrap()
            .events
            .len()
    };
    let before = count().await;
    let denied = |what: &str, e: tp_client::Error| {
        assert_eq!(e.kind(), ErrorKind::AccessDenied, "{what}: {e}");
        assert!(
            e.to_string().contains("no client certificate"),
            "{what}: {e}"
        );
    };
    denied("Ping", c.ping().await.unwrap_err());
    denied("GetUsers", c.get_users(false).await.unwrap_err());
    denied(
        "GetCertAuthority",
        c.get_cert_authority("user", "example.com", false)
            .await
            .unwrap_err(),
    );
    denied(
        "ListAuditEvents",
        c.list_audit_events("", 10).await.unwrap_err(),
    );
    let role = tp_proto::types::RoleV6 {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Some(Metadata {
            name: "sneaky".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    denied("CreateRole", c.create_role(role).await.unwrap_err());
    denied(
        "AuthenticateSSHUser",
        c.authenticate_ssh_user(Default::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        before,
        count().await,
        "anonymous refusals write no audit events"
    );
}
