//! The binary packet protocol (RFC 4253 §6) with the AEAD ciphers we support:
//! `chacha20-poly1305@openssh.com`, `aes128-gcm@openssh.com`, `aes256-gcm@openssh.com`.
//! All cryptography is ring's.

use bytes::{Bytes, BytesMut};
use ring::aead::{self, chacha20_poly1305_openssh as chacha};

use crate::error::Error;

/// The largest `packet_length` we accept or send (OpenSSH uses the same cap).
pub(crate) const MAX_PACKET_LEN: usize = 256 * 1024;

/// A negotiated cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CipherAlg {
    /// `chacha20-poly1305@openssh.com`
    ChaCha20Poly1305,
    /// `aes128-gcm@openssh.com`
    Aes128Gcm,
    /// `aes256-gcm@openssh.com`
    Aes256Gcm,
}

impl CipherAlg {
    /// Every supported cipher, in our default preference order.
    pub const ALL: [Self; 3] = [Self::ChaCha20Poly1305, Self::Aes128Gcm, Self::Aes256Gcm];

    /// The SSH name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "chacha20-poly1305@openssh.com",
            Self::Aes128Gcm => "aes128-gcm@openssh.com",
            Self::Aes256Gcm => "aes256-gcm@openssh.com",
        }
    }

    /// Looks a cipher up by its SSH name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub(crate) fn key_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => chacha::KEY_LEN,
            Self::Aes128Gcm => 16,
            Self::Aes256Gcm => 32,
        }
    }

    pub(crate) fn iv_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => 0,
            Self::Aes128Gcm | Self::Aes256Gcm => 12,
        }
    }
}

const TAG_LEN: usize = 16;

enum SealKey {
    None,
    ChaCha(chacha::SealingKey),
    Gcm(Box<aead::LessSafeKey>, [u8; 12]),
}

enum OpenKey {
    None,
    ChaCha(chacha::OpeningKey),
    Gcm(Box<aead::LessSafeKey>, [u8; 12]),
}

fn gcm_key(
    alg: CipherAlg,
    key: &[u8],
    iv: &[u8],
) -> Result<(Box<aead::LessSafeKey>, [u8; 12]), Error> {
    let ring_alg = match alg {
        CipherAlg::Aes128Gcm => &aead::AES_128_GCM,
        _ => &aead::AES_256_GCM,
    };
    let k =
        aead::UnboundKey::new(ring_alg, key).map_err(|_| Error::KeyExchange("bad key".into()))?;
    let iv: [u8; 12] = iv
        .try_into()
        .map_err(|_| Error::KeyExchange("bad iv".into()))?;
    Ok((Box::new(aead::LessSafeKey::new(k)), iv))
}

fn gcm_nonce_and_bump(iv: &mut [u8; 12]) -> aead::Nonce {
    let nonce = aead::Nonce::assume_unique_for_key(*iv);
    let mut ctr = [0u8; 8];
    ctr.copy_from_slice(&iv[4..]);
    let next = u64::from_be_bytes(ctr).wrapping_add(1);
    iv[4..].copy_from_slice(&next.to_be_bytes());
    nonce
}

/// The sending half: frames, pads and seals payloads.
pub(crate) struct Sealer {
    key: SealKey,
    /// The sequence number of the next packet sent.
    pub(crate) seq: u32,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new() -> Self {
        Self {
            key: SealKey::None,
            seq: 0,
        }
    }

    pub(crate) fn set_key(&mut self, alg: CipherAlg, key: &[u8], iv: &[u8]) -> Result<(), Error> {
        self.key = match alg {
            CipherAlg::ChaCha20Poly1305 => {
                let k: &[u8; chacha::KEY_LEN] = key
                    .try_into()
                    .map_err(|_| Error::KeyExchange("bad key".into()))?;
                SealKey::ChaCha(chacha::SealingKey::new(k))
            }
            _ => {
                let (k, iv) = gcm_key(alg, key, iv)?;
                SealKey::Gcm(k, iv)
            }
        };
        Ok(())
    }

    /// Appends one sealed packet carrying `payload` to `out`; returns bytes written.
    pub(crate) fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) -> usize {
        let (block, aad_len, tag_len) = match self.key {
            SealKey::None => (8, 0, 0),
            SealKey::ChaCha(_) => (8, 4, TAG_LEN),
            SealKey::Gcm(..) => (16, 4, TAG_LEN),
        };
        // Length covered by the padding alignment: (packet_length unless AEAD) +
        // padding_length byte + payload.
        let covered = 4 - aad_len + 1 + payload.len();
        let mut pad = block - covered % block;
        if pad < 4 {
            pad += block;
        }
        let packet_len = 1 + payload.len() + pad;
        let start = out.len();
        out.reserve(4 + packet_len + tag_len);
        out.extend_from_slice(&(packet_len as u32).to_be_bytes());
        out.push(pad as u8);
        out.extend_from_slice(payload);
        out.resize(start + 4 + packet_len, 0);
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        match &mut self.key {
            SealKey::None => {}
            SealKey::ChaCha(k) => {
                let mut tag = [0u8; TAG_LEN];
                k.seal_in_place(seq, &mut out[start..], &mut tag);
                out.extend_from_slice(&tag);
            }
            SealKey::Gcm(k, iv) => {
                let nonce = gcm_nonce_and_bump(iv);
                let (len, body) = out[start..].split_at_mut(4);
                let aad = aead::Aad::from([len[0], len[1], len[2], len[3]]);
                // Sealing can only fail for inputs far beyond MAX_PACKET_LEN.
                if let Ok(tag) = k.seal_in_place_separate_tag(nonce, aad, body) {
                    out.extend_from_slice(tag.as_ref());
                }
            }
        }
        out.len() - start
    }
}

/// The receiving half: authenticates, decrypts and unframes packets from a byte buffer.
pub(crate) struct Opener {
    key: OpenKey,
    /// The sequence number of the next packet received.
    pub(crate) seq: u32,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Opener {
    pub(crate) fn new() -> Self {
        Self {
            key: OpenKey::None,
            seq: 0,
        }
    }

    pub(crate) fn set_key(&mut self, alg: CipherAlg, key: &[u8], iv: &[u8]) -> Result<(), Error> {
        self.key = match alg {
            CipherAlg::ChaCha20Poly1305 => {
                let k: &[u8; chacha::KEY_LEN] = key
                    .try_into()
                    .map_err(|_| Error::KeyExchange("bad key".into()))?;
                OpenKey::ChaCha(chacha::OpeningKey::new(k))
            }
            _ => {
                let (k, iv) = gcm_key(alg, key, iv)?;
                OpenKey::Gcm(k, iv)
            }
        };
        Ok(())
    }

    /// Takes one complete packet off the front of `buf` and returns its payload, or
    /// `Ok(None)` when more bytes are needed. `(wire_len)` is returned for accounting.
    pub(crate) fn open(&mut self, buf: &mut BytesMut) -> Result<Option<(Bytes, usize)>, Error> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let first4 = [buf[0], buf[1], buf[2], buf[3]];
        let (block, tag_len, len_bytes) = match &self.key {
            OpenKey::None => (8, 0, first4),
            OpenKey::ChaCha(k) => (8, TAG_LEN, k.decrypt_packet_length(self.seq, first4)),
            OpenKey::Gcm(..) => (16, TAG_LEN, first4),
        };
        let packet_len = u32::from_be_bytes(len_bytes) as usize;
        if packet_len > MAX_PACKET_LEN {
            return Err(Error::Protocol(format!(
                "packet length {packet_len} exceeds cap"
            )));
        }
        let aligned = match self.key {
            OpenKey::None => (packet_len + 4).is_multiple_of(block),
            _ => packet_len.is_multiple_of(block),
        };
        if packet_len < 5 || !aligned {
            return Err(Error::Protocol(format!("bad packet length {packet_len}")));
        }
        let total = 4 + packet_len + tag_len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut pkt = buf.split_to(total);
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        match &mut self.key {
            OpenKey::None => {}
            OpenKey::ChaCha(k) => {
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&pkt[4 + packet_len..]);
                k.open_in_place(seq, &mut pkt[..4 + packet_len], &tag)
                    .map_err(|_| Error::BadTag)?;
                pkt[..4].copy_from_slice(&len_bytes);
            }
            OpenKey::Gcm(k, iv) => {
                let nonce = gcm_nonce_and_bump(iv);
                let aad = aead::Aad::from(first4);
                k.open_in_place(nonce, aad, &mut pkt[4..])
                    .map_err(|_| Error::BadTag)?;
            }
        }
        let pad = pkt[4] as usize;
        if pad < 4 || pad + 1 > packet_len {
            return Err(Error::Protocol("bad padding length".into()));
        }
        let payload_end = 4 + packet_len - pad;
        let payload = pkt.freeze().slice(5..payload_end);
        Ok(Some((payload, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: Option<CipherAlg>) -> (Sealer, Opener) {
        let mut s = Sealer::new();
        let mut o = Opener::new();
        if let Some(alg) = alg {
            let key = vec![7u8; alg.key_len()];
            let iv = vec![9u8; alg.iv_len()];
            s.set_key(alg, &key, &iv).unwrap();
            o.set_key(alg, &key, &iv).unwrap();
        }
        (s, o)
    }

    #[test]
    fn roundtrip_all() {
        for alg in [
            None,
            Some(CipherAlg::ChaCha20Poly1305),
            Some(CipherAlg::Aes128Gcm),
            Some(CipherAlg::Aes256Gcm),
        ] {
            let (mut s, mut o) = pair(alg);
            let mut wire = Vec::new();
            for n in [0usize, 1, 15, 16, 17, 1000, 65536] {
                s.seal(&vec![n as u8; n], &mut wire);
            }
            let mut buf = BytesMut::from(&wire[..]);
            for n in [0usize, 1, 15, 16, 17, 1000, 65536] {
                let (p, _) = o.open(&mut buf).unwrap().unwrap();
                assert_eq!(&p[..], &vec![n as u8; n][..]);
            }
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_tag_rejected() {
        for alg in [
            CipherAlg::ChaCha20Poly1305,
            CipherAlg::Aes128Gcm,
            CipherAlg::Aes256Gcm,
        ] {
            let (mut s, mut o) = pair(Some(alg));
            let mut wire = Vec::new();
            s.seal(b"hello world", &mut wire);
            let n = wire.len();
            wire[n - 1] ^= 1;
            let mut buf = BytesMut::from(&wire[..]);
            assert_eq!(o.open(&mut buf).unwrap_err(), Error::BadTag);
        }
    }

    #[test]
    fn oversized_length_rejected() {
        let (_, mut o) = pair(None);
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0][..]);
        assert!(matches!(o.open(&mut buf), Err(Error::Protocol(_))));
    }
}
