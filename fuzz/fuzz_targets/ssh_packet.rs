//! tp-ssh's binary packet decoder (lengths, padding, AEAD framing) on arbitrary bytes:
//! it must return an error or a packet, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tp_ssh::fuzzing::packet_decoder(data));
