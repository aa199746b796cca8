//! `tpd start`: the Auth server and the Proxy, in one process or apart (`Roles`); a proxy
//! alone joins with a token (`crate::join`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tp_auth::bootstrap::{BootstrapError, bootstrap_with};
use tp_auth::ca::{self, Issued};
use tp_auth::listener;
use tp_auth::service::{AuthServer, system_clock};
use tp_auth::store::{BackendStore, Store};
use tp_backend::SqliteBackend;
use tp_client::{Client, Config, Target};
use tp_proxy::port::WebPort;
use tp_proxy::web::{WebConfig, router};
use tp_transport::addr::HostPort;
use tp_transport::discovery::ProxySettings;

use crate::CliError;
use crate::paths::{AdminIdentity, private_dir, write_atomic};

/// Where the cluster keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// SQLite at `<data dir>/backend/sqlite.db`: a restart reuses the cluster.
    #[default]
    Sqlite,
    /// In memory: every start is a new cluster (tests).
    Memory,
}

/// What `tpd start` runs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where the admin identity and the state live.
    pub data_dir: PathBuf,
    /// The cluster name: required to match the stored one when given; `None` takes the
    /// stored name, or `tp.local` on first start.
    pub cluster_name: Option<String>,
    /// Where the state is kept.
    pub storage: Storage,
    /// The Auth server's gRPC listener.
    pub auth_addr: SocketAddr,
    /// The Proxy's web listener.
    pub web_addr: SocketAddr,
    /// The Proxy's reverse-tunnel (SSH) listener.
    pub tunnel_addr: SocketAddr,
    /// The web address users are told (invite links, login hints).
    pub public_addr: Option<String>,
    /// Where to serve `/healthz`, `/readyz` and `/metrics` (plain HTTP), if anywhere.
    pub diag_addr: Option<SocketAddr>,
    /// Whether the web port also routes Auth connections and the tunnel by ALPN.
    pub listener_mode: ListenerMode,
    /// The keys new CAs get (on first start; existing CAs keep theirs).
    pub signature_algorithm_suite: SignatureAlgorithmSuite,
    /// The web port's certificate and key from the operator (for a public name); `None`
    /// for one the host CA signs.
    pub web_keypair: Option<WebKeyPair>,
    /// Which services this process runs.
    pub roles: Roles,
    /// How a proxy without a local Auth server joins (required then, unused otherwise).
    pub join: Option<crate::join::JoinSettings>,
}

/// The services one `tpd` runs (Teleport's `--roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The Auth server (and its state).
    pub auth: bool,
    /// The Proxy (web port, reverse tunnel).
    pub proxy: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            auth: true,
            proxy: true,
        }
    }
}

/// An operator's web certificate chain and key, as PEM files (Teleport's
/// `proxy_service.https_keypairs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebKeyPair {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (unencrypted PEM).
    pub key: PathBuf,
}

/// The keys of new CAs, by Teleport's `signature_algorithm_suite` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SignatureAlgorithmSuite {
    /// ECDSA P-256 for X.509, Ed25519 for SSH.
    #[default]
    #[value(name = "balanced-v1")]
    BalancedV1,
    /// RSA-2048 for both, for peers that verify nothing else.
    Legacy,
}

impl From<SignatureAlgorithmSuite> for ca::SignatureAlgorithmSuite {
    fn from(s: SignatureAlgorithmSuite) -> Self {
        match s {
            SignatureAlgorithmSuite::BalancedV1 => Self::BalancedV1,
            SignatureAlgorithmSuite::Legacy => Self::Legacy,
        }
    }
}

/// How the Proxy's listeners share the work (Teleport's `proxy_listener_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ListenerMode {
    /// The web port routes by ALPN: HTTPS, Auth connections (TLS routing) and the
    /// reverse tunnel all on one port; the tunnel listener serves too.
    #[default]
    Multiplex,
    /// The web port serves HTTPS only; clients reach the Auth server through the tunnel
    /// listener (discovery reports TLS routing off).
    Separate,
}

/// The listeners once bound.
#[derive(Debug)]
pub struct Running {
    /// The cluster name.
    pub cluster_name: String,
    /// Where the state is kept: the SQLite file, or `None` in memory (or without a local
    /// Auth server).
    pub state_path: Option<PathBuf>,
    /// The Auth server's address, when this process runs it.
    pub auth_addr: Option<SocketAddr>,
    /// The Proxy's web address, when this process runs it.
    pub web_addr: Option<SocketAddr>,
    /// The Proxy's reverse-tunnel address, when this process runs it.
    pub tunnel_addr: Option<SocketAddr>,
    /// The local admin identity's files, when this process runs the Auth server.
    pub admin: Option<AdminIdentity>,
    /// A proxy's joined identity file, when it has no local Auth server.
    pub proxy_identity: Option<PathBuf>,
    /// The diagnostics address, when serving one.
    pub diag_addr: Option<SocketAddr>,
    /// The counters behind `/metrics`.
    pub metrics: Arc<crate::diag::Metrics>,
    /// Held while the cluster runs: no second `tpd` may open the same state.
    _lock: Option<std::fs::File>,
    stop: Arc<tokio::sync::Notify>,
}

impl Running {
    /// Begins a graceful stop: the Auth server takes no new connection or call and the
    /// task [`start`] returned ends once the calls in flight have finished (bound the
    /// wait: open watch streams last until their clients close them); a proxy alone
    /// stops at once.
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn bind_error(what: &str, addr: SocketAddr, e: std::io::Error) -> CliError {
    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
        format!("another process listens on {addr}; stop it or choose another --{what}-addr")
    } else if e.kind() == std::io::ErrorKind::PermissionDenied && addr.port() < 1024 {
        "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability (setcap cap_net_bind_service=+ep $(which tpd))".to_string()
    } else {
        format!("choose another --{what}-addr")
    };
    CliError::new(
        format!("cannot listen on {addr} for the {what} service: {e}"),
        hint,
    )
}

fn tls_parts(
    issued: &Issued,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CliError> {
    let cert = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
        .map_err(|e| CliError::plain(format!("issued certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
        .map_err(|e| CliError::plain(format!("issued key: {e}")))?;
    Ok((vec![cert], key))
}

/// The web port's TLS configuration for `chain` and `key` (ALPN is set by the port).
fn web_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
}

/// The web port's TLS configuration from an operator's certificate chain and key (PEM
/// files), with errors naming the files.
fn web_tls_from_files(pair: &WebKeyPair) -> Result<rustls::ServerConfig, CliError> {
    let hint = "pass a PEM certificate chain (leaf first) and its unencrypted private key";
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| CliError::new(format!("cannot read {}: {e}", p.display()), hint))
    };
    let (cert_pem, key_pem) = (read(&pair.cert)?, read(&pair.key)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            CliError::new(
                format!("{}: not a PEM certificate chain: {e}", pair.cert.display()),
                hint,
            )
        })?;
    if chain.is_empty() {
        return Err(CliError::new(
            format!("{}: no CERTIFICATE block", pair.cert.display()),
            hint,
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        CliError::new(
            format!("{}: not a PEM private key: {e}", pair.key.display()),
            hint,
        )
    })?;
    web_server_config(chain, key).map_err(|e| {
        CliError::new(
            format!(
                "web certificate {} and key {}: {e}",
                pair.cert.display(),
                pair.key.display()
            ),
            "check that the key belongs to the certificate",
        )
    })
}

/// How long a tunnel connection may be quiet before the proxy sends a keepalive.
const TUNNEL_KEEPALIVE: Duration = Duration::from_secs(300);

/// What the Proxy needs from its cluster, however it got it (a local Auth server's
/// state, or joining with a token).
struct ProxyIdentity {
    cluster_name: String,
    /// Where the Auth server listens (TLS routing and tunnel dials go there).
    auth: HostPort,
    /// The proxy's own client toward the Auth server (system role `Proxy`).
    client: Client,
    /// The tunnel's host key with its SSH host certificate.
    host_key: Arc<tp_ssh::KeyPair>,
    /// That certificate, authorized_keys form.
    host_cert_line: String,
    /// The user CA's SSH keys: whom the tunnel lets in.
    user_cas: Vec<ssh_key::Fingerprint>,
    /// The web port's certificate when the operator gives none.
    web_default: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
}

/// The names clients reach the proxy by, for its certificates: `localhost`, the listen
/// addresses' IPs, and the public host.
fn proxy_principals(listen: &[SocketAddr], public: &str) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    for a in listen {
        names.push(a.ip().to_string());
    }
    if let Ok(hp) =
        tp_transport::addr::parse_host_port(public, tp_transport::addr::PortRule::Default(443))
    {
        names.push(hp.host);
    }
    names.sort();
    names.dedup();
    names
}

/// The fingerprints of a CA's active SSH keys: whom the tunnel lets in, for the user CA.
fn ssh_fingerprints(ca: &tp_proto::types::CertAuthorityV2) -> Vec<ssh_key::Fingerprint> {
    ca.spec
        .as_ref()
        .and_then(|s| s.active_keys.as_ref())
        .map(|k| k.ssh.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| {
            ssh_key::PublicKey::from_openssh(String::from_utf8_lossy(&k.public_key).trim()).ok()
        })
        .map(|k| tp_ssh::fingerprint(&k))
        .collect()
}

/// The proxy's identity beside a local Auth server: certificates signed here with the
/// host CA (a fresh Ed25519 tunnel host key; principals naming the listen addresses,
/// `localhost` and the public host, since clients check the name they dialled).
async fn local_proxy_identity(
    state: &tp_auth::bootstrap::ClusterState,
    auth: HostPort,
    principals: &[String],
) -> Result<ProxyIdentity, CliError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        CliError::plain(format!("reverse tunnel {what}: {e}"))
    };
    let ca_err = |e: ca::CaError| CliError::plain(e.to_string());
    let host_ca = state
        .host_ca
        .spec
        .as_ref()
        .and_then(|s| s.active_keys.as_ref())
        .and_then(|k| k.ssh.first())
        .ok_or_else(|| CliError::plain("the host CA has no SSH key"))?;
    let host_ca = ssh_key::PrivateKey::from_openssh(&host_ca.private_key)
        .map_err(|e| fail("host CA key", &e))?;
    let key = tp_creds::PrivateKey::generate(tp_creds::KeyAlgorithm::Ed25519)
        .map_err(|e| fail("host key", &e))?;
    let ssh_key = key.to_ssh().map_err(|e| fail("host key", &e))?;
    let mut id = tp_creds::SshHostIdentity::new("proxy", &state.name, "Proxy");
    id.principals.extend(principals.iter().cloned());
    id.principals.sort();
    id.principals.dedup();
    let now = u64::try_from(now()).unwrap_or(0);
    let cert = id
        .sign(
            ssh_key.public_key(),
            &host_ca,
            now.saturating_sub(60),
            now + 365 * 86400,
        )
        .map_err(|e| fail("host certificate", &e))?;
    let host_cert_line = cert
        .to_openssh()
        .map_err(|e| fail("host certificate", &e))?;
    let host_key = tp_ssh::KeyPair::new(&ssh_key)
        .and_then(|k| k.with_certificate(cert))
        .map_err(|e| fail("host key", &e))?;
    let user_cas = ssh_fingerprints(&state.user_ca);
    let client_issued = ca::issue_host(
        &state.host_ca,
        &format!("proxy.{}", state.name),
        "Proxy",
        &[],
        self::now(),
        365 * 86400,
    )
    .map_err(ca_err)?;
    let client = connect(&auth, &client_issued, &state.host_ca).await?;
    let web_default = tls_parts(
        &ca::issue_host(
            &state.host_ca,
            &format!("proxy.{}", state.name),
            "Proxy",
            principals,
            self::now(),
            365 * 86400,
        )
        .map_err(ca_err)?,
    )?;
    Ok(ProxyIdentity {
        cluster_name: state.name.clone(),
        auth,
        client,
        host_key: Arc::new(host_key),
        host_cert_line,
        user_cas,
        web_default,
    })
}

/// The identity of a proxy without a local Auth server: joined (or stored), then its
/// client toward the Auth server and the user CA's SSH keys fetched with it.
async fn joined_proxy_identity(
    bundle: &tp_creds::IdentityBundle,
    origin: &Path,
    auth: HostPort,
) -> Result<ProxyIdentity, CliError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        CliError::plain(format!("{}: {what}: {e}", origin.display()))
    };
    let tls_cert = bundle.tls_cert.as_deref().unwrap_or_default();
    let key_pem = bundle.key.to_pem().map_err(|e| fail("private key", &e))?;
    let mut roots: Vec<Vec<u8>> = Vec::new();
    for p in &bundle.tls_cas {
        roots.push(
            CertificateDer::from_pem_slice(p.as_bytes())
                .map_err(|e| fail("CA certificate", &e))?
                .to_vec(),
        );
    }
    let label = format!("the proxy's identity {}", origin.display());
    let hint = format!(
        "check that the Auth server at {auth} is up; if its cluster was recreated, remove {} \
         and join again with a new token (--token FILE)",
        origin.display()
    );
    let client = connect_as(
        &auth,
        (tls_cert.as_bytes(), key_pem.as_bytes()),
        &roots,
        &label,
        &hint,
    )
    .await?;
    let cluster_name = client
        .ping()
        .await
        .map_err(|e| fail("asking the Auth server its cluster name", &e))?
        .cluster_name;
    let user_ca = client
        .get_cert_authority("user", &cluster_name, false)
        .await
        .map_err(|e| fail("reading the user CA", &e))?;
    let user_cas = ssh_fingerprints(&user_ca);
    let ssh_line = bundle.ssh_cert.as_deref().unwrap_or_default();
    let cert = tp_creds::cert::parse_ssh_cert(ssh_line, &origin.display().to_string())
        .map_err(|e| CliError::plain(e.to_string()))?;
    let ssh_key = bundle.key.to_ssh().map_err(|e| fail("SSH key", &e))?;
    let host_key = tp_ssh::KeyPair::new(&ssh_key)
        .and_then(|k| k.with_certificate(cert))
        .map_err(|e| fail("SSH host certificate", &e))?;
    let chain = vec![
        CertificateDer::from_pem_slice(tls_cert.as_bytes())
            .map_err(|e| fail("TLS certificate", &e))?,
    ];
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| fail("private key", &e))?;
    Ok(ProxyIdentity {
        cluster_name,
        auth,
        client,
        host_key: Arc::new(host_key),
        host_cert_line: ssh_line.trim().to_string(),
        user_cas,
        web_default: (chain, key),
    })
}

/// The proxy's reverse-tunnel server: its host key and certificate, trusting the user
/// CA's SSH keys, forwarding transport dials to the Auth server.
fn tunnel_server(id: &ProxyIdentity) -> Result<tp_transport::tunnel::TunnelServer, CliError> {
    if id.user_cas.is_empty() {
        return Err(CliError::plain(
            "the user CA has no SSH key to trust on the reverse tunnel",
        ));
    }
    let mut config = tp_ssh::ServerConfig::new(id.host_key.clone(), id.user_cas.clone());
    // Teleport's proxy defaults: a keepalive after 5 minutes of quiet, three unanswered
    // and the connection is dropped (so dead peers do not hold slots).
    config.transport.keepalive_interval = Some(TUNNEL_KEEPALIVE);
    config.transport.keepalive_max = 3;
    Ok(tp_transport::tunnel::TunnelServer::new(
        config,
        id.auth.clone(),
    ))
}

/// The SQLite file under a data directory.
pub fn sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("backend").join("sqlite.db")
}

/// Takes `<data dir>/tpd.lock` for as long as the returned file is open (the
/// operating system lets go when the process ends, however it ends), so that two
/// `tpd`s never serve the same state: each would miss the other's changes.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, CliError> {
    let path = data_dir.join("tpd.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            CliError::new(
                format!("cannot open {}: {e}", path.display()),
                "choose a writable directory with --data-dir",
            )
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::new(
            format!(
                "another tpd is already running with data directory {}",
                data_dir.display()
            ),
            "stop it first, or give this one another --data-dir",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(CliError::plain(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

/// Opens the store `cfg` asks for, and the file it lives in (if any).
async fn open_store(cfg: &ClusterConfig) -> Result<(Arc<dyn Store>, Option<PathBuf>), CliError> {
    match cfg.storage {
        Storage::Memory => Ok((Arc::new(BackendStore::memory()), None)),
        Storage::Sqlite => {
            let path = sqlite_path(&cfg.data_dir);
            let backend = SqliteBackend::open(&path).await.map_err(|e| {
                CliError::new(
                    format!("cannot open the cluster state at {}: {e}", path.display()),
                    "check that the data directory is writable, or choose another --data-dir",
                )
            })?;
            Ok((Arc::new(BackendStore::new(Arc::new(backend))), Some(path)))
        }
    }
}

/// Starts what `cfg.roles` asks for. The Auth server: opens its state (see
/// [`Storage`]), bootstraps or reuses its CAs, binds its listener and writes the admin
/// identity. The Proxy: beside a local Auth server it takes its identity from there;
/// alone it joins with a token (or reuses its stored identity), then binds the web port
/// and the tunnel. Serves until the returned task is dropped or [`Running::stop`].
pub async fn start(cfg: ClusterConfig) -> Result<(Running, tokio::task::JoinHandle<()>), CliError> {
    if !cfg.roles.auth && !cfg.roles.proxy {
        return Err(CliError::new(
            "no service to run",
            "pass --roles auth, proxy, or auth,proxy",
        ));
    }
    if !cfg.roles.auth && cfg.join.is_none() {
        return Err(CliError::new(
            "a proxy without a local Auth server needs --auth-server",
            "pass --auth-server HOST:PORT and, on first start, --token FILE",
        ));
    }
    private_dir(&cfg.data_dir)?;
    let lock = match (cfg.storage, cfg.roles.auth) {
        (Storage::Memory, true) => None,
        _ => Some(lock_data_dir(&cfg.data_dir)?),
    };
    let metrics = crate::diag::Metrics::new();
    let diag = match cfg.diag_addr {
        Some(a) => Some(crate::diag::bind(a).await?),
        None => None,
    };
    let diag_addr = diag.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(l) = diag {
        tokio::spawn(crate::diag::serve(l, metrics.clone()));
    }
    let stop = Arc::new(tokio::sync::Notify::new());
    // The proxy's listeners first: the Auth server's invite links name the web address.
    let listeners = if cfg.roles.proxy {
        let web_l = TcpListener::bind(cfg.web_addr)
            .await
            .map_err(|e| bind_error("web", cfg.web_addr, e))?;
        let tunnel_l = TcpListener::bind(cfg.tunnel_addr)
            .await
            .map_err(|e| bind_error("tunnel", cfg.tunnel_addr, e))?;
        Some((web_l, tunnel_l))
    } else {
        None
    };
    let addr_of = |l: &TcpListener| l.local_addr().map_err(|e| CliError::plain(e.to_string()));
    let public = match (&cfg.public_addr, &listeners) {
        (Some(p), _) => Some(p.clone()),
        (None, Some((web_l, _))) => Some(addr_of(web_l)?.to_string()),
        (None, None) => None,
    };
    let auth = if cfg.roles.auth {
        Some(start_auth(&cfg, public.as_deref(), &metrics, stop.clone()).await?)
    } else {
        None
    };
    let mut proxy_identity = None;
    let proxy = if let Some((web_l, tunnel_l)) = listeners {
        let (web_addr, tunnel_addr) = (addr_of(&web_l)?, addr_of(&tunnel_l)?);
        let public = public.unwrap_or_else(|| web_addr.to_string());
        let principals = proxy_principals(&[tunnel_addr, web_addr], &public);
        let id = match (&auth, &cfg.join) {
            (Some(a), _) => {
                let hp = HostPort {
                    host: a.addr.ip().to_string(),
                    port: a.addr.port(),
                };
                local_proxy_identity(&a.state, hp, &principals).await?
            }
            (None, Some(join)) => {
                let bundle =
                    crate::join::load_or_join(&cfg.data_dir, join, &principals, now()).await?;
                let path = crate::join::identity_path(&cfg.data_dir);
                let id = joined_proxy_identity(&bundle, &path, join.auth_server.clone()).await?;
                proxy_identity = Some(path);
                id
            }
            (None, None) => unreachable!("checked above"),
        };
        Some(start_proxy(&cfg, id, web_l, tunnel_l, &public, &metrics).await?)
    } else {
        None
    };
    let cluster_name = match (&auth, &proxy) {
        (Some(a), _) => a.state.name.clone(),
        (None, Some(p)) => p.cluster_name.clone(),
        (None, None) => String::new(),
    };

    // With an Auth server: ends when it has drained after [`Running::stop`] (or failed),
    // and the proxy's listeners stop with it. A proxy alone stops at once.
    let (web_addr, tunnel_addr) = (
        proxy.as_ref().map(|p| p.web_addr),
        proxy.as_ref().map(|p| p.tunnel_addr),
    );
    let tasks: Vec<_> = proxy.map(|p| p.tasks).unwrap_or_default();
    let (auth_addr, state_path, admin, auth_task) = match auth {
        Some(a) => (Some(a.addr), a.state_path, Some(a.admin), Some(a.task)),
        None => (None, None, None, None),
    };
    let stopped = stop.clone();
    let handle = tokio::spawn(async move {
        match auth_task {
            Some(t) => {
                let _ = t.await;
            }
            None => stopped.notified().await,
        }
        for t in tasks {
            t.abort();
        }
    });
    metrics.set_ready();
    Ok((
        Running {
            cluster_name,
            state_path,
            auth_addr,
            web_addr,
            tunnel_addr,
            admin,
            proxy_identity,
            diag_addr,
            metrics,
            _lock: lock,
            stop,
        },
        handle,
    ))
}

/// A running Auth server.
struct AuthRunning {
    state: tp_auth::bootstrap::ClusterState,
    addr: SocketAddr,
    state_path: Option<PathBuf>,
    admin: AdminIdentity,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Opens the state, bootstraps, and serves the Auth server until `stop`; writes the
/// local admin identity.
async fn start_auth(
    cfg: &ClusterConfig,
    web_public_addr: Option<&str>,
    metrics: &Arc<crate::diag::Metrics>,
    stop: Arc<tokio::sync::Notify>,
) -> Result<AuthRunning, CliError> {
    let (store, state_path) = open_store(cfg).await?;
    let state = bootstrap_with(
        store.as_ref(),
        cfg.cluster_name.as_deref(),
        now(),
        cfg.signature_algorithm_suite.into(),
    )
    .await
    .map_err(|e| match e {
        BootstrapError::OtherCluster { .. } => CliError::new(
            e.to_string(),
            "a data directory holds one cluster; drop --cluster-name to use the stored one",
        ),
        other => CliError::plain(other.to_string()),
    })?;
    let auth_l = TcpListener::bind(cfg.auth_addr)
        .await
        .map_err(|e| bind_error("auth", cfg.auth_addr, e))?;
    let auth_addr = auth_l
        .local_addr()
        .map_err(|e| CliError::plain(e.to_string()))?;
    let ca_err = |e: ca::CaError| CliError::plain(e.to_string());
    let mut sans = vec![
        "teleport.cluster.local".to_string(),
        "*.teleport.cluster.local".to_string(),
        "localhost".into(),
    ];
    sans.push(auth_addr.ip().to_string());
    let (chain, key) = tls_parts(
        &ca::issue_host(
            &state.host_ca,
            &format!("auth.{}", state.name),
            "Auth",
            &sans,
            now(),
            365 * 86400,
        )
        .map_err(ca_err)?,
    )?;
    let cas = ca::tls_certs_der(&state.user_ca)
        .into_iter()
        .chain(ca::tls_certs_der(&state.host_ca))
        .map(CertificateDer::from)
        .collect();
    let tls = listener::server_config(chain, key, cas)
        .map_err(|e| CliError::plain(format!("Auth server TLS: {e}")))?;
    let mut auth = AuthServer::for_cluster(&state, store, system_clock());
    if let Some(p) = web_public_addr {
        auth = auth.with_web_proxy_addr(p);
    }
    // Count accepted connections on the way to the server.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut accepted = listener::incoming(auth_l, Arc::new(tls));
    let counted = metrics.clone();
    tokio::spawn(async move {
        while let Some(conn) = futures_util::StreamExt::next(&mut accepted).await {
            counted.connection();
            if tx.send(conn).await.is_err() {
                break;
            }
        }
    });
    let observed = metrics.clone();
    let observer: tp_auth::server::RpcObserver =
        Arc::new(move |path, code| observed.rpc(path, code));
    let task = tokio::spawn(tp_auth::server::serve_until(
        auth,
        tokio_stream::wrappers::ReceiverStream::new(rx),
        Some(observer),
        async move { stop.notified().await },
    ));

    // The local admin identity, for tpctl on this host.
    let admin = AdminIdentity::in_dir(&cfg.data_dir);
    if let Some(d) = admin.cert.parent() {
        private_dir(d)?;
    }
    let admin_issued = ca::issue_host(
        &state.host_ca,
        &format!("admin.{}", state.name),
        "Admin",
        &[],
        now(),
        365 * 86400,
    )
    .map_err(ca_err)?;
    let host_ca_pem = state
        .host_ca
        .spec
        .as_ref()
        .and_then(|s| s.active_keys.as_ref())
        .and_then(|k| k.tls.first())
        .map(|k| k.cert.clone())
        .unwrap_or_default();
    write_atomic(&admin.key, admin_issued.key_pem.as_bytes(), 0o600)?;
    write_atomic(&admin.cert, admin_issued.cert_pem.as_bytes(), 0o600)?;
    write_atomic(&admin.ca, &host_ca_pem, 0o600)?;
    write_atomic(&admin.auth_addr, auth_addr.to_string().as_bytes(), 0o600)?;
    Ok(AuthRunning {
        state,
        addr: auth_addr,
        state_path,
        admin,
        task,
    })
}

/// A running Proxy.
struct ProxyRunning {
    cluster_name: String,
    web_addr: SocketAddr,
    tunnel_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Serves the web port and the reverse tunnel with identity `id`.
async fn start_proxy(
    cfg: &ClusterConfig,
    id: ProxyIdentity,
    web_l: TcpListener,
    tunnel_l: TcpListener,
    public: &str,
    metrics: &Arc<crate::diag::Metrics>,
) -> Result<ProxyRunning, CliError> {
    let addr_of = |l: &TcpListener| l.local_addr().map_err(|e| CliError::plain(e.to_string()));
    let (web_addr, tunnel_addr) = (addr_of(&web_l)?, addr_of(&tunnel_l)?);
    let mut proxy = ProxySettings::default();
    proxy.ssh.web_listen_addr = web_addr.to_string();
    proxy.ssh.tunnel_listen_addr = tunnel_addr.to_string();
    // In multiplex mode the web port routes Auth connections by ALPN (and serves the
    // tunnel too); discovery tells clients which.
    proxy.tls_routing_enabled = cfg.listener_mode == ListenerMode::Multiplex;
    proxy.ssh.public_addr = public.to_string();
    let web = router(
        Arc::new(WebConfig::new(id.cluster_name.clone(), proxy)),
        Some(id.client.clone()),
    );
    let web_tls = match &cfg.web_keypair {
        Some(pair) => web_tls_from_files(pair)?,
        None => {
            let (chain, key) = (id.web_default.0.clone(), id.web_default.1.clone_key());
            web_server_config(chain, key).map_err(|e| CliError::plain(format!("web TLS: {e}")))?
        }
    };
    let tunnel = tunnel_server(&id)?;
    // The proxy's SSH host certificate, public, for operators (`ssh-keygen -L -f`).
    private_dir(&cfg.data_dir.join("proxy"))?;
    write_atomic(
        &cfg.data_dir.join("proxy").join("ssh_host_cert.pub"),
        format!("{}\n", id.host_cert_line).as_bytes(),
        0o644,
    )?;
    metrics.set_tunnel(tunnel.stats());
    let tunnel_task = tokio::spawn(tp_proxy::tunnel::serve(tunnel_l, tunnel.clone()));
    let mut web_port =
        WebPort::new(id.cluster_name.clone(), web_tls, web, id.auth.clone()).with_tunnel(tunnel);
    if cfg.listener_mode == ListenerMode::Separate {
        web_port = web_port.separate();
    }
    let web_task = tokio::spawn(web_port.serve(web_l));
    Ok(ProxyRunning {
        cluster_name: id.cluster_name,
        web_addr,
        tunnel_addr,
        tasks: vec![web_task, tunnel_task],
    })
}

/// Connects to an Auth server as `issued`, trusting `host_ca`.
pub async fn connect(
    addr: &HostPort,
    issued: &Issued,
    host_ca: &tp_proto::types::CertAuthorityV2,
) -> Result<Client, CliError> {
    let roots: Vec<Vec<u8>> = ca::tls_certs_der(host_ca);
    connect_with(
        addr,
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        &roots,
    )
    .await
}

/// Connects to an Auth server with a PEM certificate and key, trusting the DER roots.
pub async fn connect_with(
    addr: &HostPort,
    cert_pem: &[u8],
    key_pem: &[u8],
    roots: &[Vec<u8>],
) -> Result<Client, CliError> {
    connect_as(
        addr,
        (cert_pem, key_pem),
        roots,
        "local admin identity",
        "is tpd running? start it with `tpd start`, or pass --auth-server",
    )
    .await
}

/// [`connect_with`], naming the credential `label` in errors, with `hint`.
async fn connect_as(
    addr: &HostPort,
    (cert_pem, key_pem): (&[u8], &[u8]),
    roots: &[Vec<u8>],
    label: &str,
    hint: &str,
) -> Result<Client, CliError> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(CertificateDer::from(r.clone()))
            .map_err(|e| CliError::plain(format!("trusted CA: {e}")))?;
    }
    let cert = CertificateDer::from_pem_slice(cert_pem)
        .map_err(|e| CliError::plain(format!("certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| CliError::plain(format!("private key: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| CliError::plain(e.to_string()))?
    .with_root_certificates(store)
    .with_client_auth_cert(vec![cert], key)
    .map_err(|e| CliError::plain(format!("client certificate: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let target = Target::Direct {
        addr: addr.clone(),
        tls: Arc::new(tls),
        server_name: "teleport.cluster.local".into(),
        credential: label.into(),
    };
    Client::connect(
        Config::new()
            .target(target)
            .dial_timeout(Duration::from_secs(10)),
    )
    .await
    .map_err(|e| CliError::new(e.to_string(), hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_ports_name_the_capability() {
        let e = bind_error(
            "web",
            "0.0.0.0:443".parse().unwrap(),
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        )
        .to_string();
        assert!(
            e.contains("cannot listen on 0.0.0.0:443 for the web service"),
            "{e}"
        );
        assert!(e.contains("CAP_NET_BIND_SERVICE"), "{e}");
        let e = bind_error(
            "auth",
            "127.0.0.1:3025".parse().unwrap(),
            std::io::Error::from(std::io::ErrorKind::AddrInUse),
        )
        .to_string();
        assert!(
            e.contains("another process listens on 127.0.0.1:3025"),
            "{e}"
        );
    }
}
