//! The SDK end to end: the cluster signs certificates for a user, tp-creds writes them as
//! an identity file and a tsh profile, and `tp-client` connects with what tp-creds loads
//! from them. Stale credentials fail before any dial, naming the file.

use std::time::Duration;

use tp_client::{Client, Config, ErrorKind};
use tp_creds::{
    Format, IdentityBundle, IdentityFile, KeyAlgorithm, PrivateKey, Profile, ProfileConfig,
    write_profile,
};
use tp_proto::proto::UserCertsRequest;
use tp_proto::types::{Metadata, UserSpecV2, UserV2};
use tp_tests::cluster::{TestCluster, now};

async fn issue_bundle(c: &TestCluster, user: &str, roles: &[&str], ttl: i64) -> IdentityBundle {
    let admin = c.admin().await;
    admin
        .create_user(UserV2 {
            kind: "user".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: user.into(),
                ..Default::default()
            }),
            spec: Some(UserSpecV2 {
                roles: roles.iter().map(|r| (*r).to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let spki = tp_creds::pem::encode("PUBLIC KEY", &key.public_key_spki_der().unwrap());
    let ssh_pub = key.ssh_public_key().unwrap().to_openssh().unwrap();
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: user.into(),
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
        .unwrap();
    let mut b = IdentityBundle::new(key);
    b.tls_cert = Some(String::from_utf8(certs.tls).unwrap());
    b.ssh_cert = Some(String::from_utf8(certs.ssh).unwrap());
    b.tls_cas = vec![String::from_utf8(c.host_ca_pem()).unwrap()];
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_file_and_profile_connect() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let b = issue_bundle(&c, "carol", &["editor"], 3600).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity");
    b.write(Format::File, &path).unwrap();

    let addr = c.addr.to_string();
    let config = Config::new()
        .dial_timeout(Duration::from_secs(5))
        .credentials(&IdentityFile::from_path(&path), &[&addr])
        .unwrap();
    let client = Client::connect(config).await.unwrap();
    assert!(client.get_role("editor").await.is_ok());

    // The same identity as a tsh profile, addressed explicitly (its proxy is not running).
    let tsh = dir.path().join("tsh");
    write_profile(
        &tsh,
        &ProfileConfig::new("proxy.example.com:3080", "carol", "example.com"),
        &b,
        true,
    )
    .unwrap();
    let config = Config::new()
        .dial_timeout(Duration::from_secs(5))
        .credentials(&Profile::new(&tsh, None), &[&addr])
        .unwrap();
    let client = Client::connect(config).await.unwrap();
    assert!(client.get_roles().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_credentials_fail_before_any_dial() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    // A one-second certificate, left to expire.
    let b = issue_bundle(&c, "dave", &["access"], 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity");
    b.write(Format::File, &path).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // 192.0.2.1 (TEST-NET-1) would hang a real dial: the error must come first.
    let e = Config::new()
        .credentials(&IdentityFile::from_path(&path), &["192.0.2.1:3025"])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CredentialsExpired);
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("expired at"),
        "{msg}"
    );
}
