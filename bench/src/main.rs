//! `cargo xtask bench`: tp's performance targets as ratios against baselines measured in
//! the same run on the same machine, never as absolute timings.
//!
//! - **GetRole at 64 in flight** over one mTLS connection: the real Auth server (RBAC,
//!   storage on SQLite as tpd runs it, encoding) against a bare tonic service that
//!   returns a fixed role over the same listener. Goal ≥ 0.7×.
//! - **GenerateUserCerts** through the server against the raw signing rate of the same
//!   key types (one ECDSA P-256 and one Ed25519 signature per request), each per
//!   CPU-second of the process doing the work, the calls coming from a load generator in
//!   a child process ([`certs`]). Goal ≥ 0.5×.
//! - **Ping at 64 in flight** over one connection, against the bare tonic service. No
//!   goal: Ping does no work, so this is the floor of the server's per-call cost.
//! - **tpd cold start** to ready, first start and restart. Goal: under 1 s.
//! - **Connect + first Ping** ([`connect`]) given each kind of address, tp-client against
//!   Teleport's Go client. Goal ≤ 0.5×.
//! - **tp-ssh against OpenSSH** ([`ssh`]): bulk throughput through a channel against
//!   `ssh -W` through `sshd` (goal ≥ 1.0×), and handshakes/s.
//! - **The reverse tunnel** ([`tunnel`]): bulk throughput against OpenSSH forwarding, new
//!   connections/s, and RSS per idle connection at 1,000 and 10,000 (goal ≤ 20 KiB).
//!
//! `TP_BENCH_ONLY=<part> cargo xtask bench` runs one part alone: `rpc` (GetRole, Ping,
//! GenerateUserCerts), `certs` (GenerateUserCerts alone), `start`, `connect`, `ssh`
//! (tp-ssh against OpenSSH), `tunnel` (bulk and new connections) or `idle`.
//!
//! OpenSSH (`/usr/sbin/sshd`, `ssh`, `ssh-keygen`) must be installed: without it the bench
//! fails and names the Debian package.

mod certs;
mod connect;
mod openssh;
mod ssh;
mod tunnel;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::{Request, Response, Status};
use tp_auth::listener;
use tp_client::{Client, Config, Target};
use tp_proto::proto::auth_service_server::{AuthService, AuthServiceServer};
use tp_proto::proto::{GetRoleRequest, PingRequest, PingResponse};
use tp_proto::resource::{Resource, parse};
use tp_proto::types::RoleV6;
use tp_tests::cluster::TestCluster;
use tp_transport::addr::HostPort;

/// The allocator tpd runs with, so that the servers measured here allocate as tpd's do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 64;
const MEASURE: Duration = Duration::from_secs(3);

fn seed_role() -> anyhow::Result<RoleV6> {
    match parse(
        "kind: role\nversion: v5\nmetadata: {name: api-role}\nspec:\n  allow:\n    rules: [{resources: [role], verbs: [read]}]\n",
        "bench",
    )?
    .remove(0)
    {
        Resource::Role(r) => Ok(r),
        _ => anyhow::bail!("not a role"),
    }
}

/// The baseline: a tonic service that answers GetRole with a fixed role, no RBAC, no
/// storage, on the same mutual-TLS listener as the real server.
struct Bare(RoleV6);

#[tonic::async_trait]
impl AuthService for Bare {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse::default()))
    }

    async fn get_role(&self, _: Request<GetRoleRequest>) -> Result<Response<RoleV6>, Status> {
        Ok(Response::new(self.0.clone()))
    }
}

/// Calls `op` with `IN_FLIGHT` concurrent callers for `MEASURE`; returns calls/s.
async fn rate<F, Fut>(op: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    rate_n(IN_FLIGHT, op).await
}

/// Calls `op` with `in_flight` concurrent callers for `MEASURE` after a warm-up;
/// returns calls/s.
pub(crate) async fn rate_n<F, Fut>(in_flight: usize, op: F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    for _ in 0..50 {
        op().await?;
    }
    let start = Instant::now();
    let calls = measure(in_flight, op).await?;
    Ok(calls as f64 / start.elapsed().as_secs_f64())
}

/// Calls `op` with `in_flight` concurrent callers for `MEASURE`; returns the calls made.
///
/// Each caller is a task of its own on the runtime's workers, like independent clients:
/// driven from the thread that blocks on the runtime, every completion would wake a
/// third thread, and in one task the callers could never use both cores.
pub(crate) async fn measure<F, Fut>(in_flight: usize, op: F) -> anyhow::Result<u64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    measure_for(in_flight, MEASURE, op).await
}

/// [`measure`] for `time` instead of `MEASURE`.
pub(crate) async fn measure_for<F, Fut>(
    in_flight: usize,
    time: Duration,
    op: F,
) -> anyhow::Result<u64>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let callers: Vec<_> = (0..in_flight)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while start.elapsed() < time {
                    op().await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let mut total = 0u64;
    for caller in callers {
        total += caller.await??;
    }
    Ok(total)
}

fn report(name: &str, tp: f64, baseline: f64, goal: f64) -> bool {
    let ratio = tp / baseline;
    let verdict = if ratio >= goal { "meets" } else { "BELOW" };
    println!(
        "{name}: tp {tp:.0}/s, baseline {baseline:.0}/s, ratio {ratio:.2}x ({verdict} the {goal}x goal)"
    );
    ratio >= goal
}

/// A rate with a same-run baseline but no goal (printed for the record).
fn report_rate(name: &str, tp: f64, baseline_name: &str, baseline: f64) {
    println!(
        "{name}: tp {tp:.0}/s, {baseline_name} {baseline:.0}/s, ratio {:.2}x (no goal set)",
        tp / baseline
    );
}

/// Throughput in MB/s (10^6 bytes) against a same-run baseline, with a goal.
fn report_throughput(
    name: &str,
    tp: ssh::Received,
    baseline_name: &str,
    baseline: ssh::Received,
    goal: f64,
) -> bool {
    let ratio = tp.mb_per_s() / baseline.mb_per_s();
    let verdict = if ratio >= goal { "meets" } else { "BELOW" };
    println!(
        "{name}: tp {:.0} MB/s, {baseline_name} {:.0} MB/s, ratio {ratio:.2}x ({verdict} the {goal}x goal)",
        tp.mb_per_s(),
        baseline.mb_per_s()
    );
    ratio >= goal
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some(tunnel::IDLE_SERVER) => return tunnel::idle_server(&args[1..]),
        Some(tunnel::IDLE_CLIENTS) => return tunnel::idle_clients(&args[1..]),
        Some(certs::LOAD) => return certs::load(&args[1..]),
        Some(other) => anyhow::bail!("unknown argument {other:?} (tp-bench takes none)"),
        None => {}
    }
    // Before anything is measured: without OpenSSH there is no baseline for the SSH
    // benchmarks, and they must not be skipped silently.
    openssh::require_tools()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // TP_BENCH_ONLY=<part> runs one part alone (for iterating on it).
    #[allow(
        clippy::disallowed_methods,
        reason = "a developer's switch read once at start"
    )]
    let only = std::env::var("TP_BENCH_ONLY").ok();
    if let Some(o) = &only
        && !PARTS.contains(&o.as_str())
    {
        anyhow::bail!("TP_BENCH_ONLY={o:?}: expected one of {}", PARTS.join(", "));
    }
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let (mut ok, tunnel_pki) = if only.as_deref() == Some("idle") {
        (true, tunnel::TunnelPki::new()?)
    } else {
        rt.block_on(bench(&want))?
    };
    // Whatever the in-process benchmarks left running stops before the idle children
    // start, so they have the machine to themselves.
    rt.shutdown_background();
    if want("idle") {
        ok &= tunnel::idle(&tunnel_pki)?;
    }
    println!(
        "bench: {}",
        if ok {
            "every ratio meets its goal"
        } else {
            "some ratios are below their goals"
        }
    );
    Ok(())
}

/// The parts `TP_BENCH_ONLY` may name.
const PARTS: &[&str] = &["rpc", "certs", "start", "connect", "ssh", "tunnel", "idle"];

async fn bench(want: &dyn Fn(&str) -> bool) -> anyhow::Result<(bool, tunnel::TunnelPki)> {
    let mut ok = true;
    if want("rpc") || want("certs") {
        // `certs` alone skips GetRole and Ping (for profiling certificate issuance).
        ok &= rpc(want("rpc")).await?;
    }
    // 3. tpd cold start to ready on the embedded default (SQLite), first start (CAs are
    // generated) and restart (state reused). Goal: under 1 s.
    if want("start") {
        ok &= cold_start().await?;
    }
    // 3b. Connect + first Ping, tp-client against Teleport's Go client.
    if want("connect") {
        ok &= connect::connect_vs_go().await?;
    }
    let (ssh_ok, tunnel_pki) = ssh_and_tunnel(want).await?;
    Ok((ok && ssh_ok, tunnel_pki))
}

/// GetRole and Ping against bare tonic (when `calls`), GenerateUserCerts against raw
/// signing.
async fn rpc(calls: bool) -> anyhow::Result<bool> {
    // The Auth server as tpd runs it: on SQLite (WAL, synchronous=FULL; certificate
    // audit events Process-durable, synced in the background) in a directory.
    let dir = tempfile::tempdir()?;
    let backend = tp_backend::SqliteBackend::open(dir.path().join("sqlite.db")).await?;
    let cluster = TestCluster::start_with(
        Arc::new(tp_auth::store::BackendStore::new(Arc::new(backend))),
        "proxy.example.com:3080",
    )
    .await;
    let admin = cluster.admin().await;
    admin.create_role(seed_role()?).await?;
    let mut ok = true;
    if calls {
        ok &= calls_vs_bare(&cluster, &admin).await?;
    }

    // 2. GenerateUserCerts vs the raw signatures the same key types cost.
    ok &= certs::certs_vs_signing(&cluster, certs::Storage::Sqlite).await?;
    // The same on the in-memory store, to show what storage costs.
    let memory = TestCluster::start("proxy.example.com:3080").await;
    memory.admin().await.create_role(seed_role()?).await?;
    let _no_goal = certs::certs_vs_signing(&memory, certs::Storage::Memory).await?;
    // Neither server keeps working beside the parts that follow.
    memory.stop().await;
    cluster.stop().await;
    Ok(ok)
}

/// GetRole and Ping through the real server against a bare tonic service on the same
/// mutual-TLS listener setup.
async fn calls_vs_bare(cluster: &TestCluster, admin: &Client) -> anyhow::Result<bool> {
    let mut ok = true;
    // 1. GetRole: real server vs bare tonic over the same mTLS setup.
    let real = admin.clone();
    let tp_rate = rate(move || {
        let c = real.clone();
        async move {
            c.get_role("api-role").await?;
            Ok(())
        }
    })
    .await?;
    let server = tp_auth::ca::issue_host(
        &cluster.state.host_ca,
        "bare",
        "Auth",
        &["teleport.cluster.local".into()],
        tp_tests::cluster::now(),
        3600,
    )?;
    let tls = {
        use rustls_pki_types::pem::PemObject as _;
        let chain = vec![rustls_pki_types::CertificateDer::from_pem_slice(
            server.cert_pem.as_bytes(),
        )?];
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes())?;
        let cas = tp_auth::ca::tls_certs_der(&cluster.state.host_ca)
            .into_iter()
            .map(rustls_pki_types::CertificateDer::from)
            .collect();
        listener::server_config(chain, key, cas)?
    };
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = HostPort {
        host: "127.0.0.1".into(),
        port: l.local_addr()?.port(),
    };
    tokio::spawn(
        Server::builder()
            .add_service(AuthServiceServer::new(Bare(
                admin.get_role("api-role").await?,
            )))
            .serve_with_incoming(listener::incoming(l, Arc::new(tls))),
    );
    let bare = Client::connect(Config::new().target(Target::Direct {
        addr: bare_addr,
        tls: cluster.client_tls(&cluster.host_identity("Admin")),
        server_name: "teleport.cluster.local".into(),
        credential: "bench".into(),
    }))
    .await?;
    let bare_for_ping = bare.clone();
    let bare_rate = rate(move || {
        let c = bare.clone();
        async move {
            c.get_role("api-role").await?;
            Ok(())
        }
    })
    .await?;
    ok &= report("GetRole at 64 in flight", tp_rate, bare_rate, 0.7);

    // 1b. Ping over the same two connections.
    let real = admin.clone();
    let tp_ping = rate(move || {
        let c = real.clone();
        async move {
            c.ping().await?;
            Ok(())
        }
    })
    .await?;
    let bare_ping = rate(move || {
        let c = bare_for_ping.clone();
        async move {
            c.ping().await?;
            Ok(())
        }
    })
    .await?;
    report_rate("Ping at 64 in flight", tp_ping, "bare tonic", bare_ping);

    Ok(ok)
}

/// tp-ssh against OpenSSH (`ssh`), and the reverse tunnel (`tunnel`).
async fn ssh_and_tunnel(want: &dyn Fn(&str) -> bool) -> anyhow::Result<(bool, tunnel::TunnelPki)> {
    let mut ok = true;
    let tunnel_pki = tunnel::TunnelPki::new()?;
    if !want("ssh") && !want("tunnel") {
        return Ok((ok, tunnel_pki));
    }
    // 4. tp-ssh bulk throughput against OpenSSH, per cipher (the tunnel's baseline too).
    let pki = openssh::Pki::new()?;
    let sshd = openssh::Sshd::start(&pki)?;
    let tp_server = ssh::tp_ssh_server(pki.tp_server()?).await?;
    let mut sink = ssh::Sink::start(true).await?;
    let mut openssh_aes = None;
    let ciphers: &[tp_ssh::CipherAlg] = if want("ssh") {
        &[
            tp_ssh::CipherAlg::Aes128Gcm,
            tp_ssh::CipherAlg::ChaCha20Poly1305,
        ]
    } else {
        &[tp_ssh::CipherAlg::Aes128Gcm]
    };
    for &cipher in ciphers {
        let b = ssh::bulk(&pki, &sshd, tp_server, &mut sink, cipher).await?;
        ok &= report_throughput(
            &format!(
                "tp-ssh bulk, {} MiB through direct-tcpip, {}",
                ssh::BULK >> 20,
                cipher.name()
            ),
            b.tp,
            "OpenSSH ssh -W via sshd",
            b.openssh,
            1.0,
        );
        if cipher == tp_ssh::CipherAlg::Aes128Gcm {
            openssh_aes = Some(b.openssh);
        }
    }

    // 5. Handshakes/s: the same tp-ssh client against the tp-ssh server and sshd.
    if want("ssh") {
        let tp_hs = ssh::handshakes(tp_server, &pki).await?;
        let sshd_hs = ssh::handshakes(sshd.port, &pki).await?;
        report_rate(
            "tp-ssh handshakes (TCP + KEX + cert auth + close, tp-ssh client, 4 in flight)",
            tp_hs,
            "sshd",
            sshd_hs,
        );
    }
    if !want("tunnel") {
        return Ok((ok, tunnel_pki));
    }

    // 6. Reverse tunnel bulk throughput against the OpenSSH aes128-gcm figure above.
    let t = tunnel::bulk(&tunnel_pki, &mut sink).await?;
    if let Some(openssh) = openssh_aes {
        ok &= report_throughput(
            &format!(
                "reverse tunnel bulk, {} MiB through tunnel::open + TunnelServer, aes128-gcm",
                ssh::BULK >> 20
            ),
            t,
            "OpenSSH ssh -W via sshd",
            openssh,
            1.0,
        );
    }

    // 7. New tunnel connections/s against the tp-ssh client opening a channel via sshd.
    let auth = ssh::Sink::start(false).await?;
    let tunnel_conns = tunnel::connections(&tunnel_pki, auth.port).await?;
    let sshd_conns = tunnel::connections_sshd(&pki, sshd.port, auth.port).await?;
    report_rate(
        "new tunnel connections (TCP + KEX + cert auth + transport channel + dial + close, 4 in flight)",
        tunnel_conns,
        "tp-ssh client via sshd with a direct-tcpip channel",
        sshd_conns,
    );
    drop(sshd);
    Ok((ok, tunnel_pki))
}

/// `tpd start`'s configuration for cluster `example.com` in `data_dir`, every listener on
/// a free loopback port, the rest as tpd's defaults.
pub(crate) fn loopback_cluster(
    data_dir: std::path::PathBuf,
    storage: tp_cli::cluster::Storage,
) -> anyhow::Result<tp_cli::cluster::ClusterConfig> {
    Ok(tp_cli::cluster::ClusterConfig {
        data_dir,
        cluster_name: Some("example.com".into()),
        storage,
        auth_addr: "127.0.0.1:0".parse()?,
        web_addr: "127.0.0.1:0".parse()?,
        tunnel_addr: "127.0.0.1:0".parse()?,
        public_addr: None,
        diag_addr: None,
        listener_mode: tp_cli::cluster::ListenerMode::Multiplex,
        signature_algorithm_suite: tp_cli::cluster::SignatureAlgorithmSuite::BalancedV1,
        web_keypair: None,
        roles: tp_cli::cluster::Roles::default(),
        join: None,
    })
}

/// Times `tp_cli::cluster::start` (what `tpd start` runs before it prints that it is
/// ready) on a fresh data directory and again on the same one.
async fn cold_start() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let cfg = loopback_cluster(dir.path().to_path_buf(), tp_cli::cluster::Storage::Sqlite)?;
    let budget = Duration::from_secs(1);
    let mut ok = true;
    for what in ["first start", "restart"] {
        let t = Instant::now();
        let (running, handle) = tp_cli::cluster::start(cfg.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = t.elapsed();
        anyhow::ensure!(
            running.metrics.is_ready(),
            "the cluster says it is not ready"
        );
        let ratio = took.as_secs_f64() / budget.as_secs_f64();
        let verdict = if took < budget { "meets" } else { "BELOW" };
        println!(
            "tpd cold start ({what}): {:.0} ms to ready, {ratio:.2} of the 1 s budget ({verdict} the goal)",
            took.as_secs_f64() * 1000.0
        );
        ok &= took < budget;
        handle.abort();
        drop(running);
    }
    Ok(ok)
}
