//! Teleport resources in their YAML/JSON form: parsing, defaults, validation, printing.
//!
//! The resource messages of [`crate::types`] carry serde derives that use Teleport's own
//! field names (its gogoproto `jsontag`s, kept as `json_name` in `proto/`), so a
//! resource read from YAML *is* the protobuf message that goes on the wire: there is no
//! second model to drift from the first and no field can be dropped on the way.
//! Durations are Go duration strings (`8h0m0s`; `30m` and `1h30m` are accepted), label
//! values are a string or a list, times are RFC 3339, `BoolValue` options are bare
//! booleans.
//!
//! ```
//! use tp_proto::resource::{Resource, parse};
//!
//! let yaml = r#"
//! kind: role
//! version: v5
//! metadata:
//!   name: api-role
//! spec:
//!   allow:
//!     rules:
//!       - resources: [role]
//!         verbs: [read]
//! "#;
//! let docs = parse(yaml, "api-role.yaml").unwrap();
//! let Resource::Role(role) = &docs[0] else { panic!("a role") };
//! // Defaults for role v5 were applied, as Teleport's CheckAndSetDefaults does.
//! let options = role.spec.as_ref().unwrap().options.as_ref().unwrap();
//! assert_eq!(options.max_session_ttl, 30 * 3600 * 1_000_000_000);
//! assert_eq!(options.certificate_format, "standard");
//! ```
//!
//! Every error names the source, the document (1-based), the field path and what was
//! expected; see [`ResourceError`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::types::{
    BoolValue, CertAuthorityV2, IdPOptions, IdPsamlOptions, KubernetesResource, Metadata,
    ProvisionTokenV2, RecordSession, RoleConditions, RoleV6, UserSpecV2, UserTokenV3, UserV2,
};
use crate::wrappers::{LabelValues, StringValues};

/// The role versions tp accepts; the version selects defaults (see
/// [`role_check_and_set_defaults`]).
pub const ROLE_VERSIONS: &[&str] = &["v3", "v4", "v5", "v6", "v7", "v8"];

/// The verbs a role rule may name (Teleport's `Verb*` constants), plus `*`.
pub const RULE_VERBS: &[&str] = &[
    "*",
    "list",
    "create",
    "read",
    "readnosecrets",
    "update",
    "delete",
    "rotate",
    "create_enroll_token",
    "enroll",
    "use",
];

/// The system roles a join token may grant, in Teleport's spelling.
pub const SYSTEM_ROLES: &[&str] = &[
    "Auth",
    "Node",
    "Proxy",
    "Relay",
    "RemoteProxy",
    "Admin",
    "Kube",
    "App",
    "Db",
    "WindowsDesktop",
    "Discovery",
    "Okta",
    "Bot",
    "Instance",
    "MDM",
    "AccessGraph",
    "Trusted_cluster",
    "Signup",
    "Nop",
];

const MAX_SESSION_TTL_DEFAULT_NS: i64 = 30 * 3600 * 1_000_000_000;
const KUBE_RESOURCE_KINDS: &[&str] = &[
    "pod",
    "secret",
    "configmap",
    "namespace",
    "service",
    "serviceaccount",
    "kube_node",
    "persistentvolume",
    "persistentvolumeclaim",
    "deployment",
    "replicaset",
    "statefulset",
    "daemonset",
    "clusterrole",
    "kube_role",
    "clusterrolebinding",
    "rolebinding",
    "cronjob",
    "job",
    "certificatesigningrequest",
    "ingress",
];
const KUBE_CLUSTER_WIDE_KINDS: &[&str] = &[
    "namespace",
    "kube_node",
    "persistentvolume",
    "clusterrole",
    "clusterrolebinding",
    "certificatesigningrequest",
];
const KUBE_VERBS: &[&str] = &[
    "*",
    "get",
    "create",
    "update",
    "patch",
    "delete",
    "list",
    "watch",
    "deletecollection",
    "exec",
    "portforward",
];

/// One Teleport resource of a kind tp handles.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[allow(
    clippy::large_enum_variant,
    reason = "resources are handled a few at a time; boxing would only complicate matching"
)]
pub enum Resource {
    /// `kind: role`.
    Role(RoleV6),
    /// `kind: user`.
    User(UserV2),
    /// `kind: token` (a join token).
    Token(ProvisionTokenV2),
    /// `kind: cert_authority` (read-only: printed by `tpctl get`, never created from YAML
    /// by tp).
    CertAuthority(CertAuthorityV2),
    /// `kind: user_token` (read-only: an invite or reset token as the server returns it).
    UserToken(UserTokenV3),
}

impl UserV2 {
    /// A user resource (`kind: user`, `version: v2`) named `name` holding `roles`, as
    /// Teleport's `types.NewUser` makes one; the other fields keep their defaults.
    ///
    /// ```
    /// let u = tp_proto::types::UserV2::new("alice", &["access"]);
    /// assert_eq!(u.metadata.unwrap().name, "alice");
    /// assert_eq!(u.spec.unwrap().roles, ["access"]);
    /// ```
    pub fn new(name: &str, roles: &[&str]) -> Self {
        Self {
            kind: "user".into(),
            version: "v2".into(),
            metadata: Some(Metadata {
                name: name.into(),
                ..Default::default()
            }),
            spec: Some(UserSpecV2 {
                roles: roles.iter().map(|r| (*r).to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Resource {
    /// The resource kind as Teleport spells it (`role`, `user`, `token`,
    /// `cert_authority`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Role(_) => "role",
            Self::User(_) => "user",
            Self::Token(_) => "token",
            Self::CertAuthority(_) => "cert_authority",
            Self::UserToken(_) => "user_token",
        }
    }

    /// The resource name (`metadata.name`).
    pub fn name(&self) -> &str {
        let md = match self {
            Self::Role(r) => r.metadata.as_ref(),
            Self::User(u) => u.metadata.as_ref(),
            Self::Token(t) => t.metadata.as_ref(),
            Self::CertAuthority(c) => c.metadata.as_ref(),
            Self::UserToken(t) => t.metadata.as_ref(),
        };
        md.map_or("", |m| m.name.as_str())
    }

    /// The resource as a JSON value with Teleport's field names and keys in sorted order.
    pub fn to_json_value(&self) -> Value {
        let v = match self {
            Self::Role(r) => serde_json::to_value(r),
            Self::User(u) => serde_json::to_value(u),
            Self::Token(t) => serde_json::to_value(t),
            Self::CertAuthority(c) => serde_json::to_value(c),
            Self::UserToken(t) => serde_json::to_value(t),
        };
        // Serialising these messages cannot fail: every map key is a string and every
        // custom serializer is total over the values it accepts (out-of-range
        // timestamps, the one exception, cannot come from our parser or from a valid
        // protobuf decode of a Teleport resource).
        v.unwrap_or(Value::Null)
    }
}

/// Prints resources as YAML documents separated by `---`, keys sorted, as `tctl get`
/// does.
pub fn to_yaml(resources: &[Resource]) -> String {
    let mut out = String::new();
    for (i, r) in resources.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        // A serde_json::Value always serialises to YAML.
        out.push_str(&serde_saphyr::to_string(&r.to_json_value()).unwrap_or_default());
    }
    out
}

/// Prints resources as a JSON array (even for one resource), as `tctl get --format=json`
/// does.
pub fn to_json(resources: &[Resource]) -> String {
    let values: Vec<Value> = resources.iter().map(Resource::to_json_value).collect();
    // A Vec of serde_json::Value always serialises.
    serde_json::to_string_pretty(&values).unwrap_or_default()
}

/// Why a resource document was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceError {
    /// Where the text came from (a file name, or `-` for standard input).
    pub source: String,
    /// The 1-based document number within the source; 0 when the whole text is unreadable.
    pub document: usize,
    /// The field path within the document (`spec.allow.rules[0].verbs[1]`), or empty.
    pub path: String,
    /// What is wrong.
    pub kind: ResourceErrorKind,
}

/// The categories of [`ResourceError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceErrorKind {
    /// The text is not valid YAML or JSON; the message carries the line and column.
    Syntax(String),
    /// A document has no `kind` or no `version`, or is not a mapping.
    MissingField(&'static str),
    /// `kind` names a resource tp does not handle.
    UnknownKind(String),
    /// `version` is not one tp supports for the kind.
    UnsupportedVersion {
        /// The document's kind.
        kind: String,
        /// The version found.
        version: String,
        /// The versions supported for the kind.
        supported: &'static [&'static str],
    },
    /// A field has the wrong type or shape; the message says what was expected.
    WrongType(String),
    /// A duration field is not a Go duration string.
    BadDuration(String),
    /// A rule names a verb that does not exist.
    BadVerb(String),
    /// A label value of the form `^...$` is not a valid regular expression.
    InvalidLabelRegex {
        /// The label value.
        value: String,
        /// Why it does not compile.
        reason: String,
    },
    /// Any other rule of Teleport's `CheckAndSetDefaults`.
    Invalid(String),
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        if self.document > 0 {
            write!(f, ": document {}", self.document)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl fmt::Display for ResourceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(m) => write!(f, "not valid YAML or JSON: {m}"),
            Self::MissingField(name) => write!(f, "missing required field {name:?}"),
            Self::UnknownKind(k) => write!(
                f,
                "unknown resource kind {k:?} (expected one of role, user, token, cert_authority, user_token)"
            ),
            Self::UnsupportedVersion {
                kind,
                version,
                supported,
            } => write!(
                f,
                "unsupported {kind} version {version:?} (expected one of {})",
                supported.join(", ")
            ),
            Self::WrongType(m) => write!(f, "{m}"),
            Self::BadDuration(m) => write!(f, "{m}"),
            Self::BadVerb(v) => write!(
                f,
                "unknown verb {v:?} (expected one of {})",
                RULE_VERBS.join(", ")
            ),
            Self::InvalidLabelRegex { value, reason } => {
                write!(
                    f,
                    "label value {value:?} is not a valid regular expression: {reason}"
                )
            }
            Self::Invalid(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ResourceError {}

/// An error of one rule, before the source and document are known.
#[derive(Debug)]
struct Problem {
    path: String,
    kind: ResourceErrorKind,
}

fn problem(path: impl Into<String>, kind: ResourceErrorKind) -> Problem {
    Problem {
        path: path.into(),
        kind,
    }
}

fn invalid(path: impl Into<String>, msg: impl Into<String>) -> Problem {
    problem(path, ResourceErrorKind::Invalid(msg.into()))
}

/// Parses YAML or JSON text holding one or more documents (`---`-separated, or the
/// elements of a top-level JSON array), applies
/// Teleport's defaults for each resource's kind and version, and validates it.
///
/// `source` names the text in errors (a file name, or `-` for standard input). Empty
/// documents are skipped. Processing stops at the first bad document, as `tctl create`
/// does.
pub fn parse(text: &str, source: &str) -> Result<Vec<Resource>, ResourceError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| ResourceError {
        source: source.to_string(),
        document: 0,
        path: String::new(),
        kind: ResourceErrorKind::Syntax(e.to_string()),
    })?;
    // A JSON array (what `tctl get --format=json` prints) holds one resource per element.
    let docs: Vec<Value> = docs
        .into_iter()
        .flat_map(|d| match d {
            Value::Array(items) => items,
            other => vec![other],
        })
        .collect();
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let r = parse_value(doc).map_err(|p| ResourceError {
            source: source.to_string(),
            document: i + 1,
            path: p.path,
            kind: p.kind,
        })?;
        out.push(r);
    }
    Ok(out)
}

/// Parses one document already read into a JSON value.
fn parse_value(doc: Value) -> Result<Resource, Problem> {
    let Value::Object(map) = &doc else {
        return Err(problem(
            "",
            ResourceErrorKind::WrongType(
                "expected a mapping with kind, version, metadata and spec".into(),
            ),
        ));
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => {
            return Err(problem(
                "kind",
                ResourceErrorKind::WrongType("expected a string".into()),
            ));
        }
        None => return Err(problem("", ResourceErrorKind::MissingField("kind"))),
    };
    let version = match map.get("version") {
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(problem(
                "version",
                ResourceErrorKind::WrongType("expected a string such as \"v7\"".into()),
            ));
        }
        None => return Err(problem("", ResourceErrorKind::MissingField("version"))),
    };
    let check_version = |supported: &'static [&'static str]| {
        if supported.contains(&version.as_str()) {
            Ok(())
        } else {
            Err(problem(
                "version",
                ResourceErrorKind::UnsupportedVersion {
                    kind: kind.clone(),
                    version: version.clone(),
                    supported,
                },
            ))
        }
    };
    match kind.as_str() {
        "role" => {
            check_version(ROLE_VERSIONS)?;
            let mut role: RoleV6 = typed(doc)?;
            validate_role_yaml(&role)?;
            role_defaults(&mut role)?;
            Ok(Resource::Role(role))
        }
        "user" => {
            check_version(&["v2"])?;
            let mut user: UserV2 = typed(doc)?;
            user_check_and_set_defaults(&mut user)?;
            Ok(Resource::User(user))
        }
        "token" => {
            check_version(&["v2"])?;
            let mut token: ProvisionTokenV2 = typed(doc)?;
            token_check_and_set_defaults(&mut token)?;
            Ok(Resource::Token(token))
        }
        "cert_authority" => {
            check_version(&["v2"])?;
            let ca: CertAuthorityV2 = typed(doc)?;
            Ok(Resource::CertAuthority(ca))
        }
        "user_token" => {
            check_version(&["v3"])?;
            let t: UserTokenV3 = typed(doc)?;
            Ok(Resource::UserToken(t))
        }
        _ => Err(problem("kind", ResourceErrorKind::UnknownKind(kind))),
    }
}

/// Deserialises a document into a message, keeping the path of the first bad field.
fn typed<T: DeserializeOwned>(doc: Value) -> Result<T, Problem> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.into_inner().to_string();
        let kind = if msg.starts_with("invalid duration") || msg.starts_with("expected a duration")
        {
            ResourceErrorKind::BadDuration(msg)
        } else {
            ResourceErrorKind::WrongType(msg)
        };
        problem(path, kind)
    })
}

fn label_pairs(l: &Option<LabelValues>) -> impl Iterator<Item = (&String, &String)> {
    l.iter()
        .flat_map(|l| l.values.iter())
        .flat_map(|(k, v)| v.values.iter().map(move |val| (k, val)))
}

fn is_unset(l: &Option<LabelValues>) -> bool {
    l.as_ref().is_none_or(|l| l.values.is_empty())
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

/// tp's checks on a role written by a person, before the defaults: every rule verb
/// exists and every `^...$` label value compiles. (Teleport's own server accepts unknown
/// verbs silently; a typo in a verb is a role that grants nothing, so tp refuses it at
/// the door.)
fn validate_role_yaml(role: &RoleV6) -> Result<(), Problem> {
    let Some(spec) = role.spec.as_ref() else {
        return Ok(());
    };
    for (side, cond) in [("allow", &spec.allow), ("deny", &spec.deny)] {
        let Some(cond) = cond else { continue };
        for (i, rule) in cond.rules.iter().enumerate() {
            for (j, verb) in rule.verbs.iter().enumerate() {
                if !RULE_VERBS.contains(&verb.as_str()) {
                    return Err(problem(
                        format!("spec.{side}.rules[{i}].verbs[{j}]"),
                        ResourceErrorKind::BadVerb(verb.clone()),
                    ));
                }
            }
        }
        for (field, labels) in label_fields(cond) {
            for (key, value) in label_pairs(labels) {
                if key != "*" && !valid_label_key(key) {
                    return Err(invalid(
                        format!("spec.{side}.{field}"),
                        format!("invalid label key {key:?} (letters, digits and / . _ : * - only)"),
                    ));
                }
                if value.starts_with('^')
                    && value.ends_with('$')
                    && let Err(e) = regex::Regex::new(value)
                {
                    return Err(problem(
                        format!("spec.{side}.{field}.{key}"),
                        ResourceErrorKind::InvalidLabelRegex {
                            value: value.clone(),
                            reason: e
                                .to_string()
                                .lines()
                                .last()
                                .unwrap_or_default()
                                .trim()
                                .to_string(),
                        },
                    ));
                }
            }
        }
    }
    Ok(())
}

fn label_fields(c: &RoleConditions) -> [(&'static str, &Option<LabelValues>); 10] {
    [
        ("node_labels", &c.node_labels),
        ("app_labels", &c.app_labels),
        ("cluster_labels", &c.cluster_labels),
        ("kubernetes_labels", &c.kubernetes_labels),
        ("db_labels", &c.database_labels),
        ("windows_desktop_labels", &c.windows_desktop_labels),
        ("db_service_labels", &c.database_service_labels),
        ("group_labels", &c.group_labels),
        ("workload_identity_labels", &c.workload_identity_labels),
        ("request.annotations", &None),
    ]
}

fn valid_label_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._:*-".contains(&b))
}

fn metadata_check(md: &mut Option<Metadata>) -> Result<(), Problem> {
    let md = md.get_or_insert_with(Default::default);
    if md.name.is_empty() {
        return Err(problem("metadata", ResourceErrorKind::MissingField("name")));
    }
    if md.namespace.is_empty() {
        md.namespace = "default".into();
    }
    if md.namespace != "default" {
        return Err(invalid(
            "metadata.namespace",
            format!(
                "namespace {:?} is not supported (only \"default\")",
                md.namespace
            ),
        ));
    }
    for key in md.labels.keys() {
        if !valid_label_key(key) {
            return Err(invalid(
                "metadata.labels",
                format!("invalid label key {key:?} (letters, digits and / . _ : * - only)"),
            ));
        }
    }
    Ok(())
}

fn bool_option(v: bool) -> Option<BoolValue> {
    Some(BoolValue { value: v })
}

/// Applies Teleport's `RoleV6.CheckAndSetDefaults` for the role's version and checks
/// the rules it enforces. A server runs it on every create, update and upsert; `tpctl`
/// runs it before sending.
///
/// Defaults for every version: `cert_format: standard`, `max_session_ttl: 30h`,
/// `enhanced_recording: [command, network]`, `namespaces: [default]`,
/// `record_session: {desktop: true, default: best_effort}`, desktop clipboard and
/// directory sharing on, desktop and database user creation off, `ssh_file_copy: true`,
/// and (v7 and older) SAML IdP access on. Per version: v3 opens `'*': '*'` app,
/// kubernetes and database labels (and node labels when the role has logins); v3–v5
/// and v7–v8 add a default `kubernetes_resources` entry when kubernetes labels are set
/// (a pod entry before v7, a wildcard entry from v7); v3–v6 allow only pods with the `*`
/// verb there.
///
/// Role v8 (Teleport 18) also gives that default entry an API group; the reference
/// wire contract tp follows has no field for it yet, so tp applies the v7 rules.
pub fn role_check_and_set_defaults(role: &mut RoleV6) -> Result<(), ResourceError> {
    role_defaults(role).map_err(|p| ResourceError {
        source: format!(
            "role {:?}",
            role.metadata.as_ref().map_or("", |m| m.name.as_str())
        ),
        document: 0,
        path: p.path,
        kind: p.kind,
    })
}

fn role_defaults(role: &mut RoleV6) -> Result<(), Problem> {
    if role.kind.is_empty() {
        role.kind = "role".into();
    }
    if role.kind != "role" {
        return Err(invalid(
            "kind",
            format!("expected kind \"role\", got {:?}", role.kind),
        ));
    }
    let version = role.version.clone();
    if !ROLE_VERSIONS.contains(&version.as_str()) {
        return Err(problem(
            "version",
            ResourceErrorKind::UnsupportedVersion {
                kind: "role".into(),
                version,
                supported: ROLE_VERSIONS,
            },
        ));
    }
    metadata_check(&mut role.metadata)?;
    let spec = role.spec.get_or_insert_with(Default::default);
    let opts = spec.options.get_or_insert_with(Default::default);
    if opts.certificate_format.is_empty() {
        opts.certificate_format = "standard".into();
    }
    if opts.max_session_ttl <= 0 {
        opts.max_session_ttl = MAX_SESSION_TTL_DEFAULT_NS;
    }
    if opts.bpf.is_empty() {
        opts.bpf = vec!["command".into(), "network".into()];
    }
    if opts.record_session.is_none() {
        opts.record_session = Some(RecordSession {
            desktop: bool_option(true),
            default: "best_effort".into(),
            ssh: String::new(),
        });
    }
    for (field, value) in [
        (&mut opts.desktop_clipboard, true),
        (&mut opts.desktop_directory_sharing, true),
        (&mut opts.create_desktop_user, false),
        (&mut opts.create_database_user, false),
        (&mut opts.ssh_file_copy, true),
    ] {
        if field.is_none() {
            *field = bool_option(value);
        }
    }
    let legacy_saml_idp = version != "v8";
    if opts.idp.is_none() && legacy_saml_idp {
        opts.idp = Some(IdPOptions {
            saml: Some(IdPsamlOptions {
                enabled: bool_option(true),
            }),
        });
    }
    if crate::types::CreateHostUserMode::try_from(opts.create_host_user_mode).is_err() {
        return Err(invalid(
            "spec.options.create_host_user_mode",
            format!(
                "invalid host user mode {}, expected one of off, drop or keep",
                opts.create_host_user_mode
            ),
        ));
    }
    for opt in &opts.bpf {
        if !["command", "disk", "network"].contains(&opt.as_str()) {
            return Err(invalid(
                "spec.options.enhanced_recording",
                format!("invalid value {opt:?} (expected command, disk or network)"),
            ));
        }
    }
    if !["", "best_effort", "strict"].contains(&opts.lock.as_str()) {
        return Err(invalid(
            "spec.options.lock",
            format!(
                "invalid value {:?} (expected best_effort or strict)",
                opts.lock
            ),
        ));
    }

    let allow = spec.allow.get_or_insert_with(Default::default);
    namespaces_default(&mut allow.namespaces).map_err(|m| invalid("spec.allow.namespaces", m))?;
    let kube_matchers = |c: &RoleConditions| {
        !is_unset(&c.kubernetes_labels) || !c.kubernetes_labels_expression.is_empty()
    };
    match version.as_str() {
        "v3" | "v4" | "v5" => {
            if version == "v3" {
                if is_unset(&allow.node_labels) {
                    allow.node_labels = if allow.logins.is_empty() {
                        Some(LabelValues::default())
                    } else {
                        wildcard_labels()
                    };
                }
                for l in [
                    &mut allow.app_labels,
                    &mut allow.kubernetes_labels,
                    &mut allow.database_labels,
                ] {
                    if is_unset(l) {
                        *l = wildcard_labels();
                    }
                }
            }
            if allow.kubernetes_resources.is_empty() && kube_matchers(allow) {
                allow.kubernetes_resources = vec![KubernetesResource {
                    kind: "pod".into(),
                    namespace: "*".into(),
                    name: "*".into(),
                    verbs: vec![],
                }];
            }
            default_kube_verbs(spec);
        }
        "v6" => default_kube_verbs(spec),
        _ => {
            // v7, v8
            let allow = spec.allow.get_or_insert_with(Default::default);
            if allow.kubernetes_resources.is_empty() && kube_matchers(allow) {
                allow.kubernetes_resources = vec![KubernetesResource {
                    kind: "*".into(),
                    namespace: "*".into(),
                    name: "*".into(),
                    verbs: vec!["*".into()],
                }];
            }
        }
    }
    let deny = spec.deny.get_or_insert_with(Default::default);
    namespaces_default(&mut deny.namespaces).map_err(|m| invalid("spec.deny.namespaces", m))?;

    for (side, cond) in [("allow", spec.allow.as_ref()), ("deny", spec.deny.as_ref())] {
        let Some(cond) = cond else { continue };
        for (i, k) in cond.kubernetes_resources.iter().enumerate() {
            validate_kube_resource(&version, k)
                .map_err(|m| invalid(format!("spec.{side}.kubernetes_resources[{i}]"), m))?;
        }
        if let Some(req) = &cond.request {
            for (i, k) in req.kubernetes_resources.iter().enumerate() {
                let ok = KUBE_RESOURCE_KINDS.contains(&k.kind.as_str()) || k.kind == "*";
                let old = ["v3", "v4", "v5", "v6"].contains(&version.as_str());
                if !ok || (old && k.kind != "pod") {
                    return Err(invalid(
                        format!("spec.{side}.request.kubernetes_resources[{i}]"),
                        format!(
                            "kind {:?} is not supported in role version {version}",
                            k.kind
                        ),
                    ));
                }
            }
        }
        for (i, rule) in cond.rules.iter().enumerate() {
            if rule.resources.is_empty() {
                return Err(invalid(
                    format!("spec.{side}.rules[{i}]"),
                    "missing resources to match",
                ));
            }
            if rule.verbs.is_empty() {
                return Err(invalid(format!("spec.{side}.rules[{i}]"), "missing verbs"));
            }
        }
    }
    let allow = spec.allow.get_or_insert_with(Default::default);
    for (field, list) in [
        ("logins", &allow.logins),
        ("aws_role_arns", &allow.aws_role_ar_ns),
        ("azure_identities", &allow.azure_identities),
        ("gcp_service_accounts", &allow.gcp_service_accounts),
        ("db_roles", &allow.database_roles),
    ] {
        if list.iter().any(|v| v == "*") {
            return Err(invalid(
                format!("spec.allow.{field}"),
                "wildcard matcher is not allowed here",
            ));
        }
    }
    for (field, labels) in label_fields(allow) {
        for (key, value) in label_pairs(labels) {
            let values = labels
                .as_ref()
                .and_then(|l| l.values.get(key))
                .map_or(0, |v| v.values.len());
            if key == "*" && !(values == 1 && value == "*") {
                return Err(invalid(
                    format!("spec.allow.{field}"),
                    format!("selector *:{value} is not supported (only '*': '*')"),
                ));
            }
        }
    }
    for (i, p) in allow.database_permissions.iter().enumerate() {
        if p.permissions.iter().any(|v| v == "*") {
            return Err(invalid(
                format!("spec.allow.db_permissions[{i}]"),
                "individual database permissions cannot be wildcards",
            ));
        }
    }
    for (side, cond) in [("allow", spec.allow.as_ref()), ("deny", spec.deny.as_ref())] {
        if let Some(imp) = cond.and_then(|c| c.impersonate.as_ref()) {
            if !imp.users.is_empty() && imp.roles.is_empty() {
                return Err(invalid(
                    format!("spec.{side}.impersonate"),
                    "please set both impersonate.users and impersonate.roles for user impersonation",
                ));
            }
            if side == "deny" && !imp.r#where.is_empty() {
                return Err(invalid(
                    "spec.deny.impersonate.where",
                    "'where' is not supported in deny.impersonate conditions",
                ));
            }
        }
    }
    Ok(())
}

fn namespaces_default(ns: &mut Vec<String>) -> Result<(), String> {
    if ns.is_empty() {
        ns.push("default".into());
        return Ok(());
    }
    for (i, n) in ns.iter().enumerate() {
        if n != "*" && n != "default" {
            return Err(format!(
                "namespaces[{i}]: {n:?} is not supported (only \"default\" or \"*\")"
            ));
        }
    }
    Ok(())
}

fn default_kube_verbs(spec: &mut crate::types::RoleSpecV6) {
    for cond in [spec.allow.as_mut(), spec.deny.as_mut()]
        .into_iter()
        .flatten()
    {
        for k in &mut cond.kubernetes_resources {
            if k.verbs.is_empty() {
                k.verbs = vec!["*".into()];
            }
        }
    }
}

fn validate_kube_resource(version: &str, k: &KubernetesResource) -> Result<(), String> {
    if !KUBE_RESOURCE_KINDS.contains(&k.kind.as_str()) && k.kind != "*" {
        return Err(format!("kind {:?} is invalid or unsupported", k.kind));
    }
    for verb in &k.verbs {
        if !KUBE_VERBS.contains(&verb.as_str()) && !verb.contains("{{") {
            return Err(format!("verb {verb:?} is invalid or unsupported"));
        }
        if verb == "*" && k.verbs.len() > 1 {
            return Err("verb \"*\" cannot be used with other verbs".into());
        }
    }
    if ["v3", "v4", "v5", "v6"].contains(&version) {
        if k.kind != "pod" {
            return Err(format!(
                "kind {:?} is not supported in role version {version}; use v7",
                k.kind
            ));
        }
        if k.verbs.len() != 1 || k.verbs[0] != "*" {
            return Err(format!(
                "role version {version} only supports the \"*\" verb; use v7"
            ));
        }
    }
    if k.namespace.is_empty() && !KUBE_CLUSTER_WIDE_KINDS.contains(&k.kind.as_str()) {
        return Err("must include namespace".into());
    }
    if k.name.is_empty() {
        return Err("must include name".into());
    }
    Ok(())
}

fn user_check_and_set_defaults(user: &mut UserV2) -> Result<(), Problem> {
    if user.kind.is_empty() {
        user.kind = "user".into();
    }
    metadata_check(&mut user.metadata)?;
    Ok(())
}

fn token_check_and_set_defaults(token: &mut ProvisionTokenV2) -> Result<(), Problem> {
    if token.kind.is_empty() {
        token.kind = "token".into();
    }
    metadata_check(&mut token.metadata)?;
    let spec = token.spec.get_or_insert_with(Default::default);
    if spec.roles.is_empty() {
        return Err(problem("spec", ResourceErrorKind::MissingField("roles")));
    }
    for (i, role) in spec.roles.iter_mut().enumerate() {
        match SYSTEM_ROLES.iter().find(|r| r.eq_ignore_ascii_case(role)) {
            Some(canonical) => *role = (*canonical).to_string(),
            None => {
                return Err(invalid(
                    format!("spec.roles[{i}]"),
                    format!(
                        "unknown system role {role:?} (expected e.g. Node, Proxy, App, Db, Kube, Bot)"
                    ),
                ));
            }
        }
    }
    if spec.join_method.is_empty() {
        spec.join_method = "token".into();
    }
    Ok(())
}

/// Serialises a message with Teleport's field names (for callers that print one
/// resource message without wrapping it in a [`Resource`]).
pub fn to_json_value<T: Serialize>(msg: &T) -> Value {
    serde_json::to_value(msg).unwrap_or(Value::Null)
}
