//! The identity Teleport encodes in an OpenSSH user certificate (wire-client spec §4.2):
//! key ID = user name, principals = logins plus `-teleport-internal-join`, and the
//! extensions `teleport-roles` (`{"roles":[...]}`), `teleport-traits` (JSON map),
//! `teleport-route-to-cluster` and the permit flags.

use std::collections::BTreeMap;

use ssh_key::certificate::CertType;

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
        self.wire_extensions()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect()
    }

    /// The extensions in wire order (sorted by name), borrowing the names and values
    /// this identity already holds: the one place they are computed.
    fn wire_extensions(&self) -> Vec<(&str, std::borrow::Cow<'_, str>)> {
        use std::borrow::Cow;
        const COMPUTED: [&str; 3] = [
            "teleport-roles",
            "teleport-route-to-cluster",
            "teleport-traits",
        ];
        let mut ext: Vec<(&str, Cow<'_, str>)> = self
            .extensions
            .iter()
            .filter(|(k, _)| !COMPUTED.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))
            .collect();
        if !self.extensions.contains_key("permit-pty") {
            ext.push(("permit-pty", Cow::Borrowed("")));
        }
        let [roles, route, traits] = COMPUTED;
        #[derive(serde::Serialize)]
        struct RolesRef<'a> {
            roles: &'a [String],
        }
        ext.push((
            roles,
            Cow::Owned(
                serde_json::to_string(&RolesRef { roles: &self.roles })
                    .unwrap_or_else(|_| r#"{"roles":[]}"#.into()),
            ),
        ));
        ext.push((route, Cow::Borrowed(self.route_to_cluster.as_str())));
        let traits_json = if self.traits.is_empty() {
            "null".to_string()
        } else {
            serde_json::to_string(&self.traits).unwrap_or_else(|_| "null".into())
        };
        ext.push((traits, Cow::Owned(traits_json)));
        ext.sort_unstable_by(|a, b| a.0.cmp(b.0));
        ext
    }

    /// The wire encoding of this identity's user certificate for `subject`, signed by
    /// `ca`: principals are the logins, then `-teleport-internal-join`.
    fn encode(
        &self,
        subject: &ssh_key::PublicKey,
        ca: &SshSigner,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<Vec<u8>, Error> {
        let principals: Vec<&str> = self
            .logins
            .iter()
            .map(String::as_str)
            .chain([INTERNAL_JOIN_PRINCIPAL])
            .collect();
        let critical: Vec<(&str, &str)> = self
            .critical_options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let ext = self.wire_extensions();
        let ext: Vec<(&str, &str)> = ext.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        encode_certificate(
            subject,
            ca,
            &Fields {
                what: "SSH certificate",
                cert_type: CertType::User,
                key_id: &self.username,
                principals: &principals,
                critical_options: &critical,
                extensions: &ext,
                valid_after,
                valid_before,
            },
        )
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
        decode_own(
            &self.encode(subject, ca, valid_after, valid_before)?,
            "SSH certificate",
        )
    }

    /// [`SshIdentity::sign_with`], returned as [`authorized_line`] would write it, in one
    /// pass: the certificate is encoded once and never decoded (an Auth server issues
    /// one per login and renewal).
    pub fn sign_line(
        &self,
        subject: &ssh_key::PublicKey,
        ca: &SshSigner,
        valid_after: u64,
        valid_before: u64,
    ) -> Result<String, Error> {
        let bytes = self.encode(subject, ca, valid_after, valid_before)?;
        Ok(line_of(
            &subject.algorithm().to_certificate_type(),
            &bytes,
            "",
        ))
    }
}

/// What distinguishes one certificate of ours from another, for [`encode_certificate`].
struct Fields<'a> {
    /// Names the certificate in errors.
    what: &'static str,
    cert_type: CertType,
    key_id: &'a str,
    principals: &'a [&'a str],
    /// Sorted by name, as the format requires.
    critical_options: &'a [(&'a str, &'a str)],
    /// Sorted by name.
    extensions: &'a [(&'a str, &'a str)],
    valid_after: u64,
    valid_before: u64,
}

/// Appends an SSH `string`: a big-endian `u32` length, then the bytes.
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| Error::invalid("SSH certificate", "a field is over 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends an SSH `string` whose contents `fill` writes.
fn put_nested(
    out: &mut Vec<u8>,
    fill: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
) -> Result<(), Error> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    fill(out)?;
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| Error::invalid("SSH certificate", "a field is over 4 GiB"))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Appends a critical-option or extension list: for each, the name, then the value as
/// a string inside a string (an empty value is an empty string), as OpenSSH's
/// PROTOCOL.certkeys and Go's `x/crypto/ssh` write them.
fn put_options(out: &mut Vec<u8>, options: &[(&str, &str)]) -> Result<(), Error> {
    put_nested(out, |out| {
        for (name, value) in options {
            put_string(out, name.as_bytes())?;
            if value.is_empty() {
                put_string(out, b"")?;
            } else {
                put_nested(out, |out| put_string(out, value.as_bytes()))?;
            }
        }
        Ok(())
    })
}

/// The OpenSSH certificate (PROTOCOL.certkeys) of `subject` with `fields`, signed by
/// `ca`, in wire form: encoded once, in one buffer, signed, and the signature appended.
fn encode_certificate(
    subject: &ssh_key::PublicKey,
    ca: &SshSigner,
    f: &Fields<'_>,
) -> Result<Vec<u8>, Error> {
    if f.valid_before < f.valid_after {
        return Err(Error::invalid(
            f.what,
            format!(
                "valid_before {} is earlier than valid_after {}",
                f.valid_before, f.valid_after
            ),
        ));
    }
    if f.principals.is_empty() {
        // No principals would make a certificate valid for every one.
        return Err(Error::invalid(f.what, "no principals"));
    }
    let key = subject
        .to_bytes()
        .map_err(|e| Error::invalid(f.what, format!("encoding the subject key: {e}")))?;
    // The subject's key blob is its algorithm name followed by the key's fields; the
    // certificate carries the fields after its own type name and the nonce.
    let fields = key
        .get(..4)
        .and_then(|l| usize::try_from(u32::from_be_bytes(l.try_into().ok()?)).ok())
        .and_then(|n| key.get(4 + n..))
        .ok_or_else(|| Error::invalid(f.what, "the subject key's encoding has no name"))?;
    let kind = subject.algorithm().to_certificate_type();
    let mut nonce = [0u8; 32];
    crate::random::fill_public(&mut nonce)?;
    let mut out = Vec::with_capacity(
        512 + key.len()
            + ca.public_blob.len()
            + f.extensions
                .iter()
                .map(|(k, v)| k.len() + v.len() + 12)
                .sum::<usize>(),
    );
    put_string(&mut out, kind.as_bytes())?;
    put_string(&mut out, &nonce)?;
    out.extend_from_slice(fields);
    out.extend_from_slice(&0u64.to_be_bytes()); // serial
    let cert_type: u32 = match f.cert_type {
        CertType::User => 1,
        CertType::Host => 2,
    };
    out.extend_from_slice(&cert_type.to_be_bytes());
    put_string(&mut out, f.key_id.as_bytes())?;
    put_nested(&mut out, |out| {
        f.principals
            .iter()
            .try_for_each(|p| put_string(out, p.as_bytes()))
    })?;
    out.extend_from_slice(&f.valid_after.to_be_bytes());
    out.extend_from_slice(&f.valid_before.to_be_bytes());
    put_options(&mut out, f.critical_options)?;
    put_options(&mut out, f.extensions)?;
    put_string(&mut out, b"")?; // reserved
    put_string(&mut out, &ca.public_blob)?;
    let signature = ca.sign_wire(&out)?;
    put_nested(&mut out, |out| {
        put_string(out, signature.0.as_bytes())?;
        put_string(out, &signature.1)
    })?;
    Ok(out)
}

/// Decodes a certificate [`encode_certificate`] wrote.
fn decode_own(bytes: &[u8], what: &str) -> Result<ssh_key::Certificate, Error> {
    ssh_key::Certificate::from_bytes(bytes)
        .map_err(|e| Error::invalid(what, format!("decoding the issued certificate: {e}")))
}

/// `kind`, a space, the base64 of `bytes`, then ` comment` when there is one, and a
/// newline.
fn line_of(kind: &str, bytes: &[u8], comment: &str) -> String {
    use base64::Engine as _;
    let mut line =
        String::with_capacity(kind.len() + bytes.len().div_ceil(3) * 4 + comment.len() + 3);
    line.push_str(kind);
    line.push(' ');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut line);
    if !comment.is_empty() {
        line.push(' ');
        line.push_str(comment);
    }
    line.push('\n');
    line
}

/// A certificate as one authorized_keys-style line ending in a newline: type, base64 of
/// the encoding, and the comment when there is one. The same text as ssh-key's
/// `to_openssh` plus the newline, in one pass instead of a length pass and a base64
/// writer (certificate issuance does this on every call).
pub fn authorized_line(cert: &ssh_key::Certificate) -> Result<String, Error> {
    let bytes = cert
        .to_bytes()
        .map_err(|e| Error::invalid("SSH certificate", format!("encoding: {e}")))?;
    Ok(line_of(
        &cert.algorithm().to_certificate_type(),
        &bytes,
        cert.comment(),
    ))
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
        let principals: Vec<&str> = self.principals.iter().map(String::as_str).collect();
        // Sorted by name.
        let extensions = [
            ("x-teleport-authority", self.cluster.as_str()),
            ("x-teleport-role", self.role.as_str()),
        ];
        let bytes = encode_certificate(
            subject,
            ca,
            &Fields {
                what: "SSH host certificate",
                cert_type: CertType::Host,
                key_id: &self.key_id,
                principals: &principals,
                critical_options: &[],
                extensions: &extensions,
                valid_after,
                valid_before,
            },
        )?;
        decode_own(&bytes, "SSH host certificate")
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
    /// The public key's wire encoding, which every certificate carries.
    public_blob: Vec<u8>,
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
        let public_blob = ca.public_key().to_bytes().map_err(|e| bad(&e))?;
        Ok(Self {
            key,
            public: ca.public_key().key_data().clone(),
            public_blob,
        })
    }

    /// Signs `msg`: the signature's algorithm name and its bytes, as an SSH signature
    /// blob holds them.
    fn sign_wire(&self, msg: &[u8]) -> Result<(std::borrow::Cow<'static, str>, Vec<u8>), Error> {
        let failed =
            |e: &dyn std::fmt::Display| Error::invalid("SSH certificate", format!("signing: {e}"));
        Ok(match &self.key {
            SignerKey::Ed25519(k) => ("ssh-ed25519".into(), k.sign(msg).as_ref().to_vec()),
            SignerKey::Rsa(k) => {
                let sig: rsa::pkcs1v15::Signature =
                    signature::Signer::try_sign(k.as_ref(), msg).map_err(|e| failed(&e))?;
                (
                    "rsa-sha2-512".into(),
                    signature::SignatureEncoding::to_vec(&sig),
                )
            }
            SignerKey::Other(k) => {
                let sig: ssh_key::Signature =
                    signature::Signer::try_sign(k.as_ref(), msg).map_err(|e| failed(&e))?;
                (
                    sig.algorithm().as_str().to_string().into(),
                    sig.as_bytes().to_vec(),
                )
            }
        })
    }

    /// The CA's public key.
    pub fn public_key(&self) -> &ssh_key::public::KeyData {
        &self.public
    }
}

impl signature::Signer<ssh_key::Signature> for SshSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<ssh_key::Signature, signature::Error> {
        let (name, bytes) = self.sign_wire(msg).map_err(signature::Error::from_source)?;
        let algorithm = ssh_key::Algorithm::new(&name).map_err(signature::Error::from_source)?;
        ssh_key::Signature::new(algorithm, bytes).map_err(signature::Error::from_source)
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
    fn the_signer_signs_as_ssh_key_verifies() {
        for alg in [
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            let ca = PrivateKey::generate(alg).unwrap().to_ssh().unwrap();
            let signer = SshSigner::new(&ca).unwrap();
            let sig: ssh_key::Signature = signature::Signer::try_sign(&signer, b"msg").unwrap();
            signature::Verifier::verify(ca.public_key().key_data(), b"msg", &sig).unwrap();
            assert!(
                signature::Verifier::verify(ca.public_key().key_data(), b"other", &sig).is_err(),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_signed_line_is_the_certificate_ssh_key_reads_back() {
        let ca = PrivateKey::generate(KeyAlgorithm::Ed25519)
            .unwrap()
            .to_ssh()
            .unwrap();
        let signer = SshSigner::new(&ca).unwrap();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            .unwrap()
            .ssh_public_key()
            .unwrap();
        let mut id = SshIdentity::user("alice", vec!["access".into()], "example.com");
        id.logins = vec!["root".into(), "alice".into()];
        id.traits.insert("logins".into(), vec!["root".into()]);
        id.critical_options
            .insert("source-address".into(), "10.0.0.1/32".into());
        // An extension of the caller's that a field also writes: the field wins.
        id.extensions
            .insert("teleport-route-to-cluster".into(), "elsewhere".into());
        id.extensions
            .insert("permit-X11-forwarding".into(), String::new());
        let line = id.sign_line(&key, &signer, 100, 4_000_000_000).unwrap();
        assert!(line.starts_with("ecdsa-sha2-nistp256-cert-v01@openssh.com "));
        assert!(line.ends_with('\n'));
        let cert = ssh_key::Certificate::from_openssh(line.trim()).unwrap();
        // ssh-key writes what it read byte for byte: the encoding is canonical.
        assert_eq!(authorized_line(&cert).unwrap(), line);
        cert.validate_at(
            1_000,
            [&ca.public_key().fingerprint(ssh_key::HashAlg::Sha256)],
        )
        .unwrap();
        assert_eq!(cert.public_key(), key.key_data());
        assert_eq!(cert.valid_after(), 100);
        assert_eq!(cert.valid_before(), 4_000_000_000);
        assert_eq!(cert.serial(), 0);
        assert_eq!(cert.nonce().len(), 32);
        let back = SshIdentity::from_certificate(&cert, "t").unwrap();
        assert_eq!(back.logins, id.logins);
        assert_eq!(back.roles, id.roles);
        assert_eq!(back.traits, id.traits);
        assert_eq!(back.route_to_cluster, "example.com");
        assert_eq!(back.critical_options, id.critical_options);
        assert_eq!(back.extensions, id.encoded_extensions());
        // The caller's own extensions pass through, permit-pty is added, and the
        // route-to-cluster field overrides the caller's extension of that name.
        assert_eq!(back.extensions["permit-X11-forwarding"], "");
        assert_eq!(back.extensions["permit-pty"], "");
        assert_eq!(back.extensions["teleport-route-to-cluster"], "example.com");
        // Two certificates for the same identity differ in their nonce.
        assert_ne!(
            id.sign_line(&key, &signer, 100, 4_000_000_000).unwrap(),
            line
        );
        // Bad validity and a host identity without principals are refused.
        let e = id
            .sign_line(&key, &signer, 200, 100)
            .unwrap_err()
            .to_string();
        assert!(e.contains("earlier than valid_after"), "{e}");
        let mut host = SshHostIdentity::new("h", "example.com", "Node");
        host.principals.clear();
        let e = host
            .sign_with(&key, &signer, 0, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no principals"), "{e}");
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
