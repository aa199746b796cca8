//! Go duration strings: parsing never panics, and a parsed duration prints and parses
//! back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tp_proto::duration::{format_go, parse_go};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ns) = parse_go(text) {
        if ns != i64::MIN {
            assert_eq!(parse_go(&format_go(ns)), Ok(ns));
        }
    }
});
