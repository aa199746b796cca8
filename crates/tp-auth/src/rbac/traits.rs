//! Trait templates in role values: `{{internal.logins}}`, `{{external.email}}`,
//! `ubuntu-{{internal.logins}}`, `{{internal["db_names"]}}`.
//!
//! A template expands to one value per trait value (with any literal prefix and suffix
//! kept); a missing trait makes the value disappear. A value without `{{` is itself.

use std::collections::BTreeMap;

/// Expands one role value against a user's traits.
///
/// ```
/// use std::collections::BTreeMap;
/// use tp_auth::rbac::traits::expand;
/// let traits: BTreeMap<String, Vec<String>> = [("logins".to_string(), vec!["alice".to_string(), "ops".to_string()])].into();
/// assert_eq!(expand("{{internal.logins}}", &traits), ["alice", "ops"]);
/// assert_eq!(expand("ubuntu-{{internal.logins}}", &traits), ["ubuntu-alice", "ubuntu-ops"]);
/// assert_eq!(expand("{{internal.missing}}", &traits), Vec::<String>::new());
/// assert_eq!(expand("root", &traits), ["root"]);
/// ```
pub fn expand(value: &str, traits: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let Some(open) = value.find("{{") else {
        return vec![value.to_string()];
    };
    let Some(close) = value[open..].find("}}").map(|c| open + c) else {
        return vec![value.to_string()];
    };
    let (prefix, suffix) = (&value[..open], &value[close + 2..]);
    let inner = value[open + 2..close].trim();
    let name = if let Some(rest) = inner
        .strip_prefix("internal.")
        .or_else(|| inner.strip_prefix("external."))
    {
        rest.to_string()
    } else if let Some(rest) = inner
        .strip_prefix("internal[")
        .or_else(|| inner.strip_prefix("external["))
    {
        rest.trim_end_matches(']')
            .trim_matches(['"', '\''])
            .to_string()
    } else {
        // Functions (email.local, regexp.replace) and unknown namespaces: no values.
        return Vec::new();
    };
    traits
        .get(&name)
        .map(|vals| {
            vals.iter()
                .map(|v| format!("{prefix}{v}{suffix}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Expands every value of a list, keeping the first occurrence of each result.
pub fn expand_all(values: &[String], traits: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        for e in expand(v, traits) {
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let traits: BTreeMap<String, Vec<String>> =
            [("db_names".to_string(), vec!["payments".to_string()])].into();
        assert_eq!(expand(r#"{{internal["db_names"]}}"#, &traits), ["payments"]);
        assert_eq!(expand("{{external.db_names}}", &traits), ["payments"]);
        assert!(expand("{{email.local(external.email)}}", &traits).is_empty());
        assert_eq!(expand("{{unclosed", &traits), ["{{unclosed"]);
        assert_eq!(
            expand_all(
                &[
                    "{{internal.db_names}}".into(),
                    "payments".into(),
                    "x".into()
                ],
                &traits
            ),
            ["payments", "x"]
        );
    }
}
