//! `tpctl`: administers a tp cluster, like Teleport's `tctl`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tp_cli::cluster::connect_with;
use tp_cli::paths::{AdminIdentity, default_data_dir};
use tp_cli::{CliError, report, short_duration};
use tp_client::{Client, ErrorKind, UserTokenType};
use tp_proto::resource::{self, Resource};
use tp_proto::types::{Metadata, UserV2};
use tp_proto::wrappers::{LabelValues, StringValues};
use tp_transport::addr::{PortRule, parse_host_port};

#[derive(Parser)]
#[command(
    name = "tpctl",
    version,
    about = "Administers a tp cluster (like tctl)"
)]
struct Cli {
    /// The data directory of the tpd on this host (its local admin identity is used).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The Auth server (or proxy) to talk to (default: where the local tpd listens).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    auth_server: Option<String>,
    /// An identity file to authenticate with (e.g. from `tpctl auth sign`); needs
    /// --auth-server. Without it, tpctl uses the local tpd's admin identity, else the
    /// current tsh-layout profile ($TELEPORT_HOME or ~/.tsh).
    #[arg(short = 'i', long, global = true, value_name = "FILE")]
    identity: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Yaml,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Creates resources from a YAML or JSON file (`-` reads standard input).
    Create {
        /// Overwrite resources that exist.
        #[arg(short, long)]
        force: bool,
        /// The file.
        file: String,
    },
    /// Prints resources: KIND or KIND/NAME (role, user, token).
    Get {
        /// What to print.
        spec: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "yaml")]
        format: Format,
    },
    /// Deletes one resource: KIND/NAME.
    Rm {
        /// What to delete.
        spec: String,
    },
    /// Manages users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Prints the cluster's name and version.
    Status,
    /// Manages join tokens.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Reads the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Signs credentials for users.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Prints shell completions: bash, zsh, fish, elvish or powershell.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff).
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Creates a join token and prints it.
    Add {
        /// System roles the token lets a host join as, comma-separated (node, proxy, ...).
        #[arg(long = "type", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// How long the token is valid.
        #[arg(long, default_value = "30m")]
        ttl: String,
        /// Use this value instead of a random one.
        #[arg(long)]
        value: Option<String>,
    },
    /// Lists join tokens.
    Ls,
    /// Deletes a join token.
    Rm {
        /// The token.
        token: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Lists audit events, oldest first: every mutating call and certificate issuance.
    Ls {
        /// Only the most recent N events (0 for all).
        #[arg(long, default_value_t = 100, value_name = "N")]
        last: usize,
        /// Output format: text (a table) or json (one object per line).
        #[arg(long, value_enum, default_value = "text")]
        format: AuditFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum AuditFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Prints the cluster's CA public keys and certificates (nothing secret).
    Export {
        /// Only this CA: host, user (SSH, authorized_keys/known_hosts lines), tls-host,
        /// tls-user (PEM certificates).
        #[arg(long = "type", value_parser = ["host", "user", "tls-host", "tls-user"])]
        kind: Option<String>,
    },
    /// Issues certificates for a user and writes them as an identity file (or `tls` /
    /// `openssh` files), like `tctl auth sign`.
    Sign {
        /// The user to sign for.
        #[arg(long)]
        user: String,
        /// Where to write (`-` prints a `file`-format identity to standard output).
        #[arg(long, short = 'o')]
        out: String,
        /// The output format.
        #[arg(long, default_value = "file", value_parser = ["file", "tls", "openssh"])]
        format: String,
        /// How long the certificates are valid (e.g. 12h, 30m).
        #[arg(long, default_value = "12h")]
        ttl: String,
        /// Replace existing files.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Creates a user and prints an invite link.
    Add {
        /// The user name.
        name: String,
        /// Roles, comma-separated (they must exist).
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Allowed logins, comma-separated (the `logins` trait).
        #[arg(long, value_delimiter = ',')]
        logins: Vec<String>,
        /// How long the invite link is valid (e.g. 1h, 30m; at most 48h).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Issues a password-reset link for an existing user.
    Reset {
        /// The user name.
        name: String,
        /// How long the link is valid (e.g. 8h; at most 24h).
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// Lists users.
    Ls,
    /// Deletes users (comma-separated).
    Rm {
        /// The user names.
        names: String,
    },
}

async fn client(cli: &Cli) -> Result<Client, CliError> {
    if let Some(path) = &cli.identity {
        let addr = cli.auth_server.as_deref().ok_or_else(|| {
            CliError::new(
                "--identity needs --auth-server",
                "pass the Auth server or proxy address, e.g. --auth-server=127.0.0.1:3025",
            )
        })?;
        let creds = tp_creds::IdentityFile::from_path(path);
        let config = tp_client::Config::new()
            .dial_timeout(Duration::from_secs(10))
            .credentials(&creds, &[addr])
            .map_err(|e| match e.kind() {
                ErrorKind::CredentialsExpired => {
                    CliError::new(e.to_string(), "issue a new identity with `tpctl auth sign`")
                }
                _ => CliError::new(e.to_string(), "check the identity file"),
            })?;
        return Client::connect(config).await.map_err(|e| {
            CliError::new(
                e.to_string(),
                "check --auth-server; is the cluster running?",
            )
        });
    }
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let id = AdminIdentity::in_dir(&data_dir);
    // No local tpd here (and no --data-dir asking for one): the current tsh-layout
    // profile, as tctl falls back to tsh's, through its proxy.
    if cli.data_dir.is_none() && !id.cert.exists() {
        let profile = tp_creds::Profile::from_env(None);
        if profile.resolve_name().is_ok() {
            let addrs: Vec<&str> = cli.auth_server.as_deref().into_iter().collect();
            let config = tp_client::Config::new()
                .dial_timeout(Duration::from_secs(10))
                .credentials(&profile, &addrs)
                .map_err(|e| match e.kind() {
                    ErrorKind::CredentialsExpired => {
                        CliError::new(e.to_string(), "log in again with `tpsh login`")
                    }
                    _ => CliError::new(e.to_string(), "check the profile (`tpsh status`)"),
                })?;
            return Client::connect(config)
                .await
                .map_err(|e| CliError::new(e.to_string(), "is the profile's proxy reachable?"));
        }
    }
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| {
            CliError::new(
                format!("cannot read the local admin identity {}: {e}", p.display()),
                "run tpctl on the host where `tpd start` runs, or pass --data-dir",
            )
        })
    };
    let (cert, key, ca) = (read(&id.cert)?, read(&id.key)?, read(&id.ca)?);
    let addr = match &cli.auth_server {
        Some(a) => a.clone(),
        None => String::from_utf8_lossy(&read(&id.auth_addr)?)
            .trim()
            .to_string(),
    };
    let addr = parse_host_port(&addr, PortRule::Default(3025))
        .map_err(|e| CliError::new(e.to_string(), "pass --auth-server HOST:PORT"))?;
    use rustls::pki_types::pem::PemObject as _;
    let roots: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(&ca)
        .filter_map(Result::ok)
        .map(|c| c.to_vec())
        .collect();
    connect_with(&addr, &cert, &key, &roots).await
}

/// The Auth server's address as tpctl knows it: `--auth-server`, else the one the local
/// tpd wrote.
fn auth_address(cli: &Cli) -> Option<String> {
    if let Some(a) = &cli.auth_server {
        return Some(a.clone());
    }
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let bound = std::fs::read_to_string(AdminIdentity::in_dir(&data_dir).auth_addr).ok()?;
    advertised(bound.trim())
}

/// The address to tell another host for the one tpd bound: a wildcard bind names no
/// single address, so the host is left for the reader to fill in.
fn advertised(bound: &str) -> Option<String> {
    match bound.parse::<std::net::SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => Some(format!("<this host>:{}", a.port())),
        _ => Some(bound.to_string()).filter(|s| !s.is_empty()),
    }
}

fn api(e: tp_client::Error) -> CliError {
    let hint = match e.kind() {
        ErrorKind::AccessDenied => "the identity in use is not allowed to do this",
        ErrorKind::NotFound => "check the name with `tpctl get`",
        ErrorKind::AlreadyExists => "use `tpctl create -f` to overwrite",
        ErrorKind::ConnectionProblem => "is tpd running?",
        _ => "",
    };
    if hint.is_empty() {
        CliError::plain(e.to_string())
    } else {
        CliError::new(e.to_string(), hint)
    }
}

async fn create(c: &Client, file: &str, force: bool) -> Result<(), CliError> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::plain(format!("reading standard input: {e}")))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::new(format!("cannot read {file}: {e}"), "check the path"))?
    };
    let docs = resource::parse(&text, file)
        .map_err(|e| CliError::new(e.to_string(), "fix the document and run the command again"))?;
    for doc in docs {
        match doc {
            Resource::Role(r) => {
                let name = r
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                let verb = if force {
                    // Like tctl: say "updated" only when the role was there before.
                    let existed = match c.get_role(&name).await {
                        Ok(_) => true,
                        Err(e) if e.kind() == ErrorKind::NotFound => false,
                        Err(e) => return Err(api(e)),
                    };
                    c.upsert_role(r).await.map_err(api)?;
                    if existed { "updated" } else { "created" }
                } else {
                    c.create_role(r).await.map_err(|e| {
                        if e.kind() == ErrorKind::AlreadyExists {
                            CliError::new(
                                format!("role '{name}' already exists"),
                                "use `tpctl create -f` to overwrite",
                            )
                        } else {
                            api(e)
                        }
                    })?;
                    "created"
                };
                tp_cli::outln!("role '{name}' has been {verb}");
            }
            Resource::User(u) => {
                let name = u
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                if force {
                    c.upsert_user(u).await.map_err(api)?;
                } else {
                    c.create_user(u).await.map_err(api)?;
                }
                tp_cli::outln!(
                    "user {name:?} has been {}",
                    if force { "updated" } else { "created" }
                );
            }
            Resource::Token(t) => {
                let name = t
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                if force {
                    c.upsert_token(t).await.map_err(api)?;
                } else {
                    c.create_token(t).await.map_err(api)?;
                }
                tp_cli::outln!(
                    "token {name:?} has been {}",
                    if force { "updated" } else { "created" }
                );
            }
            other => {
                return Err(CliError::new(
                    format!("{} resources cannot be created with tpctl", other.kind()),
                    "create roles, users or tokens",
                ));
            }
        }
    }
    Ok(())
}

async fn get(c: &Client, spec: &str, format: Format) -> Result<(), CliError> {
    let (kind, name) = spec
        .split_once('/')
        .map_or((spec, None), |(k, n)| (k, Some(n)));
    let resources: Vec<Resource> = match (kind, name) {
        ("role" | "roles", Some(n)) => vec![Resource::Role(c.get_role(n).await.map_err(api)?)],
        ("role" | "roles", None) => c
            .get_roles()
            .await
            .map_err(api)?
            .into_iter()
            .map(Resource::Role)
            .collect(),
        ("user" | "users", Some(n)) => {
            vec![Resource::User(c.get_user(n, false).await.map_err(api)?)]
        }
        ("user" | "users", None) => c
            .get_users(false)
            .await
            .map_err(api)?
            .into_iter()
            .map(Resource::User)
            .collect(),
        ("token" | "tokens", Some(n)) => vec![Resource::Token(c.get_token(n).await.map_err(api)?)],
        ("token" | "tokens", None) => c
            .get_tokens()
            .await
            .map_err(api)?
            .into_iter()
            .map(Resource::Token)
            .collect(),
        _ => {
            return Err(CliError::new(
                format!("unknown resource kind {kind:?}"),
                "use role, user or token",
            ));
        }
    };
    match format {
        Format::Yaml => tp_cli::out!("{}", resource::to_yaml(&resources)),
        Format::Json => tp_cli::outln!("{}", resource::to_json(&resources)),
        Format::Text => {
            tp_cli::outln!("{:<24} Kind", "Name");
            for r in &resources {
                tp_cli::outln!("{:<24} {}", r.name(), r.kind());
            }
        }
    }
    Ok(())
}

async fn rm(c: &Client, spec: &str) -> Result<(), CliError> {
    let Some((kind, name)) = spec.split_once('/') else {
        return Err(CliError::new(
            format!("expected KIND/NAME, got {spec:?}"),
            "for example: tpctl rm role/dev",
        ));
    };
    match kind {
        "role" => c.delete_role(name).await.map_err(api)?,
        "user" => c.delete_user(name).await.map_err(api)?,
        "token" => c.delete_token(name).await.map_err(api)?,
        _ => {
            return Err(CliError::new(
                format!("unknown resource kind {kind:?}"),
                "use role, user or token",
            ));
        }
    }
    tp_cli::outln!("{kind} {name:?} has been deleted");
    Ok(())
}

async fn users_add(
    c: &Client,
    name: &str,
    roles: &[String],
    logins: &[String],
    ttl: &str,
) -> Result<(), CliError> {
    let ttl_ns = tp_proto::duration::parse_go(ttl)
        .map_err(|e| CliError::new(e.to_string(), "for example --ttl=1h"))?;
    for r in roles {
        c.get_role(r).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                CliError::new(
                    format!("role {r:?} is not found"),
                    "create it first with `tpctl create`",
                )
            } else {
                api(e)
            }
        })?;
    }
    let traits = LabelValues {
        values: [(
            "logins".to_string(),
            StringValues {
                values: logins.to_vec(),
            },
        )]
        .into(),
    };
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    let mut user = UserV2::new(name, &roles);
    if let Some(spec) = user.spec.as_mut() {
        spec.traits = Some(traits);
    }
    c.create_user(user).await.map_err(|e| {
        if e.kind() == ErrorKind::AlreadyExists {
            CliError::new(
                format!("user {name:?} already exists"),
                "pick another name, or `tpctl users rm` it first",
            )
        } else {
            api(e)
        }
    })?;
    let token = c
        .create_reset_password_token(
            name,
            UserTokenType::Invite,
            Duration::from_nanos(u64::try_from(ttl_ns).unwrap_or(0)),
        )
        .await
        .map_err(api)?;
    let (url, valid_secs) = token_link(&token);
    let host = url
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_default();
    tp_cli::outln!(
        "User {name:?} has been created but requires a password. Share this URL with the user to complete user setup, link is valid for {}:\n{url}\n\nNOTE: Make sure {host} points at a Teleport proxy which users can access.",
        short_duration(valid_secs)
    );
    Ok(())
}

/// An invite or reset token's URL and how long it is valid, in seconds.
fn token_link(token: &tp_proto::types::UserTokenV3) -> (String, i64) {
    let url = token
        .spec
        .as_ref()
        .map(|s| s.url.clone())
        .unwrap_or_default();
    let created = token
        .spec
        .as_ref()
        .and_then(|s| s.created)
        .map_or(0, |t| t.seconds);
    let expires = token
        .metadata
        .as_ref()
        .and_then(|m| m.expires)
        .map_or(0, |t| t.seconds);
    (url, expires - created)
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Completion { shell } => {
            tp_cli::print_completions(<Cli as clap::CommandFactory>::command(), *shell);
            return Ok(());
        }
        Command::Man => return tp_cli::print_man(<Cli as clap::CommandFactory>::command()),
        _ => {}
    }
    let c = client(&cli).await?;
    match &cli.command {
        Command::Create { force, file } => create(&c, file, *force).await,
        Command::Get { spec, format } => get(&c, spec, *format).await,
        Command::Rm { spec } => rm(&c, spec).await,
        Command::Audit {
            command: AuditCommand::Ls { last, format },
        } => audit_ls(&c, *last, *format).await,
        Command::Users { command } => match command {
            UsersCommand::Add {
                name,
                roles,
                logins,
                ttl,
            } => users_add(&c, name, roles, logins, ttl).await,
            UsersCommand::Reset { name, ttl } => users_reset(&c, name, ttl).await,
            UsersCommand::Ls => {
                let users = c.get_users(false).await.map_err(api)?;
                if users.is_empty() {
                    tp_cli::outln!("No users found");
                } else {
                    tp_cli::outln!("{:<24} Roles", "User");
                    for u in users {
                        let name = u
                            .metadata
                            .as_ref()
                            .map(|m| m.name.clone())
                            .unwrap_or_default();
                        tp_cli::outln!(
                            "{name:<24} {}",
                            u.spec.map(|s| s.roles.join(",")).unwrap_or_default()
                        );
                    }
                }
                Ok(())
            }
            UsersCommand::Rm { names } => {
                for n in names.split(',').filter(|n| !n.is_empty()) {
                    c.delete_user(n).await.map_err(api)?;
                    tp_cli::outln!("User {n:?} has been deleted");
                }
                Ok(())
            }
        },
        Command::Auth {
            command: AuthCommand::Export { kind },
        } => auth_export(&c, kind.as_deref()).await,
        Command::Tokens { command } => match command {
            TokensCommand::Add { roles, ttl, value } => {
                tokens_add(&c, roles, ttl, value.as_deref(), auth_address(&cli)).await
            }
            TokensCommand::Ls => tokens_ls(&c).await,
            TokensCommand::Rm { token } => {
                c.delete_token(token).await.map_err(api)?;
                tp_cli::outln!("Token {token} has been deleted");
                Ok(())
            }
        },
        Command::Auth {
            command:
                AuthCommand::Sign {
                    user,
                    out,
                    format,
                    ttl,
                    overwrite,
                },
        } => auth_sign(&c, user, out, format, ttl, *overwrite).await,
        Command::Completion { .. } | Command::Man => Ok(()),
        Command::Status => status(&c).await,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn parse_ttl(ttl: &str) -> Result<i64, CliError> {
    tp_proto::duration::parse_go(ttl).map_err(|e| {
        CliError::new(
            format!("--ttl {ttl:?}: {e}"),
            "use a duration such as 30m or 8h",
        )
    })
}

async fn users_reset(c: &Client, name: &str, ttl: &str) -> Result<(), CliError> {
    let ttl_ns = parse_ttl(ttl)?;
    let token = c
        .create_reset_password_token(
            name,
            UserTokenType::Password,
            Duration::from_nanos(u64::try_from(ttl_ns).unwrap_or(0)),
        )
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => CliError::new(
                format!("user {name:?} is not found"),
                "check the name with `tpctl users ls`",
            ),
            _ => api(e),
        })?;
    let (url, valid_secs) = token_link(&token);
    tp_cli::outln!(
        "User {name:?} has been reset. Share this URL with the user to complete password reset, link is valid for {}:\n{url}",
        short_duration(valid_secs)
    );
    Ok(())
}

async fn tokens_add(
    c: &Client,
    roles: &[String],
    ttl: &str,
    value: Option<&str>,
    auth_server: Option<String>,
) -> Result<(), CliError> {
    let ttl_ns = parse_ttl(ttl)?;
    // Stored as Teleport spells system roles (`Proxy`, `Node`, ...).
    let roles = roles
        .iter()
        .map(|r| {
            tp_auth::service::canonical_role(r.trim())
                .map(str::to_string)
                .ok_or_else(|| {
                    CliError::new(
                        format!("--type {r:?}: not a role a host can join as"),
                        "expected proxy, node, app, db, kube, windowsdesktop or discovery",
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let name = match value {
        Some(v) => v.to_string(),
        None => {
            let mut b = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                .map_err(|_| CliError::plain("the system random source failed"))?;
            b.iter().map(|x| format!("{x:02x}")).collect()
        }
    };
    let expires = now_secs() + ttl_ns / 1_000_000_000;
    let token = tp_proto::types::ProvisionTokenV2 {
        kind: "token".into(),
        version: "v2".into(),
        metadata: Some(Metadata {
            name: name.clone(),
            expires: Some(prost_types::Timestamp {
                seconds: expires,
                nanos: 0,
            }),
            ..Default::default()
        }),
        spec: Some(tp_proto::types::ProvisionTokenSpecV2 {
            roles: roles.clone(),
            join_method: "token".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    c.create_token(token).await.map_err(api)?;
    tp_cli::outln!(
        "The invite token: {name}\nThis token will expire in {}.",
        short_duration(ttl_ns / 1_000_000_000)
    );
    if roles.iter().any(|r| r == "Proxy") {
        let pins = ca_pins(c, "host").await?;
        let auth = auth_server.unwrap_or_else(|| "<auth server>:3025".into());
        tp_cli::outln!(
            "\nWrite the token to a file only tpd's user can read, then run this on the new \
             proxy's host to join the cluster:\n\n> tpd start \\\n   --roles=proxy \\\n   \
             --token=/path/to/token-file \\"
        );
        for p in &pins {
            tp_cli::outln!("   --ca-pin={p} \\");
        }
        tp_cli::outln!("   --auth-server={auth}");
    }
    Ok(())
}

/// The pins (`sha256:<hex>` of the public key) of the active TLS certificates of the
/// cluster's CAs of `kind`.
async fn ca_pins(c: &Client, kind: &str) -> Result<Vec<String>, CliError> {
    let mut pins = Vec::new();
    for ca in c.get_cert_authorities(kind, false).await.map_err(api)? {
        let Some(keys) = ca.spec.as_ref().and_then(|s| s.active_keys.as_ref()) else {
            continue;
        };
        for tls in &keys.tls {
            let text = String::from_utf8_lossy(&tls.cert);
            for block in tp_creds::pem::parse_all(&text, "CA").unwrap_or_default() {
                pins.push(
                    tp_creds::cert::ca_pin(&block.der, "CA")
                        .map_err(|e| CliError::plain(e.to_string()))?,
                );
            }
        }
    }
    Ok(pins)
}

async fn tokens_ls(c: &Client) -> Result<(), CliError> {
    let tokens = c.get_tokens().await.map_err(api)?;
    if tokens.is_empty() {
        tp_cli::outln!("No active tokens found.");
        return Ok(());
    }
    tp_cli::outln!("{:<34} {:<16} Expiry Time (UTC)", "Token", "Type");
    for t in tokens {
        let name = t
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let roles = t
            .spec
            .as_ref()
            .map(|s| s.roles.join(","))
            .unwrap_or_default();
        let expiry = t
            .metadata
            .as_ref()
            .and_then(|m| m.expires)
            .and_then(|e| time::OffsetDateTime::from_unix_timestamp(e.seconds).ok())
            .and_then(|e| {
                e.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "never".into());
        tp_cli::outln!("{name:<34} {roles:<16} {expiry}");
    }
    Ok(())
}

async fn audit_ls(c: &Client, last: usize, format: AuditFormat) -> Result<(), CliError> {
    let mut events = std::collections::VecDeque::new();
    let mut start = String::new();
    loop {
        let page = c.list_audit_events(&start, 0).await.map_err(api)?;
        for e in page.events {
            if last != 0 && events.len() == last {
                events.pop_front();
            }
            events.push_back(e);
        }
        if page.next_key.is_empty() {
            break;
        }
        start = page.next_key;
    }
    let when = |e: &tp_proto::tp::audit::v1::AuditEvent| {
        e.time
            .and_then(|t| {
                time::OffsetDateTime::from_unix_timestamp(t.seconds)
                    .ok()
                    .map(|d| {
                        d.replace_nanosecond(u32::try_from(t.nanos).unwrap_or(0))
                            .unwrap_or(d)
                    })
            })
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    match format {
        AuditFormat::Json => {
            for e in &events {
                let mut v = serde_json::json!({
                    "id": e.id,
                    "time": when(e),
                    "event": e.event,
                    "user": e.user,
                    "kind": e.kind,
                    "name": e.name,
                    "success": e.success,
                    "cluster_name": e.cluster_name,
                });
                if !e.error.is_empty() {
                    v["error"] = e.error.clone().into();
                }
                tp_cli::outln!("{v}");
            }
        }
        AuditFormat::Text => {
            if events.is_empty() {
                tp_cli::outln!("No audit events found.");
                return Ok(());
            }
            tp_cli::outln!(
                "{:<30} {:<20} {:<22} {:<30} Result",
                "Time (UTC)",
                "User",
                "Event",
                "Resource"
            );
            for e in &events {
                let resource = format!("{}/{}", e.kind, e.name);
                let result = if e.success {
                    "ok".to_string()
                } else {
                    format!("failed: {}", e.error)
                };
                tp_cli::outln!(
                    "{:<30} {:<20} {:<22} {:<30} {result}",
                    when(e),
                    e.user,
                    e.event,
                    resource
                );
            }
        }
    }
    Ok(())
}

async fn auth_export(c: &Client, kind: Option<&str>) -> Result<(), CliError> {
    let cluster = c.ping().await.map_err(api)?.cluster_name;
    let want = |k: &str| kind.is_none() || kind == Some(k);
    for (ca_type, tls_kind) in [("host", "tls-host"), ("user", "tls-user")] {
        if !want(ca_type) && !want(tls_kind) {
            continue;
        }
        for ca in c.get_cert_authorities(ca_type, false).await.map_err(api)? {
            let Some(keys) = ca.spec.as_ref().and_then(|s| s.active_keys.as_ref()) else {
                continue;
            };
            if want(ca_type) {
                for k in &keys.ssh {
                    let key = String::from_utf8_lossy(&k.public_key);
                    let key = key.trim();
                    if ca_type == "host" {
                        tp_cli::outln!("@cert-authority {cluster},*.{cluster} {key} type=host");
                    } else {
                        tp_cli::outln!("cert-authority {key} clustername={cluster}&type=user");
                    }
                }
            }
            if kind == Some(tls_kind) {
                for t in &keys.tls {
                    tp_cli::out!("{}", String::from_utf8_lossy(&t.cert));
                }
            }
        }
    }
    Ok(())
}

async fn status(c: &Client) -> Result<(), CliError> {
    let p = c.ping().await.map_err(api)?;
    tp_cli::outln!("Cluster:      {}", p.cluster_name);
    tp_cli::outln!("Version:      {}", p.server_version);
    for kind in ["host", "user"] {
        for pin in ca_pins(c, kind).await? {
            tp_cli::outln!("{:<13} TLS {pin}", format!("{kind} CA:"));
        }
        for ca in c.get_cert_authorities(kind, false).await.map_err(api)? {
            let Some(keys) = ca.spec.as_ref().and_then(|s| s.active_keys.as_ref()) else {
                continue;
            };
            for ssh in &keys.ssh {
                if let Ok(k) = ssh_key::PublicKey::from_openssh(
                    String::from_utf8_lossy(&ssh.public_key).trim(),
                ) {
                    tp_cli::outln!(
                        "{:<13} SSH {}",
                        format!("{kind} CA:"),
                        k.fingerprint(ssh_key::HashAlg::Sha256)
                    );
                }
            }
        }
    }
    Ok(())
}

async fn auth_sign(
    c: &Client,
    user: &str,
    out: &str,
    format: &str,
    ttl: &str,
    overwrite: bool,
) -> Result<(), CliError> {
    let fmt: tp_creds::Format = format.parse().map_err(|e: String| CliError::plain(e))?;
    if out == "-" && fmt != tp_creds::Format::File {
        return Err(CliError::new(
            "--out - needs --format=file",
            "the tls and openssh formats write several files",
        ));
    }
    let targets: Vec<String> = match fmt {
        tp_creds::Format::File => vec![out.to_string()],
        tp_creds::Format::Tls => vec![
            format!("{out}.key"),
            format!("{out}.crt"),
            format!("{out}.cas"),
        ],
        tp_creds::Format::OpenSsh => vec![out.to_string(), format!("{out}-cert.pub")],
        _ => vec![out.to_string()],
    };
    if out != "-"
        && !overwrite
        && let Some(existing) = targets.iter().find(|t| std::path::Path::new(t).exists())
    {
        return Err(CliError::new(
            format!("{existing} exists"),
            "pass --overwrite to replace it",
        ));
    }
    let ttl_ns = tp_proto::duration::parse_go(ttl).map_err(|e| {
        CliError::new(
            format!("--ttl {ttl:?}: {e}"),
            "use a duration such as 12h or 30m",
        )
    })?;
    let cluster = c.ping().await.map_err(api)?.cluster_name;
    let key = tp_creds::PrivateKey::generate(tp_creds::KeyAlgorithm::EcdsaP256)
        .map_err(|e| CliError::plain(e.to_string()))?;
    let spki = key
        .public_key_spki_der()
        .map_err(|e| CliError::plain(e.to_string()))?;
    let ssh_pub = key
        .ssh_public_key()
        .map_err(|e| CliError::plain(e.to_string()))?
        .to_openssh()
        .map_err(|e| CliError::plain(format!("SSH public key: {e}")))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let certs = c
        .generate_user_certs(tp_proto::proto::UserCertsRequest {
            username: user.to_string(),
            tls_public_key: tp_creds::pem::encode("PUBLIC KEY", &spki).into_bytes(),
            ssh_public_key: ssh_pub.into_bytes(),
            expires: Some(prost_types::Timestamp {
                seconds: now + ttl_ns / 1_000_000_000,
                nanos: 0,
            }),
            route_to_cluster: cluster.clone(),
            ..Default::default()
        })
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => CliError::new(
                format!("user {user:?} is not found"),
                "check the name with `tpctl users ls`",
            ),
            _ => api(e),
        })?;
    let text = |b: Vec<u8>, what: &str| {
        String::from_utf8(b)
            .map_err(|_| CliError::plain(format!("the {what} from the Auth server is not text")))
    };
    let mut bundle = tp_creds::IdentityBundle::new(key);
    bundle.tls_cert = Some(text(certs.tls, "TLS certificate")?);
    bundle.ssh_cert = Some(text(certs.ssh, "SSH certificate")?);
    for ca in certs.tlsca_certs {
        bundle.tls_cas.push(text(ca, "TLS CA")?);
    }
    for k in certs.sshca_certs {
        let k = text(k, "SSH CA key")?;
        bundle.ssh_cas.push(format!(
            "@cert-authority {cluster},*.{cluster} {} type=host\n",
            k.trim()
        ));
    }
    if out == "-" {
        tp_cli::out!(
            "{}",
            bundle
                .encode()
                .map_err(|e| CliError::plain(e.to_string()))?
                .as_str()
        );
        return Ok(());
    }
    let files = bundle
        .write(fmt, std::path::Path::new(out))
        .map_err(|e| CliError::new(e.to_string(), "check the --out path"))?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    tp_cli::outln!("The credentials have been written to {}", names.join(", "));
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_not_advertised_as_an_address() {
        assert_eq!(
            advertised("0.0.0.0:3025").as_deref(),
            Some("<this host>:3025")
        );
        assert_eq!(advertised("[::]:3025").as_deref(), Some("<this host>:3025"));
        assert_eq!(
            advertised("10.0.0.5:3025").as_deref(),
            Some("10.0.0.5:3025")
        );
        assert_eq!(advertised(""), None);
    }
}
