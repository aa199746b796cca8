//! PEM bundles (CA files, keys): parsing never panics; each block re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(blocks) = tp_creds::pem::parse_all(&text, "fuzz") {
        for b in blocks {
            let again = tp_creds::pem::parse_all(&tp_creds::pem::encode(&b.label, &b.der), "fuzz").expect("re-encoded block parses");
            assert_eq!(again[0].der, b.der);
        }
    }
    let _ = tp_creds::PrivateKey::from_pem(&text, "fuzz");
});
