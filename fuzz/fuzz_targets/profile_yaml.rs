//! Profile YAML (`<proxy>.yaml` in a tsh directory): decoding never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _: Result<tp_creds::ProfileConfig, _> = serde_saphyr::from_str(&text);
});
