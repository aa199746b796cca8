//! The identity Teleport encodes in an OpenSSH user certificate (wire-client spec §4.2):
//! key ID = user name, principals = logins plus `-teleport-internal-join`, and the
//! extensions `teleport-roles` (`{"roles":[...]}`), `teleport-traits` (JSON map),
//! `teleport-route-to-cluster` and the permit flags.

use std::collections::BTreeMap;

use ssh_key::certificate::{Builder, CertType};

use crate::Error;

/// The principal Teleport appends to every user certificate (stable across renewals).
pub const INTERNAL_JOIN_PRINCIPAL: &str = "-teleport-internal-join";

/// A Teleport identity as an SSH user certificate carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SshIdentity {
    /// Key ID: the user name.
    pub username: String,
    /// Logins (principals without `-teleport-internal-join`).
    pub logins: Vec<String>,
    /// `teleport-roles`.
    pub roles: Vec<String>,
    /// `teleport-traits`.
    pub traits: BTreeMap<String, Vec<String>>,
    /// `teleport-route-to-cluster`.
    pub route_to_cluster: String,
    /// Every extension, including the ones above and the `permit-*` flags (empty value).
    pub extensions: BTreeMap<String, String>,
    /// Critical options (`source-address` when IP pinning is on).
    pub critical_options: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Roles {
    #[serde(default)]
    roles: Vec<String>,
}

impl SshIdentity {
    /// A user identity with `roles`, routed to `cluster`.
    pub fn user(
        username: impl Into<String>,
        roles: Vec<String>,
        cluster: impl Into<String>,
    ) -> Self {
        Self {
            username: username.into(),
            roles,
            route_to_cluster: cluster.into(),
            ..Self::default()
        }
    }

    /// Decodes the identity of a user certificate. `origin` names it in errors.
    pub fn from_certificate(cert: &ssh_key::Certificate, origin: &str) -> Result<Self, Error> {
        if cert.cert_type() != CertType::User {
            return Err(Error::invalid(
                origin,
                "SSH certificate is a host certificate; expected a user certificate",
            ));
        }
        let extensions: BTreeMap<String, String> = cert
            .extensions()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let roles = match extensions.get("teleport-roles") {
            Some(json) => {
                serde_json::from_str::<Roles>(json)
                    .map_err(|e| {
                        Error::invalid(
                            origin,
                            format!("SSH extension teleport-roles is not {{\"roles\":[...]}}: {e}"),
                        )
                    })?
                    .roles
            }
            None => vec![],
        };
        let traits = match extensions.get("teleport-traits").map(String::as_str) {
            Some("" | "null") | None => BTreeMap::new(),
            Some(json) => serde_json::from_str(json).map_err(|e| {
                Error::invalid(
                    origin,
                    format!("SSH extension teleport-traits is not a JSON map of lists: {e}"),
                )
            })?,
        };
        Ok(Self {
            username: cert.key_id().to_string(),
            logins: cert
                .valid_principals()
                .iter()
                .filter(|p| *p != INTERNAL_JOIN_PRINCIPAL)
                .cloned()
                .collect(),
            roles,
            traits,
            route_to_cluster: extensions
                .get("teleport-route-to-cluster")
                .cloned()
                .unwrap_or_default(),
            critical_options: cert
                .critical_options()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            extensions,
        })
    }

    /// The extensions this identity writes: the Teleport ones from the fields, `permit-pty`,
    /// and any others in [`SshIdentity::extensions`] (fields win).
    pub fn encoded_extensions(&self) -> BTreeMap<String, String> {
        let mut ext = self.extensions.clone();
        ext.entry("permit-pty".into()).or_default();
        #[derive(serde::Serialize)]
        struct RolesRef<'a> {
            roles: &'a [String],
        }
        ext.insert(
            "teleport-roles".into(),
            serde_json::to_string(&RolesRef { roles: &self.roles })
                .unwrap_or_else(|_| r#"{"roles":[]}"#.into()),
        );
        let traits = if self.traits.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&self.traits).unwrap_or_else(|_| "null".into())
        };
        ext.insert("teleport-traits".into(), traits);
        ext.insert(
            "teleport-route-to-cluster".into(),
            self.route_to_cluster.clone(),
        );
        ext
    }

    /// Fills a certificate builder: type user, key ID, principals (logins, then
    /// `-teleport-internal-join`), critical options and extensions.
    pub fn apply(&self, b: &mut Builder) -> Result<(), Error> {
        let err = |e: ssh_key::Error| Error::invalid("SSH certificate", e.to_string());
        b.cert_type(CertType::User).map_err(err)?;
        b.key_id(self.username.clone()).map_err(err)?;
        for l in &self.logins {
            b.valid_principal(l.clone()).map_err(err)?;
        }
        b.valid_principal(INTERNAL_JOIN_PRINCIPAL).map_err(err)?;
        for (k, v) in &self.critical_options {
            b.critical_option(k.clone(), v.clone()).map_err(err)?;
        }
        for (k, v) in self.encoded_extensions() {
            b.extension(k, v).map_err(err)?;
        }
        Ok(())
    }

    /// Signs a user certificate for `subject` with `ca`, valid from `valid_after` to
    /// `valid_before` (Unix seconds).
    pub fn sign(
        &self,
        subject: &ssh_key::PublicKey,
        ca: &ssh_key::PrivateKey,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<ssh_key::Certificate, Error> {
        self.sign_with(subject, &SshSigner::new(ca)?, valid_after, valid_before)
    }

    /// [`SshIdentity::sign`] with a CA key parsed once ([`SshSigner`]).
    pub fn sign_with(
        &self,
        subject: &ssh_key::PublicKey,
        ca: &SshSigner,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<ssh_key::Certificate, Error> {
        let mut nonce = [0u8; 16];
        crate::random::fill_public(&mut nonce)?;
        let mut b = Builder::new(
            nonce.to_vec(),
            subject.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(|e| Error::invalid("SSH certificate", e.to_string()))?;
        self.apply(&mut b)?;
        b.sign(ca)
            .map_err(|e| Error::invalid("SSH certificate", format!("signing: {e}")))
    }
}

/// A certificate as one authorized_keys-style line ending in a newline: type, base64 of
/// the encoding, and the comment when there is one. The same text as ssh-key's
/// `to_openssh` plus the newline, in one pass instead of a length pass and a base64
/// writer (certificate issuance does this on every call).
pub fn authorized_line(cert: &ssh_key::Certificate) -> Result<String, Error> {
    use base64::Engine as _;
    let bytes = cert
        .to_bytes()
        .map_err(|e| Error::invalid("SSH certificate", format!("encoding: {e}")))?;
    let kind = cert.algorithm().to_certificate_type();
    let mut line =
        String::with_capacity(kind.len() + bytes.len().div_ceil(3) * 4 + cert.comment().len() + 3);
    line.push_str(&kind);
    line.push(' ');
    base64::engine::general_purpose::STANDARD.encode_string(&bytes, &mut line);
    if !cert.comment().is_empty() {
        line.push(' ');
        line.push_str(cert.comment());
    }
    line.push('\n');
    Ok(line)
}

/// A Teleport host identity as an SSH host certificate carries it (wire-client spec §4.3):
/// type host, extensions `x-teleport-role` (the system role) and `x-teleport-authority`
/// (the cluster), principals naming the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SshHostIdentity {
    /// The key ID (Teleport uses the host ID).
    pub key_id: String,
    /// Principals: host ID, `<host id>.<cluster>`, node name, public addresses.
    pub principals: Vec<String>,
    /// `x-teleport-role`: the system role (`Proxy`, `Node`, ...).
    pub role: String,
    /// `x-teleport-authority`: the cluster name.
    pub cluster: String,
}

impl SshHostIdentity {
    /// The identity of host `host_id` with `role` in `cluster`; principals are the host
    /// ID and `<host id>.<cluster>`.
    pub fn new(host_id: &str, cluster: &str, role: &str) -> Self {
        Self {
            key_id: host_id.to_string(),
            principals: vec![host_id.to_string(), format!("{host_id}.{cluster}")],
            role: role.to_string(),
            cluster: cluster.to_string(),
        }
    }

    /// Decodes a host certificate; a user certificate or missing Teleport extensions are
    /// errors naming `origin`.
    pub fn from_certificate(cert: &ssh_key::Certificate, origin: &str) -> Result<Self, Error> {
        if cert.cert_type() != CertType::Host {
            return Err(Error::invalid(
                origin,
                "SSH certificate is a user certificate; expected a host certificate",
            ));
        }
        let ext = |name: &str| {
            cert.extensions().get(name).cloned().ok_or_else(|| {
                Error::invalid(
                    origin,
                    format!("SSH host certificate has no {name} extension"),
                )
            })
        };
        Ok(Self {
            key_id: cert.key_id().to_string(),
            principals: cert.valid_principals().to_vec(),
            role: ext("x-teleport-role")?,
            cluster: ext("x-teleport-authority")?,
        })
    }

    /// Signs a host certificate for `subject` with the host CA `ca`.
    pub fn sign(
        &self,
        subject: &ssh_key::PublicKey,
        ca: &ssh_key::PrivateKey,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<ssh_key::Certificate, Error> {
        self.sign_with(subject, &SshSigner::new(ca)?, valid_after, valid_before)
    }

    /// [`SshHostIdentity::sign`] with a CA key parsed once ([`SshSigner`]).
    pub fn sign_with(
        &self,
        subject: &ssh_key::PublicKey,
        ca: &SshSigner,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<ssh_key::Certificate, Error> {
        let err = |e: ssh_key::Error| Error::invalid("SSH host certificate", e.to_string());
        let mut nonce = [0u8; 16];
        crate::random::fill_public(&mut nonce)?;
        let mut b = Builder::new(
            nonce.to_vec(),
            subject.key_data().clone(),
            valid_after,
            valid_before,
        )
        .map_err(err)?;
        b.cert_type(CertType::Host).map_err(err)?;
        b.key_id(self.key_id.clone()).map_err(err)?;
        for p in &self.principals {
            b.valid_principal(p.clone()).map_err(err)?;
        }
        b.extension("x-teleport-role", self.role.clone())
            .map_err(err)?;
        b.extension("x-teleport-authority", self.cluster.clone())
            .map_err(err)?;
        b.sign(ca)
            .map_err(|e| Error::invalid("SSH host certificate", format!("signing: {e}")))
    }
}

/// An SSH CA key parsed once for signing certificates, for a server that issues many.
///
/// Ed25519 keys sign through ring (ssh-key re-derives and re-checks the public key on
/// every signature, which costs more than the signature itself); RSA keys sign with
/// rsa-sha2-512 through our own path (ssh-key 0.6 rebuilds RSA keys with p twice and
/// cannot sign with them); other keys through ssh-key. `Debug` shows no key material.
pub struct SshSigner {
    key: SignerKey,
    public: ssh_key::public::KeyData,
}

enum SignerKey {
    Ed25519(ring::signature::Ed25519KeyPair),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha2::Sha512>>),
    Other(Box<ssh_key::PrivateKey>),
}

impl std::fmt::Debug for SshSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSigner")
            .field("algorithm", &self.public.algorithm())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl SshSigner {
    /// Parses `ca` for signing.
    pub fn new(ca: &ssh_key::PrivateKey) -> Result<Self, Error> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::invalid("SSH CA key", format!("cannot sign with it: {e}"))
        };
        let data = ca.key_data();
        let key = if let Some(k) = data.ed25519() {
            SignerKey::Ed25519(
                ring::signature::Ed25519KeyPair::from_seed_and_public_key(
                    &k.private.to_bytes(),
                    k.public.as_ref(),
                )
                .map_err(|e| bad(&e))?,
            )
        } else if let Some(k) = data.rsa() {
            let key = crate::key::rsa_from_ssh(k).map_err(|e| bad(&e))?;
            SignerKey::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(key)))
        } else {
            SignerKey::Other(Box::new(ca.clone()))
        };
        Ok(Self {
            key,
            public: ca.public_key().key_data().clone(),
        })
    }

    /// The CA's public key.
    pub fn public_key(&self) -> &ssh_key::public::KeyData {
        &self.public
    }
}

impl signature::Signer<ssh_key::Signature> for SshSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<ssh_key::Signature, signature::Error> {
        match &self.key {
            SignerKey::Ed25519(k) => {
                ssh_key::Signature::new(ssh_key::Algorithm::Ed25519, k.sign(msg).as_ref().to_vec())
                    .map_err(signature::Error::from_source)
            }
            SignerKey::Rsa(k) => {
                let sig: rsa::pkcs1v15::Signature = k.try_sign(msg)?;
                ssh_key::Signature::new(
                    ssh_key::Algorithm::Rsa {
                        hash: Some(ssh_key::HashAlg::Sha512),
                    },
                    signature::SignatureEncoding::to_vec(&sig),
                )
                .map_err(signature::Error::from_source)
            }
            SignerKey::Other(k) => k.try_sign(msg),
        }
    }
}

impl From<&SshSigner> for ssh_key::public::KeyData {
    fn from(k: &SshSigner) -> Self {
        k.public.clone()
    }
}

/// The SSH user an SSH client logs in as with `cert`: the first principal, else the key ID
/// (what Teleport's Go client does).
pub fn ssh_login_user(cert: &ssh_key::Certificate) -> String {
    cert.valid_principals()
        .first()
        .cloned()
        .unwrap_or_else(|| cert.key_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyAlgorithm, PrivateKey};

    #[test]
    fn host_certificates_carry_role_and_authority() {
        let ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let host = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        let id = SshHostIdentity::new("abc-123", "example.com", "Proxy");
        let cert = id
            .sign(&host.ssh_public_key().unwrap(), &ca, 0, 4_000_000_000)
            .unwrap();
        assert_eq!(SshHostIdentity::from_certificate(&cert, "t").unwrap(), id);
        assert_eq!(cert.valid_principals(), ["abc-123", "abc-123.example.com"]);
        // A host certificate is not a user identity, and the reverse.
        let e = SshIdentity::from_certificate(&cert, "h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a user certificate"), "{e}");
        let user = SshIdentity::user("alice", vec![], "example.com")
            .sign(&host.ssh_public_key().unwrap(), &ca, 0, 10)
            .unwrap();
        assert!(SshHostIdentity::from_certificate(&user, "u").is_err());
    }

    #[test]
    fn sign_then_decode_is_the_identity() {
        let ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let user = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut id = SshIdentity {
            username: "alice".into(),
            logins: vec!["alice".into(), "root".into()],
            roles: vec!["access".into()],
            route_to_cluster: "example.com".into(),
            ..Default::default()
        };
        id.traits.insert("logins".into(), vec!["alice".into()]);
        let cert = id
            .sign(&user.ssh_public_key().unwrap(), &ca, 100, 200)
            .unwrap();
        assert_eq!(
            cert.valid_principals().last().map(String::as_str),
            Some(INTERNAL_JOIN_PRINCIPAL)
        );
        let back = SshIdentity::from_certificate(&cert, "t").unwrap();
        assert_eq!(back.username, "alice");
        assert_eq!(back.logins, id.logins);
        assert_eq!(back.roles, id.roles);
        assert_eq!(back.traits, id.traits);
        assert_eq!(back.route_to_cluster, "example.com");
        assert!(back.extensions.contains_key("permit-pty"));
        assert_eq!(ssh_login_user(&cert), "alice");
    }

    #[test]
    fn every_ca_key_type_signs_certificates_that_verify() {
        for (alg, sig_alg) in [
            (KeyAlgorithm::Ed25519, ssh_key::Algorithm::Ed25519),
            (
                KeyAlgorithm::EcdsaP256,
                ssh_key::Algorithm::Ecdsa {
                    curve: ssh_key::EcdsaCurve::NistP256,
                },
            ),
            (
                KeyAlgorithm::Rsa { bits: 2048 },
                ssh_key::Algorithm::Rsa {
                    hash: Some(ssh_key::HashAlg::Sha512),
                },
            ),
        ] {
            let ca = PrivateKey::generate(alg).unwrap().to_ssh().unwrap();
            let signer = SshSigner::new(&ca).unwrap();
            assert!(!format!("{signer:?}").contains("private"));
            let host = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
            let subject = host.ssh_public_key().unwrap();
            for cert in [
                SshHostIdentity::new("abc-123", "example.com", "Proxy")
                    .sign_with(&subject, &signer, 0, 4_000_000_000)
                    .unwrap(),
                SshIdentity::user("alice", vec![], "example.com")
                    .sign(&subject, &ca, 0, 4_000_000_000)
                    .unwrap(),
            ] {
                assert_eq!(cert.signature().algorithm(), sig_alg, "{alg}");
                let fp = ca.public_key().fingerprint(ssh_key::HashAlg::Sha256);
                cert.validate_at(1_000, [&fp]).unwrap();
                // A different CA's fingerprint is refused.
                let other = PrivateKey::generate(KeyAlgorithm::Ed25519)
                    .unwrap()
                    .ssh_public_key()
                    .unwrap()
                    .fingerprint(ssh_key::HashAlg::Sha256);
                assert!(cert.validate_at(1_000, [&other]).is_err(), "{alg}");
            }
        }
    }

    #[test]
    fn authorized_line_is_ssh_keys_text_plus_a_newline() {
        let ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
        let mut id = SshIdentity::user("alice", vec!["access".into()], "example.com");
        id.logins = vec!["root".into()];
        let cert = id
            .sign(&key.ssh_public_key().unwrap(), &ca, 0, 4_000_000_000)
            .unwrap();
        let line = authorized_line(&cert).unwrap();
        assert_eq!(line, format!("{}\n", cert.to_openssh().unwrap()));
        assert_eq!(
            ssh_key::Certificate::from_openssh(line.trim()).unwrap(),
            cert
        );
        // A comment, as a parsed line may carry one.
        let commented =
            ssh_key::Certificate::from_openssh(&format!("{} alice@laptop", line.trim())).unwrap();
        assert_eq!(commented.comment(), "alice@laptop");
        assert_eq!(
            authorized_line(&commented).unwrap(),
            format!("{}\n", commented.to_openssh().unwrap())
        );
    }
}
