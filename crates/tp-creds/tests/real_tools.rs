//! Real tools accept what tp-creds writes: `ssh-keygen -L` reads our SSH certificates,
//! `openssl verify` accepts our X.509 chains and `openssl x509 -subject` shows the
//! identity. The tools are installed by `.ci/run`; a missing tool fails the test.

mod common;

use std::process::Command;

use common::{CLUSTER, Pki};
use tp_creds::{Format, KeyAlgorithm};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} ({e}); .ci/run installs openssh-client and openssl")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn ssh_keygen_reads_our_user_certificates() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let dir = tempfile::tempdir().unwrap();
    for alg in [
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa { bits: 2048 },
    ] {
        let path = dir.path().join(format!("id-{alg}"));
        pki.valid_bundle(alg).write(Format::OpenSsh, &path).unwrap();
        let out = run(Command::new("ssh-keygen")
            .arg("-L")
            .arg("-f")
            .arg(format!("{}-cert.pub", path.display())));
        assert!(
            out.contains("Type: ") && out.contains("user certificate"),
            "{out}"
        );
        assert!(out.contains("Key ID: \"alice\""), "{out}");
        for p in ["alice", "root", "-teleport-internal-join"] {
            assert!(
                out.contains(&format!("\n                {p}\n")),
                "principal {p}: {out}"
            );
        }
        assert!(out.contains("Valid: from "), "{out}");
        for ext in [
            "permit-pty",
            "teleport-roles",
            "teleport-route-to-cluster",
            "teleport-traits",
        ] {
            assert!(out.contains(ext), "extension {ext}: {out}");
        }
        // ssh-keygen also reads our OpenSSH private key and derives the same public key.
        let public = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&path));
        let cert = std::fs::read_to_string(format!("{}-cert.pub", path.display())).unwrap();
        let cert = ssh_key::Certificate::from_openssh(cert.trim()).unwrap();
        let key = ssh_key::PublicKey::from_openssh(public.trim()).unwrap();
        assert_eq!(key.key_data(), cert.public_key(), "{alg}");
    }
}

#[test]
fn openssl_verifies_our_chains_and_shows_the_identity() {
    let dir = tempfile::tempdir().unwrap();
    for ca_alg in [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::Rsa { bits: 2048 },
        KeyAlgorithm::Ed25519,
    ] {
        let pki = Pki::new(ca_alg);
        let prefix = dir.path().join(format!("tls-{ca_alg}"));
        let files = pki
            .valid_bundle(KeyAlgorithm::EcdsaP256)
            .write(Format::Tls, &prefix)
            .unwrap();
        let out = run(Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&files[2])
            .arg(&files[1]));
        assert!(out.contains(": OK"), "{ca_alg}: {out}");
        let out = run(Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&files[1]));
        for part in [
            "CN=alice",
            "O=access",
            "O=editor",
            "L=alice",
            "L=root",
            &format!("street={CLUSTER}"),
        ] {
            assert!(out.contains(part), "{part}: {out}");
        }
        assert!(out.contains("1.3.9999.1.7="), "{out}");
        // The key file is one openssl reads too.
        run(Command::new("openssl")
            .args(["pkey", "-noout", "-in"])
            .arg(&files[0]));
    }
}
