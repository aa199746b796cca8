//! A signing helper for certificates that carry a Teleport identity: X.509 leaf
//! certificates with the identity subject of [`TlsIdentity`] (user and host), and
//! self-signed CA certificates. The CA key is an input: this module never stores keys.
//!
//! Certificates follow Teleport's template (wire-client spec §4.1): a random 128-bit
//! serial, key usage digitalSignature | keyEncipherment, extended key usage serverAuth +
//! clientAuth, basic constraints CA=false; DNS names as SANs (IP literals as IP SANs).
//! Encoded with our own small DER writer because rcgen keeps one value per subject
//! attribute type and Teleport's subjects repeat O and L.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};

use crate::{Error, KeyAlgorithm, PrivateKey, TlsIdentity};

fn crypto(what: &str) -> Error {
    Error::invalid("certificate signing", what.to_string())
}

enum Key {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A CA ready to sign: its subject and its private key, parsed once.
pub struct X509Signer {
    subject_der: Vec<u8>,
    key: Key,
}

impl std::fmt::Debug for X509Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("X509Signer { .. }")
    }
}

/// DER of a UTCTime (1950–2049) or GeneralizedTime, as RFC 5280 requires.
fn der_time(unix: i64) -> Result<Vec<u8>, Error> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| crypto(&format!("time {unix}: {e}")))?;
    let year =
        u32::try_from(t.year()).map_err(|_| crypto(&format!("time {unix}: before year 0")))?;
    // UTCTime (two-digit year) for 1950 to 2049, GeneralizedTime otherwise (RFC 5280
    // §4.1.2.5), both YYMMDDHHMMSSZ-style with seconds and a Z.
    let utc = (1950..2050).contains(&year);
    let mut out = Vec::with_capacity(17);
    out.push(if utc { 0x17 } else { 0x18 });
    out.push(if utc { 13 } else { 15 });
    let mut two =
        |n: u32| out.extend_from_slice(&[b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
    if !utc {
        two(year / 100);
    }
    two(year % 100);
    for n in [
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    ] {
        two(u32::from(n));
    }
    out.push(b'Z');
    Ok(out)
}

fn random_serial() -> Result<[u8; 16], Error> {
    let mut serial = [0u8; 16];
    crate::random::fill_public(&mut serial)?;
    serial[0] &= 0x7f;
    serial[0] |= 0x01; // positive and never shortened
    Ok(serial)
}

struct Tbs<'a> {
    issuer: &'a [u8],
    subject: &'a [u8],
    spki: &'a [u8],
    not_before: i64,
    not_after: i64,
    is_ca: bool,
    dns: &'a [String],
}

impl X509Signer {
    /// A signer from the CA's DER certificate and its private key.
    pub fn new(ca_cert_der: &[u8], ca_key: &PrivateKey) -> Result<Self, Error> {
        let cert = crate::cert::parse_x509(ca_cert_der, "CA certificate")?;
        if cert.public_key().raw != ca_key.public_key_spki_der()?.as_slice() {
            return Err(Error::KeyMismatch {
                origin: "CA".into(),
                which: "TLS",
            });
        }
        Ok(Self {
            subject_der: cert.subject().as_raw().to_vec(),
            key: ring_key(ca_key)?,
        })
    }

    /// Issues a leaf certificate for `spki_der` (a DER SubjectPublicKeyInfo) with `id`'s
    /// subject, valid from `not_before` to `not_after` (Unix seconds), with `dns_names`
    /// as SANs; returns DER.
    pub fn issue(
        &self,
        id: &TlsIdentity,
        spki_der: &[u8],
        not_before: i64,
        not_after: i64,
        dns_names: &[String],
    ) -> Result<Vec<u8>, Error> {
        let subject = id.subject_der()?;
        self.sign(&Tbs {
            issuer: &self.subject_der,
            subject: &subject,
            spki: spki_der,
            not_before,
            not_after,
            is_ca: false,
            dns: dns_names,
        })
    }

    fn sign(&self, t: &Tbs<'_>) -> Result<Vec<u8>, Error> {
        sign_with(&self.key, t)
    }
}

/// A self-signed CA certificate for `cluster` (CN and O = the cluster name), valid from
/// `not_before` to `not_after`; returns DER.
pub fn self_signed_ca(
    cluster: &str,
    key: &PrivateKey,
    not_before: i64,
    not_after: i64,
) -> Result<Vec<u8>, Error> {
    let subject = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            for (o, v) in [
                (&[2u64, 5, 4, 10][..], cluster),
                (&[2, 5, 4, 3][..], cluster),
            ] {
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        w.next()
                            .write_oid(&yasna::models::ObjectIdentifier::from_slice(o));
                        w.next().write_utf8_string(v);
                    })
                });
            }
        })
    });
    let spki = key.public_key_spki_der()?;
    sign_with(
        &ring_key(key)?,
        &Tbs {
            issuer: &subject,
            subject: &subject,
            spki: &spki,
            not_before,
            not_after,
            is_ca: true,
            dns: &[],
        },
    )
}

fn ring_key(key: &PrivateKey) -> Result<Key, Error> {
    let pkcs8 = key.to_pkcs8_der()?;
    Ok(match key.algorithm() {
        KeyAlgorithm::EcdsaP256 => Key::Ecdsa(
            EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &pkcs8,
                &SystemRandom::new(),
            )
            .map_err(|e| crypto(&format!("ECDSA key: {e}")))?,
        ),
        KeyAlgorithm::Ed25519 => Key::Ed25519(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
                .map_err(|e| crypto(&format!("Ed25519 key: {e}")))?,
        ),
        KeyAlgorithm::Rsa { .. } => {
            Key::Rsa(RsaKeyPair::from_pkcs8(&pkcs8).map_err(|e| crypto(&format!("RSA key: {e}")))?)
        }
    })
}

/// The DER AlgorithmIdentifier of the signatures `key` makes.
fn algorithm_der(key: &Key) -> &'static [u8] {
    match key {
        // ecdsa-with-SHA256 (1.2.840.10045.4.3.2)
        Key::Ecdsa(_) => &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ],
        // Ed25519 (1.3.101.112)
        Key::Ed25519(_) => &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70],
        // sha256WithRSAEncryption (1.2.840.113549.1.1.11), NULL parameters
        Key::Rsa(_) => &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ],
    }
}

/// The DER TBSCertificate for `t` with `serial`, signed with `key`'s algorithm.
fn tbs_der(key: &Key, t: &Tbs<'_>, serial: &[u8; 16]) -> Result<Vec<u8>, Error> {
    use crate::der::{constructed, primitive};
    const INTEGER: u8 = 0x02;
    const BOOLEAN_TRUE: &[u8] = &[0x01, 0x01, 0xff];
    const OCTET_STRING: u8 = 0x04;
    const SEQUENCE: u8 = 0x30;
    // Extension OIDs, whole elements: keyUsage, extKeyUsage, basicConstraints, SAN.
    const KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x0f];
    const EXT_KEY_USAGE: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x25];
    const BASIC_CONSTRAINTS: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x13];
    const SAN: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
    // SEQUENCE { serverAuth, clientAuth }
    const SERVER_AND_CLIENT_AUTH: &[u8] = &[
        0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b,
        0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
    ];
    let (nb, na) = (der_time(t.not_before)?, der_time(t.not_after)?);
    if let Some(bad) = t.dns.iter().find(|n| !n.is_ascii() || n.is_empty()) {
        return Err(crypto(&format!(
            "DNS name {bad:?} is not an ASCII host name"
        )));
    }
    let mut out = Vec::with_capacity(
        256 + t.issuer.len()
            + t.subject.len()
            + t.spki.len()
            + t.dns.iter().map(|d| d.len() + 4).sum::<usize>(),
    );
    constructed(&mut out, SEQUENCE, |w| {
        w.extend_from_slice(&[0xa0, 0x03, 0x02, 0x01, 0x02]); // [0] version v3
        // The serial's first byte is 0x01..=0x7f: positive and already minimal.
        primitive(w, INTEGER, serial);
        w.extend_from_slice(algorithm_der(key));
        w.extend_from_slice(t.issuer);
        constructed(w, SEQUENCE, |w| {
            w.extend_from_slice(&nb);
            w.extend_from_slice(&na);
        });
        w.extend_from_slice(t.subject);
        w.extend_from_slice(t.spki);
        constructed(w, 0xa3, |w| {
            constructed(w, SEQUENCE, |w| {
                // keyUsage (critical): CAs sign certificates; leaves sign and encipher.
                constructed(w, SEQUENCE, |w| {
                    w.extend_from_slice(KEY_USAGE);
                    w.extend_from_slice(BOOLEAN_TRUE);
                    let bits: &[u8] = if t.is_ca {
                        &[0x03, 0x02, 0x01, 0b1000_0110] // keyCertSign, cRLSign, digitalSignature
                    } else {
                        &[0x03, 0x02, 0x05, 0b1010_0000] // digitalSignature, keyEncipherment
                    };
                    primitive(w, OCTET_STRING, bits);
                });
                if !t.is_ca {
                    constructed(w, SEQUENCE, |w| {
                        w.extend_from_slice(EXT_KEY_USAGE);
                        primitive(w, OCTET_STRING, SERVER_AND_CLIENT_AUTH);
                    });
                }
                constructed(w, SEQUENCE, |w| {
                    w.extend_from_slice(BASIC_CONSTRAINTS);
                    w.extend_from_slice(BOOLEAN_TRUE);
                    let value: &[u8] = if t.is_ca {
                        &[0x30, 0x03, 0x01, 0x01, 0xff] // cA TRUE
                    } else {
                        &[0x30, 0x00]
                    };
                    primitive(w, OCTET_STRING, value);
                });
                if !t.dns.is_empty() {
                    constructed(w, SEQUENCE, |w| {
                        w.extend_from_slice(SAN);
                        constructed(w, OCTET_STRING, |w| {
                            constructed(w, SEQUENCE, |w| {
                                for name in t.dns {
                                    match name.parse::<std::net::IpAddr>() {
                                        Ok(std::net::IpAddr::V4(ip)) => {
                                            primitive(w, 0x87, &ip.octets());
                                        }
                                        Ok(std::net::IpAddr::V6(ip)) => {
                                            primitive(w, 0x87, &ip.octets());
                                        }
                                        Err(_) => primitive(w, 0x82, name.as_bytes()),
                                    }
                                }
                            });
                        });
                    });
                }
            });
        });
    });
    Ok(out)
}

fn sign_with(key: &Key, t: &Tbs<'_>) -> Result<Vec<u8>, Error> {
    let tbs = tbs_der(key, t, &random_serial()?)?;
    let rng = SystemRandom::new();
    let sig: Vec<u8> = match key {
        Key::Ecdsa(k) => k
            .sign(&rng, &tbs)
            .map_err(|_| crypto("ECDSA signing failed"))?
            .as_ref()
            .to_vec(),
        Key::Ed25519(k) => k.sign(&tbs).as_ref().to_vec(),
        Key::Rsa(k) => {
            let mut sig = vec![0u8; k.public().modulus_len()];
            k.sign(&signature::RSA_PKCS1_SHA256, &rng, &tbs, &mut sig)
                .map_err(|_| crypto("RSA signing failed"))?;
            sig
        }
    };
    let mut cert = Vec::with_capacity(tbs.len() + sig.len() + 32);
    crate::der::constructed(&mut cert, 0x30, |w| {
        w.extend_from_slice(&tbs);
        w.extend_from_slice(algorithm_der(key));
        crate::der::constructed(w, 0x03, |w| {
            w.push(0); // no unused bits
            w.extend_from_slice(&sig);
        });
    });
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    #[test]
    fn every_ca_key_type_signs_a_verifiable_leaf() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            let ca_key = PrivateKey::generate(alg).unwrap();
            let ca = self_signed_ca("example.com", &ca_key, 1_700_000_000, 1_900_000_000).unwrap();
            let signer = X509Signer::new(&ca, &ca_key).unwrap();
            let leaf_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
            let id = TlsIdentity::user("alice", vec!["access".into()], "example.com");
            let der = signer
                .issue(
                    &id,
                    &leaf_key.public_key_spki_der().unwrap(),
                    1_800_000_000,
                    1_800_003_600,
                    &["teleport.cluster.local".into(), "127.0.0.1".into()],
                )
                .unwrap();
            let (_, leaf) = X509Certificate::from_der(&der).unwrap();
            let (_, ca_cert) = X509Certificate::from_der(&ca).unwrap();
            leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
            ca_cert.verify_signature(None).unwrap();
            assert!(ca_cert.is_ca() && !leaf.is_ca());
            assert_eq!(
                TlsIdentity::from_name(leaf.subject(), "t")
                    .unwrap()
                    .username,
                "alice"
            );
            assert_eq!(leaf.validity().not_after.timestamp(), 1_800_003_600);
        }
    }

    #[test]
    fn times_are_utc_time_until_2049_and_generalized_time_after() {
        for (unix, der) in [
            (0, &b"\x17\x0d700101000000Z"[..]),
            (1_800_003_661, b"\x17\x0d270115090101Z"),
            // 2049-12-31T23:59:59Z, the last UTCTime, and the second after it.
            (2_524_607_999, b"\x17\x0d491231235959Z"),
            (2_524_608_000, b"\x18\x0f20500101000000Z"),
            // 1949-12-31T23:59:59Z.
            (-631_152_001, b"\x18\x0f19491231235959Z"),
        ] {
            assert_eq!(der_time(unix).unwrap(), der, "{unix}");
        }
        assert!(der_time(i64::MAX).is_err());
    }

    const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
    const OID_ED25519: &[u64] = &[1, 3, 101, 112];
    const OID_RSA_SHA256: &[u64] = &[1, 2, 840, 113549, 1, 1, 11];
    const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
    const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
    const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
    const OID_SAN: &[u64] = &[2, 5, 29, 17];
    const OID_SERVER_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 1];
    const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

    fn oid(parts: &[u64]) -> yasna::models::ObjectIdentifier {
        yasna::models::ObjectIdentifier::from_slice(parts)
    }

    fn write_alg(key: &Key, w: yasna::DERWriter<'_>) {
        w.write_sequence(|w| match key {
            Key::Ecdsa(_) => w.next().write_oid(&oid(OID_ECDSA_SHA256)),
            Key::Ed25519(_) => w.next().write_oid(&oid(OID_ED25519)),
            Key::Rsa(_) => {
                w.next().write_oid(&oid(OID_RSA_SHA256));
                w.next().write_null();
            }
        });
    }

    /// The encoding before `crate::der` (yasna), kept as the oracle the new writer must
    /// match byte for byte.
    fn tbs_der_yasna(key: &Key, t: &Tbs<'_>, serial: &[u8; 16]) -> Result<Vec<u8>, Error> {
        let (nb, na) = (der_time(t.not_before)?, der_time(t.not_after)?);
        if let Some(bad) = t.dns.iter().find(|n| !n.is_ascii() || n.is_empty()) {
            return Err(crypto(&format!(
                "DNS name {bad:?} is not an ASCII host name"
            )));
        }
        let sans: Vec<Vec<u8>> = t
            .dns
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => yasna::construct_der(|w| {
                    w.write_tagged_implicit(yasna::Tag::context(7), |w| w.write_bytes(&ip.octets()))
                }),
                Ok(std::net::IpAddr::V6(ip)) => yasna::construct_der(|w| {
                    w.write_tagged_implicit(yasna::Tag::context(7), |w| w.write_bytes(&ip.octets()))
                }),
                Err(_) => yasna::construct_der(|w| {
                    w.write_tagged_implicit(yasna::Tag::context(2), |w| w.write_ia5_string(name))
                }),
            })
            .collect();
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                w.next().write_bigint_bytes(serial, true);
                write_alg(key, w.next());
                w.next().write_der(t.issuer);
                w.next().write_sequence(|w| {
                    w.next().write_der(&nb);
                    w.next().write_der(&na);
                });
                w.next().write_der(t.subject);
                w.next().write_der(t.spki);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        // keyUsage (critical): CAs sign certificates; leaves sign and encipher.
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(OID_KEY_USAGE));
                            w.next().write_bool(true);
                            let bits: &[u8] = if t.is_ca {
                                &[0b1000_0110]
                            } else {
                                &[0b1010_0000]
                            };
                            let len = if t.is_ca { 7 } else { 3 };
                            w.next().write_bytes(&yasna::construct_der(|w| {
                                w.write_bitvec_bytes(bits, len)
                            }));
                        });
                        if !t.is_ca {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&oid(OID_EXT_KEY_USAGE));
                                w.next().write_bytes(&yasna::construct_der(|w| {
                                    w.write_sequence(|w| {
                                        w.next().write_oid(&oid(OID_SERVER_AUTH));
                                        w.next().write_oid(&oid(OID_CLIENT_AUTH));
                                    })
                                }));
                            });
                        }
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(OID_BASIC_CONSTRAINTS));
                            w.next().write_bool(true);
                            w.next().write_bytes(&yasna::construct_der(|w| {
                                w.write_sequence(|w| {
                                    if t.is_ca {
                                        w.next().write_bool(true);
                                    }
                                })
                            }));
                        });
                        if !sans.is_empty() {
                            w.next().write_sequence(|w| {
                                w.next().write_oid(&oid(OID_SAN));
                                w.next().write_bytes(&yasna::construct_der(|w| {
                                    w.write_sequence(|w| {
                                        for s in &sans {
                                            w.next().write_der(s);
                                        }
                                    })
                                }));
                            });
                        }
                    });
                });
            });
        });
        Ok(tbs)
    }

    #[test]
    fn tbs_encoding_matches_yasna_byte_for_byte() {
        let subject = TlsIdentity::user("alice", vec!["access".into()], "example.com")
            .subject_der()
            .unwrap();
        let long_subject = TlsIdentity::user("bob".repeat(100), vec!["r".repeat(300)], "c")
            .subject_der()
            .unwrap();
        let spki = PrivateKey::generate(KeyAlgorithm::EcdsaP256)
            .unwrap()
            .public_key_spki_der()
            .unwrap();
        let names: Vec<String> = vec![
            "teleport.cluster.local".into(),
            "*.teleport.cluster.local".into(),
            "127.0.0.1".into(),
            "::1".into(),
            "proxy.example.com".into(),
        ];
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::Ed25519,
            KeyAlgorithm::Rsa { bits: 2048 },
        ] {
            let key = ring_key(&PrivateKey::generate(alg).unwrap()).unwrap();
            for (is_ca, dns, subject, not_after) in [
                (false, &names[..], &subject, 1_800_003_600),
                (false, &[][..], &long_subject, 2_600_000_000), // GeneralizedTime
                (true, &[][..], &subject, 2_000_000_000),
            ] {
                let t = Tbs {
                    issuer: subject,
                    subject,
                    spki: &spki,
                    not_before: 1_800_000_000,
                    not_after,
                    is_ca,
                    dns,
                };
                let serial = random_serial().unwrap();
                assert_eq!(
                    tbs_der(&key, &t, &serial).unwrap(),
                    tbs_der_yasna(&key, &t, &serial).unwrap(),
                    "{alg:?}, CA {is_ca}, {} names",
                    dns.len()
                );
            }
        }
    }
}
