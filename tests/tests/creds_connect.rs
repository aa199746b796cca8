//! The SDK end to end: the cluster signs certificates for a user, tp-creds writes them as
//! an identity file and a tsh profile, and `tp-client` connects with what tp-creds loads
//! from them. Stale credentials fail before any dial, naming the file.

use std::time::Duration;

use tp_client::{Client, Config, ErrorKind};
use tp_creds::{Format, IdentityFile, Profile, ProfileConfig, write_profile};
use tp_tests::cluster::TestCluster;

#[tokio::test(flavor = "multi_thread")]
async fn identity_file_and_profile_connect() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let b = c.identity_bundle("carol", &["editor"], 3600).await;
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
    let b = c.identity_bundle("dave", &["access"], 1).await;
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
