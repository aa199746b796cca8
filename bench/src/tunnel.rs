//! The reverse tunnel (issue 7): `tp_transport::tunnel` against OpenSSH in the same run.
//!
//! - **Bulk throughput**: 256 MiB through `tunnel::open` (tp-ssh, `teleport-transport`
//!   dialled to `@remote-auth-server`) via a `TunnelServer` on tp-proxy's listener to a
//!   sink standing in for the Auth server, against the `ssh -W` → `sshd` figure measured
//!   above with the same cipher (aes128-gcm, forced by the tunnel server's configuration).
//! - **New tunnel connections/s** (TCP, KEX, certificate auth, transport channel, the
//!   proxy's dial to the Auth server, close), 4 in flight, against the same tp-ssh client
//!   doing the same against sshd (connect, auth, a `direct-tcpip` channel whose open makes
//!   sshd dial the same sink, close). No goal is set.
//! - **Idle connections** at 1,000 and 10,000: the tunnel server runs in a child process
//!   of its own (this binary, `__tunnel-idle-server`) and the clients plus the stand-in
//!   Auth server in another (`__tunnel-idle-clients`), so each process's VmRSS (from
//!   /proc/self/status) before and after holding the connections gives the cost per
//!   connection of that side alone; the goal (≤ 20 KiB) applies to the server (proxy) side.
//!   Two kinds of connection: an authenticated SSH session with no channel, and a full
//!   tunnel connection (session + `teleport-transport` channel spliced to the Auth server,
//!   what a connected client holds). Both children raise their soft `RLIMIT_NOFILE` to the
//!   hard limit with `ulimit` (unsafe code, hence `setrlimit`, is forbidden here), and the
//!   hard limit to 65,536 where allowed (root); a level that needs more descriptors than
//!   the hard limit is measured at the most connections the limit allows, and the line
//!   says so.

use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures_util::stream::{self, StreamExt as _, TryStreamExt as _};
use tokio::net::TcpListener;
use tp_creds::{KeyAlgorithm, PrivateKey, SshHostIdentity, SshIdentity, SshMaterial};
use tp_ssh::CipherAlg;
use tp_transport::addr::HostPort;
use tp_transport::proxy_env::ProxyMatcher;
use tp_transport::tunnel::{TunnelServer, open};

use crate::ssh::{HANDSHAKES_IN_FLIGHT, Received, Sink, push};

/// Argument that makes this binary the tunnel server child of the idle benchmark.
pub(crate) const IDLE_SERVER: &str = "__tunnel-idle-server";
/// Argument that makes this binary the clients child of the idle benchmark.
pub(crate) const IDLE_CLIENTS: &str = "__tunnel-idle-clients";
/// The idle levels.
const LEVELS: [usize; 2] = [1_000, 10_000];
/// Connections opened at once while filling a level.
const OPEN_IN_FLIGHT: usize = 32;
/// Descriptors a child needs besides its connections (stdio, epoll, listeners, ...).
const FD_SLACK: u64 = 64;
/// The idle goal on the server side, in KiB per connection.
const IDLE_GOAL_KIB: f64 = 20.0;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ed25519() -> anyhow::Result<ssh_key::PrivateKey> {
    Ok(PrivateKey::generate(KeyAlgorithm::Ed25519)?.to_ssh()?)
}

/// Teleport-shaped tunnel credentials: a proxy host certificate from the host CA, a user
/// certificate with roles from the user CA.
pub(crate) struct TunnelPki {
    user_ca: ssh_key::PrivateKey,
    host_ca: ssh_key::PrivateKey,
    host_key: ssh_key::PrivateKey,
    host_cert: ssh_key::Certificate,
    user_key: ssh_key::PrivateKey,
    user_cert: ssh_key::Certificate,
}

impl TunnelPki {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let (user_ca, host_ca, host_key, user_key) =
            (ed25519()?, ed25519()?, ed25519()?, ed25519()?);
        let host_cert = SshHostIdentity::new("proxy", "example.com", "Proxy").sign(
            host_key.public_key(),
            &host_ca,
            now() - 60,
            now() + 3600,
        )?;
        let mut id = SshIdentity::user("alice", vec!["access".into()], "example.com");
        id.logins = vec!["alice".into()];
        let user_cert = id.sign(user_key.public_key(), &user_ca, now() - 60, now() + 3600)?;
        Ok(Self {
            user_ca,
            host_ca,
            host_key,
            host_cert,
            user_key,
            user_cert,
        })
    }

    /// The proxy's tunnel server configuration with `ciphers` offered.
    fn server(&self, ciphers: Vec<CipherAlg>, auth_port: u16) -> anyhow::Result<TunnelServer> {
        let pair =
            tp_ssh::KeyPair::new(&self.host_key)?.with_certificate(self.host_cert.clone())?;
        let mut cfg = tp_ssh::ServerConfig::new(
            Arc::new(pair),
            vec![tp_ssh::fingerprint(self.user_ca.public_key())],
        );
        cfg.transport.ciphers = ciphers;
        // One user holds every connection here: lift the per-user cap (it is not what is
        // measured).
        Ok(TunnelServer::new(
            cfg,
            HostPort {
                host: "127.0.0.1".into(),
                port: auth_port,
            },
        )
        .with_max_per_user(usize::MAX))
    }

    fn material(&self) -> SshMaterial {
        SshMaterial {
            signer: Arc::new(self.user_key.clone()),
            certificate: self.user_cert.clone(),
            host_cas: vec![self.host_ca.public_key().clone()],
            user: "alice".into(),
        }
    }

    /// Writes everything to `dir` for the children (OpenSSH encodings).
    fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let lf = ssh_key::LineEnding::LF;
        std::fs::write(dir.join("user_ca"), self.user_ca.to_openssh(lf)?.as_bytes())?;
        std::fs::write(dir.join("host_ca"), self.host_ca.to_openssh(lf)?.as_bytes())?;
        std::fs::write(
            dir.join("host_key"),
            self.host_key.to_openssh(lf)?.as_bytes(),
        )?;
        std::fs::write(
            dir.join("user_key"),
            self.user_key.to_openssh(lf)?.as_bytes(),
        )?;
        std::fs::write(dir.join("host_cert"), self.host_cert.to_openssh()?)?;
        std::fs::write(dir.join("user_cert"), self.user_cert.to_openssh()?)?;
        Ok(())
    }

    fn read(dir: &Path) -> anyhow::Result<Self> {
        let key = |name: &str| -> anyhow::Result<ssh_key::PrivateKey> {
            Ok(ssh_key::PrivateKey::from_openssh(std::fs::read_to_string(
                dir.join(name),
            )?)?)
        };
        let cert = |name: &str| -> anyhow::Result<ssh_key::Certificate> {
            Ok(ssh_key::Certificate::from_openssh(
                &std::fs::read_to_string(dir.join(name))?,
            )?)
        };
        Ok(Self {
            user_ca: key("user_ca")?,
            host_ca: key("host_ca")?,
            host_key: key("host_key")?,
            host_cert: cert("host_cert")?,
            user_key: key("user_key")?,
            user_cert: cert("user_cert")?,
        })
    }
}

/// A tunnel server on tp-proxy's own listener (`tp_proxy::tunnel::serve`) in this process.
async fn listen(server: TunnelServer) -> anyhow::Result<HostPort> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(tp_proxy::tunnel::serve(l, server));
    Ok(HostPort {
        host: "127.0.0.1".into(),
        port,
    })
}

/// One tunnel transfer of `BULK` bytes to the sink behind the tunnel server.
async fn tunnel_bulk(
    addr: &HostPort,
    material: &SshMaterial,
    sink: &mut Sink,
) -> anyhow::Result<Received> {
    let stream = open(addr, material, &ProxyMatcher::default()).await?;
    let (r, w) = tokio::io::split(stream);
    push(r, w, crate::ssh::BULK).await?;
    sink.next().await
}

/// Tunnel bulk throughput (best of two runs), with aes128-gcm forced by the server.
pub(crate) async fn bulk(pki: &TunnelPki, sink: &mut Sink) -> anyhow::Result<Received> {
    let addr = listen(pki.server(vec![CipherAlg::Aes128Gcm], sink.port)?).await?;
    let material = pki.material();
    let a = tunnel_bulk(&addr, &material, sink).await?;
    let b = tunnel_bulk(&addr, &material, sink).await?;
    Ok(if a.mb_per_s() >= b.mb_per_s() { a } else { b })
}

/// New tunnel connections/s to a tunnel server dialling the (non-reporting) `auth_port`.
pub(crate) async fn connections(pki: &TunnelPki, auth_port: u16) -> anyhow::Result<f64> {
    let addr = listen(pki.server(vec![CipherAlg::Aes128Gcm], auth_port)?).await?;
    let material = Arc::new(pki.material());
    crate::rate_n(HANDSHAKES_IN_FLIGHT, move || {
        let (addr, material) = (addr.clone(), material.clone());
        async move {
            drop(open(&addr, &material, &ProxyMatcher::default()).await?);
            Ok(())
        }
    })
    .await
}

/// The baseline of [`connections`]: the tp-ssh client against sshd, with a
/// `direct-tcpip` channel to `auth_port` opened and closed per connection.
pub(crate) async fn connections_sshd(
    pki: &crate::openssh::Pki,
    sshd_port: u16,
    auth_port: u16,
) -> anyhow::Result<f64> {
    let cfg = pki.tp_client(CipherAlg::Aes128Gcm)?;
    crate::rate_n(HANDSHAKES_IN_FLIGHT, move || {
        let cfg = cfg.clone();
        async move {
            let session = crate::ssh::tp_connect(sshd_port, cfg).await?;
            drop(
                session
                    .open_direct_tcpip("127.0.0.1", auth_port, "127.0.0.1", 1)
                    .await?,
            );
            session.disconnect();
            Ok(())
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Idle connections: the parent's side.

/// This process's resident set size in KiB (VmRSS in /proc/self/status).
fn vm_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")
}

/// The hard `RLIMIT_NOFILE` a child gets: the same `ulimit` the children run, asked of
/// a shell (`None` for unlimited).
fn nofile_hard_limit() -> anyhow::Result<Option<u64>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -H -n 65536 2>/dev/null; ulimit -H -n")
        .output()
        .context("asking sh for the descriptor limit")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse().ok())
}

/// A child of this binary in `role`, with its soft descriptor limit raised to the hard
/// one; talks line by line over stdin/stdout.
pub(crate) struct Child {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    role: &'static str,
}

impl Child {
    pub(crate) fn spawn(role: &'static str, args: &[String]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new("sh")
            .arg("-c")
            // Root may raise the hard limit too (for the 10,000-connection level); for
            // others that fails quietly and the soft limit goes to the hard one.
            .arg(r#"ulimit -H -n 65536 2>/dev/null; ulimit -S -n "$(ulimit -H -n)" && exec "$0" "$@""#)
            .arg(exe)
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning a benchmark child through sh")?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("child without pipes");
        };
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout: std::io::BufReader::new(stdout),
            role,
        })
    }

    /// Sends `command` (empty: send nothing) and returns the next line's words after
    /// `expect`.
    pub(crate) fn ask(&mut self, command: &str, expect: &str) -> anyhow::Result<Vec<String>> {
        if !command.is_empty() {
            let stdin = self.stdin.as_mut().context("stdin closed")?;
            writeln!(stdin, "{command}")?;
            stdin.flush()?;
        }
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut words = line.split_whitespace().map(str::to_owned);
        if words.next().as_deref() != Some(expect) {
            bail!(
                "{} answered {line:?} to {command:?} (expected {expect})",
                self.role
            );
        }
        Ok(words.collect())
    }

    pub(crate) fn number(&mut self, command: &str, expect: &str) -> anyhow::Result<Vec<u64>> {
        self.ask(command, expect)?
            .iter()
            .map(|w| w.parse().context("not a number"))
            .collect()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // EOF on stdin ends the child; kill it if it does not go within 10 s.
        drop(self.stdin.take());
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one idle level measured.
struct Idle {
    server_kib: f64,
    client_kib: f64,
    server_before: u64,
    server_after: u64,
}

fn idle_level(dir: &Path, n: usize, transport: bool) -> anyhow::Result<Idle> {
    let mut clients = Child::spawn(IDLE_CLIENTS, &[dir.display().to_string()])?;
    let [sink_port] = clients.number("", "sink")?[..] else {
        bail!("clients: no sink port");
    };
    // Up to tp-proxy's cap, its own listener; above it, the same `TunnelServer::serve`
    // per connection on an uncapped accept loop (the listener would make the rest wait).
    let capped = n <= tp_proxy::tunnel::MAX_CONNECTIONS;
    let mut server = Child::spawn(
        IDLE_SERVER,
        &[
            dir.display().to_string(),
            sink_port.to_string(),
            if capped { "capped" } else { "uncapped" }.into(),
        ],
    )?;
    let [port] = server.number("", "listening")?[..] else {
        bail!("server: no port");
    };
    clients.ask(&format!("warmup {port}"), "ok")?;
    std::thread::sleep(Duration::from_millis(300));
    let [server_before] = server.number("rss", "rss")?[..] else {
        bail!("server: no rss");
    };
    let kind = if transport { "transport" } else { "session" };
    let [client_before, client_after] =
        clients.number(&format!("open {port} {n} {kind}"), "opened")?[..]
    else {
        bail!("clients: no rss");
    };
    // Let the server finish answering the last opens before measuring it.
    std::thread::sleep(Duration::from_millis(1000));
    let [server_after] = server.number("rss", "rss")?[..] else {
        bail!("server: no rss");
    };
    let per = |before: u64, after: u64| after.saturating_sub(before) as f64 / n as f64;
    Ok(Idle {
        server_kib: per(server_before, server_after),
        client_kib: per(client_before, client_after),
        server_before,
        server_after,
    })
}

/// Runs every idle level and prints a line for each; returns whether each measured
/// level meets the goal.
pub(crate) fn idle(pki: &TunnelPki) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    pki.write(dir.path())?;
    let hard = nofile_hard_limit()?;
    let mut ok = true;
    for transport in [false, true] {
        let what = if transport {
            "tunnel connections (session + teleport-transport channel spliced to the Auth server)"
        } else {
            "authenticated SSH sessions, no channel"
        };
        for n in LEVELS {
            // Server: one socket per client (plus one to the Auth server per channel);
            // the clients' process: the same, its stand-in Auth server accepting those.
            let per_conn = if transport { 2 } else { 1 };
            let need = n as u64 * per_conn + FD_SLACK;
            // A level the descriptor limit cannot hold is measured at the most it can
            // (rounded down to a hundred), and says so.
            let (n, note) = match hard.filter(|&h| h < need) {
                Some(hard) => {
                    let fits = hard.saturating_sub(FD_SLACK) / per_conn / 100 * 100;
                    let fits = usize::try_from(fits).unwrap_or(0);
                    if fits == 0 {
                        println!(
                            "tunnel idle, {n} {what}: skipped: needs about {need} open files per \
                             process, the hard RLIMIT_NOFILE is {hard}"
                        );
                        continue;
                    }
                    (
                        fits,
                        format!(
                            " [the {n} level, measured at {fits}: it needs about {need} open files \
                             per process and the hard RLIMIT_NOFILE is {hard}]"
                        ),
                    )
                }
                None => (n, String::new()),
            };
            let m = idle_level(dir.path(), n, transport)?;
            let meets = m.server_kib <= IDLE_GOAL_KIB;
            ok &= meets;
            println!(
                "tunnel idle, {n} {what}{note}: server process {:.1} KiB/connection (VmRSS {} -> {} KiB), \
                 clients + stand-in Auth server process {:.1} KiB/connection ({} the {IDLE_GOAL_KIB} KiB goal on the server side)",
                m.server_kib,
                m.server_before,
                m.server_after,
                m.client_kib,
                if meets { "meets" } else { "ABOVE" },
            );
        }
    }
    Ok(ok)
}

// ---------------------------------------------------------------------------------------
// Idle connections: the children.

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn arg(args: &[String], i: usize) -> anyhow::Result<&str> {
    args.get(i)
        .map(String::as_str)
        .with_context(|| format!("missing argument {i}"))
}

/// `__tunnel-idle-server <dir> <auth port> capped|uncapped`: prints `listening <port>`,
/// answers `rss` with `rss <KiB>`, exits at EOF.
pub(crate) fn idle_server(args: &[String]) -> anyhow::Result<()> {
    let pki = TunnelPki::read(Path::new(arg(args, 0)?))?;
    let auth_port: u16 = arg(args, 1)?.parse()?;
    let capped = arg(args, 2)? == "capped";
    let rt = runtime()?;
    let server = pki.server(CipherAlg::ALL.to_vec(), auth_port)?;
    let port = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let port = l.local_addr()?.port();
        if capped {
            tokio::spawn(tp_proxy::tunnel::serve(l, server));
        } else {
            // tp_proxy::tunnel::serve without its semaphore.
            tokio::spawn(async move {
                while let Ok((tcp, peer)) = l.accept().await {
                    let _ = tcp.set_nodelay(true);
                    let server = server.clone();
                    tokio::spawn(async move {
                        let _ = server.serve(tcp, Some(peer.ip())).await;
                    });
                }
            });
        }
        anyhow::Ok(port)
    })?;
    println!("listening {port}");
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "rss" => println!("rss {}", vm_rss_kib()?),
            other => bail!("server child: unknown command {other:?}"),
        }
    }
    Ok(())
}

/// `__tunnel-idle-clients <dir>`: runs the stand-in Auth server (prints `sink <port>`);
/// `warmup <port>` opens and closes a few connections of each kind (prints `ok`);
/// `open <port> <n> session|transport` opens and holds `n` (prints
/// `opened <VmRSS before> <VmRSS after>`); exits at EOF.
pub(crate) fn idle_clients(args: &[String]) -> anyhow::Result<()> {
    let pki = TunnelPki::read(Path::new(arg(args, 0)?))?;
    let material = Arc::new(pki.material());
    let rt = runtime()?;
    let sink = rt.block_on(Sink::start(false))?;
    println!("sink {}", sink.port);
    let mut held_sessions: Vec<tp_ssh::Session> = Vec::new();
    let mut held_tunnels = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let addr = |port: &str| -> anyhow::Result<HostPort> {
            Ok(HostPort {
                host: "127.0.0.1".into(),
                port: port.parse()?,
            })
        };
        let cfg = |addr: &HostPort| -> anyhow::Result<Arc<tp_ssh::ClientConfig>> {
            Ok(Arc::new(tp_transport::tunnel::client_config(
                &material, addr,
            )?))
        };
        match words[..] {
            ["warmup", port] => {
                let addr = addr(port)?;
                let cfg = cfg(&addr)?;
                rt.block_on(async {
                    for _ in 0..16 {
                        drop(crate::ssh::tp_connect(addr.port, cfg.clone()).await?);
                        drop(open(&addr, &material, &ProxyMatcher::default()).await?);
                    }
                    anyhow::Ok(())
                })?;
                println!("ok");
            }
            ["open", port, n, kind] => {
                let addr = addr(port)?;
                let cfg = cfg(&addr)?;
                let n: usize = n.parse()?;
                let before = vm_rss_kib()?;
                rt.block_on(async {
                    if kind == "transport" {
                        held_tunnels = stream::iter(0..n)
                            .map(|_| {
                                let (addr, material) = (addr.clone(), material.clone());
                                async move {
                                    open(&addr, &material, &ProxyMatcher::default()).await
                                }
                            })
                            .buffer_unordered(OPEN_IN_FLIGHT)
                            .try_collect()
                            .await?;
                    } else {
                        held_sessions = stream::iter(0..n)
                            .map(|_| crate::ssh::tp_connect(addr.port, cfg.clone()))
                            .buffer_unordered(OPEN_IN_FLIGHT)
                            .try_collect()
                            .await?;
                    }
                    anyhow::Ok(())
                })?;
                std::thread::sleep(Duration::from_millis(500));
                println!("opened {before} {}", vm_rss_kib()?);
            }
            _ => bail!("clients child: unknown command {line:?}"),
        }
    }
    drop(held_sessions);
    drop(held_tunnels);
    Ok(())
}
