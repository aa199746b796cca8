//! SSH certificates (authorized-keys lines): parsing and identity decoding never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cert) = tp_creds::cert::parse_ssh_cert(&text, "fuzz") {
        let _ = tp_creds::SshIdentity::from_certificate(&cert, "fuzz");
        let _ = tp_creds::sshcert::ssh_login_user(&cert);
    }
});
