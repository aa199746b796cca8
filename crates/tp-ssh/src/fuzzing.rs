//! Entry points for a cargo-fuzz crate (`fuzz/` outside the workspace). Not a stable API.

use bytes::BytesMut;

use crate::cipher::{CipherAlg, Opener};
use crate::kex::KexInit;
use crate::keys;
use crate::wire::Reader;

/// Feeds `data` to the packet decoder with no cipher and with each AEAD cipher (fixed
/// keys): it must return packets or errors, never panic.
pub fn packet_decoder(data: &[u8]) {
    for alg in [
        None,
        Some(CipherAlg::ChaCha20Poly1305),
        Some(CipherAlg::Aes128Gcm),
        Some(CipherAlg::Aes256Gcm),
    ] {
        let mut o = Opener::new();
        if let Some(alg) = alg {
            let key = vec![1u8; alg.key_len()];
            let iv = vec![2u8; alg.iv_len()];
            if o.set_key(alg, &key, &iv).is_err() {
                return;
            }
        }
        let mut buf = BytesMut::from(data);
        while let Ok(Some(_)) = o.open(&mut buf) {}
    }
}

/// Feeds `data` to the message parsers that work on their own: KEXINIT, key and
/// certificate blobs for every algorithm, signatures, and the wire reader.
pub fn message_parsers(data: &[u8]) {
    let mut p = vec![crate::msg::KEXINIT];
    p.extend_from_slice(data);
    let _ = KexInit::decode(&p);
    for alg in keys::PLAIN_ALGS.iter().chain(keys::CERT_ALGS.iter()) {
        if let Ok((key, _)) = keys::parse_blob(alg, data) {
            let _ = keys::verify(&key, alg, data, data);
        }
    }
    let mut r = Reader::new(data);
    while !r.is_empty() {
        if r.name_list().is_err() {
            break;
        }
    }
}
