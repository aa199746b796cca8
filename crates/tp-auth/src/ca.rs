//! The cluster's certificate authorities: creating them, and issuing the host
//! certificates the cluster's own components use.
//!
//! Each CA (`user`, `host`) has an X.509 key and self-signed certificate (subject O and
//! CN = the cluster name, as Teleport's) and an SSH key: ECDSA P-256 and Ed25519 by
//! default, RSA-2048 for both when asked ([`SignatureAlgorithmSuite`]). They are
//! stored as `types.CertAuthorityV2` resources with their private keys; anything that
//! leaves the server goes through [`strip_secrets`] unless the caller may read secrets.
//!
//! Certificates are encoded and signed by `tp-creds` (`tp_creds::sign`, with the subject
//! of a `tp_creds::TlsIdentity`): user certificates in [`crate::usercert`], host
//! certificates here.

use ssh_key::LineEnding;
use ssh_key::private::{Ed25519Keypair, PrivateKey};
use tp_creds::sign::{X509Signer, self_signed_ca};
use tp_creds::{KeyAlgorithm, TlsIdentity};
use tp_proto::types::{
    CaKeySet, CertAuthoritySpecV2, CertAuthorityV2, Metadata, SshKeyPair, TlsKeyPair,
};

/// The CA types tp keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaType {
    /// Signs user certificates.
    User,
    /// Signs host certificates (servers, proxies, the local admin identity).
    Host,
}

impl CaType {
    /// Teleport's CA type string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Host => "host",
        }
    }
}

/// Why a CA could not be created or used.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaError {
    /// Key generation or signing failed.
    Crypto(String),
    /// The stored CA has no usable active TLS key.
    NoKey(String),
}

impl std::fmt::Display for CaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Crypto(e) => write!(f, "certificate authority: {e}"),
            Self::NoKey(e) => write!(f, "certificate authority has no usable key: {e}"),
        }
    }
}

impl std::error::Error for CaError {}

fn crypto(e: impl std::fmt::Display) -> CaError {
    CaError::Crypto(e.to_string())
}

/// How long a new CA is valid: ten years.
const CA_VALIDITY_SECS: i64 = 3650 * 24 * 3600;

/// Which keys new CAs get, named after Teleport's `signature_algorithm_suite` (cluster
/// auth preference). It applies when a CA is created; existing CAs keep their keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignatureAlgorithmSuite {
    /// ECDSA P-256 for X.509, Ed25519 for SSH (Teleport's `balanced-v1`).
    #[default]
    BalancedV1,
    /// RSA-2048 for both (Teleport's `legacy`), for peers that cannot verify anything
    /// else.
    Legacy,
}

impl SignatureAlgorithmSuite {
    /// Teleport's name for the suite.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BalancedV1 => "balanced-v1",
            Self::Legacy => "legacy",
        }
    }

    fn tls(self) -> KeyAlgorithm {
        match self {
            Self::BalancedV1 => KeyAlgorithm::EcdsaP256,
            Self::Legacy => KeyAlgorithm::Rsa { bits: 2048 },
        }
    }
}

/// Creates a CA of `kind` for `cluster` at time `now` (seconds since the epoch), valid
/// for ten years, with the default keys ([`SignatureAlgorithmSuite::BalancedV1`]).
pub fn generate(cluster: &str, kind: CaType, now: i64) -> Result<CertAuthorityV2, CaError> {
    generate_with(cluster, kind, now, SignatureAlgorithmSuite::default())
}

/// Creates a CA as [`generate`] does, with the keys of `suite`.
pub fn generate_with(
    cluster: &str,
    kind: CaType,
    now: i64,
    suite: SignatureAlgorithmSuite,
) -> Result<CertAuthorityV2, CaError> {
    let key = tp_creds::PrivateKey::generate(suite.tls()).map_err(crypto)?;
    let cert = self_signed_ca(cluster, &key, now - 60, now + CA_VALIDITY_SECS).map_err(crypto)?;
    let cert_pem = tp_creds::pem::encode("CERTIFICATE", &cert);
    let key_pem = key.to_pem().map_err(crypto)?;

    let ssh = match suite {
        SignatureAlgorithmSuite::BalancedV1 => {
            let mut seed = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
                .map_err(|_| CaError::Crypto("no randomness".into()))?;
            PrivateKey::from(Ed25519Keypair::from_seed(&seed))
        }
        SignatureAlgorithmSuite::Legacy => tp_creds::PrivateKey::generate(suite.tls())
            .and_then(|k| k.to_ssh())
            .map_err(crypto)?,
    };
    let ssh_public = ssh.public_key().to_openssh().map_err(crypto)?;
    let ssh_private = ssh.to_openssh(LineEnding::LF).map_err(crypto)?;

    Ok(CertAuthorityV2 {
        kind: "cert_authority".into(),
        sub_kind: kind.as_str().into(),
        version: "v2".into(),
        metadata: Some(Metadata {
            name: cluster.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(CertAuthoritySpecV2 {
            r#type: kind.as_str().into(),
            cluster_name: cluster.into(),
            active_keys: Some(CaKeySet {
                ssh: vec![SshKeyPair {
                    public_key: ssh_public.into_bytes(),
                    private_key: ssh_private.as_bytes().to_vec(),
                    private_key_type: 0,
                }],
                tls: vec![TlsKeyPair {
                    cert: cert_pem.into_bytes(),
                    key: key_pem.as_bytes().to_vec(),
                    key_type: 0,
                }],
                jwt: vec![],
            }),
            ..Default::default()
        }),
    })
}

/// The CA's active TLS certificates (DER), for trust stores.
pub fn tls_certs_der(ca: &CertAuthorityV2) -> Vec<Vec<u8>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    ca.spec
        .as_ref()
        .and_then(|s| s.active_keys.as_ref())
        .map(|k| {
            k.tls
                .iter()
                .filter_map(|kp| CertificateDer::from_pem_slice(&kp.cert).ok())
                .map(|c| c.to_vec())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every private key from a CA (what callers without the right to read secrets
/// receive).
pub fn strip_secrets(ca: &mut CertAuthorityV2) {
    if let Some(spec) = ca.spec.as_mut() {
        for set in [
            spec.active_keys.as_mut(),
            spec.additional_trusted_keys.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            for k in &mut set.ssh {
                k.private_key.clear();
            }
            for k in &mut set.tls {
                k.key.clear();
            }
            for k in &mut set.jwt {
                k.private_key.clear();
            }
        }
    }
}

/// The CA's active TLS key pair, ready to sign X.509 certificates (any key type).
pub fn x509_signer(ca: &CertAuthorityV2) -> Result<X509Signer, CaError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let kp = ca
        .spec
        .as_ref()
        .and_then(|s| s.active_keys.as_ref())
        .and_then(|k| k.tls.first())
        .ok_or_else(|| CaError::NoKey("no active TLS key pair".into()))?;
    let cert = CertificateDer::from_pem_slice(&kp.cert)
        .map_err(|e| CaError::NoKey(format!("TLS certificate: {e}")))?;
    let pem =
        std::str::from_utf8(&kp.key).map_err(|_| CaError::NoKey("TLS key is not PEM".into()))?;
    let key = tp_creds::PrivateKey::from_pem(pem, "CA TLS key")
        .map_err(|e| CaError::NoKey(e.to_string()))?;
    X509Signer::new(&cert, &key).map_err(|e| CaError::NoKey(e.to_string()))
}

/// A certificate and its freshly generated private key, both PEM.
#[derive(Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// Issues a host certificate from the host CA: CN `name`, O the one system role
/// (`Auth`, `Proxy`, `Admin`, ...), the cluster of origin, and DNS/IP SANs, valid for
/// `ttl_secs` from `now`. Teleport's template: NotBefore one minute back, key usage
/// digitalSignature + keyEncipherment, server and client auth.
pub fn issue_host(
    host_ca: &CertAuthorityV2,
    name: &str,
    system_role: &str,
    sans: &[String],
    now: i64,
    ttl_secs: i64,
) -> Result<Issued, CaError> {
    let key = tp_creds::PrivateKey::generate(KeyAlgorithm::EcdsaP256).map_err(crypto)?;
    let spki = key.public_key_spki_der().map_err(crypto)?;
    let der = issue_host_for(host_ca, name, system_role, sans, &spki, now, ttl_secs)?;
    Ok(Issued {
        cert_pem: tp_creds::pem::encode("CERTIFICATE", &der),
        key_pem: key.to_pem().map_err(crypto)?.to_string(),
    })
}

/// Issues a host certificate as [`issue_host`] does, for a public key the host holds
/// (`spki_der`, a DER SubjectPublicKeyInfo); returns the certificate's DER.
pub fn issue_host_for(
    host_ca: &CertAuthorityV2,
    name: &str,
    system_role: &str,
    sans: &[String],
    spki_der: &[u8],
    now: i64,
    ttl_secs: i64,
) -> Result<Vec<u8>, CaError> {
    let cluster = host_ca
        .spec
        .as_ref()
        .map(|s| s.cluster_name.clone())
        .unwrap_or_default();
    let signer = x509_signer(host_ca)?;
    let mut id = TlsIdentity::default();
    id.username = name.to_string();
    id.groups = vec![system_role.to_string()];
    id.teleport_cluster = cluster;
    signer
        .issue(&id, spki_der, now - 60, now + ttl_secs, sans)
        .map_err(crypto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ca_signs_host_certificates_that_decode_as_host_identities() {
        let now = 1_800_000_000;
        let host = generate("example.com", CaType::Host, now).unwrap();
        let user = generate("example.com", CaType::User, now).unwrap();
        let issued = issue_host(
            &host,
            "auth-1.example.com",
            "Auth",
            &["teleport.cluster.local".into(), "127.0.0.1".into()],
            now,
            3600,
        )
        .unwrap();
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        let id =
            crate::identity::from_certificate(&der, &tls_certs_der(&user), &tls_certs_der(&host))
                .unwrap();
        assert_eq!(id.username, "auth-1.example.com");
        assert_eq!(id.groups, ["Auth"]);
        assert_eq!(id.signer, crate::identity::Signer::HostCa);
        assert_eq!(id.teleport_cluster, "example.com");
        assert_eq!(id.not_after, now + 3600);
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn stripping_removes_every_private_key() {
        let mut ca = generate("example.com", CaType::User, 1_800_000_000).unwrap();
        let ssh_pub = ca.spec.as_ref().unwrap().active_keys.as_ref().unwrap().ssh[0]
            .public_key
            .clone();
        assert!(
            String::from_utf8(ssh_pub.clone())
                .unwrap()
                .starts_with("ssh-ed25519 ")
        );
        strip_secrets(&mut ca);
        let keys = ca.spec.as_ref().unwrap().active_keys.as_ref().unwrap();
        assert!(keys.tls[0].key.is_empty() && keys.ssh[0].private_key.is_empty());
        assert_eq!(keys.ssh[0].public_key, ssh_pub);
        assert!(!keys.tls[0].cert.is_empty());
    }
}
