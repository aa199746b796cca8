//! Connect + first Ping (issue 6): tp-client against Teleport's reference Go client on
//! the same in-process cluster (Auth server, proxy web port, reverse tunnel), given each
//! kind of address in turn, with the same identity file. Both clients race their own
//! connection modes for the address, as a program using them would: the Auth address
//! (direct), the tunnel address (SSH), the web address (TLS routing or discovery).
//!
//! Each side connects `N` times in sequence, pings once, and closes; the mean counts.
//! The Go side is `tests/interop-go/cmd/connectbench`, built before timing so the Go
//! toolchain is not measured. Goal: tp's mean ≤ 0.5× Go's.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tp_client::{Client, Config};
use tp_creds::{Format, IdentityBundle, IdentityFile, KeyAlgorithm, PrivateKey};
use tp_proto::proto::UserCertsRequest;

/// Connections per side and address.
const N: u32 = 50;
/// The goal: tp's connect + Ping at most this fraction of Go's.
const GOAL: f64 = 0.5;

fn now() -> i64 {
    tp_tests::cluster::now()
}

/// Builds connectbench into `dir`; returns its path.
fn build_go(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let out = dir.join("connectbench");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop-go");
    let status = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg("./cmd/connectbench")
        .current_dir(&src)
        .status()
        .context("running `go build` (the connect benchmark needs Go; see README.md)")?;
    ensure!(status.success(), "go build ./cmd/connectbench failed");
    Ok(out)
}

/// An identity file for a new user `bench` (role `editor`), written to `path`.
async fn identity(admin: &Client, host_ca_pem: String, path: &Path) -> anyhow::Result<()> {
    admin
        .create_user(tp_proto::types::UserV2::new("bench", &["editor"]))
        .await?;
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256)?;
    let spki = tp_creds::pem::encode("PUBLIC KEY", &key.public_key_spki_der()?);
    let ssh_pub = key.ssh_public_key()?.to_openssh()?;
    let certs = admin
        .generate_user_certs(UserCertsRequest {
            username: "bench".into(),
            tls_public_key: spki.into_bytes(),
            ssh_public_key: ssh_pub.into_bytes(),
            expires: Some(prost_types::Timestamp {
                seconds: now() + 3600,
                nanos: 0,
            }),
            route_to_cluster: String::new(),
            ..Default::default()
        })
        .await?;
    let mut b = IdentityBundle::new(key);
    b.tls_cert = Some(String::from_utf8(certs.tls)?);
    b.ssh_cert = Some(String::from_utf8(certs.ssh)?);
    b.tls_cas = vec![host_ca_pem];
    for k in &certs.sshca_certs {
        b.ssh_cas.push(format!(
            "@cert-authority example.com,*.example.com {} type=host\n",
            String::from_utf8(k.clone())?.trim()
        ));
    }
    b.write(Format::File, path)?;
    Ok(())
}

/// tp-client's mean connect + Ping to `addr` with the identity at `path`.
async fn tp_mean(addr: &str, path: &Path) -> anyhow::Result<Duration> {
    let creds = IdentityFile::from_path(path);
    let mut total = Duration::ZERO;
    for _ in 0..N {
        let start = Instant::now();
        let config = Config::new()
            .dial_timeout(Duration::from_secs(10))
            .credentials(&creds, &[addr])?;
        let client = Client::connect(config).await?;
        client.ping().await?;
        total += start.elapsed();
        drop(client);
    }
    Ok(total / N)
}

/// The Go client's mean connect + Ping to `addr`.
fn go_mean(bin: &Path, addr: &str, path: &Path, insecure: bool) -> anyhow::Result<Duration> {
    let out = Command::new(bin)
        .arg(addr)
        .arg(path)
        .arg(N.to_string())
        .env("CONNECTBENCH_INSECURE", if insecure { "1" } else { "0" })
        .output()
        .context("running connectbench")?;
    if !out.status.success() {
        bail!(
            "connectbench {addr} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let ns: u64 = text
        .trim()
        .strip_prefix("mean_ns ")
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("connectbench printed {text:?}"))?;
    Ok(Duration::from_nanos(ns))
}

fn host_ca_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use rustls_pki_types::pem::PemObject as _;
    Ok(rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())?.to_vec())
}

/// Runs the comparison; true when every address meets the goal.
pub(crate) async fn connect_vs_go() -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let go = build_go(dir.path())?;
    let cfg = crate::loopback_cluster(dir.path().join("data"), tp_cli::cluster::Storage::Memory)?;
    let (running, handle) = tp_cli::cluster::start(cfg)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (Some(admin), Some(auth_addr), Some(web_addr), Some(tunnel_addr)) = (
        running.admin.clone(),
        running.auth_addr,
        running.web_addr,
        running.tunnel_addr,
    ) else {
        anyhow::bail!("tpd started without the Auth server or the Proxy");
    };
    let host_ca_pem = std::fs::read_to_string(&admin.ca)?;
    let auth = auth_addr.to_string();
    let admin = tp_cli::cluster::connect_with(
        &tp_transport::addr::HostPort {
            host: auth_addr.ip().to_string(),
            port: auth_addr.port(),
        },
        &std::fs::read(&admin.cert)?,
        &std::fs::read(&admin.key)?,
        &[host_ca_der(&host_ca_pem)?],
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = dir.path().join("bench.pem");
    identity(&admin, host_ca_pem, &id).await?;

    let mut ok = true;
    for (what, addr, insecure) in [
        ("the Auth address", auth, false),
        ("the tunnel address", tunnel_addr.to_string(), false),
        ("the web address", web_addr.to_string(), true),
    ] {
        // Alternate, best of two for each side (the two cores are shared).
        let tp = tp_mean(&addr, &id).await?.min(tp_mean(&addr, &id).await?);
        let go_a = go_mean(&go, &addr, &id, insecure)?;
        let go_b = go_mean(&go, &addr, &id, insecure)?;
        let go = go_a.min(go_b);
        let ratio = tp.as_secs_f64() / go.as_secs_f64();
        let verdict = if ratio <= GOAL { "meets" } else { "ABOVE" };
        println!(
            "connect + first Ping given {what}: tp-client {:.1} ms, Go client {:.1} ms, ratio {ratio:.2}x ({verdict} the ≤ {GOAL}x goal)",
            tp.as_secs_f64() * 1e3,
            go.as_secs_f64() * 1e3,
        );
        ok &= ratio <= GOAL;
    }
    handle.abort();
    drop(running);
    Ok(ok)
}
