//! The RBAC matrix: generated users × roles × calls against a real Auth server over real
//! mutual TLS, every decision compared with an oracle written here from the spec
//! (wire-api §4), not from the server's code.
//!
//! Roles are generated from a fixed seed (`TP_RBAC_SEED` picks another) out of allow and
//! deny rules over the kinds the server serves, with wildcards, `readnosecrets`, and
//! `where` clauses naming the caller; hand-written roles make sure every call is seen
//! both allowed and denied. Each user holds one to three roles (sometimes a preset).
//! The oracle's rules (§4.3, §4.4): deny first, across all roles, and a deny `where`
//! that cannot be evaluated counts as a match; then any allow rule of any role or of the
//! implicit role; a rule matches a kind it names or `*`, a verb it names or `*`, and
//! `readnosecrets` is also granted by `read`; a call needing several verbs needs every
//! one; a user may always read the roles it holds and its own user (without secrets).
//!
//! The assertion: no call the oracle denies succeeds, no call it allows is denied, and
//! every denial reaches the client as AccessDenied (gRPC `PERMISSION_DENIED`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use futures_util::StreamExt as _;
use futures_util::future::join_all;
use tp_auth::ca::Issued;
use tp_auth::usercert::{UserCaSigner, UserIdentity};
use tp_client::{Client, ErrorKind, UserTokenType};
use tp_creds::{KeyAlgorithm, PrivateKey};
use tp_proto::proto::{ListRolesRequest, Operation, Watch};
use tp_proto::teleport::users::v1::ListUsersRequest;
use tp_proto::types::{
    Metadata, ProvisionTokenSpecV2, ProvisionTokenV2, RoleConditions, RoleSpecV6, RoleV6, Rule,
    UserV2, WatchKind,
};
use tp_tests::cluster::{TestCluster, now};

// ---- the oracle -------------------------------------------------------------------

/// A `where` clause the oracle understands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Where {
    Always,
    /// `equals(user.metadata.name, "<name>")`.
    UserIs(String),
    /// `contains(user.spec.roles, "<role>")`.
    HasRole(String),
    /// Anything else (the presets' session clauses): cannot be evaluated here.
    Other,
}

impl Where {
    fn to_predicate(&self) -> String {
        match self {
            Self::Always | Self::Other => String::new(),
            Self::UserIs(u) => format!("equals(user.metadata.name, {u:?})"),
            Self::HasRole(r) => format!("contains(user.spec.roles, {r:?})"),
        }
    }

    fn parse(text: &str) -> Self {
        let t = text.trim();
        if t.is_empty() {
            return Self::Always;
        }
        let arg = |prefix: &str| {
            t.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix("\")"))
                .map(str::to_string)
        };
        if let Some(u) = arg("equals(user.metadata.name, \"") {
            return Self::UserIs(u);
        }
        if let Some(r) = arg("contains(user.spec.roles, \"") {
            return Self::HasRole(r);
        }
        Self::Other
    }

    /// `None` when the clause cannot be evaluated.
    fn holds(&self, user: &str, roles: &[String]) -> Option<bool> {
        match self {
            Self::Always => Some(true),
            Self::UserIs(u) => Some(u == user),
            Self::HasRole(r) => Some(roles.contains(r)),
            Self::Other => None,
        }
    }
}

#[derive(Debug, Clone)]
struct ORule {
    kinds: Vec<String>,
    verbs: Vec<String>,
    when: Where,
}

impl ORule {
    fn new(kinds: &[&str], verbs: &[&str]) -> Self {
        Self {
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            when: Where::Always,
        }
    }

    fn covers(&self, kind: &str, verb: &str) -> bool {
        let kind_ok = self.kinds.iter().any(|k| k == kind || k == "*");
        let verb_ok = self
            .verbs
            .iter()
            .any(|v| v == verb || v == "*" || (verb == "readnosecrets" && v == "read"));
        kind_ok && verb_ok
    }
}

#[derive(Debug, Clone)]
struct ORole {
    name: String,
    allow: Vec<ORule>,
    deny: Vec<ORule>,
}

/// The implicit role's rules for the kinds this server serves (§4.3).
fn implicit() -> ORole {
    ORole {
        name: "default-implicit-role".into(),
        allow: vec![
            ORule::new(
                &["cluster_name", "cluster_auth_preference"],
                &["list", "read"],
            ),
            ORule::new(&["cert_authority"], &["list", "readnosecrets"]),
        ],
        deny: vec![],
    }
}

/// Whether `user` holding `roles` may do every one of `verbs` on `kind`.
fn oracle_allows(
    user: &str,
    held: &[String],
    roles: &[&ORole],
    kind: &str,
    verbs: &[&str],
) -> bool {
    let implicit = implicit();
    verbs.iter().all(|verb| {
        let denied = roles.iter().any(|r| {
            r.deny
                .iter()
                .any(|rule| rule.covers(kind, verb) && rule.when.holds(user, held).unwrap_or(true))
        });
        if denied {
            return false;
        }
        roles.iter().copied().chain([&implicit]).any(|r| {
            r.allow
                .iter()
                .any(|rule| rule.covers(kind, verb) && rule.when.holds(user, held).unwrap_or(false))
        })
    })
}

// ---- generation --------------------------------------------------------------------

/// xorshift64*: deterministic for a seed, no dependency.
struct Rng(u64);

impl Rng {
    /// A generator for `seed`; distinct seeds give distinct streams (xorshift needs a
    /// non-zero state, so the seed is mixed rather than forced odd).
    fn new(seed: u64) -> Self {
        Self((seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

const KINDS: &[&str] = &["role", "user", "token", "cert_authority", "cluster_name"];
const VERBS: &[&str] = &[
    "list",
    "read",
    "readnosecrets",
    "create",
    "update",
    "delete",
];
const N_ROLES: usize = 14;
const N_USERS: usize = 48;
/// Seeds per run: each a fresh cluster with its own roles and users.
const ROUNDS: u64 = 3;

fn user_name(i: usize) -> String {
    format!("u{i}")
}

fn gen_rule(rng: &mut Rng) -> ORule {
    let mut kinds = Vec::new();
    for _ in 0..=rng.below(2) {
        let k = if rng.chance(12) {
            "*"
        } else {
            *rng.pick(KINDS)
        };
        if !kinds.iter().any(|x| x == k) {
            kinds.push(k.to_string());
        }
    }
    let mut verbs = Vec::new();
    for _ in 0..=rng.below(3) {
        let v = if rng.chance(10) {
            "*"
        } else {
            *rng.pick(VERBS)
        };
        if !verbs.iter().any(|x| x == v) {
            verbs.push(v.to_string());
        }
    }
    let when = match rng.below(10) {
        0 => Where::UserIs(user_name(rng.below(N_USERS))),
        1 => Where::HasRole(format!("r{}", rng.below(N_ROLES))),
        _ => Where::Always,
    };
    ORule { kinds, verbs, when }
}

fn generated_roles(rng: &mut Rng) -> Vec<ORole> {
    let mut roles: Vec<ORole> = (0..N_ROLES)
        .map(|i| {
            let allow = (0..rng.below(4)).map(|_| gen_rule(rng)).collect();
            let deny = if rng.chance(35) {
                (0..=rng.below(2)).map(|_| gen_rule(rng)).collect()
            } else {
                vec![]
            };
            ORole {
                name: format!("r{i}"),
                allow,
                deny,
            }
        })
        .collect();
    // Hand-written corners: everything, nothing, everything denied, read only.
    roles.push(ORole {
        name: "all".into(),
        allow: vec![ORule::new(&["*"], &["*"])],
        deny: vec![],
    });
    roles.push(ORole {
        name: "nothing".into(),
        allow: vec![],
        deny: vec![],
    });
    roles.push(ORole {
        name: "deny-all".into(),
        allow: vec![],
        deny: vec![ORule::new(&["*"], &["*"])],
    });
    // `read` also denies `readnosecrets` (the implicit role's grant on CAs).
    roles.push(ORole {
        name: "no-ca-read".into(),
        allow: vec![],
        deny: vec![ORule::new(&["cert_authority"], &["read"])],
    });
    roles.push(ORole {
        name: "read-all".into(),
        allow: vec![ORule::new(&["*"], &["list", "read"])],
        deny: vec![],
    });
    roles
}

fn to_rules(rules: &[ORule]) -> Vec<Rule> {
    rules
        .iter()
        .map(|r| Rule {
            resources: r.kinds.clone(),
            verbs: r.verbs.clone(),
            r#where: r.when.to_predicate(),
            ..Default::default()
        })
        .collect()
}

fn to_role(r: &ORole) -> RoleV6 {
    RoleV6 {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Some(Metadata {
            name: r.name.clone(),
            ..Default::default()
        }),
        spec: Some(RoleSpecV6 {
            options: None,
            allow: Some(RoleConditions {
                rules: to_rules(&r.allow),
                ..Default::default()
            }),
            deny: Some(RoleConditions {
                rules: to_rules(&r.deny),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// A stored role (a preset) as the oracle sees it.
fn from_role(role: &RoleV6) -> ORole {
    let side = |c: Option<&RoleConditions>| -> Vec<ORule> {
        c.map(|c| {
            c.rules
                .iter()
                .map(|r| ORule {
                    kinds: r.resources.clone(),
                    verbs: r.verbs.clone(),
                    when: Where::parse(&r.r#where),
                })
                .collect()
        })
        .unwrap_or_default()
    };
    let spec = role.spec.as_ref();
    ORole {
        name: role
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        allow: side(spec.and_then(|s| s.allow.as_ref())),
        deny: side(spec.and_then(|s| s.deny.as_ref())),
    }
}

fn token(name: &str) -> ProvisionTokenV2 {
    ProvisionTokenV2 {
        kind: "token".into(),
        version: "v2".into(),
        metadata: Some(Metadata {
            name: name.into(),
            expires: Some(prost_types::Timestamp {
                seconds: now() + 3600,
                nanos: 0,
            }),
            ..Default::default()
        }),
        spec: Some(ProvisionTokenSpecV2 {
            roles: vec!["Node".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

// ---- the calls ---------------------------------------------------------------------

/// What a call needs.
#[derive(Debug, Clone, Copy)]
enum Need {
    /// Any authenticated user.
    Nothing,
    /// Every verb on the kind.
    Verbs(&'static str, &'static [&'static str]),
}

/// What an authorised call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Ok,
    NotFound,
}

const CALLS: &[(&str, Need, Then)] = &[
    ("Ping", Need::Nothing, Then::Ok),
    ("GetRole(held)", Need::Nothing, Then::Ok),
    ("GetRole(other)", Need::Verbs("role", &["read"]), Then::Ok),
    ("GetRoles", Need::Verbs("role", &["list", "read"]), Then::Ok),
    (
        "ListRoles",
        Need::Verbs("role", &["list", "read"]),
        Then::Ok,
    ),
    ("CreateRole", Need::Verbs("role", &["create"]), Then::Ok),
    ("UpdateRole", Need::Verbs("role", &["update"]), Then::Ok),
    (
        "UpsertRole",
        Need::Verbs("role", &["create", "update"]),
        Then::Ok,
    ),
    (
        "DeleteRole",
        Need::Verbs("role", &["delete"]),
        Then::NotFound,
    ),
    ("GetUser(self)", Need::Nothing, Then::Ok),
    ("GetCurrentUser", Need::Nothing, Then::Ok),
    (
        "GetUser(self,secrets)",
        Need::Verbs("user", &["read"]),
        Then::Ok,
    ),
    ("GetUser(other)", Need::Verbs("user", &["read"]), Then::Ok),
    (
        "ListUsers",
        Need::Verbs("user", &["list", "read"]),
        Then::Ok,
    ),
    ("CreateUser", Need::Verbs("user", &["create"]), Then::Ok),
    ("UpdateUser", Need::Verbs("user", &["update"]), Then::Ok),
    (
        "UpsertUser",
        Need::Verbs("user", &["create", "update"]),
        Then::Ok,
    ),
    (
        "DeleteUser",
        Need::Verbs("user", &["delete"]),
        Then::NotFound,
    ),
    (
        "CreateResetPasswordToken",
        Need::Verbs("user", &["update"]),
        Then::Ok,
    ),
    ("GetToken", Need::Verbs("token", &["read"]), Then::NotFound),
    (
        "GetTokens",
        Need::Verbs("token", &["list", "read"]),
        Then::Ok,
    ),
    ("CreateToken", Need::Verbs("token", &["create"]), Then::Ok),
    (
        "UpsertToken",
        Need::Verbs("token", &["create", "update"]),
        Then::Ok,
    ),
    (
        "DeleteToken",
        Need::Verbs("token", &["delete"]),
        Then::NotFound,
    ),
    (
        "GetCertAuthority",
        Need::Verbs("cert_authority", &["readnosecrets"]),
        Then::Ok,
    ),
    (
        "GetCertAuthority(keys)",
        Need::Verbs("cert_authority", &["read"]),
        Then::Ok,
    ),
    (
        "GetCertAuthorities",
        Need::Verbs("cert_authority", &["list", "readnosecrets"]),
        Then::Ok,
    ),
    (
        "GetCertAuthorities(keys)",
        Need::Verbs("cert_authority", &["list", "read"]),
        Then::Ok,
    ),
    (
        "GetClusterName",
        Need::Verbs("cluster_name", &["read"]),
        Then::Ok,
    ),
    // WatchEvents: one verb per kind, `read` (not `list`); CAs without keys need only
    // `readnosecrets` (§4.4). Authorised, the stream opens with its INIT event.
    ("Watch(role)", Need::Verbs("role", &["read"]), Then::Ok),
    ("Watch(user)", Need::Verbs("user", &["read"]), Then::Ok),
    ("Watch(token)", Need::Verbs("token", &["read"]), Then::Ok),
    (
        "Watch(cert_authority)",
        Need::Verbs("cert_authority", &["readnosecrets"]),
        Then::Ok,
    ),
    (
        "Watch(cert_authority,secrets)",
        Need::Verbs("cert_authority", &["read"]),
        Then::Ok,
    ),
    (
        "Watch(cluster_name)",
        Need::Verbs("cluster_name", &["read"]),
        Then::Ok,
    ),
];

/// Makes call `name` as `me` (holding `held`); every name is unique to the caller so
/// calls that succeed do not disturb the others.
async fn call(
    c: &Client,
    name: &str,
    me: &str,
    held: &[String],
    other_role: &str,
) -> tp_client::Result<()> {
    let fresh = |what: &str| format!("{what}-{me}");
    match name {
        "Ping" => c.ping().await.map(drop),
        "GetRole(held)" => c.get_role(&held[0]).await.map(drop),
        "GetRole(other)" => c.get_role(other_role).await.map(drop),
        "GetRoles" => c.get_roles().await.map(drop),
        "ListRoles" => c
            .list_roles(ListRolesRequest {
                limit: 5,
                ..Default::default()
            })
            .await
            .map(drop),
        "CreateRole" => c
            .create_role(to_role(&named(&fresh("new"))))
            .await
            .map(drop),
        "UpdateRole" => c
            .update_role(to_role(&named("target-role")))
            .await
            .map(drop),
        "UpsertRole" => c.upsert_role(to_role(&named(&fresh("up")))).await.map(drop),
        "DeleteRole" => c.delete_role(&fresh("absent")).await,
        "GetUser(self)" => c.get_user(me, false).await.map(drop),
        "GetCurrentUser" => c.get_current_user().await.map(drop),
        "GetUser(self,secrets)" => c.get_user(me, true).await.map(drop),
        "GetUser(other)" => c.get_user("target-user", false).await.map(drop),
        "ListUsers" => c
            .list_users(ListUsersRequest {
                page_size: 5,
                ..Default::default()
            })
            .await
            .map(drop),
        "CreateUser" => c
            .create_user(UserV2::new(&fresh("new"), &["nothing"]))
            .await
            .map(drop),
        "UpdateUser" => c
            .update_user(UserV2::new("target-user", &["nothing"]))
            .await
            .map(drop),
        "UpsertUser" => c
            .upsert_user(UserV2::new(&fresh("up"), &["nothing"]))
            .await
            .map(drop),
        "DeleteUser" => c.delete_user(&fresh("absent")).await,
        "CreateResetPasswordToken" => c
            .create_reset_password_token(
                "target-user",
                UserTokenType::Password,
                std::time::Duration::ZERO,
            )
            .await
            .map(drop),
        "GetToken" => c.get_token(&fresh("absent")).await.map(drop),
        "GetTokens" => c.get_tokens().await.map(drop),
        "CreateToken" => c.create_token(token(&fresh("new"))).await,
        "UpsertToken" => c.upsert_token(token(&fresh("up"))).await,
        "DeleteToken" => c.delete_token(&fresh("absent")).await,
        "GetCertAuthority" => c
            .get_cert_authority("user", "example.com", false)
            .await
            .map(drop),
        "GetCertAuthority(keys)" => c
            .get_cert_authority("user", "example.com", true)
            .await
            .map(drop),
        "GetCertAuthorities" => c.get_cert_authorities("host", false).await.map(drop),
        "GetCertAuthorities(keys)" => c.get_cert_authorities("host", true).await.map(drop),
        "GetClusterName" => c.get_cluster_name().await.map(drop),
        watch if watch.starts_with("Watch(") => {
            let inner = &watch["Watch(".len()..watch.len() - 1];
            let (kind, secrets) = match inner.split_once(',') {
                Some((k, _)) => (k, true),
                None => (inner, false),
            };
            let mut events = c
                .watch_events(Watch {
                    kinds: vec![WatchKind {
                        kind: kind.into(),
                        load_secrets: secrets,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .await?;
            let init = events.next().await.expect("an INIT event")?;
            assert_eq!(init.r#type, Operation::Init as i32, "{watch}");
            Ok(())
        }
        other => panic!("no call {other}"),
    }
}

fn named(name: &str) -> ORole {
    ORole {
        name: name.into(),
        allow: vec![ORule::new(&["node"], &["list"])],
        deny: vec![],
    }
}

/// A client for `name` holding `roles`, its certificate from the cluster's user CA.
async fn client_for(
    cluster: &TestCluster,
    signer: &UserCaSigner,
    name: &str,
    roles: &[String],
) -> Client {
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let id = UserIdentity::new(name, roles.to_vec(), "example.com");
    let cert_pem = signer
        .issue_tls(
            &id,
            &key.public_key_spki_der().unwrap(),
            now() - 60,
            now() + 3600,
        )
        .unwrap();
    let issued = Issued {
        cert_pem,
        key_pem: key.to_pem().unwrap().to_string(),
    };
    cluster.client(&issued).await
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    allowed: usize,
    denied: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_matches_the_oracle() {
    #[allow(
        clippy::disallowed_methods,
        reason = "a test's seed override, read once where the test starts"
    )]
    let seed: u64 = std::env::var("TP_RBAC_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e1e_9047);
    for round in 0..ROUNDS {
        matrix(seed.wrapping_add(round)).await;
    }
}

/// One matrix: a fresh cluster, roles and users from `seed`, every call by every user.
async fn matrix(seed: u64) {
    let mut rng = Rng::new(seed);
    let cluster = TestCluster::start("127.0.0.1:3080").await;
    let admin = cluster.admin().await;

    let mut roles = generated_roles(&mut rng);
    for r in &roles {
        admin
            .create_role(to_role(r))
            .await
            .unwrap_or_else(|e| panic!("create role {}: {e}\n{r:?}", r.name));
    }
    for preset in ["editor", "access", "auditor"] {
        roles.push(from_role(&admin.get_role(preset).await.unwrap()));
    }
    admin
        .create_role(to_role(&named("target-role")))
        .await
        .unwrap();
    admin
        .create_user(UserV2::new("target-user", &["nothing"]))
        .await
        .unwrap();

    // Users: three fixed corners, then random holdings.
    let mut users: Vec<(String, Vec<String>)> = vec![
        (user_name(0), vec!["all".into()]),
        (user_name(1), vec!["nothing".into()]),
        (user_name(2), vec!["all".into(), "deny-all".into()]),
        (user_name(3), vec!["read-all".into()]),
        (user_name(4), vec!["all".into(), "no-ca-read".into()]),
    ];
    for i in users.len()..N_USERS {
        let mut held: Vec<String> = Vec::new();
        for _ in 0..=rng.below(3) {
            let r = if rng.chance(15) {
                rng.pick(&["editor", "access", "auditor"]).to_string()
            } else {
                format!("r{}", rng.below(N_ROLES))
            };
            if !held.contains(&r) {
                held.push(r);
            }
        }
        users.push((user_name(i), held));
    }
    for (name, held) in &users {
        let held: Vec<&str> = held.iter().map(String::as_str).collect();
        admin.create_user(UserV2::new(name, &held)).await.unwrap();
    }

    let by_name: BTreeMap<String, ORole> =
        roles.iter().map(|r| (r.name.clone(), r.clone())).collect();
    let signer = UserCaSigner::new(&cluster.state.user_ca).unwrap();
    let started = std::time::Instant::now();
    let results = join_all(users.iter().map(|(name, held)| {
        let (cluster, signer, by_name) = (&cluster, &signer, &by_name);
        async move {
            let client = client_for(cluster, signer, name, held).await;
            let mine: Vec<&ORole> = held.iter().map(|r| &by_name[r]).collect();
            // A role this user does not hold (there are always some).
            let other = by_name.keys().find(|r| !held.contains(r)).cloned().unwrap();
            let mut out = Vec::new();
            for &(call_name, need, then) in CALLS {
                let expect = match need {
                    Need::Nothing => true,
                    Need::Verbs(kind, verbs) => oracle_allows(name, held, &mine, kind, verbs),
                };
                let got = call(&client, call_name, name, held, &other).await;
                out.push((name.clone(), held.clone(), call_name, expect, then, got));
            }
            out
        }
    }))
    .await;
    let elapsed = started.elapsed();

    let mut wrongly_allowed = Vec::new();
    let mut wrongly_denied = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut calls = 0;
    for (name, held, call_name, expect, then, got) in results.into_iter().flatten() {
        calls += 1;
        let t = tally.entry(call_name).or_default();
        let line = format!("{name} {held:?} {call_name}: {got:?}");
        match (expect, &got) {
            (true, Ok(())) if then == Then::Ok => t.allowed += 1,
            (true, Err(e)) if then == Then::NotFound && e.kind() == ErrorKind::NotFound => {
                t.allowed += 1
            }
            (true, Err(e)) if e.kind() == ErrorKind::AccessDenied => wrongly_denied.push(line),
            (true, _) => wrong_shape.push(line),
            (false, Ok(())) => wrongly_allowed.push(line),
            (false, Err(e)) => {
                let code = e.status().map(tonic::Status::code);
                if e.kind() == ErrorKind::AccessDenied
                    && code == Some(tonic::Code::PermissionDenied)
                {
                    t.denied += 1;
                } else {
                    wrong_shape.push(format!("{line} (expected AccessDenied)"));
                }
            }
        }
    }
    let mut table = String::new();
    for (call_name, t) in &tally {
        let _ = writeln!(
            table,
            "{call_name:28} allowed {:3}  denied {:3}",
            t.allowed, t.denied
        );
    }
    eprintln!(
        "seed {seed:#x}: {calls} calls by {} users over {} roles in {elapsed:?}\n{table}",
        users.len(),
        roles.len()
    );
    assert!(
        wrongly_allowed.is_empty(),
        "{} unauthorised calls allowed:\n{}",
        wrongly_allowed.len(),
        wrongly_allowed.join("\n")
    );
    assert!(
        wrongly_denied.is_empty(),
        "{} authorised calls denied:\n{}",
        wrongly_denied.len(),
        wrongly_denied.join("\n")
    );
    assert!(
        wrong_shape.is_empty(),
        "{} calls answered with the wrong error:\n{}",
        wrong_shape.len(),
        wrong_shape.join("\n")
    );
    assert_eq!(calls, users.len() * CALLS.len());
    // The matrix means something only if each checked call went both ways.
    for &(call_name, need, _) in CALLS {
        let t = tally[call_name];
        if matches!(need, Need::Verbs(..)) {
            assert!(
                t.allowed > 0 && t.denied > 0,
                "{call_name} was never {}",
                if t.allowed == 0 { "allowed" } else { "denied" }
            );
        }
    }
    cluster.stop().await;
}
