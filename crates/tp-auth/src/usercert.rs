//! User certificates: the X.509 certificate with Teleport's identity subject (several
//! roles in O, several logins in L) and the OpenSSH user certificate with Teleport's
//! extensions, both signed by the user CA.
//!
//! The wire encodings are `tp-creds`'s, so there is one of each: the subject is
//! [`tp_creds::TlsIdentity`] (Go's `pkix` order and `SET OF` sorting), the leaf is signed
//! by [`tp_creds::sign::X509Signer`] (a CA key of any type tp supports), and the SSH
//! fields and extensions are [`tp_creds::SshIdentity`]'s.

use std::collections::BTreeMap;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use ssh_key::{PrivateKey, PublicKey};
use tp_creds::sign::X509Signer;
use tp_creds::{SshIdentity, TlsIdentity};
use tp_proto::types::CertAuthorityV2;

use crate::ca::CaError;

/// The SSH principal Teleport appends to every user certificate.
pub use tp_creds::sshcert::INTERNAL_JOIN_PRINCIPAL;

/// What a user certificate says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserIdentity {
    /// The user name (CN; the SSH key ID).
    pub username: String,
    /// Role names (O; `teleport-roles`).
    pub roles: Vec<String>,
    /// Allowed logins (L; SSH principals).
    pub logins: Vec<String>,
    /// Traits (postalCode JSON; `teleport-traits`).
    pub traits: BTreeMap<String, Vec<String>>,
    /// The cluster to route to (STREET; `teleport-route-to-cluster`).
    pub route_to_cluster: String,
    /// The issuing cluster (`1.3.9999.1.7`).
    pub cluster: String,
}

impl UserIdentity {
    /// An identity for `username` with `roles` in `cluster` (routed to it).
    pub fn new(
        username: impl Into<String>,
        roles: Vec<String>,
        cluster: impl Into<String>,
    ) -> Self {
        let cluster = cluster.into();
        Self {
            username: username.into(),
            roles,
            route_to_cluster: cluster.clone(),
            cluster,
            ..Self::default()
        }
    }

    /// The identity as an X.509 subject carries it.
    pub fn to_tls(&self) -> TlsIdentity {
        let mut id = TlsIdentity::user(
            self.username.clone(),
            self.roles.clone(),
            self.cluster.clone(),
        );
        id.principals.clone_from(&self.logins);
        id.traits.clone_from(&self.traits);
        id.route_to_cluster.clone_from(&self.route_to_cluster);
        id
    }

    /// The identity as an SSH user certificate carries it, with the `permit-*` flags.
    pub fn to_ssh(
        &self,
        permit_agent_forwarding: bool,
        permit_port_forwarding: bool,
    ) -> SshIdentity {
        let mut id = SshIdentity::user(
            self.username.clone(),
            self.roles.clone(),
            self.route_to_cluster.clone(),
        );
        id.logins.clone_from(&self.logins);
        id.traits.clone_from(&self.traits);
        for (flag, on) in [
            ("permit-agent-forwarding", permit_agent_forwarding),
            ("permit-port-forwarding", permit_port_forwarding),
        ] {
            if on {
                id.extensions.insert(flag.into(), String::new());
            }
        }
        id
    }
}

fn creds_err(e: tp_creds::Error) -> CaError {
    CaError::Crypto(e.to_string())
}

/// The user CA's keys, parsed once: what signs user certificates. Building one costs
/// about as much as a signature, so the Auth server keeps it for as long as the CA's
/// keys do not change.
pub struct UserCaSigner {
    tls: X509Signer,
    ssh: tp_creds::SshSigner,
}

impl std::fmt::Debug for UserCaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserCaSigner { [keys redacted] }")
    }
}

impl UserCaSigner {
    /// Parses the CA's active TLS and SSH keys.
    pub fn new(user_ca: &CertAuthorityV2) -> Result<Self, CaError> {
        let keys = user_ca.spec.as_ref().and_then(|s| s.active_keys.as_ref());
        let kp = keys
            .and_then(|k| k.ssh.first())
            .ok_or_else(|| CaError::NoKey("no active SSH key".into()))?;
        let ssh = PrivateKey::from_openssh(&kp.private_key)
            .map_err(|e| CaError::NoKey(format!("SSH CA key: {e}")))?;
        let ssh = tp_creds::SshSigner::new(&ssh).map_err(|e| CaError::NoKey(e.to_string()))?;
        let kp = keys
            .and_then(|k| k.tls.first())
            .ok_or_else(|| CaError::NoKey("no active TLS key pair".into()))?;
        let cert = CertificateDer::from_pem_slice(&kp.cert)
            .map_err(|e| CaError::NoKey(format!("CA certificate: {e}")))?;
        let key_pem =
            std::str::from_utf8(&kp.key).map_err(|_| CaError::NoKey("CA key is not PEM".into()))?;
        let key = tp_creds::PrivateKey::from_pem(key_pem, "user CA TLS key")
            .map_err(|e| CaError::NoKey(e.to_string()))?;
        let tls = X509Signer::new(&cert, &key).map_err(|e| CaError::NoKey(e.to_string()))?;
        Ok(Self { tls, ssh })
    }

    /// See [`issue_tls`].
    pub fn issue_tls(
        &self,
        id: &UserIdentity,
        subject_spki: &[u8],
        not_before: i64,
        not_after: i64,
    ) -> Result<String, CaError> {
        let der = self
            .tls
            .issue(&id.to_tls(), subject_spki, not_before, not_after, &[])
            .map_err(creds_err)?;
        Ok(tp_creds::pem::encode("CERTIFICATE", &der))
    }

    /// See [`issue_ssh`].
    pub fn issue_ssh(
        &self,
        id: &UserIdentity,
        subject: &PublicKey,
        valid_after: i64,
        valid_before: i64,
        permit_agent_forwarding: bool,
        permit_port_forwarding: bool,
    ) -> Result<String, CaError> {
        let secs = |t: i64| u64::try_from(t.max(0)).unwrap_or(0);
        id.to_ssh(permit_agent_forwarding, permit_port_forwarding)
            .sign_line(subject, &self.ssh, secs(valid_after), secs(valid_before))
            .map_err(creds_err)
    }
}

/// Issues the X.509 user certificate for `subject_spki` (a DER SubjectPublicKeyInfo),
/// valid from `not_before` to `not_after` (seconds since the epoch); returns PEM.
pub fn issue_tls(
    user_ca: &CertAuthorityV2,
    id: &UserIdentity,
    subject_spki: &[u8],
    not_before: i64,
    not_after: i64,
) -> Result<String, CaError> {
    UserCaSigner::new(user_ca)?.issue_tls(id, subject_spki, not_before, not_after)
}

/// Issues the OpenSSH user certificate for `subject` with Teleport's extensions; returns
/// the authorized_keys line.
pub fn issue_ssh(
    user_ca: &CertAuthorityV2,
    id: &UserIdentity,
    subject: &PublicKey,
    valid_after: i64,
    valid_before: i64,
    permit_agent_forwarding: bool,
    permit_port_forwarding: bool,
) -> Result<String, CaError> {
    UserCaSigner::new(user_ca)?.issue_ssh(
        id,
        subject,
        valid_after,
        valid_before,
        permit_agent_forwarding,
        permit_port_forwarding,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaType, generate, tls_certs_der};
    use ssh_key::HashAlg;
    use ssh_key::certificate::CertType;
    use std::process::Command;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    fn id() -> UserIdentity {
        let mut id = UserIdentity::new(
            "alice",
            vec!["api-role".into(), "access".into()],
            "example.com",
        );
        id.logins = vec!["alice".into(), "root".into()];
        id.traits
            .insert("logins".into(), vec!["alice".into(), "root".into()]);
        id
    }

    #[test]
    fn tls_certificate_carries_every_role_and_login_and_decodes() {
        let now = 1_800_000_000;
        let ca = generate("example.com", CaType::User, now).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let pem = issue_tls(&ca, &id(), &spki, now - 60, now + 3600).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let host = generate("example.com", CaType::Host, now).unwrap();
        let decoded =
            crate::identity::from_certificate(&der, &tls_certs_der(&ca), &tls_certs_der(&host))
                .unwrap();
        assert_eq!(decoded.username, "alice");
        // All roles in one RDN, a DER SET OF sorted by encoding as Go writes it (so the
        // shorter "access" first); likewise the logins.
        assert_eq!(decoded.groups, ["access", "api-role"]);
        assert_eq!(decoded.principals, ["root", "alice"]);
        assert_eq!(decoded.traits["logins"], ["alice", "root"]);
        assert_eq!(decoded.route_to_cluster, "example.com");
        assert_eq!(decoded.teleport_cluster, "example.com");
        assert_eq!(decoded.not_after, now + 3600);

        // A client certificate webpki accepts for client auth.
        let (_, parsed) = X509Certificate::from_der(&der).unwrap();
        assert!(!parsed.is_ca());
    }

    #[test]
    fn ssh_certificate_has_teleport_fields() {
        let now = 1_800_000_000;
        let ca = generate("example.com", CaType::User, now).unwrap();
        let user_key =
            PrivateKey::random(&mut rand_core_os(), ssh_key::Algorithm::Ed25519).unwrap();
        let line = issue_ssh(
            &ca,
            &id(),
            user_key.public_key(),
            now - 60,
            now + 3600,
            true,
            false,
        )
        .unwrap();
        let cert = ssh_key::Certificate::from_openssh(line.trim()).unwrap();
        assert_eq!(cert.key_id(), "alice");
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(
            cert.valid_principals(),
            ["alice", "root", INTERNAL_JOIN_PRINCIPAL]
        );
        assert_eq!(
            cert.extensions().get("teleport-roles").map(String::as_str),
            Some(r#"{"roles":["api-role","access"]}"#)
        );
        assert!(cert.extensions().contains_key("permit-agent-forwarding"));
        assert!(!cert.extensions().contains_key("permit-port-forwarding"));
        let ca_pub = PublicKey::from_openssh(
            std::str::from_utf8(&ca.spec.unwrap().active_keys.unwrap().ssh[0].public_key).unwrap(),
        )
        .unwrap();
        let fp = ca_pub.fingerprint(HashAlg::Sha256);
        cert.validate_at((now + 10) as u64, [&fp])
            .expect("signed by the user CA and valid");
    }

    fn rand_core_os() -> impl ssh_key::rand_core::CryptoRngCore {
        ssh_key::rand_core::OsRng
    }

    /// Real tools accept what tp issues: openssl verifies the chain and prints the
    /// identity subject; ssh-keygen lists the certificate's fields.
    #[test]
    fn openssl_and_ssh_keygen_accept_the_certificates() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ca = generate("example.com", CaType::User, now).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let kp = &ca.spec.as_ref().unwrap().active_keys.as_ref().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &kp.tls[0].cert).unwrap();
        std::fs::write(
            dir.path().join("user.pem"),
            issue_tls(&ca, &id(), &spki, now - 60, now + 3600).unwrap(),
        )
        .unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install openssl and openssh-client)"));
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let verified = run(Command::new("openssl").current_dir(dir.path()).args([
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            "ca.pem",
            "user.pem",
        ]));
        assert!(verified.contains("user.pem: OK"), "{verified}");
        let subject = run(Command::new("openssl").current_dir(dir.path()).args([
            "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", "user.pem",
        ]));
        for part in [
            "CN=alice",
            "O=api-role",
            "O=access",
            "L=alice",
            "L=root",
            "street=example.com",
        ] {
            assert!(subject.contains(part), "{part} in {subject}");
        }

        let user_key =
            PrivateKey::random(&mut rand_core_os(), ssh_key::Algorithm::Ed25519).unwrap();
        let line = issue_ssh(
            &ca,
            &id(),
            user_key.public_key(),
            now - 60,
            now + 3600,
            false,
            true,
        )
        .unwrap();
        std::fs::write(dir.path().join("user-cert.pub"), line).unwrap();
        let listed = run(Command::new("ssh-keygen").current_dir(dir.path()).args([
            "-L",
            "-f",
            "user-cert.pub",
        ]));
        for part in [
            "Type: ssh-ed25519-cert-v01@openssh.com user certificate",
            "Key ID: \"alice\"",
            "root",
            "-teleport-internal-join",
            "teleport-roles",
            "permit-port-forwarding",
        ] {
            assert!(listed.contains(part), "{part} in {listed}");
        }
    }
}
