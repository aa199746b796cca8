//! `cargo xtask test-cluster [--keep]` and `cargo xtask man`.
//!
//! test-cluster builds the binaries, starts `tpd` on free loopback ports with a fresh
//! data directory, waits for `/readyz`, then runs against it: the walkthrough (the real
//! binaries, tp-client with each loader, Teleport's Go client with the identity file),
//! Teleport's Go loaders on the files the walkthrough wrote; then the self-contained
//! suites (`tp-tests`, the Go interop suite). It prints a table and fails if any case
//! failed. `--keep` leaves the cluster running and prints how to use it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{cargo, root, run_cmd};

/// Where cargo puts binaries.
#[allow(
    clippy::disallowed_methods,
    reason = "xtask follows cargo's own CARGO_TARGET_DIR"
)]
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

struct Cluster {
    child: Child,
    data_dir: PathBuf,
    auth: String,
    web: String,
    diag: String,
    tunnel: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_cluster() -> anyhow::Result<Cluster> {
    let data_dir = target_dir().join("test-cluster");
    if data_dir.exists() {
        std::fs::remove_dir_all(&data_dir)
            .with_context(|| format!("clearing {}", data_dir.display()))?;
    }
    std::fs::create_dir_all(&data_dir)?;
    let (auth, web, diag, tunnel) = (
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
    );
    let log = std::fs::File::create(data_dir.join("tpd.log"))?;
    let child = Command::new(bin("tpd"))
        .args([
            "start",
            "--cluster-name",
            "example.com",
            "--auth-addr",
            &auth,
            "--web-addr",
            &web,
            "--diag-addr",
            &diag,
            "--tunnel-addr",
            &tunnel,
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting tpd")?;
    let mut c = Cluster {
        child,
        data_dir,
        auth,
        web,
        diag,
        tunnel,
    };
    let started = Instant::now();
    loop {
        if http_status(&c.diag, "/readyz") == Some(200) {
            eprintln!(
                "\rtest-cluster: tpd ready after {:.1}s            ",
                started.elapsed().as_secs_f64()
            );
            return Ok(c);
        }
        if let Some(status) = c.child.try_wait()? {
            let log = std::fs::read_to_string(c.data_dir.join("tpd.log")).unwrap_or_default();
            bail!("tpd exited ({status}) before it was ready:\n{log}");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "tpd was not ready within 60 s (see {})",
                c.data_dir.join("tpd.log").display()
            );
        }
        eprint!(
            "\rtest-cluster: waiting for tpd (/readyz) {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Case {
    name: &'static str,
    ok: bool,
    secs: f64,
}

fn case(name: &'static str, cmd: &mut Command) -> Case {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    eprintln!("\n== {name}");
    let started = Instant::now();
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    Case {
        name,
        ok,
        secs: started.elapsed().as_secs_f64(),
    }
}

pub(crate) fn test_cluster(keep: bool) -> anyhow::Result<()> {
    run_cmd(cargo().args(["build", "-p", "tp-cli", "--bins"]))?;
    let c = start_cluster()?;
    let d = c.data_dir.display().to_string();
    let spec = format!("{d},{},{},{}", c.web, c.diag, c.tunnel);
    let go_dir = root().join("tests/interop-go");
    let mut cases = vec![
        case(
            "walkthrough against the cluster (binaries, SDK loaders, Go client)",
            cargo()
                .args([
                    "test",
                    "-p",
                    "tp-cli",
                    "--test",
                    "walkthrough",
                    "the_seed_walkthrough_with_the_binaries",
                    "--",
                    "--exact",
                ])
                .env("TP_TEST_CLUSTER", &spec),
        ),
        case(
            "Teleport's LoadIdentityFile reads the identity tpctl auth sign wrote",
            Command::new("go")
                .args(["run", "./cmd/credsload", "identity"])
                .arg(Path::new(&d).join("api-user.pem"))
                .current_dir(&go_dir),
        ),
    ];
    if !keep {
        cases.push(case(
            "integration suite (tp-tests)",
            cargo().args(["test", "-p", "tp-tests"]),
        ));
        cases.push(case(
            "Go interop suite (cargo xtask interop)",
            cargo().args(["xtask", "interop"]),
        ));
    }
    eprintln!("\n{:<72} {:<6} {:>8}", "case", "result", "time");
    for k in &cases {
        eprintln!(
            "{:<72} {:<6} {:>7.1}s",
            k.name,
            if k.ok { "ok" } else { "FAILED" },
            k.secs
        );
    }
    let failed = cases.iter().filter(|k| !k.ok).count();
    if keep {
        let tpctl = bin("tpctl");
        let tpsh = bin("tpsh");
        eprintln!(
            "\nThe cluster keeps running (pid {pid}); stop it with `kill {pid}`.\n  auth:  {auth}\n  proxy: https://{web}\n  tunnel: {tunnel}\n  diag:  http://{diag}/metrics\n  admin identity: {d}/admin\n\nTry:\n  {tpctl} --data-dir {d} status\n  {tpctl} --data-dir {d} get role/api-role --format text\n  {tpsh} --home {d}/tsh login --proxy {web} --user api-user --ca-file {d}/admin/ca.pem   (password: correct horse)\n  {tpctl} -i {d}/api-user.pem --auth-server {auth} get role/api-role",
            pid = c.child.id(),
            auth = c.auth,
            web = c.web,
            diag = c.diag,
            tunnel = c.tunnel,
            tpctl = tpctl.display(),
            tpsh = tpsh.display(),
        );
        std::mem::forget(c);
    }
    if failed > 0 {
        bail!("{failed} test-cluster case(s) failed");
    }
    Ok(())
}

pub(crate) fn man() -> anyhow::Result<()> {
    run_cmd(cargo().args(["build", "-p", "tp-cli", "--bins"]))?;
    let out = target_dir().join("man");
    std::fs::create_dir_all(&out)?;
    for name in ["tpd", "tpctl", "tpsh"] {
        let o = Command::new(bin(name))
            .arg("man")
            .stdout(Stdio::piped())
            .output()?;
        if !o.status.success() || o.stdout.is_empty() {
            bail!("{name} man failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let path = out.join(format!("{name}.1"));
        std::fs::write(&path, &o.stdout)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
