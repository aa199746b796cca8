//! X.509 certificates: identity decoding never panics, and a decoded identity re-encodes
//! to a subject that decodes to the same identity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tp_creds::TlsIdentity;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = TlsIdentity::from_certificate_der(data, "fuzz") {
        let _ = tp_creds::cert::x509_validity(data, "fuzz");
        if let Ok(der) = id.subject_der() {
            use x509_parser::prelude::FromDer as _;
            let (_, name) = x509_parser::x509::X509Name::from_der(&der).expect("our subject parses");
            let back = TlsIdentity::from_name(&name, "fuzz").expect("our subject decodes");
            assert_eq!(back.username, id.username);
            assert_eq!(back.traits, id.traits);
        }
    }
});
