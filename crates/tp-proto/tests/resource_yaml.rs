//! The YAML forms of Teleport's resources: the examples of the wire spec (§7) and the
//! seed's role parse, validate, survive protobuf and YAML round trips, and every
//! validation rule has a test with the error it gives.

use prost::Message;
use tp_proto::resource::{self, Resource, ResourceErrorKind};
use tp_proto::types::{ProvisionTokenV2, RoleV6, UserTokenV3, UserV2};

const FIXTURES: &[&str] = &[
    "spec-7.1-role.yaml",
    "spec-7.2-user.yaml",
    "spec-7.3-token.yaml",
    "spec-7.4-user-token.yaml",
    "seed-api-role.yaml",
];

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn one(name: &str) -> Resource {
    let mut docs = resource::parse(&fixture(name), name).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1, "{name}");
    docs.remove(0)
}

fn proto_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
    let bytes = m.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decode what we encoded");
    assert_eq!(&back, m);
}

#[test]
fn every_example_parses_and_round_trips() {
    for name in FIXTURES {
        let r = one(name);
        match &r {
            Resource::Role(m) => proto_round_trip(m),
            Resource::User(m) => proto_round_trip(m),
            Resource::Token(m) => proto_round_trip(m),
            Resource::UserToken(m) => proto_round_trip(m),
            other => panic!("unexpected {other:?}"),
        }
        // YAML out and back in again gives the same message (defaults are idempotent).
        let yaml = resource::to_yaml(std::slice::from_ref(&r));
        let again =
            resource::parse(&yaml, "printed").unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        assert_eq!(again, vec![r.clone()], "{name}:\n{yaml}");
        // And the JSON form too.
        let json = resource::to_json(std::slice::from_ref(&r));
        let again = resource::parse(&json, "printed.json")
            .unwrap_or_else(|e| panic!("{name}: {e}\n{json}"));
        assert_eq!(again, vec![r], "{name}:\n{json}");
    }
}

#[test]
fn role_example_keeps_every_field() {
    let Resource::Role(role) = one("spec-7.1-role.yaml") else {
        panic!("role")
    };
    let md = role.metadata.as_ref().unwrap();
    assert_eq!(md.name, "app-operator");
    assert_eq!(md.labels["team"], "payments");
    let spec = role.spec.as_ref().unwrap();
    let o = spec.options.as_ref().unwrap();
    assert_eq!(o.max_session_ttl, 8 * 3600 * 1_000_000_000);
    assert_eq!(o.client_idle_timeout, 30 * 60 * 1_000_000_000);
    assert!(!o.forward_agent);
    assert_eq!(o.port_forwarding.as_ref().map(|b| b.value), Some(false));
    assert_eq!(o.ssh_file_copy.as_ref().map(|b| b.value), Some(true));
    assert_eq!(o.require_mfa_type, 0);
    let rs = o.record_session.as_ref().unwrap();
    assert_eq!(rs.ssh, "best_effort");
    assert_eq!(rs.desktop.as_ref().map(|b| b.value), Some(true));
    let allow = spec.allow.as_ref().unwrap();
    assert_eq!(allow.logins, ["{{internal.logins}}", "deploy"]);
    let node = &allow.node_labels.as_ref().unwrap().values;
    assert_eq!(node["env"].values, ["staging", "prod"]);
    assert_eq!(node["app"].values, ["payments-*"]);
    assert_eq!(
        allow.database_labels.as_ref().unwrap().values["*"].values,
        ["*"]
    );
    assert_eq!(allow.rules.len(), 3);
    assert_eq!(
        allow.rules[2].r#where,
        "equals(user.metadata.name, resource.metadata.name)"
    );
    let imp = allow.impersonate.as_ref().unwrap();
    assert_eq!(imp.users, ["ci-bot"]);
    assert_eq!(imp.roles, ["app-operator"]);
    let deny = spec.deny.as_ref().unwrap();
    assert_eq!(
        deny.node_labels.as_ref().unwrap().values["env"].values,
        ["prod-secure"]
    );
    assert_eq!(deny.rules[0].verbs, ["create", "update", "delete"]);
}

#[test]
fn seed_role_gets_v5_defaults() {
    let Resource::Role(role) = one("seed-api-role.yaml") else {
        panic!("role")
    };
    assert_eq!(role.version, "v5");
    let spec = role.spec.as_ref().unwrap();
    let o = spec.options.as_ref().unwrap();
    assert_eq!(o.certificate_format, "standard");
    assert_eq!(o.max_session_ttl, 30 * 3600 * 1_000_000_000);
    assert_eq!(o.bpf, ["command", "network"]);
    assert_eq!(o.desktop_clipboard.as_ref().map(|b| b.value), Some(true));
    assert_eq!(o.create_desktop_user.as_ref().map(|b| b.value), Some(false));
    assert!(o.idp.is_some(), "v5 keeps legacy SAML IdP access");
    let allow = spec.allow.as_ref().unwrap();
    assert_eq!(allow.namespaces, ["default"]);
    assert_eq!(allow.rules[0].resources, ["role"]);
    assert_eq!(allow.rules[0].verbs, ["read"]);
    // v5 opens no labels by default.
    assert!(
        allow
            .node_labels
            .as_ref()
            .is_none_or(|l| l.values.is_empty())
    );
    assert!(allow.kubernetes_resources.is_empty());
}

fn role_yaml(version: &str, allow: &str) -> String {
    format!("kind: role\nversion: {version}\nmetadata:\n  name: r\nspec:\n  allow:\n{allow}\n")
}

fn parse_role(version: &str, allow: &str) -> RoleV6 {
    match resource::parse(&role_yaml(version, allow), "t.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .remove(0)
    {
        Resource::Role(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn per_version_defaults() {
    // v3: wildcard app/kube/db labels; node labels only when the role has logins.
    let r = parse_role("v3", "    logins: [root]");
    let allow = r.spec.unwrap().allow.unwrap();
    for l in [
        &allow.node_labels,
        &allow.app_labels,
        &allow.kubernetes_labels,
        &allow.database_labels,
    ] {
        assert_eq!(l.as_ref().unwrap().values["*"].values, ["*"]);
    }
    // v3 also gets the v4/v5 kube default: a pod entry with the '*' verb.
    assert_eq!(allow.kubernetes_resources.len(), 1);
    assert_eq!(allow.kubernetes_resources[0].kind, "pod");
    assert_eq!(allow.kubernetes_resources[0].verbs, ["*"]);

    let r = parse_role("v3", "    rules: []");
    let allow = r.spec.unwrap().allow.unwrap();
    assert!(allow.node_labels.as_ref().unwrap().values.is_empty());

    // v7: kube labels imply a wildcard resource entry.
    let r = parse_role("v7", "    kubernetes_labels: {env: dev}");
    let k = &r.spec.unwrap().allow.unwrap().kubernetes_resources;
    assert_eq!(
        (k[0].kind.as_str(), k[0].verbs.as_slice()),
        ("*", ["*".to_string()].as_slice())
    );

    // v6: no resource default, but verbs default to '*'.
    let r = parse_role(
        "v6",
        "    kubernetes_labels: {env: dev}\n    kubernetes_resources: [{kind: pod, namespace: '*', name: '*'}]",
    );
    assert_eq!(
        r.spec.unwrap().allow.unwrap().kubernetes_resources[0].verbs,
        ["*"]
    );

    // v8: no legacy SAML IdP default.
    let r = parse_role("v8", "    rules: []");
    assert!(r.spec.unwrap().options.unwrap().idp.is_none());
}

fn err(text: &str) -> resource::ResourceError {
    resource::parse(text, "bad.yaml").expect_err("must be rejected")
}

#[test]
fn error_unknown_kind() {
    let e = err("kind: dragon\nversion: v1\nmetadata: {name: x}\n");
    assert!(
        matches!(e.kind, ResourceErrorKind::UnknownKind(ref k) if k == "dragon"),
        "{e:?}"
    );
    assert_eq!(e.document, 1);
    assert_eq!(e.path, "kind");
    let msg = e.to_string();
    assert!(
        msg.starts_with("bad.yaml: document 1: kind: unknown resource kind \"dragon\""),
        "{msg}"
    );
}

#[test]
fn error_unsupported_version() {
    let e = err("kind: role\nversion: v9\nmetadata: {name: x}\n");
    assert!(
        matches!(e.kind, ResourceErrorKind::UnsupportedVersion { ref version, .. } if version == "v9"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("expected one of v3, v4, v5, v6, v7, v8"),
        "{e}"
    );
}

#[test]
fn error_bad_verb_names_its_path() {
    let e = err(&role_yaml(
        "v7",
        "    rules:\n      - resources: [role]\n        verbs: [read, raed]",
    ));
    assert!(
        matches!(e.kind, ResourceErrorKind::BadVerb(ref v) if v == "raed"),
        "{e:?}"
    );
    assert_eq!(e.path, "spec.allow.rules[0].verbs[1]");
}

#[test]
fn error_bad_duration() {
    let e = err(
        "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  options:\n    max_session_ttl: 8 hours\n",
    );
    assert!(matches!(e.kind, ResourceErrorKind::BadDuration(_)), "{e:?}");
    assert_eq!(e.path, "spec.options.max_session_ttl");
    assert!(e.to_string().contains("\"8 hours\""), "{e}");
}

#[test]
fn error_invalid_label_regex() {
    let e = err(&role_yaml("v7", "    node_labels:\n      env: '^prod-($'"));
    assert!(
        matches!(e.kind, ResourceErrorKind::InvalidLabelRegex { ref value, .. } if value == "^prod-($"),
        "{e:?}"
    );
    assert_eq!(e.path, "spec.allow.node_labels.env");
}

#[test]
fn error_wrong_type() {
    let e = err(&role_yaml("v7", "    logins: {not: a-list}"));
    assert!(matches!(e.kind, ResourceErrorKind::WrongType(_)), "{e:?}");
    assert_eq!(e.path, "spec.allow.logins");
}

#[test]
fn error_missing_kind_and_version() {
    let e = err("version: v7\nmetadata: {name: x}\n");
    assert_eq!(e.kind, ResourceErrorKind::MissingField("kind"));
    let e = err("kind: role\nmetadata: {name: x}\n");
    assert_eq!(e.kind, ResourceErrorKind::MissingField("version"));
}

#[test]
fn error_missing_name() {
    let e = err("kind: role\nversion: v7\nmetadata: {}\n");
    assert_eq!(e.kind, ResourceErrorKind::MissingField("name"));
}

#[test]
fn error_syntax_carries_the_line() {
    let e = err("kind: role\nversion: v7\nmetadata:\n  name: [unclosed\n");
    let ResourceErrorKind::Syntax(msg) = &e.kind else {
        panic!("{e:?}")
    };
    assert!(msg.contains('4') || msg.contains("line"), "{msg}");
}

#[test]
fn error_in_second_document_names_it() {
    let text = format!(
        "{}---\nkind: role\nversion: v1\nmetadata: {{name: y}}\n",
        fixture("seed-api-role.yaml")
    );
    let e = err(&text);
    assert_eq!(e.document, 2);
}

#[test]
fn error_teleport_rules() {
    let cases = [
        ("    logins: ['*']", "spec.allow.logins"),
        ("    node_labels: {'*': prod}", "spec.allow.node_labels"),
        ("    rules: [{resources: [role]}]", "spec.allow.rules[0]"),
        ("    impersonate: {users: [bob]}", "spec.allow.impersonate"),
        (
            "    kubernetes_resources: [{kind: deployment, namespace: '*', name: '*'}]",
            "spec.allow.kubernetes_resources[0]",
        ),
    ];
    for (allow, path) in cases {
        let version = if allow.contains("deployment") {
            "v5"
        } else {
            "v7"
        };
        let e = err(&role_yaml(version, allow));
        assert!(
            matches!(e.kind, ResourceErrorKind::Invalid(_)),
            "{allow}: {e:?}"
        );
        assert_eq!(e.path, path, "{allow}");
    }
    let e = err(
        "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  options:\n    lock: sometimes\n",
    );
    assert_eq!(e.path, "spec.options.lock");
}

#[test]
fn durations_are_read_and_printed_as_teleport_does() {
    let r = parse_role("v7", "    rules: []");
    let mut r = r;
    r.spec
        .as_mut()
        .unwrap()
        .options
        .as_mut()
        .unwrap()
        .max_session_ttl = 90 * 60 * 1_000_000_000;
    let yaml = resource::to_yaml(&[Resource::Role(r)]);
    assert!(yaml.contains("max_session_ttl: 1h30m0s"), "{yaml}");
    for (text, ns) in [("30m", 1_800_000_000_000i64), ("1h30m", 5_400_000_000_000)] {
        let doc = format!(
            "kind: role\nversion: v7\nmetadata: {{name: x}}\nspec:\n  options:\n    max_session_ttl: {text}\n"
        );
        let Resource::Role(r) = resource::parse(&doc, "d").unwrap().remove(0) else {
            panic!()
        };
        assert_eq!(r.spec.unwrap().options.unwrap().max_session_ttl, ns);
    }
}

#[test]
fn labels_print_as_string_or_list_and_traits_as_lists() {
    let Resource::Role(role) = one("spec-7.1-role.yaml") else {
        panic!()
    };
    let v = resource::to_json_value(&role);
    assert_eq!(v["spec"]["allow"]["node_labels"]["app"], "payments-*");
    assert_eq!(
        v["spec"]["allow"]["node_labels"]["env"],
        serde_json::json!(["staging", "prod"])
    );
    let Resource::User(user) = one("spec-7.2-user.yaml") else {
        panic!()
    };
    let v = resource::to_json_value(&user);
    assert_eq!(
        v["spec"]["traits"]["db_names"],
        serde_json::json!(["payments"])
    );
    assert_eq!(v["spec"]["expires"], "0001-01-01T00:00:00Z");
}

#[test]
fn typed_messages_match_their_kinds() {
    let Resource::User(u) = one("spec-7.2-user.yaml") else {
        panic!()
    };
    let _: &UserV2 = &u;
    assert_eq!(u.spec.as_ref().unwrap().roles, ["access", "app-operator"]);
    let Resource::Token(t) = one("spec-7.3-token.yaml") else {
        panic!()
    };
    let _: &ProvisionTokenV2 = &t;
    assert_eq!(t.spec.as_ref().unwrap().roles, ["Node", "App"]);
    assert_eq!(
        t.metadata.as_ref().unwrap().expires.unwrap().seconds,
        1_740_826_800
    );
    let Resource::UserToken(ut) = one("spec-7.4-user-token.yaml") else {
        panic!()
    };
    let _: &UserTokenV3 = &ut;
    assert_eq!(ut.sub_kind, "invite");
}
