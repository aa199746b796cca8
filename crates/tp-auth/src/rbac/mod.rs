//! Teleport's role-based access control for the Auth API.
//!
//! A caller's [`RoleSet`] is the roles its certificate names plus Teleport's implicit
//! role ([`presets::implicit_role`]). [`RoleSet::check`] decides whether the set allows
//! verbs on a resource kind, with Teleport's semantics:
//!
//! 1. **Deny first.** Any role's deny rule that matches (kind or `*`, verb or `*`, and a
//!    `where` clause that holds — or fails to evaluate) denies, whatever allows it.
//! 2. **Then allow.** Any role's allow rule that matches allows; rules naming the kind
//!    are tried before `*` rules. A `where` clause that fails to evaluate does not allow.
//! 3. Otherwise the call is denied.
//!
//! A check for several verbs needs every one of them. `readnosecrets` is satisfied by a
//! rule that grants `read`. Rules apply only in roles whose namespaces include `default`
//! (or `*`), which every defaulted role does.

pub mod labels;
pub mod predicate;
pub mod presets;
pub mod traits;

use std::collections::BTreeMap;
use std::fmt;

use tp_proto::types::{RoleV6, Rule};

use self::predicate::{Context, Value};

/// `list`: enumerate resources of a kind.
pub const VERB_LIST: &str = "list";
/// `create`.
pub const VERB_CREATE: &str = "create";
/// `read`, including secrets.
pub const VERB_READ: &str = "read";
/// `readnosecrets`: read with secrets stripped.
pub const VERB_READ_NO_SECRETS: &str = "readnosecrets";
/// `update`.
pub const VERB_UPDATE: &str = "update";
/// `delete`.
pub const VERB_DELETE: &str = "delete";
/// `rotate` (certificate authorities).
pub const VERB_ROTATE: &str = "rotate";
/// `*`: any verb, or any resource kind.
pub const WILDCARD: &str = "*";

/// A denial, worded as Teleport words it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessDenied {
    /// The verb that was refused.
    pub verb: String,
    /// The resource kind.
    pub kind: String,
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "access denied to perform action {:?} on {:?}",
            self.verb, self.kind
        )
    }
}

impl std::error::Error for AccessDenied {}

/// Whether `rule` grants `verb` (exactly, by `*`, or `read` for `readnosecrets`).
pub fn rule_has_verb(rule: &Rule, verb: &str) -> bool {
    rule.verbs
        .iter()
        .any(|v| v == WILDCARD || v == verb || (verb == VERB_READ_NO_SECRETS && v == VERB_READ))
}

/// Who is asking and about what: the identifiers a `where` clause can name.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccessContext {
    /// `user.metadata.name`.
    pub user_name: String,
    /// `user.spec.roles`.
    pub user_roles: Vec<String>,
    /// `user.spec.traits["..."]`.
    pub user_traits: BTreeMap<String, Vec<String>>,
    /// `resource.metadata.name`, when the call is about one resource.
    pub resource_name: Option<String>,
    /// `resource.metadata.labels["..."]`.
    pub resource_labels: BTreeMap<String, String>,
}

impl AccessContext {
    /// A context for a user with roles and traits and no particular resource.
    pub fn for_user(
        name: impl Into<String>,
        roles: Vec<String>,
        traits: BTreeMap<String, Vec<String>>,
    ) -> Self {
        Self {
            user_name: name.into(),
            user_roles: roles,
            user_traits: traits,
            ..Self::default()
        }
    }

    /// The same context about the resource `name` with `labels`.
    pub fn with_resource(
        mut self,
        name: impl Into<String>,
        labels: BTreeMap<String, String>,
    ) -> Self {
        self.resource_name = Some(name.into());
        self.resource_labels = labels;
        self
    }
}

impl Context for AccessContext {
    fn resolve(&self, path: &[String]) -> Option<Value> {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match p.as_slice() {
            ["user", "metadata", "name"] => Some(Value::Str(self.user_name.clone())),
            ["user", "spec", "roles"] => Some(Value::List(self.user_roles.clone())),
            ["user", "spec", "traits", key] => Some(Value::List(
                self.user_traits.get(*key).cloned().unwrap_or_default(),
            )),
            ["resource", "metadata", "name"] => self.resource_name.clone().map(Value::Str),
            ["resource", "metadata", "labels", key] => self
                .resource_name
                .as_ref()
                .map(|_| Value::Str(self.resource_labels.get(*key).cloned().unwrap_or_default())),
            _ => None,
        }
    }
}

/// The roles of one caller, plus Teleport's implicit role. Cloning shares the roles
/// (the built-in sets are cloned for every call of their identities), and a set can be
/// built from roles shared with a cache ([`RoleSet::shared`]).
#[derive(Debug, Clone)]
pub struct RoleSet {
    roles: std::sync::Arc<[std::sync::Arc<RoleV6>]>,
}

/// Which half of a role a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Allow,
    Deny,
}

/// The role every caller holds besides its own, built once (sets refer to it rather
/// than copy it: its rules are many, and a set is built per call).
static IMPLICIT: std::sync::LazyLock<RoleV6> = std::sync::LazyLock::new(presets::implicit_role);

impl RoleSet {
    /// A role set of `roles` and the implicit role every caller has.
    pub fn new(roles: Vec<RoleV6>) -> Self {
        Self::shared(roles.into_iter().map(std::sync::Arc::new).collect())
    }

    /// A role set of `roles`, shared rather than copied (the Auth server keeps decoded
    /// roles by revision), and the implicit role.
    pub fn shared(roles: Vec<std::sync::Arc<RoleV6>>) -> Self {
        Self {
            roles: roles.into(),
        }
    }

    /// The roles in the set, the implicit role last.
    pub fn roles(&self) -> impl Iterator<Item = &RoleV6> {
        self.roles
            .iter()
            .map(|r| &**r)
            .chain(std::iter::once(&*IMPLICIT))
    }

    /// The smallest `max_session_ttl` of the caller's own roles (not the implicit one), in
    /// nanoseconds: the cap on a certificate's lifetime. `None` for an empty set.
    pub fn max_session_ttl(&self) -> Option<i64> {
        self.roles
            .iter()
            .filter_map(|r| r.spec.as_ref()?.options.as_ref().map(|o| o.max_session_ttl))
            .filter(|ttl| *ttl > 0)
            .min()
    }

    /// Allows the call only if every verb in `verbs` is allowed on `kind`.
    ///
    /// ```
    /// use tp_auth::rbac::{AccessContext, RoleSet};
    /// use tp_proto::resource::{parse, Resource};
    ///
    /// let yaml = "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  allow:\n    rules: [{resources: [role], verbs: [read]}]\n";
    /// let Resource::Role(role) = parse(yaml, "api-role.yaml").unwrap().remove(0) else { unreachable!() };
    /// let set = RoleSet::new(vec![role]);
    /// let ctx = AccessContext::for_user("api-user", vec!["api-role".into()], Default::default());
    /// assert!(set.check(&ctx, "role", &["read"]).is_ok());
    /// let denied = set.check(&ctx, "user", &["list", "read"]).unwrap_err();
    /// assert_eq!(denied.to_string(), r#"access denied to perform action "list" on "user""#);
    /// ```
    pub fn check(
        &self,
        ctx: &AccessContext,
        kind: &str,
        verbs: &[&str],
    ) -> Result<(), AccessDenied> {
        for verb in verbs {
            self.check_one(ctx, kind, verb)?;
        }
        Ok(())
    }

    fn check_one(&self, ctx: &AccessContext, kind: &str, verb: &str) -> Result<(), AccessDenied> {
        let denied = || AccessDenied {
            verb: verb.to_string(),
            kind: kind.to_string(),
        };
        for role in self.roles() {
            if rules_match(role, Side::Deny, ctx, kind, verb) {
                return Err(denied());
            }
        }
        for role in self.roles() {
            if rules_match(role, Side::Allow, ctx, kind, verb) {
                return Ok(());
            }
        }
        Err(denied())
    }
}

fn namespaces_include_default(ns: &[String]) -> bool {
    ns.is_empty() || ns.iter().any(|n| n == "default" || n == WILDCARD)
}

fn rules_match(role: &RoleV6, side: Side, ctx: &AccessContext, kind: &str, verb: &str) -> bool {
    let Some(spec) = role.spec.as_ref() else {
        return false;
    };
    let cond = match side {
        Side::Allow => spec.allow.as_ref(),
        Side::Deny => spec.deny.as_ref(),
    };
    let Some(cond) = cond else {
        return false;
    };
    if !namespaces_include_default(&cond.namespaces) {
        return false;
    }
    // Rules naming the kind first, then wildcard rules.
    let exact = cond
        .rules
        .iter()
        .filter(|r| r.resources.iter().any(|x| x == kind));
    let wild = cond
        .rules
        .iter()
        .filter(|r| r.resources.iter().any(|x| x == WILDCARD));
    exact.chain(wild).any(|rule| {
        if !rule_has_verb(rule, verb) {
            return false;
        }
        if rule.r#where.is_empty() {
            return true;
        }
        match predicate::parse(&rule.r#where).and_then(|e| e.eval(ctx)) {
            Ok(b) => b,
            // Fail safe: a clause that cannot be evaluated denies in a deny rule and does
            // not allow in an allow rule.
            Err(_) => side == Side::Deny,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tp_proto::resource::{Resource, parse};

    fn role(yaml_allow_deny: &str) -> RoleV6 {
        let doc =
            format!("kind: role\nversion: v7\nmetadata: {{name: r}}\nspec:\n{yaml_allow_deny}\n");
        match parse(&doc, "t").unwrap_or_else(|e| panic!("{e}")).remove(0) {
            Resource::Role(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn alice() -> AccessContext {
        AccessContext::for_user("alice", vec!["r".into()], Default::default())
    }

    #[test]
    fn deny_beats_allow_in_any_order() {
        let allow = role("  allow:\n    rules: [{resources: ['*'], verbs: ['*']}]");
        let deny = role("  deny:\n    rules: [{resources: [role], verbs: [delete]}]");
        for set in [
            RoleSet::new(vec![allow.clone(), deny.clone()]),
            RoleSet::new(vec![deny, allow]),
        ] {
            assert!(set.check(&alice(), "role", &["read", "update"]).is_ok());
            assert!(set.check(&alice(), "role", &["delete"]).is_err());
            assert!(set.check(&alice(), "user", &["delete"]).is_ok());
        }
    }

    #[test]
    fn every_verb_must_be_allowed() {
        let set = RoleSet::new(vec![role(
            "  allow:\n    rules: [{resources: [user], verbs: [read]}]",
        )]);
        assert!(set.check(&alice(), "user", &["read"]).is_ok());
        let e = set.check(&alice(), "user", &["list", "read"]).unwrap_err();
        assert_eq!(e.verb, "list");
    }

    #[test]
    fn read_satisfies_readnosecrets_but_not_the_reverse() {
        let reader = RoleSet::new(vec![role(
            "  allow:\n    rules: [{resources: [token], verbs: [read]}]",
        )]);
        assert!(reader.check(&alice(), "token", &["readnosecrets"]).is_ok());
        let nosecrets = RoleSet::new(vec![role(
            "  allow:\n    rules: [{resources: [token], verbs: [readnosecrets]}]",
        )]);
        assert!(nosecrets.check(&alice(), "token", &["read"]).is_err());
    }

    #[test]
    fn where_clauses() {
        let set = RoleSet::new(vec![role(
            "  allow:\n    rules: [{resources: [user], verbs: [read], where: 'equals(user.metadata.name, resource.metadata.name)'}]",
        )]);
        let own = alice().with_resource("alice", Default::default());
        let other = alice().with_resource("bob", Default::default());
        assert!(set.check(&own, "user", &["read"]).is_ok());
        assert!(set.check(&other, "user", &["read"]).is_err());
        // No resource in context: the clause cannot be evaluated, so it does not allow.
        assert!(set.check(&alice(), "user", &["read"]).is_err());
    }

    #[test]
    fn unevaluable_deny_clause_denies() {
        let set = RoleSet::new(vec![
            role("  allow:\n    rules: [{resources: ['*'], verbs: ['*']}]"),
            role(
                "  deny:\n    rules: [{resources: [role], verbs: [read], where: 'equals(resource.metadata.name, \"admin\")'}]",
            ),
        ]);
        // Without a resource the deny clause cannot be evaluated: fail safe, deny.
        assert!(set.check(&alice(), "role", &["read"]).is_err());
        assert!(
            set.check(
                &alice().with_resource("dev", Default::default()),
                "role",
                &["read"]
            )
            .is_ok()
        );
        assert!(
            set.check(
                &alice().with_resource("admin", Default::default()),
                "role",
                &["read"]
            )
            .is_err()
        );
    }

    #[test]
    fn implicit_role_grants_cluster_name_and_ca_without_secrets() {
        let set = RoleSet::new(vec![]);
        assert!(set.check(&alice(), "cluster_name", &["read"]).is_ok());
        assert!(
            set.check(&alice(), "cert_authority", &["list", "readnosecrets"])
                .is_ok()
        );
        assert!(set.check(&alice(), "cert_authority", &["read"]).is_err());
        assert!(set.check(&alice(), "role", &["read"]).is_err());
    }

    #[test]
    fn max_session_ttl_is_the_smallest_of_the_callers_roles() {
        let mut a = role("  allow: {}");
        let mut b = role("  allow: {}");
        a.spec
            .as_mut()
            .unwrap()
            .options
            .as_mut()
            .unwrap()
            .max_session_ttl = 3_600_000_000_000;
        b.spec
            .as_mut()
            .unwrap()
            .options
            .as_mut()
            .unwrap()
            .max_session_ttl = 7_200_000_000_000;
        assert_eq!(
            RoleSet::new(vec![a, b]).max_session_ttl(),
            Some(3_600_000_000_000)
        );
        assert_eq!(RoleSet::new(vec![]).max_session_ttl(), None);
    }

    mod model {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use tp_proto::types::{RoleConditions, RoleSpecV6};

        const KINDS: &[&str] = &["role", "user", "token", "*"];
        const VERBS: &[&str] = &["list", "read", "readnosecrets", "create", "*"];

        fn rules() -> impl Strategy<Value = Vec<(Vec<&'static str>, Vec<&'static str>)>> {
            vec(
                (
                    vec(proptest::sample::select(KINDS), 1..3),
                    vec(proptest::sample::select(VERBS), 1..3),
                ),
                0..3,
            )
        }

        fn to_rules(r: &[(Vec<&str>, Vec<&str>)]) -> Vec<Rule> {
            r.iter()
                .map(|(k, v)| Rule {
                    resources: k.iter().map(|s| s.to_string()).collect(),
                    verbs: v.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect()
        }

        /// The specification, written independently of the implementation.
        fn grants(rules: &[(Vec<&str>, Vec<&str>)], kind: &str, verb: &str) -> bool {
            rules.iter().any(|(ks, vs)| {
                (ks.contains(&kind) || ks.contains(&"*"))
                    && (vs.contains(&verb)
                        || vs.contains(&"*")
                        || (verb == "readnosecrets" && vs.contains(&"read")))
            })
        }

        proptest! {
            #[test]
            fn decisions_follow_deny_then_allow(
                roles in vec((rules(), rules()), 0..4),
                kind in proptest::sample::select(&KINDS[..3]),
                verb in proptest::sample::select(&VERBS[..4]),
            ) {
                let set = RoleSet::new(roles.iter().map(|(allow, deny)| RoleV6 {
                    kind: "role".into(),
                    version: "v7".into(),
                    spec: Some(RoleSpecV6 {
                        options: None,
                        allow: Some(RoleConditions { rules: to_rules(allow), ..Default::default() }),
                        deny: Some(RoleConditions { rules: to_rules(deny), ..Default::default() }),
                    }),
                    ..Default::default()
                }).collect());
                let denied = roles.iter().any(|(_, deny)| grants(deny, kind, verb));
                let implicit = kind == "cert_authority";
                let allowed = roles.iter().any(|(allow, _)| grants(allow, kind, verb)) || implicit;
                let got = set.check(&AccessContext::default(), kind, &[verb]).is_ok();
                prop_assert_eq!(got, !denied && allowed);
            }
        }
    }
}
