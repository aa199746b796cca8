//! `tpsh`: logs a user in to a tp (or Teleport) cluster, like Teleport's `tsh`.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use clap::{Parser, Subcommand};
use tp_cli::{CliError, report};
use tp_creds::{
    Credentials, IdentityBundle, KeyAlgorithm, Material, PrivateKey, Profile, ProfileConfig,
    write_profile,
};
use tp_transport::addr::{PortRule, parse_host_port};
use tp_transport::discovery::PingResponse;
use tp_transport::web::WebClient;

#[derive(Parser)]
#[command(
    name = "tpsh",
    version,
    about = "Logs in to a tp or Teleport cluster (like tsh)"
)]
struct Cli {
    /// The profile directory (default: $TELEPORT_HOME, else ~/.tsh).
    #[arg(long, global = true, value_name = "DIR")]
    home: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Logs in with a password and saves the certificates as a profile (or an identity file).
    Login {
        /// The proxy's web address.
        #[arg(long, value_name = "HOST:PORT")]
        proxy: String,
        /// The Teleport user.
        #[arg(long)]
        user: String,
        /// How long the certificates are valid (e.g. 12h, 30m).
        #[arg(long, default_value = "12h")]
        ttl: String,
        /// Trust this CA bundle (PEM) for the proxy's web certificate instead of the system's.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Do not verify the proxy's web certificate (test clusters only).
        #[arg(long)]
        insecure: bool,
        /// Write an identity file here instead of a profile (`-` for standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<String>,
        /// The identity file format with --out.
        #[arg(long, default_value = "file", value_parser = ["file", "tls", "openssh"])]
        format: String,
        /// Replace an existing --out file.
        #[arg(long)]
        overwrite: bool,
    },
    /// Prints who the current profile is and how long it is valid.
    Status,
    /// Deletes the current profile's keys and certificates.
    Logout,
    /// Prints shell completions: bash, zsh, fish, elvish or powershell.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the man page (roff).
    #[command(hide = true)]
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report(&CliError::plain(format!("cannot start the runtime: {e}"))),
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn profile_dir(cli: &Cli) -> PathBuf {
    match &cli.home {
        Some(h) => h.clone(),
        None => Profile::from_env(None).dir().to_path_buf(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Login {
            proxy,
            user,
            ttl,
            ca_file,
            insecure,
            out,
            format,
            overwrite,
        } => {
            let opts = LoginOpts {
                proxy,
                user,
                ttl,
                ca_file: ca_file.as_ref(),
                insecure: *insecure,
            };
            login(&cli, &opts, out.as_deref(), format, *overwrite).await
        }
        Command::Status => status(&cli),
        Command::Logout => logout(&cli),
        Command::Completion { shell } => {
            tp_cli::print_completions(<Cli as clap::CommandFactory>::command(), *shell);
            Ok(())
        }
        Command::Man => tp_cli::print_man(<Cli as clap::CommandFactory>::command()),
    }
}

struct LoginOpts<'a> {
    proxy: &'a str,
    user: &'a str,
    ttl: &'a str,
    ca_file: Option<&'a PathBuf>,
    insecure: bool,
}

fn web_tls(opts: &LoginOpts<'_>) -> Result<Arc<rustls::ClientConfig>, CliError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::plain(format!("TLS: {e}")))?;
    if opts.insecure {
        return Ok(Arc::new(
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(
                    tp_transport::danger::NoServerVerification::new(provider),
                ))
                .with_no_client_auth(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    if let Some(f) = opts.ca_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            CliError::new(
                format!("cannot read {}: {e}", f.display()),
                "pass a PEM CA bundle with --ca-file",
            )
        })?;
        for block in tp_creds::pem::parse_all(&text, &f.display().to_string())
            .map_err(|e| CliError::new(e.to_string(), "pass a PEM CA bundle"))?
        {
            roots.add(block.der.into()).map_err(|e| {
                CliError::new(
                    format!("{}: not a usable CA certificate: {e}", f.display()),
                    "pass a PEM CA bundle",
                )
            })?;
        }
    } else {
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    }
    Ok(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

fn read_password(user: &str) -> Result<String, CliError> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Enter password for Teleport user {user}:\n"))
            .map_err(|e| CliError::plain(format!("reading the password: {e}")))
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            CliError::plain(format!("reading the password from standard input: {e}"))
        })?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}

async fn login(
    cli: &Cli,
    opts: &LoginOpts<'_>,
    out: Option<&str>,
    format: &str,
    overwrite: bool,
) -> Result<(), CliError> {
    let ttl_ns = tp_proto::duration::parse_go(opts.ttl).map_err(|e| {
        CliError::new(
            format!("--ttl {:?}: {e}", opts.ttl),
            "use a duration such as 12h or 30m",
        )
    })?;
    if let Some(o) = out
        && o != "-"
        && std::path::Path::new(o).exists()
        && !overwrite
    {
        return Err(CliError::new(
            format!("{o} exists"),
            "pass --overwrite to replace it",
        ));
    }
    let addr = parse_host_port(opts.proxy, PortRule::Default(443)).map_err(|e| {
        CliError::new(
            format!("--proxy {:?}: {e}", opts.proxy),
            "pass the proxy's web address, HOST:PORT",
        )
    })?;
    let web = WebClient::new(addr.clone(), web_tls(opts)?).with_timeout(Duration::from_secs(30));
    let hint = "check --proxy; for a test cluster with its own CA pass --ca-file (or --insecure)";
    let spinner = tp_cli::spinner::Spinner::start(&format!("Contacting {addr}"));
    let ping = web.get("/webapi/ping").await;
    spinner.stop();
    let ping = ping.map_err(|e| CliError::new(format!("cannot reach the proxy: {e}"), hint))?;
    if ping.status != 200 {
        return Err(CliError::new(
            format!(
                "{addr}/webapi/ping answered {}: {}",
                ping.status,
                ping.error_message()
            ),
            hint,
        ));
    }
    let ping: PingResponse = ping
        .json()
        .map_err(|e| CliError::new(format!("{addr} is not a Teleport proxy: {e}"), hint))?;

    let password = read_password(opts.user)?;
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)
        .map_err(|e| CliError::plain(e.to_string()))?;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ssh_pub = key
        .ssh_public_key()
        .map_err(|e| CliError::plain(e.to_string()))?
        .to_openssh()
        .map_err(|e| CliError::plain(format!("SSH public key: {e}")))?;
    let spki = key
        .public_key_spki_der()
        .map_err(|e| CliError::plain(e.to_string()))?;
    let req = serde_json::json!({
        "user": opts.user,
        "password": password,
        "ssh_pub_key": b64(ssh_pub.as_bytes()),
        "tls_pub_key": b64(tp_creds::pem::encode("PUBLIC KEY", &spki).as_bytes()),
        "ttl": ttl_ns,
    });
    let spinner = tp_cli::spinner::Spinner::start(&format!("Logging in to {addr}"));
    let resp = web.post_json("/v1/webapi/ssh/certs", &req).await;
    spinner.stop();
    let resp = resp.map_err(|e| CliError::new(format!("cannot reach the proxy: {e}"), hint))?;
    drop(req);
    match resp.status {
        200 => {}
        401 | 403 => {
            return Err(CliError::new(
                format!("login failed: {}", resp.error_message()),
                "check the user name and password",
            ));
        }
        429 => {
            return Err(CliError::new(
                format!("login refused: {}", resp.error_message()),
                "wait a few minutes and try again",
            ));
        }
        s => {
            return Err(CliError::plain(format!(
                "login failed ({s}): {}",
                resp.error_message()
            )));
        }
    }
    let resp: serde_json::Value = resp
        .json()
        .map_err(|e| CliError::plain(format!("the proxy's login answer is not JSON: {e}")))?;
    let bundle = bundle_from_login(key, &resp, &addr.host)
        .map_err(|e| CliError::plain(format!("the proxy's login answer: {e}")))?;
    let cluster = if ping.cluster_name.is_empty() {
        addr.host.clone()
    } else {
        ping.cluster_name.clone()
    };

    let material = match out {
        Some("-") => {
            let text = bundle
                .encode()
                .map_err(|e| CliError::plain(e.to_string()))?;
            tp_cli::out!("{}", text.as_str());
            return Ok(());
        }
        Some(path) => {
            let fmt: tp_creds::Format = format.parse().map_err(|e: String| CliError::plain(e))?;
            let files = bundle
                .write(fmt, std::path::Path::new(path))
                .map_err(|e| CliError::new(e.to_string(), "check the --out path"))?;
            for f in files {
                tp_cli::outln!("The certificate has been written to {}", f.display());
            }
            return Ok(());
        }
        None => {
            let dir = profile_dir(cli);
            let mut cfg = ProfileConfig::new(addr.to_string(), opts.user, cluster);
            cfg.tls_routing_enabled = ping.proxy.tls_routing_enabled;
            cfg.ssh_proxy_addr = ping.proxy.ssh.listen_addr.clone();
            cfg.auth_connector = "local".into();
            write_profile(&dir, &cfg, &bundle, true)
                .map_err(|e| CliError::new(e.to_string(), "check --home or $TELEPORT_HOME"))?;
            Profile::new(&dir, None)
                .load()
                .map_err(|e| CliError::plain(e.to_string()))?
        }
    };
    print_status(&material, SystemTime::now());
    Ok(())
}

fn decode_b64(v: &serde_json::Value, what: &str) -> Result<String, String> {
    let s = v.as_str().ok_or_else(|| format!("{what} is missing"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("{what} is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{what} is not text"))
}

fn bundle_from_login(
    key: PrivateKey,
    resp: &serde_json::Value,
    proxy_host: &str,
) -> Result<IdentityBundle, String> {
    let mut b = IdentityBundle::new(key);
    b.ssh_cert = Some(decode_b64(&resp["cert"], "cert")?);
    b.tls_cert = Some(decode_b64(&resp["tls_cert"], "tls_cert")?);
    for signer in resp["host_signers"].as_array().into_iter().flatten() {
        let domain = signer["domain_name"].as_str().unwrap_or_default();
        for k in signer["checking_keys"].as_array().into_iter().flatten() {
            let key = decode_b64(k, "checking_keys")?;
            b.ssh_cas.push(format!(
                "@cert-authority {proxy_host},{domain},*.{domain} {} type=host\n",
                key.trim()
            ));
        }
        for c in signer["tls_certs"].as_array().into_iter().flatten() {
            b.tls_cas.push(decode_b64(c, "tls_certs")?);
        }
    }
    Ok(b)
}

fn print_status(m: &Material, now: SystemTime) {
    let Some(id) = &m.identity else { return };
    let logins: Vec<&str> = id
        .principals
        .iter()
        .map(String::as_str)
        .filter(|l| !l.starts_with("-teleport-"))
        .collect();
    let until = m.tls_validity.map(|v| {
        let t = time::OffsetDateTime::from_unix_timestamp(v.not_after).ok();
        let text = t
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let left = v.not_after - tp_creds::cert::unix_time(now);
        if left <= 0 {
            format!("{text} [EXPIRED]")
        } else {
            format!("{text} [valid for {}]", tp_cli::short_duration(left))
        }
    });
    if let Some(p) = &m.proxy_addr {
        tp_cli::outln!("> Profile URL:        https://{p}");
    }
    tp_cli::outln!("  Logged in as:       {}", id.username);
    tp_cli::outln!("  Cluster:            {}", id.teleport_cluster);
    tp_cli::outln!("  Roles:              {}", id.groups.join(", "));
    tp_cli::outln!("  Logins:             {}", logins.join(", "));
    if let Some(u) = until {
        tp_cli::outln!("  Valid until:        {u}");
    }
}

fn status(cli: &Cli) -> Result<(), CliError> {
    let profile = Profile::new(profile_dir(cli), None);
    let m = profile.load().map_err(|e| {
        CliError::new(
            e.to_string(),
            "log in with `tpsh login --proxy=HOST:PORT --user=NAME`",
        )
    })?;
    print_status(&m, SystemTime::now());
    Ok(())
}

fn logout(cli: &Cli) -> Result<(), CliError> {
    let dir = profile_dir(cli);
    let profile = Profile::new(&dir, None);
    let name = profile
        .resolve_name()
        .map_err(|e| CliError::new(e.to_string(), "there is nothing to log out of"))?;
    let cfg = profile
        .config()
        .map_err(|e| CliError::plain(e.to_string()))?;
    let keys = dir.join("keys").join(&name);
    let rm = |r: std::io::Result<()>, what: &std::path::Path| match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::plain(format!(
            "cannot remove {}: {e}",
            what.display()
        ))),
    };
    rm(std::fs::remove_dir_all(&keys), &keys)?;
    let yaml = dir.join(format!("{name}.yaml"));
    rm(std::fs::remove_file(&yaml), &yaml)?;
    let current = dir.join("current-profile");
    rm(std::fs::remove_file(&current), &current)?;
    tp_cli::outln!("Logged out {} from {}.", cfg.user, cfg.web_proxy_addr);
    Ok(())
}
