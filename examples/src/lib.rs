//! Runnable examples of the tp SDK; each example is a `[[bin]]` of this crate:
//!
//! | binary | shows |
//! |---|---|
//! | `get-role-profile` | a `tsh` profile ([`tp_creds::Profile`]) |
//! | `get-role-identity` | an identity file ([`tp_creds::IdentityFile`]) |
//! | `get-role-keypair` | certificate, key and CA files ([`tp_creds::KeyPair`]) |
//! | `get-role-tls` | a rustls configuration the program builds ([`tp_creds::Tls`]) |
//! | `watch-roles` | a watcher printing role events ([`tp_client::Client::watch_events`]) |
//!
//! Each connects with `tp_client::Config::credentials`, reads a role (`api-role` unless
//! `--role` says otherwise) and prints it as YAML. On bad input each prints one
//! `error:` line and one `hint:` line and exits with status 1.
//!
//! This library is the examples' shared plumbing: argument parsing without a framework,
//! and turning [`tp_client::Error`]s into a message and a hint.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use tp_client::{Client, Config, ErrorKind};
use tp_creds::Credentials;
use tp_proto::resource::{Resource, to_yaml};

/// A failure to report: one line of error, one line of hint.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong.
    pub error: String,
    /// What to do about it.
    pub hint: String,
}

impl Failure {
    /// A failure with `error` and `hint`.
    pub fn new(error: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            hint: hint.into(),
        }
    }

    /// Prints `error: …` and `hint: …` on standard error; exit status 1.
    pub fn report(&self) -> ExitCode {
        eprintln!("error: {}", self.error);
        eprintln!("hint: {}", self.hint);
        ExitCode::from(1)
    }
}

/// Parsed command-line options: `--name value` or `--name=value`.
#[derive(Debug)]
pub struct Args {
    values: BTreeMap<String, String>,
    usage: &'static str,
}

/// What [`Args::parse`] found.
#[derive(Debug)]
pub enum Parsed {
    /// Options to run with.
    Run(Args),
    /// `-h`/`--help`: the usage was printed; exit 0.
    Help,
}

impl Args {
    /// Parses `args` (without the program name) allowing only the options in `known`
    /// (names without `--`); `usage` is printed for `--help` and quoted in hints.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        known: &[&str],
        usage: &'static str,
    ) -> Result<Parsed, Failure> {
        let mut values = BTreeMap::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                println!("usage: {usage}");
                return Ok(Parsed::Help);
            }
            let Some(opt) = arg.strip_prefix("--") else {
                return Err(Failure::new(
                    format!("unexpected argument {arg:?}"),
                    format!("usage: {usage}"),
                ));
            };
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it.next().ok_or_else(|| {
                        Failure::new(format!("--{opt} needs a value"), format!("usage: {usage}"))
                    })?;
                    (opt.to_string(), v)
                }
            };
            if !known.contains(&name.as_str()) {
                return Err(Failure::new(
                    format!("unknown option --{name}"),
                    format!("usage: {usage}"),
                ));
            }
            if value.is_empty() {
                return Err(Failure::new(
                    format!("--{name} is empty"),
                    format!("usage: {usage}"),
                ));
            }
            values.insert(name, value);
        }
        Ok(Parsed::Run(Self { values, usage }))
    }

    /// The value of `--name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of `--name`, or a failure saying it is missing.
    pub fn required(&self, name: &str) -> Result<&str, Failure> {
        self.get(name).ok_or_else(|| {
            Failure::new(
                format!("missing --{name}"),
                format!("usage: {}", self.usage),
            )
        })
    }

    /// The role to read: `--role`, else `api-role` (the seed's role).
    pub fn role(&self) -> &str {
        self.get("role").unwrap_or("api-role")
    }
}

/// A hint for a client error, by kind.
pub fn hint_for(e: &tp_client::Error) -> &'static str {
    match e.kind() {
        ErrorKind::CredentialsExpired => {
            "log in again (tsh login / tpsh login) or issue a new identity (tctl auth sign)"
        }
        ErrorKind::ConnectionProblem => {
            "check --addr: an Auth server (port 3025) or a proxy's web address (3080 or 443), \
             and that the credential belongs to that cluster"
        }
        ErrorKind::AccessDenied => "the credential's roles do not allow this; ask an admin",
        ErrorKind::NotFound => "create it first, e.g. tpctl create -f role.yaml",
        ErrorKind::BadParameter => "check the file paths and the address (host:port)",
        _ => "see the error above",
    }
}

/// Turns a client error into a failure. Errors about the input (a file, an address, an
/// expired certificate) are kept to one line; a connection failure keeps its list of
/// attempts, one per line.
pub fn failure(context: &str, e: &tp_client::Error) -> Failure {
    let text = e.to_string();
    let text = match e.kind() {
        ErrorKind::ConnectionProblem => text,
        _ => text.lines().collect::<Vec<_>>().join(" "),
    };
    Failure::new(format!("{context}: {text}"), hint_for(e))
}

/// Connects with `creds` to `addr` (empty: the credential's own proxy address), 15 s
/// to dial.
pub async fn connect(creds: &dyn Credentials, addr: Option<&str>) -> Result<Client, Failure> {
    let addrs: Vec<&str> = addr.into_iter().collect();
    let config = Config::new()
        .dial_timeout(Duration::from_secs(15))
        .credentials(creds, &addrs)
        .map_err(|e| failure("cannot use the credential", &e))?;
    Client::connect(config)
        .await
        .map_err(|e| failure("cannot connect", &e))
}

/// The seed's flow: connect with `creds`, read role `role`, print it as YAML.
pub async fn get_role_and_print(
    creds: &dyn Credentials,
    addr: Option<&str>,
    role: &str,
) -> Result<(), Failure> {
    let client = connect(creds, addr).await?;
    let role = client
        .get_role(role)
        .await
        .map_err(|e| failure(&format!("cannot read role {role:?}"), &e))?;
    print!("{}", to_yaml(&[Resource::Role(role)]));
    Ok(())
}

/// Runs `main` on a fresh tokio runtime and reports its failure.
pub fn run<F: Future<Output = Result<(), Failure>>>(main: F) -> ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            return Failure::new(format!("cannot start the runtime: {e}"), "out of threads?")
                .report();
        }
    };
    match rt.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed, Failure> {
        Args::parse(
            args.iter().map(|a| (*a).to_string()),
            &["addr", "role"],
            "x --addr A",
        )
    }

    #[test]
    fn options_parse_both_ways_and_bad_ones_fail_in_one_line() {
        let Ok(Parsed::Run(a)) = parse(&["--addr", "h:1", "--role=r"]) else {
            panic!("parses")
        };
        assert_eq!((a.get("addr"), a.role()), (Some("h:1"), "r"));
        for bad in [&["--nope", "x"][..], &["stray"], &["--addr"], &["--addr="]] {
            let f = parse(bad).unwrap_err();
            assert!(
                !f.error.contains('\n') && f.hint.starts_with("usage:"),
                "{f:?}"
            );
        }
        let Ok(Parsed::Run(a)) = parse(&[]) else {
            panic!("parses")
        };
        assert_eq!(a.role(), "api-role");
        assert!(
            a.required("addr")
                .unwrap_err()
                .error
                .contains("missing --addr")
        );
    }
}
