//! What `cargo xtask codegen` adds to prost's output from the descriptors: serde
//! attributes that give the resource messages Teleport's YAML/JSON shape, and the
//! `GoDefaults` impls that reproduce what Go's gogoproto marshaller always writes.
//!
//! Both read the standard `json_name` option and tp's own field options
//! (`proto/tp/options.proto`), so the facts live next to the fields in the `.proto`
//! files and nowhere else.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use heck::{ToSnakeCase, ToUpperCamelCase};
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, Value};

/// Packages whose messages get serde derives: Teleport resources and their parts, and
/// the `proto` request/response messages (whose JSON shape Go also defines).
const SERDE_PACKAGES: &[&str] = &["types", "wrappers", "proto"];

/// Packages that are ours to generate (everything but well-known types and our options).
fn is_ours(m: &MessageDescriptor) -> bool {
    let p = m.package_name();
    !p.starts_with("google.") && !p.starts_with("tp.")
}

/// One attribute for prost-build: a proto path and the Rust attribute text.
pub(crate) type Attr = (String, String);

/// The serde attributes for prost-build and the generated `go_defaults.rs`.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) type_attrs: Vec<Attr>,
    pub(crate) message_attrs: Vec<Attr>,
    pub(crate) field_attrs: Vec<Attr>,
    pub(crate) go_defaults_rs: String,
}

struct Options {
    go_always: bool,
    yaml: i32,
}

// Values of tp.options.YamlFormat.
const GO_DURATION: i32 = 1;
const TRAITS: i32 = 2;
const REQUIRE_MFA: i32 = 3;
const HOST_USER_MODE: i32 = 4;
const DB_USER_MODE: i32 = 5;

fn options(pool: &DescriptorPool, f: &FieldDescriptor) -> anyhow::Result<Options> {
    let opts = f.options();
    let ext = |name: &str| {
        pool.get_extension_by_name(name)
            .with_context(|| format!("extension {name} missing: is proto/tp/options.proto there?"))
    };
    let go_always = match opts.get_extension(&ext("tp.options.go_always")?).as_ref() {
        Value::Bool(b) => *b,
        _ => false,
    };
    let yaml = match opts.get_extension(&ext("tp.options.yaml")?).as_ref() {
        Value::EnumNumber(n) => *n,
        _ => 0,
    };
    Ok(Options { go_always, yaml })
}

pub(crate) fn plan(pool: &DescriptorPool) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    for pkg in SERDE_PACKAGES {
        plan.type_attrs.push((
            format!(".{pkg}"),
            "#[derive(::serde::Serialize, ::serde::Deserialize)]".into(),
        ));
        plan.message_attrs
            .push((format!(".{pkg}"), "#[serde(default)]".into()));
    }
    let mut go = String::from(
        "// `GoDefaults` for every generated message: fills the fields that Go's gogoproto\n\
         // marshaller always writes (`(tp.options.go_always)`), recursively.\n\n",
    );
    let mut messages: Vec<MessageDescriptor> = pool
        .all_messages()
        .filter(|m| is_ours(m) && !m.is_map_entry())
        .collect();
    messages.sort_by(|a, b| a.full_name().cmp(b.full_name()));
    for m in &messages {
        if SERDE_PACKAGES.contains(&m.package_name()) {
            serde_fields(pool, m, &mut plan.field_attrs)?;
        }
        go_defaults_impl(pool, m, &mut go)?;
    }
    plan.go_defaults_rs = go;
    Ok(plan)
}

fn serde_fields(
    pool: &DescriptorPool,
    m: &MessageDescriptor,
    out: &mut Vec<Attr>,
) -> anyhow::Result<()> {
    let field_names: Vec<String> = m.fields().map(|f| f.name().to_string()).collect();
    let is_envelope = ["Kind", "Version", "Metadata", "Spec"]
        .iter()
        .all(|n| field_names.iter().any(|f| f == n));
    for f in m.fields() {
        let path = format!(".{}.{}", m.full_name(), f.name());
        if f.containing_oneof().is_some() {
            // A oneof becomes an enum that serde derives as it likes (externally tagged,
            // via the package-wide derive); among the resource messages only MFA
            // devices have one.
            continue;
        }
        let json = f.json_name();
        if json == "-" {
            out.push((path, "#[serde(skip)]".into()));
            continue;
        }
        let o = options(pool, &f)?;
        let mut parts = vec![format!("rename = \"{json}\"")];
        let always = (is_envelope && ["Kind", "Version", "Metadata", "Spec"].contains(&f.name()))
            || (m.full_name() == "types.Metadata" && f.name() == "Name");
        let singular_message = matches!(f.kind(), Kind::Message(_)) && !f.is_list() && !f.is_map();
        if !always {
            parts.push(if singular_message {
                "skip_serializing_if = \"Option::is_none\"".into()
            } else {
                "skip_serializing_if = \"crate::serde_util::is_default\"".into()
            });
        }
        let with = match (f.kind(), f.is_list(), f.is_map()) {
            (_, _, true) => None,
            (Kind::Int64, false, _) if o.yaml == GO_DURATION => Some("go_duration"),
            (Kind::Enum(_), false, _) if o.yaml == REQUIRE_MFA => Some("require_mfa"),
            (Kind::Enum(_), false, _) if o.yaml == HOST_USER_MODE => Some("host_user_mode"),
            (Kind::Enum(_), false, _) if o.yaml == DB_USER_MODE => Some("db_user_mode"),
            (Kind::Bytes, false, _) => Some("base64"),
            (Kind::Bytes, true, _) => Some("base64_list"),
            (Kind::Message(t), false, _) => match t.full_name() {
                "google.protobuf.Timestamp" => Some("timestamp"),
                "google.protobuf.Duration" => Some("pb_duration"),
                "wrappers.LabelValues" if o.yaml == TRAITS => Some("traits"),
                "wrappers.LabelValues" => Some("labels"),
                "types.BoolValue" => Some("bool_option"),
                _ => None,
            },
            (Kind::Bool, false, _) => {
                parts.push("deserialize_with = \"crate::serde_util::lenient_bool\"".into());
                None
            }
            _ => None,
        };
        if o.yaml != 0 && with.is_none() {
            bail!("{path}: (tp.options.yaml) does not apply to a field of this type");
        }
        if let Some(w) = with {
            parts.push(format!("with = \"crate::serde_util::{w}\""));
        }
        out.push((path, format!("#[serde({})]", parts.join(", "))));
    }
    Ok(())
}

/// The Rust path of a generated message, as prost names it.
fn rust_path(m: &MessageDescriptor) -> String {
    let mut path = String::from("crate");
    for seg in m.package_name().split('.') {
        path.push_str("::");
        path.push_str(&sanitize(seg.to_snake_case()));
    }
    let rel = &m.full_name()[m.package_name().len() + 1..];
    let segs: Vec<&str> = rel.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        path.push_str("::");
        if i + 1 == segs.len() {
            path.push_str(&sanitize(seg.to_upper_camel_case()));
        } else {
            path.push_str(&sanitize(seg.to_snake_case()));
        }
    }
    path
}

/// The Rust module of a message's oneofs (`crate::proto::event` for `proto.Event`).
fn oneof_module(m: &MessageDescriptor) -> String {
    let p = rust_path(m);
    let (parent, name) = p.rsplit_once("::").unwrap_or(("crate", &p));
    format!("{parent}::{}", sanitize(name.to_snake_case()))
}

/// prost's identifier rules (`prost-build` `ident.rs`): raw identifiers for keywords.
fn sanitize(ident: String) -> String {
    const RAW: &[&str] = &[
        "as", "break", "const", "continue", "else", "enum", "false", "fn", "for", "if", "impl",
        "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "static",
        "struct", "trait", "true", "type", "unsafe", "use", "where", "while", "dyn", "abstract",
        "become", "box", "do", "final", "macro", "override", "priv", "typeof", "unsized",
        "virtual", "yield", "async", "await", "try", "gen",
    ];
    if RAW.contains(&ident.as_str()) {
        format!("r#{ident}")
    } else if ["_", "super", "self", "Self", "extern", "crate"].contains(&ident.as_str()) {
        format!("{ident}_")
    } else {
        ident
    }
}

fn go_defaults_impl(
    pool: &DescriptorPool,
    m: &MessageDescriptor,
    out: &mut String,
) -> anyhow::Result<()> {
    let mut body = String::new();
    let mut oneofs_done: Vec<String> = Vec::new();
    for f in m.fields() {
        let name = sanitize(f.name().to_snake_case());
        if let Some(oneof) = f.containing_oneof() {
            if oneofs_done.iter().any(|o| o == oneof.name()) {
                continue;
            }
            oneofs_done.push(oneof.name().to_string());
            let module = oneof_module(m);
            let enum_name = oneof.name().to_upper_camel_case();
            let mut arms = String::new();
            let mut all = true;
            for member in oneof.fields() {
                match member.kind() {
                    Kind::Message(t) if is_ours(&t) => {
                        let _ = writeln!(
                            arms,
                            "                {module}::{enum_name}::{}(v) => v.fill_go_defaults(),",
                            sanitize(member.name().to_upper_camel_case())
                        );
                    }
                    _ => all = false,
                }
            }
            if arms.is_empty() {
                continue;
            }
            if !all {
                arms.push_str("                _ => {}\n");
            }
            let field = sanitize(oneof.name().to_snake_case());
            let _ = write!(
                body,
                "        if let Some(o) = self.{field}.as_mut() {{\n            match o {{\n{arms}            }}\n        }}\n"
            );
            continue;
        }
        let Kind::Message(t) = f.kind() else { continue };
        let o = options(pool, &f)?;
        if f.is_map() {
            let value = t.map_entry_value_field();
            if let Kind::Message(vt) = value.kind()
                && is_ours(&vt)
            {
                let _ = writeln!(
                    body,
                    "        for v in self.{name}.values_mut() {{ v.fill_go_defaults(); }}"
                );
            }
        } else if f.is_list() {
            if is_ours(&t) {
                let _ = writeln!(
                    body,
                    "        for v in &mut self.{name} {{ v.fill_go_defaults(); }}"
                );
            }
        } else if o.go_always {
            match t.full_name() {
                "google.protobuf.Timestamp" => {
                    let _ = writeln!(
                        body,
                        "        self.{name}.get_or_insert(crate::GO_ZERO_TIMESTAMP);"
                    );
                }
                _ if is_ours(&t) => {
                    let _ = writeln!(
                        body,
                        "        self.{name}.get_or_insert_with(Default::default).fill_go_defaults();"
                    );
                }
                _ => {
                    let _ = writeln!(
                        body,
                        "        self.{name}.get_or_insert_with(Default::default);"
                    );
                }
            }
        } else if is_ours(&t) {
            let _ = writeln!(
                body,
                "        if let Some(v) = self.{name}.as_mut() {{ v.fill_go_defaults(); }}"
            );
        }
    }
    let path = rust_path(m);
    if body.is_empty() {
        let _ = writeln!(
            out,
            "impl crate::GoDefaults for {path} {{\n    fn fill_go_defaults(&mut self) {{}}\n}}\n"
        );
    } else {
        let _ = writeln!(
            out,
            "impl crate::GoDefaults for {path} {{\n    fn fill_go_defaults(&mut self) {{\n{body}    }}\n}}\n"
        );
    }
    Ok(())
}
