//! A throwaway cluster PKI for the loader tests: a user CA (X.509 and SSH), an SSH host
//! CA, and identities signed by them.
#![allow(dead_code, reason = "each test file uses part of the fixture")]

use std::time::{SystemTime, UNIX_EPOCH};

use tp_creds::sign::{X509Signer, self_signed_ca};
use tp_creds::{IdentityBundle, KeyAlgorithm, PrivateKey, SshIdentity, TlsIdentity};

pub(crate) const CLUSTER: &str = "example.com";

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(crate) struct Pki {
    pub(crate) ca_key: PrivateKey,
    pub(crate) ca_der: Vec<u8>,
    pub(crate) ssh_ca: ssh_key::PrivateKey,
    pub(crate) host_ca: ssh_key::PrivateKey,
}

impl Pki {
    pub(crate) fn new(alg: KeyAlgorithm) -> Self {
        let ca_key = PrivateKey::generate(alg).unwrap();
        let ca_der = self_signed_ca(CLUSTER, &ca_key, now() - 3600, now() + 86400).unwrap();
        let ssh_ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let host_ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        Self {
            ca_key,
            ca_der,
            ssh_ca,
            host_ca,
        }
    }

    pub(crate) fn ca_pem(&self) -> String {
        tp_creds::pem::encode("CERTIFICATE", &self.ca_der)
    }

    pub(crate) fn host_ca_line(&self) -> String {
        format!(
            "@cert-authority proxy.example.com,{CLUSTER},*.{CLUSTER} {} type=host\n",
            self.host_ca.public_key().to_openssh().unwrap()
        )
    }

    pub(crate) fn tls_identity(&self) -> TlsIdentity {
        let mut id = TlsIdentity::user("alice", vec!["access".into(), "editor".into()], CLUSTER);
        id.principals = vec!["alice".into(), "root".into()];
        id.traits
            .insert("logins".into(), vec!["alice".into(), "root".into()]);
        id
    }

    /// An identity for a new key of `alg`, valid from `nb` to `na`.
    pub(crate) fn bundle(&self, alg: KeyAlgorithm, nb: i64, na: i64) -> IdentityBundle {
        let key = PrivateKey::generate(alg).unwrap();
        let signer = X509Signer::new(&self.ca_der, &self.ca_key).unwrap();
        let tls = signer
            .issue(
                &self.tls_identity(),
                &key.public_key_spki_der().unwrap(),
                nb,
                na,
                &[],
            )
            .unwrap();
        let mut ssh_id =
            SshIdentity::user("alice", vec!["access".into(), "editor".into()], CLUSTER);
        ssh_id.logins = vec!["alice".into(), "root".into()];
        let ssh = ssh_id
            .sign(
                &key.ssh_public_key().unwrap(),
                &self.ssh_ca,
                nb as u64,
                na as u64,
            )
            .unwrap();
        let mut b = IdentityBundle::new(key);
        b.ssh_cert = Some(format!("{}\n", ssh.to_openssh().unwrap()));
        b.tls_cert = Some(tp_creds::pem::encode("CERTIFICATE", &tls));
        b.ssh_cas = vec![self.host_ca_line()];
        b.tls_cas = vec![self.ca_pem()];
        b
    }

    pub(crate) fn valid_bundle(&self, alg: KeyAlgorithm) -> IdentityBundle {
        self.bundle(alg, now() - 60, now() + 3600)
    }
}
