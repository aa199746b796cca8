//! Private keys: Ed25519, ECDSA P-256 and RSA (2048 bits or more), read from PKCS#1,
//! PKCS#8, SEC1 and OpenSSH PEMs and converted to what rustls and SSH need.
//!
//! [`PrivateKey`] is deliberately not `Clone` (copies of a secret are made on purpose,
//! through [`PrivateKey::to_pkcs8_der`] and friends, which return zeroizing buffers) and
//! prints as `PrivateKey { algorithm: .., .. }` in `Debug`.

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use rsa::pkcs1::{DecodeRsaPrivateKey as _, EncodeRsaPrivateKey as _};
use rsa::traits::PublicKeyParts as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::{Error, pem};

/// The smallest RSA modulus tp accepts, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// What kind of key a [`PrivateKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// Ed25519.
    Ed25519,
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// The modulus size.
        bits: usize,
    },
}

impl std::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

enum Inner {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::SecretKey),
    Rsa(Box<rsa::RsaPrivateKey>),
}

/// A private key. Not `Clone`; `Debug` shows only the algorithm.
pub struct PrivateKey {
    inner: Inner,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_ED25519: &str = "1.3.101.112";

fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, Error> {
    let mut out = Zeroizing::new([0u8; N]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), out.as_mut())
        .map_err(|_| Error::invalid("key generation", "the system random source failed"))?;
    Ok(out)
}

impl PrivateKey {
    /// Generates a new key. RSA keys get `bits` (at least [`MIN_RSA_BITS`]).
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, Error> {
        let inner = match algorithm {
            KeyAlgorithm::Ed25519 => Inner::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &*random_bytes::<32>()?,
            )),
            KeyAlgorithm::EcdsaP256 => loop {
                // A random scalar is out of range with probability ~2^-32: draw again.
                if let Ok(k) = p256::SecretKey::from_slice(random_bytes::<32>()?.as_ref()) {
                    break Inner::P256(k);
                }
            },
            KeyAlgorithm::Rsa { bits } => {
                if bits < MIN_RSA_BITS {
                    return Err(Error::UnsupportedKey {
                        origin: "key generation".into(),
                        what: format!("RSA-{bits}"),
                    });
                }
                let k = rsa::RsaPrivateKey::new(&mut ssh_key::rand_core::OsRng, bits)
                    .map_err(|e| Error::invalid("key generation", format!("RSA: {e}")))?;
                Inner::Rsa(Box::new(k))
            }
        };
        Ok(Self { inner })
    }

    /// Reads the first PEM block of `text` as a private key. `origin` names the source in
    /// errors.
    pub fn from_pem(text: &str, origin: &str) -> Result<Self, Error> {
        let blocks = pem::parse_all(text, origin)?;
        let block = blocks
            .first()
            .ok_or_else(|| Error::missing(origin, "PEM private key block"))?;
        Self::from_block(block, text, origin)
    }

    /// Reads one decoded PEM block as a private key. `text` is the whole PEM source, needed
    /// for OpenSSH keys (whose decoder works on text).
    pub(crate) fn from_block(block: &pem::Block, text: &str, origin: &str) -> Result<Self, Error> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| Error::invalid(origin, format!("{what}: {e}"));
        let inner = match block.label.as_str() {
            "RSA PRIVATE KEY" => Inner::Rsa(Box::new(
                rsa::RsaPrivateKey::from_pkcs1_der(&block.der)
                    .map_err(|e| bad("PKCS#1 RSA private key", &e))?,
            )),
            "EC PRIVATE KEY" => {
                Inner::P256(p256::SecretKey::from_sec1_der(&block.der).map_err(|_| {
                    Error::UnsupportedKey {
                        origin: origin.into(),
                        what: "SEC1 EC key that is not a valid P-256 key".into(),
                    }
                })?)
            }
            "PRIVATE KEY" => Self::from_pkcs8(&block.der, origin)?,
            "OPENSSH PRIVATE KEY" => Self::from_openssh(text, origin)?,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(Error::UnsupportedKey {
                    origin: origin.into(),
                    what: "encrypted PKCS#8 key".into(),
                });
            }
            other => {
                return Err(Error::UnsupportedKey {
                    origin: origin.into(),
                    what: format!("PEM block {other:?}"),
                });
            }
        };
        let key = Self { inner };
        key.check_size(origin)?;
        Ok(key)
    }

    fn from_pkcs8(der: &[u8], origin: &str) -> Result<Inner, Error> {
        let info = p256::pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| Error::invalid(origin, format!("PKCS#8 private key: {e}")))?;
        let alg = info.algorithm.oid.to_string();
        let bad =
            |e: &dyn std::fmt::Display| Error::invalid(origin, format!("PKCS#8 private key: {e}"));
        Ok(match alg.as_str() {
            OID_ED25519 => {
                Inner::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| bad(&e))?)
            }
            OID_RSA => Inner::Rsa(Box::new(
                <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                    .map_err(|e| bad(&e))?,
            )),
            OID_EC => {
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .map(|o| o.to_string())
                    .unwrap_or_default();
                if curve != OID_P256 {
                    return Err(Error::UnsupportedKey {
                        origin: origin.into(),
                        what: format!("ECDSA key on curve {curve}"),
                    });
                }
                Inner::P256(
                    <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                        .map_err(|e| bad(&e))?,
                )
            }
            other => {
                return Err(Error::UnsupportedKey {
                    origin: origin.into(),
                    what: format!("PKCS#8 algorithm {other}"),
                });
            }
        })
    }

    fn from_openssh(text: &str, origin: &str) -> Result<Inner, Error> {
        let start = text
            .find("-----BEGIN OPENSSH PRIVATE KEY-----")
            .unwrap_or(0);
        let key = ssh_key::PrivateKey::from_openssh(&text[start..])
            .map_err(|e| Error::invalid(origin, format!("OpenSSH private key: {e}")))?;
        if key.is_encrypted() {
            return Err(Error::UnsupportedKey {
                origin: origin.into(),
                what: "passphrase-protected OpenSSH key".into(),
            });
        }
        let data = key.key_data();
        if let Some(k) = data.ed25519() {
            return Ok(Inner::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                &k.private.to_bytes(),
            )));
        }
        if let Some(ssh_key::private::EcdsaKeypair::NistP256 { private, .. }) = data.ecdsa() {
            let k = p256::SecretKey::from_slice(private.as_slice())
                .map_err(|e| Error::invalid(origin, format!("OpenSSH ECDSA key: {e}")))?;
            return Ok(Inner::P256(k));
        }
        if let Some(k) = data.rsa() {
            let k = rsa_from_ssh(k)
                .map_err(|e| Error::invalid(origin, format!("OpenSSH RSA key: {e}")))?;
            return Ok(Inner::Rsa(Box::new(k)));
        }
        Err(Error::UnsupportedKey {
            origin: origin.into(),
            what: format!("OpenSSH {} key", key.algorithm()),
        })
    }

    fn check_size(&self, origin: &str) -> Result<(), Error> {
        if let KeyAlgorithm::Rsa { bits } = self.algorithm()
            && bits < MIN_RSA_BITS
        {
            return Err(Error::UnsupportedKey {
                origin: origin.into(),
                what: format!("RSA-{bits}"),
            });
        }
        Ok(())
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.inner {
            Inner::Ed25519(_) => KeyAlgorithm::Ed25519,
            Inner::P256(_) => KeyAlgorithm::EcdsaP256,
            Inner::Rsa(k) => KeyAlgorithm::Rsa { bits: k.size() * 8 },
        }
    }

    /// The key as PKCS#8 DER (what rustls and ring load).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let err = |e: &dyn std::fmt::Display| {
            Error::invalid("private key", format!("PKCS#8 encoding: {e}"))
        };
        let doc = match &self.inner {
            Inner::Ed25519(k) => k.to_pkcs8_der().map_err(|e| err(&e))?,
            Inner::P256(k) => {
                p256::pkcs8::EncodePrivateKey::to_pkcs8_der(k).map_err(|e| err(&e))?
            }
            Inner::Rsa(k) => {
                rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(k.as_ref()).map_err(|e| err(&e))?
            }
        };
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The key as rustls wants it.
    pub fn to_rustls(&self) -> Result<PrivateKeyDer<'static>, Error> {
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            self.to_pkcs8_der()?.to_vec(),
        )))
    }

    /// The key as PEM the way Teleport writes it: RSA as PKCS#1 (`RSA PRIVATE KEY`),
    /// ECDSA and Ed25519 as PKCS#8 (`PRIVATE KEY`).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, Error> {
        match &self.inner {
            Inner::Rsa(k) => {
                let der = k
                    .to_pkcs1_der()
                    .map_err(|e| Error::invalid("private key", format!("PKCS#1 encoding: {e}")))?;
                Ok(Zeroizing::new(pem::encode(
                    "RSA PRIVATE KEY",
                    der.as_bytes(),
                )))
            }
            _ => Ok(Zeroizing::new(pem::encode(
                "PRIVATE KEY",
                &self.to_pkcs8_der()?,
            ))),
        }
    }

    /// The key in OpenSSH's private-key format (`OPENSSH PRIVATE KEY`, unencrypted).
    pub fn to_openssh_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.to_ssh()?
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| Error::invalid("private key", format!("OpenSSH encoding: {e}")))
    }

    /// The DER SubjectPublicKeyInfo of the public half (what an X.509 certificate holds).
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, Error> {
        let err = |e: &dyn std::fmt::Display| {
            Error::invalid("private key", format!("public key encoding: {e}"))
        };
        let doc = match &self.inner {
            Inner::Ed25519(k) => k.verifying_key().to_public_key_der().map_err(|e| err(&e))?,
            Inner::P256(k) => p256::pkcs8::EncodePublicKey::to_public_key_der(&k.public_key())
                .map_err(|e| err(&e))?,
            Inner::Rsa(k) => rsa::pkcs8::EncodePublicKey::to_public_key_der(&k.to_public_key())
                .map_err(|e| err(&e))?,
        };
        Ok(doc.as_bytes().to_vec())
    }

    /// The key as an `ssh-key` private key (for SSH signing).
    pub fn to_ssh(&self) -> Result<ssh_key::PrivateKey, Error> {
        let err =
            |e: &dyn std::fmt::Display| Error::invalid("private key", format!("SSH key: {e}"));
        let data = match &self.inner {
            Inner::Ed25519(k) => ssh_key::private::KeypairData::Ed25519(k.into()),
            Inner::P256(k) => {
                ssh_key::private::KeypairData::Ecdsa(ssh_key::private::EcdsaKeypair::NistP256 {
                    public: k.public_key().to_encoded_point(false),
                    private: k.clone().into(),
                })
            }
            Inner::Rsa(k) => ssh_key::private::KeypairData::Rsa(
                ssh_key::private::RsaKeypair::try_from(k.as_ref()).map_err(|e| err(&e))?,
            ),
        };
        ssh_key::PrivateKey::new(data, "").map_err(|e| err(&e))
    }

    /// The public half in SSH form.
    pub fn ssh_public_key(&self) -> Result<ssh_key::PublicKey, Error> {
        Ok(self.to_ssh()?.public_key().clone())
    }
}

/// The DER SubjectPublicKeyInfo of a public key as a certificate request carries it: a
/// PKIX (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`) PEM, or an SSH authorized_keys line
/// (Ed25519, ECDSA P-256, RSA). `origin` names the key in errors.
pub fn public_key_spki_der(text: &str, origin: &str) -> Result<Vec<u8>, Error> {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    use ssh_key::public::{EcdsaPublicKey, KeyData};
    let text = text.trim();
    let err = |e: &dyn std::fmt::Display| Error::invalid(origin, format!("public key: {e}"));
    if text.starts_with("-----BEGIN") {
        let blocks = pem::parse_all(text, origin)?;
        let block = blocks
            .first()
            .ok_or_else(|| Error::missing(origin, "PEM public key block"))?;
        return match block.label.as_str() {
            "PUBLIC KEY" => Ok(block.der.clone()),
            "RSA PUBLIC KEY" => rsa::RsaPublicKey::from_pkcs1_der(&block.der)
                .map_err(|e| err(&e))?
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|e| err(&e)),
            other => Err(Error::UnsupportedKey {
                origin: origin.into(),
                what: format!("PEM block {other:?} (expected a public key)"),
            }),
        };
    }
    let key = ssh_key::PublicKey::from_openssh(text).map_err(|e| err(&e))?;
    let doc = match key.key_data() {
        KeyData::Ed25519(k) => ed25519_dalek::VerifyingKey::from_bytes(&k.0)
            .map_err(|e| err(&e))?
            .to_public_key_der(),
        KeyData::Ecdsa(EcdsaPublicKey::NistP256(point)) => {
            p256::PublicKey::from_sec1_bytes(point.as_bytes())
                .map_err(|e| err(&e))?
                .to_public_key_der()
        }
        KeyData::Rsa(k) => {
            let int = |m: &ssh_key::Mpint| {
                m.as_positive_bytes()
                    .map(rsa::BigUint::from_bytes_be)
                    .ok_or_else(|| {
                        Error::invalid(origin, "public key: RSA integer is not positive")
                    })
            };
            rsa::RsaPublicKey::new(int(&k.n)?, int(&k.e)?)
                .map_err(|e| err(&e))?
                .to_public_key_der()
        }
        other => {
            return Err(Error::UnsupportedKey {
                origin: origin.into(),
                what: format!("SSH public key type {}", other.algorithm()),
            });
        }
    };
    doc.map(|d| d.as_bytes().to_vec()).map_err(|e| err(&e))
}

/// An `rsa` key from an `ssh-key` RSA key pair, built from its components here: ssh-key
/// 0.6's own conversion passes p twice (so the key it builds cannot sign).
pub(crate) fn rsa_from_ssh(
    k: &ssh_key::private::RsaKeypair,
) -> Result<rsa::RsaPrivateKey, rsa::Error> {
    let n =
        |m: &ssh_key::Mpint| rsa::BigUint::from_bytes_be(m.as_positive_bytes().unwrap_or_default());
    rsa::RsaPrivateKey::from_components(
        n(&k.public.n),
        n(&k.public.e),
        n(&k.private.d),
        vec![n(&k.private.p), n(&k.private.q)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_reads_back_to_the_same_key() {
        for alg in [
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            let k = PrivateKey::generate(alg).unwrap();
            let spki = k.public_key_spki_der().unwrap();
            let pkcs8 = pem::encode("PRIVATE KEY", &k.to_pkcs8_der().unwrap());
            for text in [
                k.to_pem().unwrap().to_string(),
                pkcs8,
                k.to_openssh_pem().unwrap().to_string(),
            ] {
                let back = PrivateKey::from_pem(&text, "t").unwrap();
                assert_eq!(back.algorithm(), alg);
                assert_eq!(back.public_key_spki_der().unwrap(), spki, "{alg}");
            }
            // rustls (ring) accepts the PKCS#8 form.
            rustls::crypto::ring::sign::any_supported_type(&k.to_rustls().unwrap()).unwrap();
        }
    }

    #[test]
    fn public_keys_in_every_request_form_give_the_same_spki() {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        for alg in [
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            let k = PrivateKey::generate(alg).unwrap();
            let spki = k.public_key_spki_der().unwrap();
            let ssh = k.ssh_public_key().unwrap().to_openssh().unwrap();
            assert_eq!(public_key_spki_der(&ssh, "t").unwrap(), spki, "{alg} SSH");
            let pkix = pem::encode("PUBLIC KEY", &spki);
            assert_eq!(public_key_spki_der(&pkix, "t").unwrap(), spki, "{alg} PKIX");
            if let Inner::Rsa(r) = &k.inner {
                let pkcs1 = r.to_public_key().to_pkcs1_der().unwrap();
                let pkcs1 = pem::encode("RSA PUBLIC KEY", pkcs1.as_bytes());
                assert_eq!(public_key_spki_der(&pkcs1, "t").unwrap(), spki, "PKCS#1");
            }
        }
        let e = public_key_spki_der("not a key", "req")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("req: "), "{e}");
    }

    #[test]
    fn sec1_and_pkcs1_are_read() {
        let k = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let sec1 = k.to_sec1_der().unwrap();
        let key = PrivateKey::from_pem(&pem::encode("EC PRIVATE KEY", &sec1), "t").unwrap();
        assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
        let rsa = PrivateKey::generate(KeyAlgorithm::Rsa { bits: 2048 }).unwrap();
        assert!(
            rsa.to_pem()
                .unwrap()
                .starts_with("-----BEGIN RSA PRIVATE KEY-----")
        );
    }

    #[test]
    fn unsupported_keys_say_what_they_are() {
        let e = PrivateKey::from_pem(
            "-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n",
            "/k",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("/k: unsupported private key (PEM block \"DSA PRIVATE KEY\")"),
            "{e}"
        );
        let small = rsa::RsaPrivateKey::new(&mut ssh_key::rand_core::OsRng, 1024).unwrap();
        let pem1024 = pem::encode("RSA PRIVATE KEY", small.to_pkcs1_der().unwrap().as_bytes());
        let e = PrivateKey::from_pem(&pem1024, "/k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("RSA-1024"), "{e}");
        let e = PrivateKey::from_pem("", "/k").unwrap_err().to_string();
        assert_eq!(e, "/k: no PEM private key block");
    }

    #[test]
    fn debug_never_prints_key_material() {
        let k = PrivateKey::generate(KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(format!("{k:?}"), "PrivateKey { algorithm: Ed25519, .. }");
    }
}
