//! Label selectors (`node_labels`, `app_labels`, `db_labels`, ...) against resource labels.
//!
//! Teleport's rules: a selector `{'*': '*'}` matches every resource, unlabelled ones
//! too; otherwise every selector key must be present on the resource and the resource's
//! value must match one of the selector's values. A value `*` matches anything, a value
//! containing `*` is a glob, a value of the form `^...$` is a regular expression. An
//! empty selector matches nothing.

use std::collections::BTreeMap;

use regex::Regex;

/// Why a selector value could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LabelError {
    /// The selector value.
    pub value: String,
    /// Why it is unusable.
    pub reason: String,
}

impl std::fmt::Display for LabelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "label selector value {:?}: {}", self.value, self.reason)
    }
}

impl std::error::Error for LabelError {}

/// Whether one selector value matches one resource value.
pub fn value_matches(pattern: &str, value: &str) -> Result<bool, LabelError> {
    if pattern == "*" {
        return Ok(true);
    }
    if pattern.starts_with('^') && pattern.ends_with('$') {
        let re = Regex::new(pattern).map_err(|e| LabelError {
            value: pattern.to_string(),
            reason: e.to_string(),
        })?;
        return Ok(re.is_match(value));
    }
    if pattern.contains('*') {
        return Ok(glob_matches(pattern, value));
    }
    Ok(pattern == value)
}

/// `*` matches any run of characters (including none); everything else is literal.
fn glob_matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    // `split` on a pattern containing '*' yields at least two parts.
    let (first, rest) = (parts[0], &parts[1..]);
    let Some(mut remaining) = value.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = match rest.split_last() {
        Some(x) => x,
        None => return remaining.is_empty(),
    };
    for part in middle {
        match remaining.find(part) {
            Some(i) => remaining = &remaining[i + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

/// Whether `selector` (label key → allowed values) matches a resource's `labels`.
///
/// ```
/// use std::collections::BTreeMap;
/// use tp_auth::rbac::labels::selector_matches;
///
/// let sel: BTreeMap<String, Vec<String>> = [("env".to_string(), vec!["prod".to_string(), "stag*".to_string()])].into();
/// let labels: BTreeMap<String, String> = [("env".to_string(), "staging".to_string())].into();
/// assert!(selector_matches(&sel, &labels).unwrap());
/// ```
pub fn selector_matches(
    selector: &BTreeMap<String, Vec<String>>,
    labels: &BTreeMap<String, String>,
) -> Result<bool, LabelError> {
    if selector.is_empty() {
        return Ok(false);
    }
    if selector
        .get("*")
        .is_some_and(|v| v.iter().any(|x| x == "*"))
    {
        return Ok(true);
    }
    for (key, patterns) in selector {
        let Some(value) = labels.get(key) else {
            return Ok(false);
        };
        let mut any = false;
        for p in patterns {
            if value_matches(p, value)? {
                any = true;
                break;
            }
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sel(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn teleport_label_rules() {
        let none = labels(&[]);
        let prod = labels(&[("env", "prod"), ("app", "payments-api")]);
        assert!(
            !selector_matches(&sel(&[]), &prod).unwrap(),
            "empty matches nothing"
        );
        assert!(
            selector_matches(&sel(&[("*", &["*"])]), &none).unwrap(),
            "wildcard matches unlabelled"
        );
        assert!(selector_matches(&sel(&[("env", &["prod"])]), &prod).unwrap());
        assert!(!selector_matches(&sel(&[("env", &["dev"])]), &prod).unwrap());
        assert!(
            selector_matches(&sel(&[("env", &["dev", "prod"])]), &prod).unwrap(),
            "OR over values"
        );
        assert!(
            !selector_matches(&sel(&[("env", &["prod"]), ("tier", &["*"])]), &prod).unwrap(),
            "AND over keys"
        );
        assert!(
            selector_matches(&sel(&[("app", &["payments-*"])]), &prod).unwrap(),
            "glob"
        );
        assert!(
            selector_matches(&sel(&[("app", &["^pay.*-api$"])]), &prod).unwrap(),
            "regex"
        );
        assert!(
            !selector_matches(&sel(&[("app", &["^pay$"])]), &prod).unwrap(),
            "anchored regex"
        );
        assert!(selector_matches(&sel(&[("env", &["*"])]), &prod).unwrap());
        assert!(
            !selector_matches(&sel(&[("env", &["*"])]), &none).unwrap(),
            "key must exist"
        );
    }

    #[test]
    fn bad_regex_is_an_error() {
        let e = selector_matches(&sel(&[("env", &["^(prod$"])]), &labels(&[("env", "prod")]))
            .unwrap_err();
        assert_eq!(e.value, "^(prod$");
    }

    #[test]
    fn globs() {
        assert!(glob_matches("a*", "a"));
        assert!(glob_matches("*b", "ab"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b", "ba"));
        assert!(
            !glob_matches("ab*ab", "ab"),
            "prefix and suffix may not overlap"
        );
        assert!(glob_matches("**", ""));
    }

    proptest! {
        #[test]
        fn literal_patterns_match_only_themselves(p in "[a-z0-9-]{0,8}", v in "[a-z0-9-]{0,8}") {
            prop_assert_eq!(value_matches(&p, &v).unwrap(), p == v);
        }

        #[test]
        fn a_glob_matches_what_it_was_built_from(prefix in "[a-z]{0,4}", mid in "[a-z]{0,4}", suffix in "[a-z]{0,4}") {
            let value = format!("{prefix}{mid}{suffix}");
            let pattern = format!("{prefix}*{suffix}");
            prop_assert!(value_matches(&pattern, &value).unwrap());
        }

        #[test]
        fn wildcard_selector_matches_everything(ls in proptest::collection::btree_map("[a-z]{1,4}", "[a-z]{0,4}", 0..4)) {
            prop_assert!(selector_matches(&sel(&[("*", &["*"])]), &ls).unwrap());
        }
    }

    /// The spec's selector rule (wire-api §4.5), written independently: an empty selector
    /// matches nothing, `'*': ['*']` everything; otherwise every key must be present with
    /// a value matching one of its patterns (`*` anything, `p*` a prefix, else equality).
    fn oracle(selector: &BTreeMap<String, Vec<String>>, labels: &BTreeMap<String, String>) -> bool {
        if selector.is_empty() {
            return false;
        }
        if selector
            .get("*")
            .is_some_and(|v| v.iter().any(|x| x == "*"))
        {
            return true;
        }
        selector.iter().all(|(k, pats)| {
            labels.get(k).is_some_and(|v| {
                pats.iter().any(|p| match p.strip_suffix('*') {
                    Some(prefix) => v.starts_with(prefix),
                    None => p == v,
                })
            })
        })
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ab]{0,2}",
            Just("*".to_string()),
            "[ab]{0,2}".prop_map(|p| format!("{p}*")),
        ]
    }

    proptest! {
        #[test]
        fn selectors_follow_the_spec(
            selector in proptest::collection::btree_map("[xy*]", proptest::collection::vec(pattern(), 1..3), 0..3),
            ls in proptest::collection::btree_map("[xy]", "[ab]{0,2}", 0..3),
        ) {
            // `*` as a key is only valid as `'*': ['*']` (a BadParameter otherwise).
            let valid = selector.get("*").is_none_or(|v| v == &["*"]);
            prop_assume!(valid);
            prop_assert_eq!(selector_matches(&selector, &ls).unwrap(), oracle(&selector, &ls));
        }
    }
}
