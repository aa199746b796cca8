//! `tpd`: runs a tp cluster: the Auth server and the Proxy in one process, or either
//! alone (`--roles`); a proxy alone joins the Auth server with a token file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tp_cli::cluster::{ClusterConfig, ListenerMode, SignatureAlgorithmSuite, Storage, start};
use tp_cli::paths::default_data_dir;
use tp_cli::report;

/// mimalloc rather than glibc's malloc: under load glibc's arenas make tokio's workers
/// wait on each other's locks whenever one frees what another allocated, which h2 and
/// rustls buffers do on every call (GenerateUserCerts gained about half in `cargo xtask
/// bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tpd",
    version,
    about = "Runs a tp cluster: the Auth server and the Proxy, together or apart"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing clap's fields buys nothing"
)]
enum Command {
    /// Starts the Auth server and the Proxy (or one of them, --roles); the Auth server writes
    /// the local admin identity for tpctl.
    Start {
        /// Where the cluster's state (DIR/backend/sqlite.db) and the admin identity live.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The cluster name (a DNS-like name); on first start tp.local when not given,
        /// later it must match the stored name.
        #[arg(long)]
        cluster_name: Option<String>,
        /// Keeps the state in memory: every start is a new cluster (for tests).
        #[arg(long)]
        in_memory: bool,
        /// A Teleport-style YAML config file (teleport.yaml's names: teleport.data_dir,
        /// auth_service.listen_addr, proxy_service.web_listen_addr, ...); flags win.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The Auth server's gRPC address [default: 127.0.0.1:3025].
        #[arg(long)]
        auth_addr: Option<SocketAddr>,
        /// The Proxy's web address (HTTPS, discovery, login, invite pages, TLS routing)
        /// [default: 127.0.0.1:3080].
        #[arg(long)]
        web_addr: Option<SocketAddr>,
        /// The Proxy's reverse-tunnel address (SSH; Teleport's clients reach the Auth
        /// server through it) [default: 127.0.0.1:3024].
        #[arg(long)]
        tunnel_addr: Option<SocketAddr>,
        /// The web address users reach (invite links name it); defaults to --web-addr.
        #[arg(long, value_name = "HOST:PORT")]
        public_addr: Option<String>,
        /// Serve /healthz, /readyz and Prometheus /metrics here (plain HTTP; keep it private).
        #[arg(long, value_name = "HOST:PORT")]
        diag_addr: Option<SocketAddr>,
        /// multiplex: the web port also carries Auth connections (TLS routing) and the
        /// tunnel; separate: HTTPS only, clients use the tunnel address [default:
        /// multiplex].
        #[arg(long, value_enum)]
        listener_mode: Option<ListenerMode>,
        /// The keys of the CAs created on first start: balanced-v1 (ECDSA P-256 for
        /// X.509, Ed25519 for SSH) or legacy (RSA-2048). Existing CAs keep theirs
        /// [default: balanced-v1].
        #[arg(long, value_enum)]
        signature_algorithm_suite: Option<SignatureAlgorithmSuite>,
        /// The web port's certificate chain (PEM, leaf first) from your CA, for a public
        /// name; with --web-key. Default: one the cluster's host CA signs.
        #[arg(long, value_name = "FILE", requires = "web_key")]
        web_cert: Option<PathBuf>,
        /// The private key of --web-cert (PEM, unencrypted).
        #[arg(long, value_name = "FILE", requires = "web_cert")]
        web_key: Option<PathBuf>,
        /// The services to run, comma-separated: auth, proxy [default: auth,proxy].
        #[arg(long, value_enum, value_delimiter = ',')]
        roles: Option<Vec<Role>>,
        /// The Auth server a proxy started alone (--roles proxy) joins and talks to.
        #[arg(long, value_name = "HOST:PORT")]
        auth_server: Option<String>,
        /// A file holding the join token from `tpctl tokens add --type=proxy` (read on
        /// first start; never the token itself, which shell history and ps would show).
        #[arg(long, value_name = "FILE")]
        token: Option<PathBuf>,
        /// The Auth server's CA pin (sha256:..., as `tpctl tokens add` prints it); may
        /// repeat. Without one the Auth server is not verified when joining.
        #[arg(long = "ca-pin", value_name = "PIN", value_delimiter = ',')]
        ca_pins: Vec<String>,
        /// Log lines on standard error as text or JSON (one object per line). The level
        /// filter is TP_LOG (tracing's EnvFilter syntax), else the config file's
        /// teleport.log.severity, else `info` [default: text].
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
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

/// How long calls in flight may take to finish once tpd is asked to stop.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A service `tpd` runs.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// The Auth server.
    Auth,
    /// The Proxy.
    Proxy,
}

/// How `tpd` writes its log lines.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (time, level, target, fields).
    Json,
}

/// Logs to standard error in `format`, filtered by `TP_LOG`, else `level`.
fn init_logs(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal as _;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Command::Completion { shell } => {
            tp_cli::print_completions(<Cli as clap::CommandFactory>::command(), shell);
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match tp_cli::print_man(<Cli as clap::CommandFactory>::command()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report(&e),
            };
        }
        start @ Command::Start { .. } => start,
    };
    let Command::Start {
        data_dir,
        cluster_name,
        in_memory,
        auth_addr,
        web_addr,
        tunnel_addr,
        public_addr,
        diag_addr,
        listener_mode,
        signature_algorithm_suite,
        log_format,
        config,
        web_cert,
        web_key,
        roles,
        auth_server,
        token,
        ca_pins,
    } = command
    else {
        return ExitCode::SUCCESS;
    };
    let file = match config.as_deref().map(tp_cli::config::load).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return report(&e),
    };
    let log_format = log_format.unwrap_or(if file.log_json == Some(true) {
        LogFormat::Json
    } else {
        LogFormat::Text
    });
    init_logs(log_format, file.log_level.as_deref().unwrap_or("info"));
    let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let auth_addr = auth_addr.or(file.auth_addr).unwrap_or(local(3025));
    let web_addr = web_addr.or(file.web_addr).unwrap_or(local(3080));
    let tunnel_addr = tunnel_addr.or(file.tunnel_addr).unwrap_or(local(3024));
    let cluster_name = cluster_name.or(file.cluster_name);
    let public_addr = public_addr.or(file.public_addr);
    let diag_addr = diag_addr.or(file.diag_addr);
    let listener_mode = listener_mode.or(file.listener_mode).unwrap_or_default();
    let signature_algorithm_suite = signature_algorithm_suite
        .or(file.signature_algorithm_suite)
        .unwrap_or_default();
    let data_dir = data_dir.or(file.data_dir);
    let web_keypair = match (web_cert, web_key) {
        (Some(cert), Some(key)) => Some(tp_cli::cluster::WebKeyPair { cert, key }),
        _ => file.web_keypair,
    };
    if effective_uid() == Some(0) {
        tracing::warn!("tpd runs as root; run it as an unprivileged user (see docs/production.md)");
    }
    let data_dir = data_dir.unwrap_or_else(default_data_dir);
    let roles = match roles {
        Some(list) => tp_cli::cluster::Roles {
            auth: list.contains(&Role::Auth),
            proxy: list.contains(&Role::Proxy),
        },
        None => file.roles.unwrap_or_default(),
    };
    let auth_server = auth_server.or(file.auth_server);
    let token = token.or(file.token_file);
    let ca_pins = if ca_pins.is_empty() {
        file.ca_pins
    } else {
        ca_pins
    };
    let join = match join_settings(roles, auth_server, token, ca_pins) {
        Ok(j) => j,
        Err(e) => return report(&e),
    };
    let cfg = ClusterConfig {
        data_dir: data_dir.clone(),
        cluster_name,
        storage: if in_memory {
            Storage::Memory
        } else {
            Storage::Sqlite
        },
        auth_addr,
        web_addr,
        tunnel_addr,
        public_addr,
        diag_addr,
        listener_mode,
        signature_algorithm_suite,
        web_keypair,
        roles,
        join,
    };
    // Signals are watched before anything says the cluster is up, so a SIGTERM sent as
    // soon as tpd reports ready (a service manager, a test) still stops it cleanly.
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            return report(&tp_cli::CliError::plain(format!(
                "cannot watch for SIGINT and SIGTERM: {e}"
            )));
        }
    };
    let (running, mut handle) = match start(cfg).await {
        Ok(r) => r,
        Err(e) => return report(&e),
    };
    let shown = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "-".into());
    tracing::info!(
        cluster = %running.cluster_name,
        auth = %shown(running.auth_addr),
        web = %shown(running.web_addr),
        tunnel = %shown(running.tunnel_addr),
        "tpd started"
    );
    tp_cli::outln!("tpd: cluster {:?} is running", running.cluster_name);
    if let Some(a) = running.auth_addr {
        tp_cli::outln!("  auth:  {a} (gRPC, mutual TLS)");
    }
    if let Some(w) = running.web_addr {
        tp_cli::outln!("  proxy: https://{w} (discovery, login, invite pages)");
    }
    if let Some(admin) = &running.admin {
        tp_cli::outln!(
            "  admin identity: {} (for tpctl on this host)",
            admin
                .cert
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    if let Some(t) = running.tunnel_addr {
        tp_cli::outln!("  tunnel: {t} (SSH reverse tunnel to the Auth server)");
    }
    if let Some(d) = running.diag_addr {
        tp_cli::outln!("  diag:  http://{d} (/healthz, /readyz, /metrics)");
    }
    match (&running.state_path, &running.proxy_identity) {
        (Some(p), _) => tp_cli::outln!("  state: {} (SQLite; a restart reuses it)", p.display()),
        (None, Some(p)) => tp_cli::outln!(
            "  proxy identity: {} (joined; a restart reuses it)",
            p.display()
        ),
        (None, None) => {
            tp_cli::outln!("  state: in memory (--in-memory: a restart starts a new cluster)")
        }
    }
    let (why, ended) = tokio::select! {
        _ = int.recv() => ("SIGINT", false),
        _ = term.recv() => ("SIGTERM", false),
        _ = &mut handle => ("a listener ended", true),
    };
    tracing::info!(reason = why, "tpd stopping");
    if !ended {
        // Calls in flight get a moment to finish; open watch streams are cut after it.
        running.stop();
        if tokio::time::timeout(STOP_GRACE, &mut handle).await.is_err() {
            tracing::warn!(
                grace_secs = STOP_GRACE.as_secs(),
                "calls still open after the grace period (watchers); stopping anyway"
            );
        }
    }
    tp_cli::outln!("tpd: stopped");
    ExitCode::SUCCESS
}

/// Checks the join flags against the roles: they belong to a proxy started alone.
fn join_settings(
    roles: tp_cli::cluster::Roles,
    auth_server: Option<String>,
    token: Option<PathBuf>,
    ca_pins: Vec<String>,
) -> Result<Option<tp_cli::join::JoinSettings>, tp_cli::CliError> {
    use tp_cli::CliError;
    if roles.auth {
        if auth_server.is_some() || token.is_some() || !ca_pins.is_empty() {
            return Err(CliError::new(
                "--auth-server, --token and --ca-pin are for a proxy started alone",
                "pass --roles proxy to run a proxy that joins another tpd's Auth server",
            ));
        }
        return Ok(None);
    }
    let Some(addr) = auth_server else {
        return Err(CliError::new(
            "--roles proxy needs --auth-server: the Auth server to join",
            "pass --auth-server HOST:PORT (and --token FILE on first start)",
        ));
    };
    let auth_server =
        tp_transport::addr::parse_host_port(&addr, tp_transport::addr::PortRule::Default(3025))
            .map_err(|e| {
                CliError::new(
                    format!("--auth-server {addr:?}: {e}"),
                    "expected HOST:PORT, for example 10.0.0.5:3025",
                )
            })?;
    for p in &ca_pins {
        tp_cli::join::check_ca_pin(p).map_err(|e| {
            CliError::new(
                format!("--ca-pin {e}"),
                "copy the pin `tpctl tokens add` or `tpctl status` prints",
            )
        })?;
    }
    Ok(Some(tp_cli::join::JoinSettings {
        auth_server,
        token_file: token,
        ca_pins,
    }))
}

/// The effective user id, from `/proc/self/status` (the second field of `Uid:`).
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}
