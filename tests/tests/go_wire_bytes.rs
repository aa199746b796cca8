//! Byte-level proof against Teleport's reference Go types.
//!
//! `tests/interop-go/cmd/wirebytes` reads the shared JSON fixtures in
//! `tests/interop-go/fixtures/wire/`, decodes each into the reference Go message and
//! prints its protobuf bytes. Here the same fixtures are read into `tp-proto` messages
//! (through the serde mapping that gives them Teleport's JSON shape), filled with
//! `GoDefaults`, encoded, and compared byte for byte; the Go bytes are also decoded back
//! and compared as messages.
//!
//! Go writes map entries in random order, so every fixture keeps its maps to one entry;
//! everything else is deterministic on both sides.

use std::collections::BTreeMap;

use prost::Message;
use serde_json::Value;
use tp_proto::GoDefaults;
use tp_proto::proto::{ListRolesRequest, ListRolesResponse, PingResponse, UserCertsRequest};
use tp_proto::types::{ProvisionTokenV2, RoleV6, UserV2};

#[allow(
    clippy::disallowed_methods,
    reason = "tests take the Go output path from xtask"
)]
fn go_output() -> BTreeMap<String, Value> {
    let text = match std::env::var("TP_WIREBYTES_JSON") {
        // `cargo xtask interop` runs the Go side once and passes its output here.
        Ok(path) => {
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
        }
        Err(_) => tp_tests::run_go("wirebytes", &["fixtures/wire"]),
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("wirebytes output is not JSON: {e}"))
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

fn check<M>(name: &str, value: Value, go_hex: &str)
where
    M: Message + Default + PartialEq + std::fmt::Debug + serde::de::DeserializeOwned + GoDefaults,
{
    let mut ours: M = serde_json::from_value(value)
        .unwrap_or_else(|e| panic!("{name}: tp cannot read the fixture: {e}"));
    ours.fill_go_defaults();
    let ours_bytes = ours.encode_to_vec();
    let go_bytes = hex::decode(go_hex).unwrap_or_else(|e| panic!("{name}: bad hex from Go: {e}"));
    if ours_bytes != go_bytes {
        let at = first_difference(&ours_bytes, &go_bytes);
        panic!(
            "{name}: bytes differ at offset {at} (tp {} bytes, Go {} bytes)\n tp: {}\n go: {}",
            ours_bytes.len(),
            go_bytes.len(),
            hex::encode(&ours_bytes[at.saturating_sub(8)..(at + 24).min(ours_bytes.len())]),
            hex::encode(&go_bytes[at.saturating_sub(8)..(at + 24).min(go_bytes.len())]),
        );
    }
    let decoded = M::decode(go_bytes.as_slice())
        .unwrap_or_else(|e| panic!("{name}: tp cannot decode Go's bytes: {e}"));
    assert_eq!(
        decoded, ours,
        "{name}: Go's bytes decode to a different message"
    );
}

#[test]
fn tp_encodes_every_fixture_exactly_as_teleport_go_does() {
    let fixtures_dir = tp_tests::interop_go_dir().join("fixtures/wire");
    let go = go_output();
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&fixtures_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", fixtures_dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_string();
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read fixture"))
                .expect("fixture JSON");
        let message = fixture["message"]
            .as_str()
            .expect("fixture names its message")
            .to_string();
        let value = fixture["value"].clone();
        let go_hex = go
            .get(&name)
            .and_then(|r| r["hex"].as_str())
            .unwrap_or_else(|| panic!("{name}: the Go side produced no bytes"));
        match message.as_str() {
            "types.RoleV6" => check::<RoleV6>(&name, value, go_hex),
            "types.UserV2" => check::<UserV2>(&name, value, go_hex),
            "types.ProvisionTokenV2" => check::<ProvisionTokenV2>(&name, value, go_hex),
            "proto.UserCertsRequest" => check::<UserCertsRequest>(&name, value, go_hex),
            "proto.PingResponse" => check::<PingResponse>(&name, value, go_hex),
            "proto.ListRolesRequest" => check::<ListRolesRequest>(&name, value, go_hex),
            "proto.ListRolesResponse" => check::<ListRolesResponse>(&name, value, go_hex),
            other => panic!("{name}: no tp type for {other}"),
        }
        eprintln!("wire bytes equal: {name} ({message})");
        checked += 1;
    }
    assert_eq!(checked, go.len(), "every fixture Go marshalled was checked");
    assert!(
        checked >= 7,
        "expected the full fixture set, checked {checked}"
    );
}
