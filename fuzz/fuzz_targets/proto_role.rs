//! Protobuf decoding of a role as a server receives it: never panics, and a decoded
//! message re-encodes to bytes that decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tp_proto::types::RoleV6;

fuzz_target!(|data: &[u8]| {
    if let Ok(role) = RoleV6::decode(data) {
        let again = RoleV6::decode(role.encode_to_vec().as_slice()).expect("re-encoded role decodes");
        assert_eq!(again, role);
        let mut role = role;
        let _ = tp_proto::resource::role_check_and_set_defaults(&mut role);
    }
});
