//! Key exchange: KEXINIT negotiation (RFC 4253 §7.1), ECDH with X25519 (RFC 8731) and
//! P-256 (RFC 5656), the exchange hash and key derivation (RFC 4253 §7.2). ring does the
//! curve arithmetic and hashing.

use ring::agreement;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use crate::cipher::CipherAlg;
use crate::error::Error;
use crate::msg;
use crate::wire::{Reader, Writer};

/// A key-exchange method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexAlg {
    /// `curve25519-sha256` (also offered as `curve25519-sha256@libssh.org`)
    Curve25519,
    /// `ecdh-sha2-nistp256`
    EcdhP256,
}

impl KexAlg {
    /// Every supported method, in our default preference order.
    pub const ALL: [Self; 2] = [Self::Curve25519, Self::EcdhP256];

    pub(crate) fn names(self) -> &'static [&'static str] {
        match self {
            Self::Curve25519 => &["curve25519-sha256", "curve25519-sha256@libssh.org"],
            Self::EcdhP256 => &["ecdh-sha2-nistp256"],
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.names().contains(&name))
    }

    fn ring_alg(self) -> &'static agreement::Algorithm {
        match self {
            Self::Curve25519 => &agreement::X25519,
            Self::EcdhP256 => &agreement::ECDH_P256,
        }
    }
}

pub(crate) const STRICT_C: &str = "kex-strict-c-v00@openssh.com";
pub(crate) const STRICT_S: &str = "kex-strict-s-v00@openssh.com";
pub(crate) const EXT_INFO_C: &str = "ext-info-c";
pub(crate) const EXT_INFO_S: &str = "ext-info-s";
/// Advertised for interoperability only: every cipher we offer is AEAD, so no MAC is used.
const MAC_NAMES: [&str; 2] = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-256"];

/// A parsed KEXINIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KexInit {
    pub(crate) kex: Vec<String>,
    pub(crate) host_key: Vec<String>,
    pub(crate) enc_cs: Vec<String>,
    pub(crate) enc_sc: Vec<String>,
    pub(crate) mac_cs: Vec<String>,
    pub(crate) mac_sc: Vec<String>,
    pub(crate) comp_cs: Vec<String>,
    pub(crate) comp_sc: Vec<String>,
    pub(crate) first_follows: bool,
}

impl KexInit {
    pub(crate) fn ours(
        kex: &[KexAlg],
        host_key: &[&str],
        ciphers: &[CipherAlg],
        markers: &[&str],
    ) -> Self {
        let mut k: Vec<String> = kex
            .iter()
            .flat_map(|k| k.names().iter().map(|s| (*s).to_owned()))
            .collect();
        k.extend(markers.iter().map(|s| (*s).to_owned()));
        let c: Vec<String> = ciphers.iter().map(|c| c.name().to_owned()).collect();
        let m: Vec<String> = MAC_NAMES.iter().map(|s| (*s).to_owned()).collect();
        Self {
            kex: k,
            host_key: host_key.iter().map(|s| (*s).to_owned()).collect(),
            enc_cs: c.clone(),
            enc_sc: c,
            mac_cs: m.clone(),
            mac_sc: m,
            comp_cs: vec!["none".into()],
            comp_sc: vec!["none".into()],
            first_follows: false,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut cookie = [0u8; 16];
        let _ = SystemRandom::new().fill(&mut cookie);
        let mut out = vec![msg::KEXINIT];
        out.put_raw(&cookie);
        for l in [
            &self.kex,
            &self.host_key,
            &self.enc_cs,
            &self.enc_sc,
            &self.mac_cs,
            &self.mac_sc,
            &self.comp_cs,
            &self.comp_sc,
        ] {
            out.put_str(&l.join(","));
        }
        out.put_str("");
        out.put_str("");
        out.put_bool(self.first_follows);
        out.put_u32(0);
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(payload);
        if r.u8()? != msg::KEXINIT {
            return Err(Error::Protocol("expected KEXINIT".into()));
        }
        r.take(16)?;
        let kex = r.name_list()?;
        let host_key = r.name_list()?;
        let enc_cs = r.name_list()?;
        let enc_sc = r.name_list()?;
        let mac_cs = r.name_list()?;
        let mac_sc = r.name_list()?;
        let comp_cs = r.name_list()?;
        let comp_sc = r.name_list()?;
        r.name_list()?;
        r.name_list()?;
        let first_follows = r.bool()?;
        r.u32()?;
        Ok(Self {
            kex,
            host_key,
            enc_cs,
            enc_sc,
            mac_cs,
            mac_sc,
            comp_cs,
            comp_sc,
            first_follows,
        })
    }
}

/// What a KEXINIT pair negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) kex: KexAlg,
    pub(crate) host_key: String,
    pub(crate) enc_cs: CipherAlg,
    pub(crate) enc_sc: CipherAlg,
    /// Whether the peer's guessed first KEX packet (if any) must be ignored.
    pub(crate) ignore_guess: bool,
}

fn first_common<'a>(client: &'a [String], server: &[String]) -> Option<&'a str> {
    client
        .iter()
        .find(|c| server.contains(c))
        .map(String::as_str)
}

/// Negotiates algorithms (the client's preference wins, RFC 4253 §7.1).
pub(crate) fn negotiate(
    client: &KexInit,
    server: &KexInit,
    we_are_client: bool,
) -> Result<Negotiated, Error> {
    let none = |what: &str| Error::KeyExchange(format!("no common {what} algorithm"));
    let kex_name = client
        .kex
        .iter()
        .find(|c| KexAlg::from_name(c).is_some() && server.kex.contains(c))
        .ok_or_else(|| none("key exchange"))?;
    let kex = KexAlg::from_name(kex_name).ok_or_else(|| none("key exchange"))?;
    let host_key =
        first_common(&client.host_key, &server.host_key).ok_or_else(|| none("host key"))?;
    let enc = |c: &[String], s: &[String]| {
        c.iter()
            .find(|n| s.contains(n) && CipherAlg::from_name(n).is_some())
            .and_then(|n| CipherAlg::from_name(n))
            .ok_or_else(|| none("cipher"))
    };
    let enc_cs = enc(&client.enc_cs, &server.enc_cs)?;
    let enc_sc = enc(&client.enc_sc, &server.enc_sc)?;
    if first_common(&client.comp_cs, &server.comp_cs) != Some("none")
        || first_common(&client.comp_sc, &server.comp_sc) != Some("none")
    {
        return Err(none("compression"));
    }
    let peer = if we_are_client { server } else { client };
    let ignore_guess = peer.first_follows
        && (client.kex.first() != server.kex.first()
            || client.host_key.first() != server.host_key.first());
    Ok(Negotiated {
        kex,
        host_key: host_key.to_owned(),
        enc_cs,
        enc_sc,
        ignore_guess,
    })
}

/// Our ephemeral ECDH share.
pub(crate) struct Ephemeral {
    alg: KexAlg,
    private: agreement::EphemeralPrivateKey,
    pub(crate) public: Vec<u8>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Ephemeral {
    pub(crate) fn generate(alg: KexAlg) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let private = agreement::EphemeralPrivateKey::generate(alg.ring_alg(), &rng)
            .map_err(|_| Error::KeyExchange("key generation failed".into()))?;
        let public = private
            .compute_public_key()
            .map_err(|_| Error::KeyExchange("key generation failed".into()))?
            .as_ref()
            .to_vec();
        Ok(Self {
            alg,
            private,
            public,
        })
    }

    /// Computes the shared secret with the peer's public share (validated by ring).
    pub(crate) fn agree(self, peer: &[u8]) -> Result<Vec<u8>, Error> {
        let peer = agreement::UnparsedPublicKey::new(self.alg.ring_alg(), peer);
        agreement::agree_ephemeral(self.private, &peer, |k| k.to_vec())
            .map_err(|_| Error::KeyExchange("invalid peer key share".into()))
    }
}

/// Inputs of the exchange hash (RFC 5656 §4 / RFC 8731 §3).
pub(crate) struct HashInput<'a> {
    pub(crate) v_c: &'a [u8],
    pub(crate) v_s: &'a [u8],
    pub(crate) i_c: &'a [u8],
    pub(crate) i_s: &'a [u8],
    pub(crate) k_s: &'a [u8],
    pub(crate) q_c: &'a [u8],
    pub(crate) q_s: &'a [u8],
    pub(crate) k: &'a [u8],
}

impl HashInput<'_> {
    pub(crate) fn hash(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.put_string(self.v_c);
        b.put_string(self.v_s);
        b.put_string(self.i_c);
        b.put_string(self.i_s);
        b.put_string(self.k_s);
        b.put_string(self.q_c);
        b.put_string(self.q_s);
        b.put_mpint(self.k);
        digest::digest(&digest::SHA256, &b).as_ref().to_vec()
    }
}

/// Derives `len` bytes of key material for letter `x` (RFC 4253 §7.2).
pub(crate) fn derive(k: &[u8], h: &[u8], x: u8, session_id: &[u8], len: usize) -> Vec<u8> {
    let mut kenc = Vec::new();
    kenc.put_mpint(k);
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&kenc);
    ctx.update(h);
    ctx.update(&[x]);
    ctx.update(session_id);
    let mut out = ctx.finish().as_ref().to_vec();
    while out.len() < len {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&kenc);
        ctx.update(h);
        ctx.update(&out);
        out.extend_from_slice(ctx.finish().as_ref());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kexinit_roundtrip_and_negotiate() {
        let c = KexInit::ours(&KexAlg::ALL, &["ssh-ed25519"], &CipherAlg::ALL, &[STRICT_C]);
        let s = KexInit::ours(
            &[KexAlg::EcdhP256],
            &["ssh-ed25519"],
            &[CipherAlg::Aes256Gcm],
            &[STRICT_S],
        );
        let c2 = KexInit::decode(&c.encode()).unwrap();
        assert_eq!(c, c2);
        let n = negotiate(&c, &s, true).unwrap();
        assert_eq!(n.kex, KexAlg::EcdhP256);
        assert_eq!(n.enc_cs, CipherAlg::Aes256Gcm);
    }

    #[test]
    fn ecdh_agrees() {
        for alg in KexAlg::ALL {
            let a = Ephemeral::generate(alg).unwrap();
            let b = Ephemeral::generate(alg).unwrap();
            let (pa, pb) = (a.public.clone(), b.public.clone());
            assert_eq!(a.agree(&pb).unwrap(), b.agree(&pa).unwrap());
        }
        let a = Ephemeral::generate(KexAlg::EcdhP256).unwrap();
        assert!(a.agree(&[4u8; 65]).is_err());
    }

    #[test]
    fn derive_extends() {
        let a = derive(&[1, 2, 3], &[4; 32], b'C', &[5; 32], 64);
        assert_eq!(a.len(), 64);
        assert_eq!(
            &a[..32],
            &derive(&[1, 2, 3], &[4; 32], b'C', &[5; 32], 32)[..]
        );
    }
}
