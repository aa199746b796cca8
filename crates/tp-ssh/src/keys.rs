//! Keys, signatures and certificate checks.
//!
//! Keys and certificates are parsed by `ssh-key`; every signature made or checked on the
//! wire goes through ring (Ed25519, ECDSA P-256 with SHA-256, RSA PKCS#1 v1.5 with
//! SHA-256/512). Certificate CA signatures are checked by `ssh_key::Certificate::validate_at`.

use std::net::IpAddr;

use ring::rand::SystemRandom;
use ring::signature::{self as sig};
use ssh_key::certificate::CertType;
use ssh_key::private::KeypairData;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, Fingerprint, HashAlg, PrivateKey, PublicKey};

use crate::error::Error;
use crate::wire::{Reader, Writer, mpint_to_fixed};

const CERT_SUFFIX: &str = "-cert-v01@openssh.com";

/// Public-key algorithm names we can sign and verify.
pub(crate) const PLAIN_ALGS: [&str; 4] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "rsa-sha2-512",
    "rsa-sha2-256",
];
/// Certificate algorithm names we can sign and verify.
pub(crate) const CERT_ALGS: [&str; 4] = [
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
];

/// The signature algorithm used by a public-key algorithm (`X-cert-v01@openssh.com` → `X`).
pub(crate) fn sig_alg(pk_alg: &str) -> &str {
    pk_alg.strip_suffix(CERT_SUFFIX).unwrap_or(pk_alg)
}

pub(crate) fn is_cert_alg(pk_alg: &str) -> bool {
    pk_alg.ends_with(CERT_SUFFIX)
}

/// Whether the algorithm name `pk_alg` may be used with a key of this type.
fn alg_matches_key(pk_alg: &str, key: &KeyData) -> bool {
    match sig_alg(pk_alg) {
        "ssh-ed25519" => key.is_ed25519(),
        "ecdsa-sha2-nistp256" => key
            .ecdsa()
            .is_some_and(|k| k.curve() == ssh_key::EcdsaCurve::NistP256),
        "rsa-sha2-256" | "rsa-sha2-512" => key.is_rsa(),
        _ => false,
    }
}

enum Signer {
    Ed25519(sig::Ed25519KeyPair),
    EcdsaP256(sig::EcdsaKeyPair),
    Rsa(sig::RsaKeyPair),
}

/// A private key (Ed25519, ECDSA P-256 or RSA ≥ 2048 bits), optionally with the OpenSSH
/// certificate that goes with it. Used as a server host key and as a client user key.
pub struct KeyPair {
    signer: Signer,
    public: PublicKey,
    cert: Option<Certificate>,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("algorithm", &self.public.algorithm().as_str())
            .field("certificate", &self.cert.as_ref().map(Certificate::key_id))
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Builds a key pair from an unencrypted `ssh-key` private key.
    pub fn new(key: &PrivateKey) -> Result<Self, Error> {
        if key.is_encrypted() {
            return Err(Error::Key("private key is encrypted".into()));
        }
        let bad = |e: ring::error::KeyRejected| Error::Key(format!("key rejected: {e}"));
        let signer = match key.key_data() {
            KeypairData::Ed25519(k) => Signer::Ed25519(
                sig::Ed25519KeyPair::from_seed_and_public_key(
                    k.private.as_ref(),
                    k.public.as_ref(),
                )
                .map_err(bad)?,
            ),
            KeypairData::Ecdsa(ssh_key::private::EcdsaKeypair::NistP256 { public, private }) => {
                Signer::EcdsaP256(
                    sig::EcdsaKeyPair::from_private_key_and_public_key(
                        &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                        private.as_slice(),
                        public.as_bytes(),
                        &SystemRandom::new(),
                    )
                    .map_err(bad)?,
                )
            }
            KeypairData::Rsa(k) => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                // Built by hand: ssh-key 0.6's own conversion passes `p` twice.
                let big = |m: &ssh_key::Mpint| {
                    m.as_positive_bytes()
                        .map(rsa::BigUint::from_bytes_be)
                        .ok_or_else(|| Error::Key("rsa key: bad integer".into()))
                };
                let mut rk = rsa::RsaPrivateKey::from_components(
                    big(&k.public.n)?,
                    big(&k.public.e)?,
                    big(&k.private.d)?,
                    vec![big(&k.private.p)?, big(&k.private.q)?],
                )
                .map_err(|e| Error::Key(format!("rsa key: {e}")))?;
                rk.precompute()
                    .map_err(|e| Error::Key(format!("rsa key: {e}")))?;
                let der = rk
                    .to_pkcs1_der()
                    .map_err(|e| Error::Key(format!("rsa key: {e}")))?;
                Signer::Rsa(sig::RsaKeyPair::from_der(der.as_bytes()).map_err(bad)?)
            }
            _ => return Err(Error::Key("unsupported key type".into())),
        };
        Ok(Self {
            signer,
            public: key.public_key().clone(),
            cert: None,
        })
    }

    /// Parses an unencrypted OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn from_openssh(pem: &str) -> Result<Self, Error> {
        let key = PrivateKey::from_openssh(pem).map_err(|e| Error::Key(e.to_string()))?;
        Self::new(&key)
    }

    /// Attaches the certificate for this key; fails if the certificate is for another key.
    pub fn with_certificate(mut self, cert: Certificate) -> Result<Self, Error> {
        if cert.public_key() != self.public.key_data() {
            return Err(Error::Key("certificate is for a different key".into()));
        }
        self.cert = Some(cert);
        Ok(self)
    }

    /// Attaches a certificate without checking that it matches the key. Only for tests
    /// that play a client signing with the wrong key.
    #[doc(hidden)]
    pub fn with_certificate_unchecked(mut self, cert: Certificate) -> Self {
        self.cert = Some(cert);
        self
    }

    /// The public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The certificate, if any.
    pub fn certificate(&self) -> Option<&Certificate> {
        self.cert.as_ref()
    }

    /// The public-key algorithm names this key can be used with, certificate ones first.
    pub(crate) fn algorithms(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.cert.is_some() {
            out.extend(
                CERT_ALGS
                    .iter()
                    .filter(|a| alg_matches_key(a, self.public.key_data())),
            );
        }
        out.extend(
            PLAIN_ALGS
                .iter()
                .filter(|a| alg_matches_key(a, self.public.key_data())),
        );
        out
    }

    /// The key blob sent with algorithm `pk_alg` (the certificate for certificate algorithms).
    pub(crate) fn blob(&self, pk_alg: &str) -> Result<Vec<u8>, Error> {
        let r = if is_cert_alg(pk_alg) {
            self.cert
                .as_ref()
                .ok_or_else(|| Error::Key("no certificate".into()))?
                .to_bytes()
        } else {
            self.public.to_bytes()
        };
        r.map_err(|e| Error::Key(e.to_string()))
    }

    /// Signs `data` for algorithm `pk_alg`; returns the SSH signature encoding
    /// (`string alg, string blob`).
    pub(crate) fn sign(&self, pk_alg: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
        let alg = sig_alg(pk_alg);
        let rng = SystemRandom::new();
        let fail = |_| Error::Key("signing failed".into());
        let raw = match (&self.signer, alg) {
            (Signer::Ed25519(k), "ssh-ed25519") => k.sign(data).as_ref().to_vec(),
            (Signer::EcdsaP256(k), "ecdsa-sha2-nistp256") => {
                let s = k.sign(&rng, data).map_err(fail)?;
                let (r, s) = s.as_ref().split_at(32);
                let mut blob = Vec::new();
                blob.put_mpint(r);
                blob.put_mpint(s);
                blob
            }
            (Signer::Rsa(k), "rsa-sha2-256" | "rsa-sha2-512") => {
                let pad: &'static dyn sig::RsaEncoding = if alg == "rsa-sha2-256" {
                    &sig::RSA_PKCS1_SHA256
                } else {
                    &sig::RSA_PKCS1_SHA512
                };
                let mut out = vec![0u8; k.public().modulus_len()];
                k.sign(pad, &rng, data, &mut out).map_err(fail)?;
                out
            }
            _ => return Err(Error::Key(format!("key cannot sign with {pk_alg}"))),
        };
        let mut out = Vec::new();
        out.put_str(alg);
        out.put_string(&raw);
        Ok(out)
    }

    /// The raw public key bytes as ring sees them (for tests).
    #[cfg(test)]
    pub(crate) fn ring_public(&self) -> Vec<u8> {
        use ring::signature::KeyPair as _;
        match &self.signer {
            Signer::Ed25519(k) => k.public_key().as_ref().to_vec(),
            Signer::EcdsaP256(k) => k.public_key().as_ref().to_vec(),
            Signer::Rsa(k) => k.public_key().as_ref().to_vec(),
        }
    }
}

/// Verifies an SSH signature encoding `signature` over `data` by `key`, requiring the
/// signature algorithm that goes with public-key algorithm `pk_alg`.
pub(crate) fn verify(
    key: &KeyData,
    pk_alg: &str,
    signature: &[u8],
    data: &[u8],
) -> Result<(), Error> {
    let bad = || Error::Auth("bad signature".into());
    if !alg_matches_key(pk_alg, key) {
        return Err(bad());
    }
    let mut r = Reader::new(signature);
    let name = r.utf8().map_err(|_| bad())?;
    let blob = r.string().map_err(|_| bad())?;
    if name != sig_alg(pk_alg) || !r.is_empty() {
        return Err(bad());
    }
    match name {
        "ssh-ed25519" => {
            let k = key.ed25519().ok_or_else(bad)?;
            sig::UnparsedPublicKey::new(&sig::ED25519, k.as_ref())
                .verify(data, blob)
                .map_err(|_| bad())
        }
        "ecdsa-sha2-nistp256" => {
            let k = key.ecdsa().ok_or_else(bad)?;
            let mut br = Reader::new(blob);
            let rr = mpint_to_fixed(br.string().map_err(|_| bad())?, 32).map_err(|_| bad())?;
            let ss = mpint_to_fixed(br.string().map_err(|_| bad())?, 32).map_err(|_| bad())?;
            if !br.is_empty() {
                return Err(bad());
            }
            let mut fixed = rr;
            fixed.extend_from_slice(&ss);
            sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, k.as_sec1_bytes())
                .verify(data, &fixed)
                .map_err(|_| bad())
        }
        "rsa-sha2-256" | "rsa-sha2-512" => {
            let k = key.rsa().ok_or_else(bad)?;
            let params = if name == "rsa-sha2-256" {
                &sig::RSA_PKCS1_2048_8192_SHA256
            } else {
                &sig::RSA_PKCS1_2048_8192_SHA512
            };
            let n = k.n.as_positive_bytes().ok_or_else(bad)?;
            let e = k.e.as_positive_bytes().ok_or_else(bad)?;
            sig::RsaPublicKeyComponents { n, e }
                .verify(params, data, blob)
                .map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

/// Parses a key blob sent with algorithm `pk_alg` into the signing key and, for
/// certificate algorithms, the certificate.
pub(crate) fn parse_blob(
    pk_alg: &str,
    blob: &[u8],
) -> Result<(KeyData, Option<Certificate>), Error> {
    let bad = |_| Error::Key("unparsable key blob".into());
    if is_cert_alg(pk_alg) {
        let cert = Certificate::from_bytes(blob).map_err(bad)?;
        let key = cert.public_key().clone();
        if !alg_matches_key(pk_alg, &key) {
            return Err(Error::Key(
                "certificate key type does not match algorithm".into(),
            ));
        }
        Ok((key, Some(cert)))
    } else {
        let key = PublicKey::from_bytes(blob).map_err(bad)?.key_data().clone();
        if !alg_matches_key(pk_alg, &key) {
            return Err(Error::Key("key type does not match algorithm".into()));
        }
        Ok((key, None))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks a user certificate presented to a server. Returns `Err` without saying to the
/// peer which check failed (the caller sends a generic `USERAUTH_FAILURE`).
pub(crate) fn check_user_cert(
    cert: &Certificate,
    trusted_cas: &[Fingerprint],
    user: &str,
    peer: Option<IpAddr>,
) -> Result<(), Error> {
    let fail = |why: &str| Error::Auth(why.to_owned());
    cert.validate_at(unix_now(), trusted_cas)
        .map_err(|_| fail("untrusted, invalid or expired certificate"))?;
    if cert.cert_type() != CertType::User {
        return Err(fail("not a user certificate"));
    }
    if cert.valid_principals().is_empty() {
        return Err(fail("certificate has no principals"));
    }
    if !cert.valid_principals().iter().any(|p| p == user) {
        return Err(fail("user is not a principal of the certificate"));
    }
    for (name, value) in cert.critical_options().iter() {
        match name.as_str() {
            "source-address" => {
                let ip = peer.ok_or_else(|| fail("source-address with unknown peer"))?;
                if !source_address_allows(value, ip) {
                    return Err(fail("source-address does not allow peer"));
                }
            }
            _ => return Err(fail("unknown critical option")),
        }
    }
    Ok(())
}

/// Checks a host certificate presented by a server.
pub(crate) fn check_host_cert(
    cert: &Certificate,
    trusted_cas: &[Fingerprint],
    principal: Option<&str>,
) -> Result<(), Error> {
    let fail = |why: &str| Error::HostKey(why.to_owned());
    cert.validate_at(unix_now(), trusted_cas)
        .map_err(|_| fail("untrusted, invalid or expired host certificate"))?;
    if cert.cert_type() != CertType::Host {
        return Err(fail("not a host certificate"));
    }
    if !cert.critical_options().is_empty() {
        return Err(fail("host certificate has critical options"));
    }
    if let Some(p) = principal
        && !cert.valid_principals().iter().any(|x| x == p)
    {
        return Err(fail("host name is not a principal of the certificate"));
    }
    Ok(())
}

/// Evaluates an OpenSSH `source-address` list (comma-separated addresses and CIDRs).
pub(crate) fn source_address_allows(list: &str, ip: IpAddr) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        let (addr, bits) = match entry.split_once('/') {
            Some((a, b)) => match b.parse::<u8>() {
                Ok(b) => (a, Some(b)),
                Err(_) => return false,
            },
            None => (entry, None),
        };
        let Ok(net) = addr.parse::<IpAddr>() else {
            return false;
        };
        let ip = match (net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let bits = u32::from(bits.unwrap_or(32).min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let bits = u32::from(bits.unwrap_or(128).min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    })
}

/// The SHA-256 fingerprint of a CA public key, as used in trust lists.
pub fn fingerprint(key: &PublicKey) -> Fingerprint {
    key.fingerprint(HashAlg::Sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_address() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(source_address_allows("10.0.0.0/8", v4));
        assert!(source_address_allows("192.168.0.1,10.1.2.3", v4));
        assert!(!source_address_allows("192.168.0.0/16", v4));
        assert!(!source_address_allows("garbage", v4));
        let v6: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(source_address_allows("10.1.0.0/16", v6));
        assert!(source_address_allows("::1", "::1".parse().unwrap()));
    }

    #[test]
    fn sign_verify_all_key_types() {
        use ssh_key::rand_core::OsRng;
        for alg in [
            ssh_key::Algorithm::Ed25519,
            ssh_key::Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP256,
            },
        ] {
            let k = PrivateKey::random(&mut OsRng, alg).unwrap();
            let kp = KeyPair::new(&k).unwrap();
            assert!(!kp.ring_public().is_empty());
            for a in kp.algorithms() {
                let s = kp.sign(a, b"data").unwrap();
                verify(k.public_key().key_data(), a, &s, b"data").unwrap();
                assert!(verify(k.public_key().key_data(), a, &s, b"other").is_err());
            }
        }
    }
}
