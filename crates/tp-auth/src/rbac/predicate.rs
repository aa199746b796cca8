//! The `where` predicate language of role rules.
//!
//! Teleport evaluates a rule's `where` clause with a small expression language:
//! `&&`, `||`, `!`, parentheses, the functions `equals(a, b)` and `contains(list, item)`,
//! string literals, `true`/`false`, and identifiers resolved from the request context
//! (`user.metadata.name`, `user.spec.roles`, `user.spec.traits["team"]`,
//! `resource.metadata.labels["env"]`, ...).
//!
//! Parsing is separate from evaluation so a role's clauses can be checked when the role
//! is written ([`parse`]) and evaluated per request ([`Expr::eval`]).

use std::fmt;

/// A value an identifier or literal evaluates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A list of strings (roles, traits, participants).
    List(Vec<String>),
    /// A boolean.
    Bool(bool),
}

/// Resolves identifiers such as `user.spec.traits["team"]` for evaluation.
pub trait Context {
    /// The value at `path` (`["user", "spec", "traits", "team"]`), or `None` when the
    /// context has no such field.
    fn resolve(&self, path: &[String]) -> Option<Value>;
}

/// Why a predicate did not parse or evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PredicateError {
    /// What went wrong, naming the token or identifier.
    pub message: String,
}

impl fmt::Display for PredicateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PredicateError {}

fn err<T>(message: impl Into<String>) -> Result<T, PredicateError> {
    Err(PredicateError {
        message: message.into(),
    })
}

/// A parsed predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `a && b`.
    And(Box<Self>, Box<Self>),
    /// `a || b`.
    Or(Box<Self>, Box<Self>),
    /// `!a`.
    Not(Box<Self>),
    /// `equals(a, b)`: both sides are equal strings (or equal lists).
    Equals(Box<Self>, Box<Self>),
    /// `contains(list, item)`: the list holds the item.
    Contains(Box<Self>, Box<Self>),
    /// A string literal.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
    /// An identifier path, e.g. `user.spec.traits["team"]` as
    /// `["user", "spec", "traits", "team"]`.
    Ident(Vec<String>),
}

/// The most nesting a predicate may have; deeper input is refused rather than risking
/// the stack.
const MAX_DEPTH: usize = 64;

/// Parses a predicate.
///
/// ```
/// use tp_auth::rbac::predicate::{parse, Expr};
/// let e = parse(r#"contains(session.participants, user.metadata.name) && !equals(user.metadata.name, "root")"#).unwrap();
/// assert!(matches!(e, Expr::And(..)));
/// assert!(parse("equals(user.metadata.name").is_err());
/// ```
pub fn parse(input: &str) -> Result<Expr, PredicateError> {
    let tokens = lex(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos != p.tokens.len() {
        return err(format!(
            "unexpected {} in predicate {input:?}",
            p.tokens[p.pos]
        ));
    }
    Ok(e)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    And,
    Or,
    Not,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ident(s) => write!(f, "identifier {s:?}"),
            Self::Str(s) => write!(f, "string {s:?}"),
            Self::LParen => f.write_str("'('"),
            Self::RParen => f.write_str("')'"),
            Self::LBracket => f.write_str("'['"),
            Self::RBracket => f.write_str("']'"),
            Self::Comma => f.write_str("','"),
            Self::Dot => f.write_str("'.'"),
            Self::And => f.write_str("'&&'"),
            Self::Or => f.write_str("'||'"),
            Self::Not => f.write_str("'!'"),
        }
    }
}

fn lex(input: &str) -> Result<Vec<Tok>, PredicateError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '(' => out.push(Tok::LParen),
            ')' => out.push(Tok::RParen),
            '[' => out.push(Tok::LBracket),
            ']' => out.push(Tok::RBracket),
            ',' => out.push(Tok::Comma),
            '.' => out.push(Tok::Dot),
            '!' => out.push(Tok::Not),
            '&' | '|' => {
                if chars.next_if(|(_, n)| *n == c).is_none() {
                    return err(format!("expected '{c}{c}' at offset {i}"));
                }
                out.push(if c == '&' { Tok::And } else { Tok::Or });
            }
            '"' | '\'' | '`' => {
                let quote = c;
                let mut s = String::new();
                let mut closed = false;
                while let Some((_, n)) = chars.next() {
                    if n == quote {
                        closed = true;
                        break;
                    }
                    if n == '\\' && quote != '`' {
                        match chars.next() {
                            Some((_, e)) => s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            }),
                            None => break,
                        }
                    } else {
                        s.push(n);
                    }
                }
                if !closed {
                    return err(format!("unterminated string starting at offset {i}"));
                }
                out.push(Tok::Str(s));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut s = String::from(c);
                while let Some((_, n)) = chars.next_if(|(_, n)| n.is_alphanumeric() || *n == '_') {
                    s.push(n);
                }
                out.push(Tok::Ident(s));
            }
            other => return err(format!("unexpected character {other:?} at offset {i}")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn expect(&mut self, want: &Tok) -> Result<(), PredicateError> {
        match self.next() {
            Some(t) if &t == want => Ok(()),
            Some(t) => err(format!("expected {want}, found {t}")),
            None => err(format!("expected {want}, found the end of the predicate")),
        }
    }

    fn enter(&mut self) -> Result<(), PredicateError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("predicate nests too deeply");
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, PredicateError> {
        self.enter()?;
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, PredicateError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, PredicateError> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            self.enter()?;
            let e = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, PredicateError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Str(s)) => Ok(Expr::Str(s)),
            Some(Tok::Ident(name)) => {
                if self.peek() == Some(&Tok::LParen) {
                    self.pos += 1;
                    let a = self.or()?;
                    self.expect(&Tok::Comma)?;
                    let b = self.or()?;
                    self.expect(&Tok::RParen)?;
                    return match name.as_str() {
                        "equals" => Ok(Expr::Equals(Box::new(a), Box::new(b))),
                        "contains" => Ok(Expr::Contains(Box::new(a), Box::new(b))),
                        other => err(format!(
                            "unknown function {other:?} (expected equals or contains)"
                        )),
                    };
                }
                match name.as_str() {
                    "true" => return Ok(Expr::Bool(true)),
                    "false" => return Ok(Expr::Bool(false)),
                    _ => {}
                }
                let mut path = vec![name];
                loop {
                    match self.peek() {
                        Some(Tok::Dot) => {
                            self.pos += 1;
                            match self.next() {
                                Some(Tok::Ident(s)) => path.push(s),
                                Some(t) => {
                                    return err(format!(
                                        "expected a field name after '.', found {t}"
                                    ));
                                }
                                None => return err("expected a field name after '.'"),
                            }
                        }
                        Some(Tok::LBracket) => {
                            self.pos += 1;
                            match self.next() {
                                Some(Tok::Str(s)) => path.push(s),
                                Some(t) => {
                                    return err(format!(
                                        "expected a quoted key in [...], found {t}"
                                    ));
                                }
                                None => return err("expected a quoted key in [...]"),
                            }
                            self.expect(&Tok::RBracket)?;
                        }
                        _ => break,
                    }
                }
                Ok(Expr::Ident(path))
            }
            Some(t) => err(format!("unexpected {t}")),
            None => err("unexpected end of the predicate"),
        }
    }
}

impl Expr {
    /// Evaluates the predicate to a boolean in `ctx`.
    ///
    /// An identifier the context does not know, or a value of the wrong type for its
    /// place, is an error: callers decide what an error means (for a deny rule it
    /// denies, for an allow rule it does not allow).
    pub fn eval(&self, ctx: &dyn Context) -> Result<bool, PredicateError> {
        match self.value(ctx)? {
            Value::Bool(b) => Ok(b),
            other => err(format!("predicate is not a boolean: {other:?}")),
        }
    }

    fn value(&self, ctx: &dyn Context) -> Result<Value, PredicateError> {
        Ok(match self {
            Self::And(a, b) => Value::Bool(a.eval(ctx)? && b.eval(ctx)?),
            Self::Or(a, b) => Value::Bool(a.eval(ctx)? || b.eval(ctx)?),
            Self::Not(a) => Value::Bool(!a.eval(ctx)?),
            Self::Equals(a, b) => Value::Bool(a.value(ctx)? == b.value(ctx)?),
            Self::Contains(list, item) => {
                let item = match item.value(ctx)? {
                    Value::Str(s) => s,
                    other => {
                        return err(format!(
                            "contains: the item must be a string, got {other:?}"
                        ));
                    }
                };
                match list.value(ctx)? {
                    Value::List(l) => Value::Bool(l.contains(&item)),
                    Value::Str(s) => Value::Bool(s == item),
                    Value::Bool(_) => return err("contains: the first argument must be a list"),
                }
            }
            Self::Str(s) => Value::Str(s.clone()),
            Self::Bool(b) => Value::Bool(*b),
            Self::Ident(path) => match ctx.resolve(path) {
                Some(v) => v,
                None => return err(format!("unknown identifier {:?}", path.join("."))),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Ctx(BTreeMap<String, Value>);

    impl Context for Ctx {
        fn resolve(&self, path: &[String]) -> Option<Value> {
            self.0.get(&path.join(".")).cloned()
        }
    }

    fn ctx() -> Ctx {
        let mut m = BTreeMap::new();
        m.insert("user.metadata.name".into(), Value::Str("alice".into()));
        m.insert(
            "user.spec.roles".into(),
            Value::List(vec!["access".into(), "dev".into()]),
        );
        m.insert(
            "user.spec.traits.team".into(),
            Value::List(vec!["payments".into()]),
        );
        m.insert("resource.metadata.name".into(), Value::Str("alice".into()));
        m.insert(
            "session.participants".into(),
            Value::List(vec!["bob".into(), "alice".into()]),
        );
        Ctx(m)
    }

    fn eval(s: &str) -> Result<bool, PredicateError> {
        parse(s)?.eval(&ctx())
    }

    #[test]
    fn evaluates_teleport_examples() {
        assert_eq!(
            eval("equals(user.metadata.name, resource.metadata.name)"),
            Ok(true)
        );
        assert_eq!(
            eval("contains(session.participants, user.metadata.name)"),
            Ok(true)
        );
        assert_eq!(
            eval(r#"contains(user.spec.traits["team"], "payments")"#),
            Ok(true)
        );
        assert_eq!(eval(r#"contains(user.spec.roles, "admin")"#), Ok(false));
        assert_eq!(
            eval(r#"!equals(user.metadata.name, "root") && true"#),
            Ok(true)
        );
        assert_eq!(
            eval(r#"false || (equals("a", "b") || contains(user.spec.roles, "dev"))"#),
            Ok(true)
        );
    }

    #[test]
    fn unknown_identifier_is_an_error() {
        let e = eval("equals(user.spec.nope, \"x\")").unwrap_err();
        assert!(e.message.contains("user.spec.nope"), "{e}");
    }

    #[test]
    fn syntax_errors_name_the_problem() {
        for (input, want) in [
            ("equals(a.b", "expected ','"),
            ("equals(a, b", "expected ')'"),
            ("a & b", "'&&'"),
            ("frobnicate(a, b)", "unknown function"),
            ("\"open", "unterminated"),
            ("a b", "unexpected identifier"),
            ("user.spec.traits[team]", "quoted key"),
        ] {
            let e = parse(input).unwrap_err();
            assert!(e.message.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).is_err());
        let nots = format!("{}true", "!".repeat(10_000));
        assert!(parse(&nots).is_err());
    }
}
