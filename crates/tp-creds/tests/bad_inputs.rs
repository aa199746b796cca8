//! Every bad input is a typed error whose message names the file and the problem.

mod common;

use std::path::Path;

use common::{Pki, now};
use tp_creds::{
    Credentials, Error, Format, IdentityFile, KeyAlgorithm, KeyPair, PrivateKey, Profile,
    ProfileConfig, write_profile,
};

fn load_id(path: &Path) -> Error {
    IdentityFile::from_path(path).load().unwrap_err()
}

fn write_id(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn good_text(pki: &Pki) -> String {
    pki.valid_bundle(KeyAlgorithm::EcdsaP256)
        .encode()
        .unwrap()
        .to_string()
}

#[test]
fn missing_file() {
    let e = load_id(Path::new("/nonexistent/dir/identity"));
    assert!(matches!(e, Error::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("cannot read /nonexistent/dir/identity: "),
        "{e}"
    );
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_id(dir.path(), "identity", "\n\n");
    let e = load_id(&p).to_string();
    assert_eq!(e, format!("{}: the identity file is empty", p.display()));
}

#[test]
fn pem_blocks_out_of_order() {
    // Certificate first: positional parsing takes it as the key, which is then refused.
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let b = pki.valid_bundle(KeyAlgorithm::EcdsaP256);
    let text = format!(
        "{}{}{}{}",
        b.tls_cert.as_ref().unwrap(),
        b.key.to_pem().unwrap().as_str(),
        b.ssh_cert.as_ref().unwrap(),
        pki.ca_pem()
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write_id(dir.path(), "identity", &text);
    let e = load_id(&p);
    assert!(matches!(e, Error::UnsupportedKey { .. }), "{e:?}");
    let e = e.to_string();
    assert!(
        e.starts_with(&p.display().to_string()) && e.contains("PEM block \"CERTIFICATE\""),
        "{e}"
    );
}

#[test]
fn key_that_does_not_match_the_certificate() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let mut b = pki.valid_bundle(KeyAlgorithm::EcdsaP256);
    b.key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("identity");
    b.write(Format::File, &p).unwrap();
    let e = load_id(&p);
    assert!(
        matches!(e, Error::KeyMismatch { which: "TLS", .. }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}: the private key does not match the TLS certificate's public key",
            p.display()
        )
    );
}

#[test]
fn truncated_certificate() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let b = pki.valid_bundle(KeyAlgorithm::EcdsaP256);
    // Cut the TLS certificate's body in half but keep the PEM frame.
    let cert = b.tls_cert.clone().unwrap();
    let lines: Vec<&str> = cert.lines().collect();
    let cut = format!(
        "{}\n{}\n{}\n",
        lines[0],
        lines[1..lines.len() - 1].join("").get(..200).unwrap(),
        lines[lines.len() - 1]
    );
    let text = b.encode().unwrap().replace(&cert, &cut);
    assert!(text.contains(&cut));
    let dir = tempfile::tempdir().unwrap();
    let p = write_id(dir.path(), "identity", &text);
    let e = load_id(&p).to_string();
    assert!(
        e.starts_with(&p.display().to_string())
            && e.contains("X.509 certificate does not parse (truncated or corrupt?)"),
        "{e}"
    );
    // And a PEM block cut before its END line.
    let at = text.find("-----BEGIN CERTIFICATE-----").unwrap() + 100;
    let p = write_id(dir.path(), "identity2", &text[..at]);
    let e = load_id(&p).to_string();
    assert!(e.contains("has no END line (truncated?)"), "{e}");
}

#[test]
fn unsupported_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let p384 = "-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDBuMf2mZrrFO7Kmj4xc\nYLhkeHC/dWBYHxWlCfYUVU26+MjoPyB6YDAbIAsVg0dMa0ehZANiAARPb6jdb0xX\nHZv7hQbYadpOgaUj+5+Wm9iG1vOKNNKEWZTgRBwyA7wlMq0xXy6Tkg9YM8RJGRnP\nrfAoOhvEoZ6JITy4u1YrqSiKfhiwFdbSuZNl5x5GJ05bBHOzUoFGiHg=\n-----END PRIVATE KEY-----\n";
    let p = write_id(dir.path(), "key.pem", p384);
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let cert = write_id(
        dir.path(),
        "cert.pem",
        &pki.valid_bundle(KeyAlgorithm::EcdsaP256).tls_cert.unwrap(),
    );
    let e = KeyPair::new(&cert, &p, dir.path().join("ca"))
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("{}: unsupported private key", p.display())),
        "{e}"
    );
    let e = PrivateKey::from_pem(p384, "key.pem")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("key.pem: unsupported private key (ECDSA key on curve 1.3.132.0.34)"),
        "{e}"
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    pki.bundle(KeyAlgorithm::EcdsaP256, now() - 7200, now() - 3600)
        .write(Format::File, &old)
        .unwrap();
    let e = IdentityFile::from_path(&old)
        .load_valid(std::time::SystemTime::now())
        .unwrap_err();
    assert!(matches!(e, Error::Expired { which: "TLS", .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: the TLS certificate expired at ",
            old.display()
        )) && msg.contains("(now "),
        "{msg}"
    );
    // Loading without the check still works (to print what the credential says).
    assert!(IdentityFile::from_path(&old).load().is_ok());

    let future = dir.path().join("future");
    pki.bundle(KeyAlgorithm::EcdsaP256, now() + 3600, now() + 7200)
        .write(Format::File, &future)
        .unwrap();
    let e = IdentityFile::from_path(&future)
        .load_valid(std::time::SystemTime::now())
        .unwrap_err();
    assert!(matches!(e, Error::NotYetValid { .. }), "{e:?}");
    assert!(e.to_string().contains("is not valid until"), "{e}");
}

#[test]
fn no_ca() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let mut b = pki.valid_bundle(KeyAlgorithm::EcdsaP256);
    b.tls_cas.clear();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("identity");
    b.write(Format::File, &p).unwrap();
    let e = load_id(&p).to_string();
    assert_eq!(
        e,
        format!(
            "{}: no trusted CA certificate (expected at least one PEM CERTIFICATE)",
            p.display()
        )
    );
    // A key pair whose CA file holds no certificate.
    let files = pki
        .valid_bundle(KeyAlgorithm::EcdsaP256)
        .write(Format::Tls, &dir.path().join("kp"))
        .unwrap();
    std::fs::write(&files[2], "").unwrap();
    let e = KeyPair::new(&files[1], &files[0], &files[2])
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&files[2].display().to_string()) && e.contains("no trusted CA certificate"),
        "{e}"
    );
}

#[test]
fn profile_dir_without_current_profile() {
    let dir = tempfile::tempdir().unwrap();
    let e = Profile::new(dir.path(), None).load().unwrap_err();
    assert!(matches!(e, Error::NoCurrentProfile { .. }));
    assert!(e.to_string().starts_with(&dir.path().display().to_string()));
}

#[test]
fn profile_naming_a_missing_key() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    let cfg = ProfileConfig::new("proxy.example.com:3080", "alice", common::CLUSTER);
    write_profile(
        dir.path(),
        &cfg,
        &pki.valid_bundle(KeyAlgorithm::EcdsaP256),
        true,
    )
    .unwrap();
    let key = dir.path().join("keys/proxy.example.com/alice.key");
    std::fs::remove_file(&key).unwrap();
    let e = Profile::new(dir.path(), None)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("cannot read {}", key.display())),
        "{e}"
    );
    // A profile YAML without web_proxy_addr.
    std::fs::write(dir.path().join("proxy.example.com.yaml"), "user: alice\n").unwrap();
    let e = Profile::new(dir.path(), None)
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proxy.example.com.yaml: invalid or empty profile: web_proxy_addr is not set"),
        "{e}"
    );
}

#[test]
fn unreadable_file() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be cannot be read by anyone, root included.
    let e = load_id(dir.path()).to_string();
    assert!(
        e.starts_with(&format!("cannot read {}: ", dir.path().display())),
        "{e}"
    );
    // Mode 0000: unreadable for an unprivileged user (root reads anything, so the
    // assertion only applies when the read is actually refused).
    let p = write_id(dir.path(), "identity", &good_text(&pki));
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&p).is_err() {
        let e = load_id(&p).to_string();
        assert!(
            e.starts_with(&format!("cannot read {}: Permission denied", p.display())),
            "{e}"
        );
    }
}
