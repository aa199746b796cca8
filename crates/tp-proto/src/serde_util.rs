//! The serde mappings that give generated messages Teleport's YAML/JSON shape.
//!
//! `cargo xtask codegen` attaches these to fields by proto type and by the
//! `(tp.options.yaml)` field option (see `proto/tp/options.proto`). Each mirrors how
//! Teleport's Go types marshal the field; the comments name the Go behaviour.

use std::collections::BTreeMap;
use std::fmt;

use ::base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};

use crate::types::BoolValue;
use crate::wrappers::{LabelValues, StringValues};

/// `skip_serializing_if` for scalars, strings, lists and maps: Go's `omitempty`.
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Go's `types.Bool` accepts a boolean or a string (`"true"`, `"yes"`, `"1"`, ...).
pub(crate) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    match B::deserialize(d)? {
        B::Bool(b) => Ok(b),
        B::Str(s) => crate::duration::parse_go_bool(&s)
            .ok_or_else(|| de::Error::custom(format!("expected a boolean, got {s:?}"))),
    }
}

/// `int64` nanoseconds as a Go duration string (`types.Duration`): written `"8h0m0s"`,
/// read from a duration string or `"never"` (zero). Numbers are refused, as in Go.
pub(crate) mod go_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format_go(*v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d).map_err(|_| {
            de::Error::custom("expected a duration string such as \"8h\", \"30m\" or \"1h30m\"")
        })?;
        if s == "never" {
            return Ok(0);
        }
        crate::duration::parse_go(&s).map_err(de::Error::custom)
    }
}

/// `google.protobuf.Duration` from gogoproto `stdduration`: Go's `time.Duration`, which
/// encoding/json writes as an integer of nanoseconds.
pub(crate) mod pb_duration {
    use super::*;
    use prost_types::Duration;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        let d = v.unwrap_or_default();
        let ns = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
        s.serialize_i64(i64::try_from(ns).unwrap_or(i64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let ns = i64::deserialize(d)?;
        Ok(Some(Duration {
            seconds: ns / 1_000_000_000,
            // |ns % 1e9| < 1e9 always fits an i32.
            nanos: (ns % 1_000_000_000) as i32,
        }))
    }
}

/// `google.protobuf.Timestamp` from gogoproto `stdtime`: Go's `time.Time`, written in
/// RFC 3339 with as many fractional digits as needed (`0001-01-01T00:00:00Z` is Go's
/// zero time).
pub(crate) mod timestamp {
    use super::*;
    use prost_types::Timestamp;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(t) => s.serialize_str(
                &crate::time_fmt::format_rfc3339(t).map_err(serde::ser::Error::custom)?,
            ),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Timestamp>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => crate::time_fmt::parse_rfc3339(&s)
                .map(Some)
                .map_err(de::Error::custom),
        }
    }
}

/// `types.BoolValue` (gogoproto `BoolOption`): a bare boolean, absent when unset.
pub(crate) mod bool_option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &Option<BoolValue>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(b) => s.serialize_bool(b.value),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BoolValue>, D::Error> {
        let v = lenient_bool(d)?;
        Ok(Some(BoolValue { value: v }))
    }
}

/// Go's `[]byte` in encoding/json: standard base64.
pub(crate) mod base64 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&::base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        ::base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| de::Error::custom(format!("expected base64: {e}")))
    }
}

/// A list of Go `[]byte` values: a list of base64 strings.
pub(crate) mod base64_list {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let engine = &::base64::engine::general_purpose::STANDARD;
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(&engine.encode(b))?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let strs = Vec::<String>::deserialize(d)?;
        let engine = &::base64::engine::general_purpose::STANDARD;
        strs.iter()
            .map(|s| {
                engine
                    .decode(s.as_bytes())
                    .map_err(|e| de::Error::custom(format!("expected base64: {e}")))
            })
            .collect()
    }
}

/// A label value: one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

struct LabelMapVisitor;

impl<'de> Visitor<'de> for LabelMapVisitor {
    type Value = BTreeMap<String, StringValues>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of label names to a string or a list of strings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value::<OneOrMany>().map_err(|_| {
                de::Error::custom(format!(
                    "label {k:?}: expected a string or a list of strings"
                ))
            })?;
            let values = match v {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v,
            };
            out.insert(k, StringValues { values });
        }
        Ok(out)
    }
}

fn deserialize_label_map<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LabelValues>, D::Error> {
    let values = d.deserialize_any(LabelMapVisitor)?;
    Ok(Some(LabelValues { values }))
}

fn serialize_label_map<S: Serializer>(
    v: &Option<LabelValues>,
    s: S,
    one_as_string: bool,
) -> Result<S::Ok, S::Error> {
    let Some(v) = v else {
        return s.serialize_none();
    };
    let mut m = s.serialize_map(Some(v.values.len()))?;
    for (k, vals) in &v.values {
        if one_as_string && vals.values.len() == 1 {
            m.serialize_entry(k, &vals.values[0])?;
        } else {
            m.serialize_entry(k, &vals.values)?;
        }
    }
    m.end()
}

/// `types.Labels`: `key: value` for one value, `key: [v1, v2]` otherwise; a single
/// string is read as a one-element list.
pub(crate) mod labels {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<LabelValues>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        serialize_label_map(v, s, true)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<LabelValues>, D::Error> {
        deserialize_label_map(d)
    }
}

/// `wrappers.Traits`: always lists on output; a single string is accepted on input.
pub(crate) mod traits {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        v: &Option<LabelValues>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        serialize_label_map(v, s, false)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<LabelValues>, D::Error> {
        deserialize_label_map(d)
    }
}

/// A YAML/JSON scalar that may be a boolean, a string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Str(String),
}

/// `types.RequireMFAType`: `false`/`true` for off/session, strings for the hardware-key
/// modes.
pub(crate) mod require_mfa {
    use super::*;
    use crate::types::RequireMfaType as R;

    pub(crate) fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        match R::try_from(*v) {
            Ok(R::Off) => s.serialize_bool(false),
            Ok(R::Session) => s.serialize_bool(true),
            Ok(R::SessionAndHardwareKey) => s.serialize_str("hardware_key"),
            Ok(R::HardwareKeyTouch) => s.serialize_str("hardware_key_touch"),
            Ok(R::HardwareKeyPin) => s.serialize_str("hardware_key_pin"),
            Ok(R::HardwareKeyTouchAndPin) => s.serialize_str("hardware_key_touch_and_pin"),
            Err(_) => s.serialize_i32(*v),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let r = match Scalar::deserialize(d)? {
            Scalar::Bool(false) => R::Off,
            Scalar::Bool(true) => R::Session,
            Scalar::Int(n) => {
                return i32::try_from(n)
                    .ok()
                    .filter(|n| R::try_from(*n).is_ok())
                    .ok_or_else(|| {
                        de::Error::custom(format!("invalid require_session_mfa value {n}"))
                    });
            }
            Scalar::Str(s) => match s.as_str() {
                "hardware_key" => R::SessionAndHardwareKey,
                "hardware_key_touch" => R::HardwareKeyTouch,
                "hardware_key_pin" => R::HardwareKeyPin,
                "hardware_key_touch_and_pin" => R::HardwareKeyTouchAndPin,
                other => match crate::duration::parse_go_bool(other) {
                    Some(false) => R::Off,
                    Some(true) => R::Session,
                    None => {
                        return Err(de::Error::custom(format!(
                            "invalid require_session_mfa value {other:?}: expected true, false, \
                             hardware_key, hardware_key_touch, hardware_key_pin or \
                             hardware_key_touch_and_pin"
                        )));
                    }
                },
            },
        };
        Ok(r as i32)
    }
}

/// `types.CreateHostUserMode`: `off`, `keep`, `insecure-drop` (legacy `drop`).
pub(crate) mod host_user_mode {
    use super::*;
    use crate::types::CreateHostUserMode as M;

    pub(crate) fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        match M::try_from(*v) {
            Ok(M::HostUserModeUnspecified) => s.serialize_str(""),
            Ok(M::HostUserModeOff) => s.serialize_str("off"),
            Ok(M::HostUserModeDrop) => s.serialize_str("drop"),
            Ok(M::HostUserModeKeep) => s.serialize_str("keep"),
            Ok(M::HostUserModeInsecureDrop) => s.serialize_str("insecure-drop"),
            Err(_) => s.serialize_i32(*v),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let m = match Scalar::deserialize(d)? {
            Scalar::Int(n) => {
                return i32::try_from(n)
                    .ok()
                    .filter(|n| M::try_from(*n).is_ok())
                    .ok_or_else(|| de::Error::custom(format!("invalid host user mode {n}")));
            }
            Scalar::Str(s) => match s.as_str() {
                "" => M::HostUserModeUnspecified,
                "off" => M::HostUserModeOff,
                "drop" => M::HostUserModeDrop,
                "keep" => M::HostUserModeKeep,
                "insecure-drop" | "insecure_drop" => M::HostUserModeInsecureDrop,
                other => {
                    return Err(de::Error::custom(format!(
                        "invalid host user mode {other:?}: expected off, keep or insecure-drop"
                    )));
                }
            },
            Scalar::Bool(b) => {
                return Err(de::Error::custom(format!("invalid host user mode {b}")));
            }
        };
        Ok(m as i32)
    }
}

/// `types.CreateDatabaseUserMode`: `off`, `keep`, `best_effort_drop`.
pub(crate) mod db_user_mode {
    use super::*;
    use crate::types::CreateDatabaseUserMode as M;

    pub(crate) fn serialize<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
        match M::try_from(*v) {
            Ok(M::DbUserModeUnspecified) => s.serialize_str(""),
            Ok(M::DbUserModeOff) => s.serialize_str("off"),
            Ok(M::DbUserModeKeep) => s.serialize_str("keep"),
            Ok(M::DbUserModeBestEffortDrop) => s.serialize_str("best_effort_drop"),
            Err(_) => s.serialize_i32(*v),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        let m = match Scalar::deserialize(d)? {
            Scalar::Int(n) => {
                return i32::try_from(n)
                    .ok()
                    .filter(|n| M::try_from(*n).is_ok())
                    .ok_or_else(|| de::Error::custom(format!("invalid database user mode {n}")));
            }
            Scalar::Str(s) => match s.as_str() {
                "" => M::DbUserModeUnspecified,
                "off" => M::DbUserModeOff,
                "keep" => M::DbUserModeKeep,
                "best_effort_drop" => M::DbUserModeBestEffortDrop,
                other => {
                    return Err(de::Error::custom(format!(
                        "invalid database user mode {other:?}: expected off, keep or best_effort_drop"
                    )));
                }
            },
            Scalar::Bool(b) => {
                return Err(de::Error::custom(format!("invalid database user mode {b}")));
            }
        };
        Ok(m as i32)
    }
}
