#![allow(dead_code, missing_docs, unreachable_pub)]
//! Shared test helpers: keys, certificates and connected pairs.

use std::sync::Arc;

use ssh_key::certificate::{Builder, CertType};
use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, Certificate, EcdsaCurve, PrivateKey, PublicKey};
use tp_ssh::{ClientConfig, KeyPair, ServerConfig, Session, fingerprint};

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn ed25519() -> PrivateKey {
    PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
}

pub fn p256() -> PrivateKey {
    PrivateKey::random(
        &mut OsRng,
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
    )
    .unwrap()
}

/// RSA keys come from ssh-keygen (fast), falling back to ssh-key.
pub fn rsa() -> PrivateKey {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        PrivateKey::read_openssh_file(&path).unwrap()
    } else {
        PrivateKey::random(&mut OsRng, Algorithm::Rsa { hash: None }).unwrap()
    }
}

#[derive(Clone)]
pub struct CertSpec {
    pub cert_type: CertType,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    pub critical: Vec<(String, String)>,
}

impl CertSpec {
    pub fn user(principals: &[&str]) -> Self {
        Self {
            cert_type: CertType::User,
            principals: principals.iter().map(|s| s.to_string()).collect(),
            valid_after: now() - 60,
            valid_before: now() + 3600,
            critical: Vec::new(),
        }
    }
    pub fn host(principals: &[&str]) -> Self {
        Self {
            cert_type: CertType::Host,
            ..Self::user(principals)
        }
    }
}

pub fn cert(ca: &PrivateKey, key: &PublicKey, spec: &CertSpec) -> Certificate {
    let mut b = Builder::new_with_random_nonce(
        &mut OsRng,
        key.key_data().clone(),
        spec.valid_after,
        spec.valid_before,
    )
    .unwrap();
    b.cert_type(spec.cert_type).unwrap();
    b.key_id("test").unwrap();
    if spec.principals.is_empty() {
        b.all_principals_valid().unwrap();
    }
    for p in &spec.principals {
        b.valid_principal(p.clone()).unwrap();
    }
    for (k, v) in &spec.critical {
        b.critical_option(k.clone(), v.clone()).unwrap();
    }
    b.extension("permit-port-forwarding", "").unwrap();
    b.sign(ca).unwrap()
}

pub struct Pki {
    pub user_ca: PrivateKey,
    pub host_ca: PrivateKey,
}

impl Pki {
    pub fn new() -> Self {
        Self {
            user_ca: ed25519(),
            host_ca: ed25519(),
        }
    }

    pub fn client(&self, user_key: &PrivateKey, spec: &CertSpec) -> ClientConfig {
        let c = cert(&self.user_ca, user_key.public_key(), spec);
        let kp = KeyPair::new(user_key).unwrap().with_certificate(c).unwrap();
        let mut cfg = ClientConfig::new("alice", Arc::new(kp));
        cfg.trusted_host_cas = vec![fingerprint(self.host_ca.public_key())];
        cfg
    }

    pub fn server(&self, host_key: &PrivateKey, spec: &CertSpec) -> ServerConfig {
        let c = cert(&self.host_ca, host_key.public_key(), spec);
        let kp = KeyPair::new(host_key).unwrap().with_certificate(c).unwrap();
        ServerConfig::new(Arc::new(kp), vec![fingerprint(self.user_ca.public_key())])
    }
}

pub async fn pair(
    client: ClientConfig,
    server: ServerConfig,
) -> (
    Result<Session, tp_ssh::Error>,
    Result<(Session, tp_ssh::AuthInfo), tp_ssh::Error>,
) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let peer = Some("127.0.0.1".parse().unwrap());
    let s = tokio::spawn(tp_ssh::Server::accept(b, Arc::new(server), peer));
    let c = tp_ssh::Client::connect(a, Arc::new(client)).await;
    let s = s.await.unwrap();
    (c, s)
}

pub async fn connected(client: ClientConfig, server: ServerConfig) -> (Session, Session) {
    let (c, s) = pair(client, server).await;
    (c.expect("client connects"), s.expect("server accepts").0)
}
