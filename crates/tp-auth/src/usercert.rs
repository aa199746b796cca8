//! User certificates: the X.509 certificate with Teleport's identity subject (several
//! roles in O, several logins in L — one RDN per value, as Go's `pkix` writes them) and
//! the OpenSSH user certificate with Teleport's extensions, both signed by the user CA.
//!
//! The X.509 certificate is assembled here with a small DER writer because `rcgen` keeps
//! one value per subject attribute type.

use std::collections::BTreeMap;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use ssh_key::certificate::{Builder, CertType};
use ssh_key::{PrivateKey, PublicKey};
use tp_proto::types::CertAuthorityV2;
use x509_parser::prelude::{FromDer, X509Certificate};
use yasna::models::ObjectIdentifier;

use crate::ca::CaError;

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
}

const OID_CN: &[u64] = &[2, 5, 4, 3];
const OID_O: &[u64] = &[2, 5, 4, 10];
const OID_L: &[u64] = &[2, 5, 4, 7];
const OID_STREET: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];
const OID_TELEPORT_CLUSTER: &[u64] = &[1, 3, 9999, 1, 7];
const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

fn oid(parts: &[u64]) -> ObjectIdentifier {
    ObjectIdentifier::from_slice(parts)
}

/// DER of a UTCTime (before 2050) or GeneralizedTime, as RFC 5280 requires.
fn der_time(unix: i64) -> Result<Vec<u8>, CaError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| CaError::Crypto(e.to_string()))?;
    let (tag, text) = if (1950..2050).contains(&t.year()) {
        (
            0x17u8,
            format!(
                "{:02}{:02}{:02}{:02}{:02}{:02}Z",
                t.year() % 100,
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        )
    } else {
        (
            0x18u8,
            format!(
                "{:04}{:02}{:02}{:02}{:02}{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
        )
    };
    let mut out = vec![tag, text.len() as u8];
    out.extend_from_slice(text.as_bytes());
    Ok(out)
}

fn subject_der(id: &UserIdentity) -> Result<Vec<u8>, CaError> {
    let traits = serde_json::to_string(&id.traits).map_err(|e| CaError::Crypto(e.to_string()))?;
    let mut attrs: Vec<(&[u64], &str)> = vec![(OID_CN, &id.username)];
    attrs.extend(id.roles.iter().map(|r| (OID_O, r.as_str())));
    attrs.extend(id.logins.iter().map(|l| (OID_L, l.as_str())));
    attrs.push((OID_STREET, &id.route_to_cluster));
    attrs.push((OID_POSTAL_CODE, &traits));
    attrs.push((OID_TELEPORT_CLUSTER, &id.cluster));
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // One RDN (SET) per value: what Go's pkix.Name produces and decodes.
            for (o, v) in &attrs {
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(o));
                        w.next().write_utf8_string(v);
                    });
                });
            }
        });
    }))
}

/// The user CA's keys, parsed once: what signs user certificates. Building one costs
/// about as much as a signature, so the Auth server keeps it for as long as the CA's
/// keys do not change.
pub struct UserCaSigner {
    tls: CaSigner,
    ssh: PrivateKey,
}

impl std::fmt::Debug for UserCaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserCaSigner { [keys redacted] }")
    }
}

impl UserCaSigner {
    /// Parses the CA's active TLS and SSH keys.
    pub fn new(user_ca: &CertAuthorityV2) -> Result<Self, CaError> {
        let kp = user_ca
            .spec
            .as_ref()
            .and_then(|s| s.active_keys.as_ref())
            .and_then(|k| k.ssh.first())
            .ok_or_else(|| CaError::NoKey("no active SSH key".into()))?;
        let ssh = PrivateKey::from_openssh(&kp.private_key)
            .map_err(|e| CaError::NoKey(format!("SSH CA key: {e}")))?;
        Ok(Self {
            tls: ca_signer(user_ca)?,
            ssh,
        })
    }
}

struct CaSigner {
    subject_der: Vec<u8>,
    key: EcdsaKeyPair,
}

fn ca_signer(user_ca: &CertAuthorityV2) -> Result<CaSigner, CaError> {
    let kp = user_ca
        .spec
        .as_ref()
        .and_then(|s| s.active_keys.as_ref())
        .and_then(|k| k.tls.first())
        .ok_or_else(|| CaError::NoKey("no active TLS key pair".into()))?;
    let cert = CertificateDer::from_pem_slice(&kp.cert)
        .map_err(|e| CaError::NoKey(format!("CA certificate: {e}")))?;
    let (_, parsed) = X509Certificate::from_der(&cert)
        .map_err(|e| CaError::NoKey(format!("CA certificate: {e}")))?;
    let subject_der = parsed.subject().as_raw().to_vec();
    let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&kp.key)
        .map_err(|e| CaError::NoKey(format!("CA key: {e}")))?;
    let key = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.secret_pkcs8_der(),
        &SystemRandom::new(),
    )
    .map_err(|_| {
        CaError::NoKey(
            "the user CA key is not ECDSA P-256 (the only algorithm tp's user CA uses)".into(),
        )
    })?;
    Ok(CaSigner { subject_der, key })
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

impl UserCaSigner {
    /// See [`issue_tls`].
    pub fn issue_tls(
        &self,
        id: &UserIdentity,
        subject_spki: &[u8],
        not_before: i64,
        not_after: i64,
    ) -> Result<String, CaError> {
        let ca = &self.tls;
        let subject = subject_der(id)?;
        let (nb, na) = (der_time(not_before)?, der_time(not_after)?);
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut serial)
            .map_err(|_| CaError::Crypto("no randomness".into()))?;
        serial[0] &= 0x7f;
        let alg = |w: yasna::DERWriter<'_>| {
            w.write_sequence(|w| w.next().write_oid(&oid(OID_ECDSA_SHA256)))
        };
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                w.next().write_bigint_bytes(&serial, true);
                alg(w.next());
                w.next().write_der(&ca.subject_der);
                w.next().write_sequence(|w| {
                    w.next().write_der(&nb);
                    w.next().write_der(&na);
                });
                w.next().write_der(&subject);
                w.next().write_der(subject_spki);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        // keyUsage: digitalSignature | keyEncipherment, critical.
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(OID_KEY_USAGE));
                            w.next().write_bool(true);
                            w.next().write_bytes(&yasna::construct_der(|w| {
                                w.write_bitvec_bytes(&[0b1010_0000], 3)
                            }));
                        });
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(OID_EXT_KEY_USAGE));
                            w.next().write_bytes(&yasna::construct_der(|w| {
                                w.write_sequence(|w| {
                                    w.next().write_oid(&oid(OID_SERVER_AUTH));
                                    w.next().write_oid(&oid(OID_CLIENT_AUTH));
                                })
                            }));
                        });
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(OID_BASIC_CONSTRAINTS));
                            w.next().write_bool(true);
                            w.next()
                                .write_bytes(&yasna::construct_der(|w| w.write_sequence(|_| {})));
                        });
                    });
                });
            });
        });
        let sig = ca
            .key
            .sign(&SystemRandom::new(), &tbs)
            .map_err(|_| CaError::Crypto("signing the certificate failed".into()))?;
        let cert = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                alg(w.next());
                w.next()
                    .write_bitvec_bytes(sig.as_ref(), sig.as_ref().len() * 8);
            });
        });
        Ok(pem("CERTIFICATE", &cert))
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// The SSH principal Teleport appends to every user certificate.
pub const INTERNAL_JOIN_PRINCIPAL: &str = "-teleport-internal-join";

impl UserCaSigner {
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
        let ca_key = &self.ssh;
        let mut nonce = [0u8; 16];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut nonce)
            .map_err(|_| CaError::Crypto("no randomness".into()))?;
        let err = |e: ssh_key::Error| CaError::Crypto(format!("SSH certificate: {e}"));
        let mut b = Builder::new(
            nonce.to_vec(),
            subject.key_data().clone(),
            u64::try_from(valid_after.max(0)).unwrap_or(0),
            u64::try_from(valid_before.max(0)).unwrap_or(0),
        )
        .map_err(err)?;
        b.cert_type(CertType::User).map_err(err)?;
        b.key_id(id.username.clone()).map_err(err)?;
        for l in &id.logins {
            b.valid_principal(l.clone()).map_err(err)?;
        }
        b.valid_principal(INTERNAL_JOIN_PRINCIPAL).map_err(err)?;
        b.extension("permit-pty", "").map_err(err)?;
        if permit_agent_forwarding {
            b.extension("permit-agent-forwarding", "").map_err(err)?;
        }
        if permit_port_forwarding {
            b.extension("permit-port-forwarding", "").map_err(err)?;
        }
        let roles = serde_json::json!({ "roles": id.roles }).to_string();
        let traits =
            serde_json::to_string(&id.traits).map_err(|e| CaError::Crypto(e.to_string()))?;
        b.extension("teleport-roles", roles).map_err(err)?;
        b.extension("teleport-traits", traits).map_err(err)?;
        b.extension("teleport-route-to-cluster", id.route_to_cluster.clone())
            .map_err(err)?;
        let cert = b.sign(ca_key).map_err(err)?;
        let line = cert.to_openssh().map_err(err)?;
        Ok(format!("{line}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::{CaType, generate, tls_certs_der};
    use ssh_key::HashAlg;
    use std::process::Command;

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
        assert_eq!(decoded.groups, ["api-role", "access"]);
        assert_eq!(decoded.principals, ["alice", "root"]);
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
