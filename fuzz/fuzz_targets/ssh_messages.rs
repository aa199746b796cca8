//! Every tp-ssh message parser (KEXINIT, ECDH, userauth, channel messages, key blobs and
//! signatures) on arbitrary bytes: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tp_ssh::fuzzing::message_parsers(data));
