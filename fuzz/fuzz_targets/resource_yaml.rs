//! Teleport resource YAML/JSON (what `tpctl create` reads): parsing, defaults and
//! validation must never panic, and whatever parses must print and parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tp_proto::resource;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(docs) = resource::parse(text, "fuzz") {
        let yaml = resource::to_yaml(&docs);
        let again = resource::parse(&yaml, "printed").expect("printed resources parse back");
        assert_eq!(again.len(), docs.len());
    }
});
