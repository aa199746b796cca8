//! Identity files: parsing never panics, and whatever parses re-encodes to text that
//! parses to the same certificates and CAs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tp_creds::IdentityBundle;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(b) = IdentityBundle::parse(&text, "fuzz") {
        let _ = b.material("fuzz");
        if let Ok(again) = b.encode() {
            let back = IdentityBundle::parse(&again, "fuzz").expect("re-encoded identity parses");
            assert_eq!(back.tls_cas.len(), b.tls_cas.len());
            assert_eq!(back.ssh_cas.len(), b.ssh_cas.len());
        }
    }
});
