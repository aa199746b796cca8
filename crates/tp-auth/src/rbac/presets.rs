//! Built-in roles: Teleport's implicit role, the preset roles `editor`, `access` and
//! `auditor`, and tp's built-in admin role for the local admin identity.

use tp_proto::resource::role_check_and_set_defaults;
use tp_proto::types::{
    BoolValue, KubernetesResource, Metadata, RecordSession, RoleConditions, RoleOptions,
    RoleSpecV6, RoleV6, Rule,
};
use tp_proto::wrappers::{LabelValues, StringValues};

/// The label Teleport puts on preset roles.
pub const PRESET_LABEL: (&str, &str) = ("teleport.internal/resource-type", "preset");

/// The name of Teleport's implicit role.
pub const IMPLICIT_ROLE: &str = "default-implicit-role";

/// The name of tp's built-in admin role (the role of the local admin identity that
/// `tpctl` uses on the Auth server's host, like Teleport's built-in `Admin` identity).
pub const ADMIN_ROLE: &str = "@tp-admin";

const RW: &[&str] = &["list", "create", "read", "update", "delete"];
const RO: &[&str] = &["list", "read"];

fn rule(resources: &[&str], verbs: &[&str]) -> Rule {
    Rule {
        resources: resources.iter().map(|s| s.to_string()).collect(),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        r#where: String::new(),
        actions: vec![],
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn wildcard_labels() -> Option<LabelValues> {
    Some(LabelValues {
        values: [(
            "*".to_string(),
            StringValues {
                values: vec!["*".into()],
            },
        )]
        .into(),
    })
}

fn role(name: &str, version: &str, options: RoleOptions, allow: RoleConditions) -> RoleV6 {
    RoleV6 {
        kind: "role".into(),
        sub_kind: String::new(),
        version: version.into(),
        metadata: Some(Metadata {
            name: name.into(),
            namespace: "default".into(),
            ..Default::default()
        }),
        spec: Some(RoleSpecV6 {
            options: Some(options),
            allow: Some(allow),
            deny: Some(RoleConditions::default()),
        }),
    }
}

fn defaulted(mut r: RoleV6) -> RoleV6 {
    // The built-in roles are constants of this module; the defaults cannot reject them
    // (the tests below run every one through them).
    let _ = role_check_and_set_defaults(&mut r);
    r
}

/// Teleport's `default-implicit-role`: read-only access to the cluster's public
/// configuration and to certificate authorities without their keys. Every role set has
/// it; it is never stored.
pub fn implicit_role() -> RoleV6 {
    let ro_kinds = [
        "node",
        "proxy",
        "auth_server",
        "tunnel",
        "cluster_auth_preference",
        "cluster_name",
        "ssh_session",
        "app_server",
        "remote_cluster",
        "kube_server",
        "db_server",
        "db",
        "app",
        "windows_desktop_service",
        "windows_desktop",
        "dynamic_windows_desktop",
        "kube_cluster",
        "vnet_config",
        "spiffe_federation",
        "saml_idp_service_provider",
        "identity_center_account",
        "git_server",
    ];
    let mut rules: Vec<Rule> = ro_kinds.iter().map(|k| rule(&[k], RO)).collect();
    rules.push(rule(&["cert_authority"], &["list", "readnosecrets"]));
    rules.push(rule(&["usage_event"], &["create"]));
    let options = RoleOptions {
        max_session_ttl: i64::MAX,
        record_session: Some(RecordSession {
            desktop: Some(BoolValue { value: false }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let allow = RoleConditions {
        namespaces: strings(&["default"]),
        rules,
        ..Default::default()
    };
    role(IMPLICIT_ROLE, "v3", options, allow)
}

fn preset(mut r: RoleV6) -> RoleV6 {
    if let Some(md) = r.metadata.as_mut() {
        md.labels
            .insert(PRESET_LABEL.0.into(), PRESET_LABEL.1.into());
    }
    defaulted(r)
}

fn session_options(desktop_recording: bool, forward_agent: bool) -> RoleOptions {
    RoleOptions {
        max_session_ttl: 30 * 3600 * 1_000_000_000,
        forward_agent,
        port_forwarding: forward_agent.then_some(BoolValue { value: true }),
        record_session: Some(RecordSession {
            desktop: Some(BoolValue {
                value: desktop_recording,
            }),
            default: "best_effort".into(),
            ssh: String::new(),
        }),
        ..Default::default()
    }
}

/// The `editor` preset: read and write the cluster's configuration resources (users,
/// roles, tokens, connectors, ...); no logins.
pub fn editor() -> RoleV6 {
    let rw_kinds = [
        "user",
        "role",
        "bot",
        "crown_jewel",
        "db_object_import_rule",
        "oidc",
        "saml",
        "github",
        "oidc_request",
        "saml_request",
        "github_request",
        "cluster_audit_config",
        "cluster_auth_preference",
        "auth_connector",
        "cluster_name",
        "cluster_networking_config",
        "session_recording_config",
        "external_audit_storage",
        "ui_config",
        "trusted_cluster",
        "remote_cluster",
        "token",
        "connection_diagnostic",
        "db",
        "database_certificate",
        "installer",
        "login_rule",
        "saml_idp_service_provider",
        "user_group",
        "plugin",
        "okta_import_rule",
        "okta_assignment",
        "lock",
        "billing",
        "cluster_alert",
        "access_list",
        "node",
        "discovery_config",
        "access_graph",
        "server_info",
        "access_monitoring_rule",
        "app_server",
        "vnet_config",
        "bot_instance",
        "access_graph_settings",
        "spiffe_federation",
        "notification",
        "static_host_user",
        "user_task",
        "contact",
        "workload_identity",
        "autoupdate_version",
        "autoupdate_config",
        "workload_identity_x509_revocation",
    ];
    let mut rules: Vec<Rule> = rw_kinds.iter().map(|k| rule(&[k], RW)).collect();
    rules.push(rule(
        &["device"],
        &[
            "list",
            "create",
            "read",
            "update",
            "delete",
            "create_enroll_token",
            "enroll",
        ],
    ));
    for k in ["integration", "security_report", "audit_query"] {
        rules.push(rule(
            &[k],
            &["list", "create", "read", "update", "delete", "use"],
        ));
    }
    rules.push(rule(&["db_service", "instance"], RO));
    preset(role(
        "editor",
        "v7",
        session_options(false, true),
        RoleConditions {
            rules,
            ..Default::default()
        },
    ))
}

/// The `access` preset: logins and resource access from the user's traits, wildcard
/// resource labels; read events and the sessions the user took part in.
pub fn access() -> RoleV6 {
    let allow = RoleConditions {
        logins: strings(&["{{internal.logins}}"]),
        windows_desktop_logins: strings(&["{{internal.windows_logins}}"]),
        kube_users: strings(&["{{internal.kubernetes_users}}"]),
        kube_groups: strings(&["{{internal.kubernetes_groups}}"]),
        database_names: strings(&["{{internal.db_names}}"]),
        database_users: strings(&["{{internal.db_users}}"]),
        database_roles: strings(&["{{internal.db_roles}}"]),
        aws_role_ar_ns: strings(&["{{internal.aws_role_arns}}"]),
        azure_identities: strings(&["{{internal.azure_identities}}"]),
        gcp_service_accounts: strings(&["{{internal.gcp_service_accounts}}"]),
        node_labels: wildcard_labels(),
        app_labels: wildcard_labels(),
        kubernetes_labels: wildcard_labels(),
        windows_desktop_labels: wildcard_labels(),
        database_labels: wildcard_labels(),
        database_service_labels: wildcard_labels(),
        kubernetes_resources: vec![KubernetesResource {
            kind: "*".into(),
            namespace: "*".into(),
            name: "*".into(),
            verbs: strings(&["*"]),
        }],
        rules: vec![
            rule(&["event"], RO),
            Rule {
                r#where: "contains(session.participants, user.metadata.name)".into(),
                ..rule(&["session"], &["read", "list"])
            },
            rule(&["instance"], RO),
            rule(&["cluster_maintenance_config"], RO),
        ],
        ..Default::default()
    };
    preset(role("access", "v7", session_options(true, true), allow))
}

/// The `auditor` preset: read sessions, events and reports; no usable logins.
pub fn auditor() -> RoleV6 {
    let mut rules: Vec<Rule> = [
        "session",
        "event",
        "session_tracker",
        "cluster_alert",
        "instance",
        "bot_instance",
        "notification",
    ]
    .iter()
    .map(|k| rule(&[k], RO))
    .collect();
    for k in ["security_report", "audit_query"] {
        rules.push(rule(&[k], &["list", "read", "use"]));
    }
    let allow = RoleConditions {
        // Teleport gives the auditor a login no host has ("no-login-<uuid>"), so the
        // role carries logins without granting any.
        logins: strings(&["no-login-2b6c2e4e-7c1d-4b2a-9f3e-5d8a1c0b7e64"]),
        rules,
        ..Default::default()
    };
    preset(role("auditor", "v7", session_options(false, false), allow))
}

/// The preset roles a cluster creates on first start (and re-creates if deleted).
pub fn presets() -> Vec<RoleV6> {
    vec![editor(), access(), auditor()]
}

/// tp's built-in admin role: every verb on every kind. It is bound only to the local
/// admin identity that bootstrap writes into the data directory, is never stored, and
/// cannot be assigned to users.
pub fn admin_role() -> RoleV6 {
    defaulted(role(
        ADMIN_ROLE,
        "v7",
        RoleOptions::default(),
        RoleConditions {
            rules: vec![rule(&["*"], &["*"])],
            ..Default::default()
        },
    ))
}

/// The name of tp's built-in role for proxies.
pub const PROXY_ROLE: &str = "@tp-proxy";

/// tp's built-in role for a proxy (a host certificate with the `Proxy` system role):
/// read what discovery, login and invite pages need, secrets excluded.
pub fn proxy_role() -> RoleV6 {
    defaulted(role(
        PROXY_ROLE,
        "v7",
        RoleOptions::default(),
        RoleConditions {
            rules: vec![
                rule(&["role", "cluster_name", "cluster_auth_preference"], RO),
                rule(&["user", "cert_authority"], &["list", "readnosecrets"]),
            ],
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{AccessContext, RoleSet};

    #[test]
    fn built_in_roles_pass_teleport_defaults() {
        for mut r in [
            editor(),
            access(),
            auditor(),
            admin_role(),
            proxy_role(),
            implicit_role(),
        ] {
            let name = r.metadata.as_ref().unwrap().name.clone();
            role_check_and_set_defaults(&mut r).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn presets_grant_what_teleport_documents() {
        let ctx = AccessContext::for_user("u", vec![], Default::default());
        let editor = RoleSet::new(vec![editor()]);
        assert!(
            editor
                .check(
                    &ctx,
                    "role",
                    &["list", "create", "read", "update", "delete"]
                )
                .is_ok()
        );
        assert!(editor.check(&ctx, "user", &["create"]).is_ok());
        assert!(editor.check(&ctx, "event", &["list"]).is_err());
        let auditor = RoleSet::new(vec![auditor()]);
        assert!(auditor.check(&ctx, "event", &["list", "read"]).is_ok());
        assert!(auditor.check(&ctx, "role", &["read"]).is_err());
        let access = RoleSet::new(vec![access()]);
        assert!(access.check(&ctx, "event", &["read"]).is_ok());
        assert!(access.check(&ctx, "user", &["read"]).is_err());
        let admin = RoleSet::new(vec![admin_role()]);
        assert!(
            admin
                .check(&ctx, "cert_authority", &["read", "rotate"])
                .is_ok()
        );
    }

    #[test]
    fn presets_carry_the_preset_label() {
        for r in presets() {
            assert_eq!(
                r.metadata
                    .as_ref()
                    .unwrap()
                    .labels
                    .get(PRESET_LABEL.0)
                    .map(String::as_str),
                Some("preset")
            );
            assert_eq!(r.version, "v7");
        }
    }
}
