//! Property tests: generated roles, users and tokens survive protobuf encode/decode and
//! YAML/JSON round trips through Teleport's field names unchanged.

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use prost::Message;
use tp_proto::types::{
    AccessRequestConditions, BoolValue, CertExtension, ClaimMapping, CreatedBy, ExternalIdentity,
    ImpersonateConditions, KubernetesResource, LocalAuthSecrets, LoginStatus, Metadata,
    ProvisionTokenSpecV2, ProvisionTokenV2, RecordSession, RoleConditions, RoleOptions, RoleSpecV6,
    RoleV6, Rule, TokenRule, UserRef, UserSpecV2, UserStatusV2, UserV2,
};
use tp_proto::wrappers::{LabelValues, StringValues};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_.:/*{}-]{0,12}",
        "[a-z]{1,6}",
        // Unicode, YAML-looking words and quoting hazards.
        "\\PC{0,8}",
        Just("true".to_string()),
        Just("null".to_string()),
        Just("123".to_string()),
        Just("'*'".to_string()),
    ]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    vec(text(), 0..3)
}

fn labels() -> impl Strategy<Value = Option<LabelValues>> {
    option::of(
        btree_map("[a-z*][a-z0-9_./-]{0,6}", vec(text(), 0..3), 0..3).prop_map(|m| LabelValues {
            values: m
                .into_iter()
                .map(|(k, values)| (k, StringValues { values }))
                .collect(),
        }),
    )
}

fn bool_value() -> impl Strategy<Value = Option<BoolValue>> {
    option::of(any::<bool>().prop_map(|value| BoolValue { value }))
}

fn timestamp() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    // 0001-01-01 .. 9999-12-31, whole and fractional seconds.
    option::of(
        (-62_135_596_800i64..253_402_300_799, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    )
}

fn duration_ns() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        0i64..(48 * 3600 * 1_000_000_000),
        any::<i64>().prop_filter("MIN", |v| *v != i64::MIN)
    ]
}

fn metadata() -> impl Strategy<Value = Option<Metadata>> {
    (
        text(),
        text(),
        btree_map("[a-z][a-z0-9_./-]{0,6}", text(), 0..3),
        timestamp(),
        text(),
    )
        .prop_map(|(name, description, labels, expires, revision)| {
            Some(Metadata {
                name,
                // Namespace is never in YAML (Teleport's jsontag "-"), so it stays empty.
                namespace: String::new(),
                description,
                labels,
                expires,
                revision,
            })
        })
}

prop_compose! {
    fn options()(
        forward_agent in any::<bool>(),
        max_session_ttl in duration_ns(),
        port_forwarding in bool_value(),
        certificate_format in text(),
        client_idle_timeout in duration_ns(),
        bpf in texts(),
        max_connections in any::<i64>(),
        lock in text(),
        record_session in option::of((bool_value(), text(), text()).prop_map(|(desktop, default, ssh)| RecordSession { desktop, default, ssh })),
        desktop_clipboard in bool_value(),
        cert_extensions in vec((text(), text()).prop_map(|(name, value)| CertExtension { r#type: 0, mode: 0, name, value }), 0..2),
        ssh_file_copy in bool_value(),
        require_mfa_type in 0i32..6,
        create_host_user_mode in 0i32..5,
        create_database_user_mode in 0i32..4,
        mfa_ns in option::of(0i64..(1i64 << 50)),
    ) -> RoleOptions {
        RoleOptions {
            forward_agent, max_session_ttl, port_forwarding, certificate_format, client_idle_timeout,
            bpf, max_connections, lock, record_session, desktop_clipboard, cert_extensions,
            ssh_file_copy, require_mfa_type, create_host_user_mode, create_database_user_mode,
            mfa_verification_interval: mfa_ns.map(|ns| prost_types::Duration {
                seconds: ns / 1_000_000_000,
                nanos: (ns % 1_000_000_000) as i32,
            }),
            ..Default::default()
        }
    }
}

prop_compose! {
    fn conditions()(
        logins in texts(),
        node_labels in labels(),
        app_labels in labels(),
        rules in vec((texts(), texts(), text()).prop_map(|(resources, verbs, r#where)| Rule { resources, verbs, r#where, actions: vec![] }), 0..3),
        request in option::of((texts(), labels(), duration_ns(), vec((text(), text(), texts()).prop_map(|(claim, value, roles)| ClaimMapping { claim, value, roles }), 0..2))
            .prop_map(|(roles, annotations, max_duration, claims_to_roles)| AccessRequestConditions { roles, annotations, max_duration, claims_to_roles, ..Default::default() })),
        impersonate in option::of((texts(), texts(), text()).prop_map(|(users, roles, r#where)| ImpersonateConditions { users, roles, r#where })),
        kubernetes_resources in vec((text(), text(), text(), texts()).prop_map(|(kind, namespace, name, verbs)| KubernetesResource { kind, namespace, name, verbs }), 0..2),
        node_labels_expression in text(),
        db_roles in texts(),
    ) -> RoleConditions {
        RoleConditions {
            logins, node_labels, app_labels, rules, request, impersonate, kubernetes_resources,
            node_labels_expression, database_roles: db_roles,
            ..Default::default()
        }
    }
}

prop_compose! {
    fn role()(version in prop_oneof![Just("v5"), Just("v7")], metadata in metadata(), options in option::of(options()), allow in option::of(conditions()), deny in option::of(conditions())) -> RoleV6 {
        RoleV6 {
            kind: "role".into(),
            sub_kind: String::new(),
            version: version.into(),
            metadata,
            spec: Some(RoleSpecV6 { options, allow, deny }),
        }
    }
}

prop_compose! {
    fn user()(metadata in metadata(), roles in texts(), traits in labels(), expires in timestamp(),
              locked in any::<bool>(), locked_time in timestamp(), connector in text(),
              password_hash in vec(any::<u8>(), 0..24), created in timestamp(), creator in text(),
              password_state in 0i32..3) -> UserV2 {
        UserV2 {
            kind: "user".into(),
            sub_kind: String::new(),
            version: "v2".into(),
            metadata,
            spec: Some(UserSpecV2 {
                oidc_identities: vec![ExternalIdentity { connector_id: connector, username: "u".into(), ..Default::default() }],
                roles,
                traits,
                status: Some(LoginStatus { is_locked: locked, locked_time, ..Default::default() }),
                expires,
                created_by: Some(CreatedBy { connector: None, time: created, user: Some(UserRef { name: creator }) }),
                local_auth: Some(LocalAuthSecrets { password_hash, ..Default::default() }),
                ..Default::default()
            }),
            status: Some(UserStatusV2 { password_state, mfa_weakest_device: 0 }),
        }
    }
}

prop_compose! {
    fn token()(metadata in metadata(), roles in texts(), join_method in text(), aws_iid_ttl in duration_ns(),
               suggested_labels in labels(), account in text(), regions in texts()) -> ProvisionTokenV2 {
        ProvisionTokenV2 {
            kind: "token".into(),
            sub_kind: String::new(),
            version: "v2".into(),
            metadata,
            spec: Some(ProvisionTokenSpecV2 {
                roles,
                allow: vec![TokenRule { aws_account: account, aws_regions: regions, ..Default::default() }],
                awsiidttl: aws_iid_ttl,
                join_method,
                suggested_labels,
                ..Default::default()
            }),
        }
    }
}

fn round_trips<M>(m: &M) -> Result<(), TestCaseError>
where
    M: Message
        + Default
        + PartialEq
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let decoded =
        M::decode(m.encode_to_vec().as_slice()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, m, "protobuf");
    let yaml = serde_saphyr::to_string(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let from_yaml: M =
        serde_saphyr::from_str(&yaml).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
    prop_assert_eq!(&from_yaml, m, "YAML:\n{}", yaml);
    let json = serde_json::to_string(m).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let from_json: M =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}\n{json}")))?;
    prop_assert_eq!(&from_json, m, "JSON:\n{}", json);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn roles_round_trip(r in role()) {
        round_trips(&r)?;
    }

    #[test]
    fn users_round_trip(u in user()) {
        round_trips(&u)?;
    }

    #[test]
    fn tokens_round_trip(t in token()) {
        round_trips(&t)?;
    }

    #[test]
    fn yaml_parser_never_panics(s in "\\PC{0,200}") {
        let _ = tp_proto::resource::parse(&s, "fuzz.yaml");
    }
}
