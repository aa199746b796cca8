//! Every loader reads what every writer writes, for every key type, and yields the same
//! identity, validity, CAs and SSH material.

mod common;

use std::time::SystemTime;

use common::{CLUSTER, Pki, now};
use tp_creds::{
    Credentials, Format, IdentityBundle, IdentityFile, KeyAlgorithm, KeyPair, Material, Profile,
    ProfileConfig, ReloadingIdentityFile, Tls, write_profile,
};

const ALGS: [KeyAlgorithm; 3] = [
    KeyAlgorithm::Ed25519,
    KeyAlgorithm::EcdsaP256,
    KeyAlgorithm::Rsa { bits: 2048 },
];

fn assert_alice(m: &Material, with_ssh: bool) {
    let id = m.identity.as_ref().expect("identity");
    assert_eq!(id.username, "alice");
    assert_eq!(id.groups.len(), 2);
    assert_eq!(id.teleport_cluster, CLUSTER);
    assert_eq!(m.server_name, "teleport.cluster.local");
    assert_eq!(m.tls.alpn_protocols, [b"h2".to_vec()]);
    assert!(m.tls.client_auth_cert_resolver.has_certs());
    m.check_time(SystemTime::now()).unwrap();
    match (&m.ssh, with_ssh) {
        (Some(ssh), true) => {
            assert_eq!(ssh.user, "alice");
            assert_eq!(ssh.certificate.key_id(), "alice");
            assert_eq!(ssh.host_cas.len(), 1);
        }
        (None, false) => {}
        (ssh, _) => panic!("unexpected SSH material {ssh:?}"),
    }
}

#[test]
fn identity_file_round_trips_for_every_key_type() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    for alg in ALGS {
        let b = pki.valid_bundle(alg);
        let path = dir.path().join(format!("id-{alg}"));
        b.write(Format::File, &path).unwrap();
        let m = IdentityFile::from_path(&path).load().unwrap();
        assert_alice(&m, true);
        assert_eq!(
            m.tls_validity.unwrap().not_after,
            IdentityFile::from_path(&path)
                .load()
                .unwrap()
                .tls_validity
                .unwrap()
                .not_after
        );
        // From a string too.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_alice(&IdentityFile::from_string(text).load().unwrap(), true);
    }
}

#[test]
fn tls_format_is_a_key_pair() {
    let pki = Pki::new(KeyAlgorithm::Rsa { bits: 2048 });
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("out");
    let files = pki
        .valid_bundle(KeyAlgorithm::EcdsaP256)
        .write(Format::Tls, &prefix)
        .unwrap();
    assert_eq!(files.len(), 3);
    let m = KeyPair::new(
        dir.path().join("out.crt"),
        dir.path().join("out.key"),
        dir.path().join("out.cas"),
    )
    .load()
    .unwrap();
    assert_alice(&m, false);
}

#[test]
fn openssh_format_is_read_by_the_cert_pub_fallback() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let b = pki.valid_bundle(KeyAlgorithm::Ed25519);
    let path = dir.path().join("id");
    b.write(Format::OpenSsh, &path).unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    // An identity file without its SSH certificate finds it in <path>-cert.pub.
    let mut no_ssh = IdentityBundle::parse(&b.encode().unwrap(), "t").unwrap();
    no_ssh.ssh_cert = None;
    let id_path = dir.path().join("id2");
    no_ssh.write(Format::File, &id_path).unwrap();
    std::fs::copy(
        format!("{}-cert.pub", path.display()),
        format!("{}-cert.pub", id_path.display()),
    )
    .unwrap();
    assert_alice(&IdentityFile::from_path(&id_path).load().unwrap(), true);
    // From a string there is no fallback.
    let e = IdentityFile::from_string(no_ssh.encode().unwrap().to_string())
        .load()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no SSH certificate in the identity file"), "{e}");
}

#[test]
fn profile_round_trips_and_names_the_proxy() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let cfg = ProfileConfig::new("proxy.example.com:3080", "alice", CLUSTER);
    write_profile(
        dir.path(),
        &cfg,
        &pki.valid_bundle(KeyAlgorithm::Ed25519),
        true,
    )
    .unwrap();
    let m = Profile::new(dir.path(), None).load().unwrap();
    assert_alice(&m, true);
    assert_eq!(m.proxy_addr.as_deref(), Some("proxy.example.com:3080"));
    let m = Profile::new(dir.path(), Some("proxy.example.com"))
        .load()
        .unwrap();
    assert_alice(&m, true);
    // Keys 0600, directories 0700.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let keys = dir.path().join("keys/proxy.example.com");
    assert_eq!(mode(&keys.join("alice.key")), 0o600);
    assert_eq!(mode(&keys.join("alice")), 0o600);
    assert_eq!(mode(&keys), 0o700);
}

#[test]
fn v16_profile_layout_is_read() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let cfg = ProfileConfig::new("proxy.example.com:3080", "alice", CLUSTER);
    write_profile(
        dir.path(),
        &cfg,
        &pki.valid_bundle(KeyAlgorithm::Rsa { bits: 2048 }),
        true,
    )
    .unwrap();
    // Rewrite into the v16 layout: one key <user>, TLS cert <user>-x509.pem, CAs in certs.pem.
    let keys = dir.path().join("keys/proxy.example.com");
    std::fs::rename(keys.join("alice.crt"), keys.join("alice-x509.pem")).unwrap();
    std::fs::remove_file(keys.join("alice.key")).unwrap();
    std::fs::rename(
        keys.join(format!("cas/{CLUSTER}.pem")),
        keys.join("certs.pem"),
    )
    .unwrap();
    std::fs::remove_dir(keys.join("cas")).unwrap();
    assert_alice(&Profile::new(dir.path(), None).load().unwrap(), true);
}

#[test]
fn reloading_identity_file_swaps_in_new_material_and_keeps_the_last_good() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity");
    pki.bundle(KeyAlgorithm::EcdsaP256, now() - 60, now() + 600)
        .write(Format::File, &path)
        .unwrap();
    let creds = ReloadingIdentityFile::new(&path).unwrap();
    let first = creds.load().unwrap().tls_validity.unwrap().not_after;

    // A bot renews the identity (atomically, so the inode changes).
    pki.bundle(KeyAlgorithm::EcdsaP256, now() - 60, now() + 7200)
        .write(Format::File, &path)
        .unwrap();
    let second = creds.load().unwrap().tls_validity.unwrap().not_after;
    assert!(second > first + 3000, "{first} -> {second}");
    assert_eq!(creds.last_reload_error(), None);

    // A broken write: the last good material stays in use and the error is reported.
    std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\ntruncated").unwrap();
    let third = creds.load().unwrap().tls_validity.unwrap().not_after;
    assert_eq!(third, second);
    let e = creds.last_reload_error().expect("error kept");
    assert!(
        e.contains(&path.display().to_string()) && e.contains("no END line"),
        "{e}"
    );
    assert!(creds.reload().is_err());
}

#[test]
fn caller_built_tls_config_gets_h2_and_no_validity() {
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let m = Tls::new(std::sync::Arc::new(cfg)).load().unwrap();
    assert_eq!(m.tls.alpn_protocols, [b"h2".to_vec()]);
    assert!(m.tls_validity.is_none() && m.ssh.is_none());
    m.check_time(SystemTime::now()).unwrap();
}

#[test]
fn material_debug_never_shows_keys() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let b = pki.valid_bundle(KeyAlgorithm::Ed25519);
    let m = b.material("t").unwrap();
    let printed = format!("{m:?} {b:?}");
    assert!(!printed.contains("PRIVATE"), "{printed}");
    let pem = b.key.to_pem().unwrap();
    let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
    assert!(!printed.contains(&body));
}
