//! Property tests on the packet decoder and the message parsers: arbitrary input never
//! panics and round trips hold.

use bytes::BytesMut;
use proptest::prelude::*;

use crate::cipher::{CipherAlg, Opener, Sealer};
use crate::kex::KexInit;
use crate::keys;
use crate::wire::Reader;

fn alg(i: u8) -> Option<CipherAlg> {
    match i % 4 {
        0 => None,
        1 => Some(CipherAlg::ChaCha20Poly1305),
        2 => Some(CipherAlg::Aes128Gcm),
        _ => Some(CipherAlg::Aes256Gcm),
    }
}

fn keyed(a: Option<CipherAlg>) -> (Sealer, Opener) {
    let mut s = Sealer::new();
    let mut o = Opener::new();
    if let Some(a) = a {
        let k = vec![3u8; a.key_len()];
        let iv = vec![5u8; a.iv_len()];
        s.set_key(a, &k, &iv).unwrap();
        o.set_key(a, &k, &iv).unwrap();
    }
    (s, o)
}

proptest! {
    #[test]
    fn decoder_never_panics_on_garbage(a in 0u8..4, bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (_, mut o) = keyed(alg(a));
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..8 {
            if !matches!(o.open(&mut buf), Ok(Some(_))) {
                break;
            }
        }
    }

    #[test]
    fn decoder_roundtrip_any_split(a in 0u8..4, payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 1..6), split in any::<prop::sample::Index>()) {
        let (mut s, mut o) = keyed(alg(a));
        let mut wire = Vec::new();
        for p in &payloads {
            s.seal(p, &mut wire);
        }
        let cut = split.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some((p, _)) = o.open(&mut buf).unwrap() {
            got.push(p.to_vec());
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some((p, _)) = o.open(&mut buf).unwrap() {
            got.push(p.to_vec());
        }
        prop_assert_eq!(got, payloads);
    }

    #[test]
    fn tampered_ciphertext_is_rejected(a in 1u8..4, payload in proptest::collection::vec(any::<u8>(), 0..300), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (mut s, mut o) = keyed(alg(a));
        let mut wire = Vec::new();
        s.seal(&payload, &mut wire);
        let i = at.index(wire.len());
        wire[i] ^= 1 << bit;
        let mut buf = BytesMut::from(&wire[..]);
        // Either the (possibly garbled) length is refused, more bytes are awaited, or the
        // tag check fails: never a wrong payload.
        let accepted = matches!(o.open(&mut buf), Ok(Some(_)));
        prop_assert!(!accepted, "tampered packet accepted");
    }

    #[test]
    fn kexinit_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut p = vec![20u8];
        p.extend_from_slice(&bytes);
        let _ = KexInit::decode(&p);
    }

    #[test]
    fn key_blob_and_signature_parsers_never_panic(alg_i in 0usize..8, blob in proptest::collection::vec(any::<u8>(), 0..400), sig in proptest::collection::vec(any::<u8>(), 0..200)) {
        let names = [keys::PLAIN_ALGS.as_slice(), keys::CERT_ALGS.as_slice()].concat();
        let name = names[alg_i % names.len()];
        if let Ok((k, _)) = keys::parse_blob(name, &blob) {
            let _ = keys::verify(&k, name, &sig, b"data");
        }
    }

    #[test]
    fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), ops in proptest::collection::vec(0u8..6, 0..20)) {
        let mut r = Reader::new(&bytes);
        for op in ops {
            let _ = match op {
                0 => r.u8().map(|_| ()),
                1 => r.u32().map(|_| ()),
                2 => r.string().map(|_| ()),
                3 => r.utf8().map(|_| ()),
                4 => r.name_list().map(|_| ()),
                _ => r.bool().map(|_| ()),
            };
        }
    }
}

proptest! {
    #[test]
    fn fuzz_entry_points_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        crate::fuzzing::packet_decoder(&bytes);
        crate::fuzzing::message_parsers(&bytes);
    }
}
