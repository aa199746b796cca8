//! The OpenSSH side of the SSH benchmarks: keys and certificates from `ssh-keygen -s`, an
//! unprivileged `sshd` on a high loopback port with `TrustedUserCAKeys` and
//! `HostCertificate` (the approach of `crates/tp-ssh/tests/openssh.rs`), and `ssh -W`.
//!
//! Missing tools fail the bench with the Debian package to install; they are never
//! skipped, or the ratios would silently lose their baseline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ssh_key::{Certificate, PrivateKey, PublicKey};

/// Where Debian's openssh-server puts `sshd` (it is not on an unprivileged `PATH`).
pub(crate) const SSHD: &str = "/usr/sbin/sshd";

/// Fails unless `sshd`, `ssh` and `ssh-keygen` can be run, naming the package to install.
pub(crate) fn require_tools() -> anyhow::Result<()> {
    if !Path::new(SSHD).is_file() {
        bail!(
            "{SSHD} not found: the SSH benchmarks measure against OpenSSH's sshd; \
             install Debian's openssh-server (apt-get install openssh-server)"
        );
    }
    for tool in ["ssh", "ssh-keygen"] {
        // `ssh -V` prints its version; `ssh-keygen -?` prints usage and exits 1: either
        // way it ran. Only "not found" matters here.
        let arg = if tool == "ssh" { "-V" } else { "-?" };
        if let Err(e) = Command::new(tool)
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            bail!(
                "cannot run `{tool}` ({e}): the SSH benchmarks measure against OpenSSH; \
                 install Debian's openssh-client (apt-get install openssh-client)"
            );
        }
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `ssh-keygen -t ed25519` into `dir/name` (and `name.pub`).
pub(crate) fn keygen(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let p = dir.join(name);
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&p))?;
    Ok(p)
}

/// `ssh-keygen -s ca` on `key.pub`: a user (or, with `host`, a host) certificate valid for
/// an hour with `principals`; returns the `-cert.pub` path.
pub(crate) fn sign(
    dir: &Path,
    ca: &Path,
    key: &Path,
    host: bool,
    principals: &str,
) -> anyhow::Result<PathBuf> {
    let mut c = Command::new("ssh-keygen");
    c.current_dir(dir)
        .arg("-q")
        .arg("-s")
        .arg(ca)
        .args(["-I", "bench", "-n", principals, "-V", "-5m:+1h"]);
    if host {
        c.arg("-h");
    }
    run(c.arg(key.with_extension("pub")))?;
    let mut s = key.as_os_str().to_owned();
    s.push("-cert.pub");
    Ok(PathBuf::from(s))
}

pub(crate) fn pubkey(key: &Path) -> anyhow::Result<PublicKey> {
    Ok(PublicKey::read_openssh_file(&key.with_extension("pub"))?)
}

/// A tp-ssh key pair from an `ssh-keygen` key and its certificate.
pub(crate) fn keypair(key: &Path, cert: &Path) -> anyhow::Result<Arc<tp_ssh::KeyPair>> {
    let k = PrivateKey::read_openssh_file(key)?;
    let c = Certificate::read_file(cert)?;
    Ok(Arc::new(tp_ssh::KeyPair::new(&k)?.with_certificate(c)?))
}

/// The user this process runs as: sshd logs in only existing users, so the user
/// certificate's principal is this name.
pub(crate) fn whoami() -> anyhow::Result<String> {
    let out = Command::new("id").arg("-un").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// The keys both SSH servers (sshd and tp-ssh) present and trust, and the user key both
/// clients log in with: Ed25519 everywhere, certificates from `ssh-keygen -s`.
pub(crate) struct Pki {
    pub dir: tempfile::TempDir,
    pub user_ca: PathBuf,
    pub host_ca: PathBuf,
    pub host_key: PathBuf,
    pub host_cert: PathBuf,
    pub user_key: PathBuf,
    pub user_cert: PathBuf,
    pub user: String,
}

impl Pki {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let user = whoami()?;
        let user_ca = keygen(d, "user_ca")?;
        let host_ca = keygen(d, "host_ca")?;
        let host_key = keygen(d, "host_key")?;
        let host_cert = sign(d, &host_ca, &host_key, true, "localhost,127.0.0.1")?;
        let user_key = keygen(d, "user_key")?;
        let user_cert = sign(d, &user_ca, &user_key, false, &user)?;
        let known = d.join("known_hosts");
        std::fs::write(
            &known,
            format!("@cert-authority * {}\n", pubkey(&host_ca)?.to_openssh()?),
        )?;
        Ok(Self {
            dir,
            user_ca,
            host_ca,
            host_key,
            host_cert,
            user_key,
            user_cert,
            user,
        })
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A tp-ssh client configuration for this user, trusting the host CA, with `cipher`.
    pub(crate) fn tp_client(
        &self,
        cipher: tp_ssh::CipherAlg,
    ) -> anyhow::Result<Arc<tp_ssh::ClientConfig>> {
        let mut cfg =
            tp_ssh::ClientConfig::new(self.user.clone(), keypair(&self.user_key, &self.user_cert)?);
        cfg.trusted_host_cas = vec![tp_ssh::fingerprint(&pubkey(&self.host_ca)?)];
        cfg.transport.ciphers = vec![cipher];
        Ok(Arc::new(cfg))
    }

    /// A tp-ssh server configuration with the same host certificate and user CA as sshd.
    pub(crate) fn tp_server(&self) -> anyhow::Result<Arc<tp_ssh::ServerConfig>> {
        Ok(Arc::new(tp_ssh::ServerConfig::new(
            keypair(&self.host_key, &self.host_cert)?,
            vec![tp_ssh::fingerprint(&pubkey(&self.user_ca)?)],
        )))
    }

    /// `ssh -W 127.0.0.1:<target>` through the server at `port` with `cipher`, its stdin
    /// and stdout piped (the bytes of the forwarded connection).
    pub(crate) fn ssh_w(
        &self,
        port: u16,
        target: u16,
        cipher: &str,
    ) -> anyhow::Result<tokio::process::Child> {
        tokio::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .arg("-o")
            .arg(format!("Ciphers={cipher}"))
            .arg("-i")
            .arg(&self.user_key)
            .args(["-p", &port.to_string()])
            .args(["-W", &format!("127.0.0.1:{target}")])
            .arg(format!("{}@localhost", self.user))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning ssh (install Debian's openssh-client)")
    }
}

/// An `sshd -D` on a free loopback port; killed on drop.
pub(crate) struct Sshd {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Starts sshd with the PKI's host certificate, trusting its user CA; waits until it
    /// accepts connections. `MaxStartups` is raised so the handshake loop is never
    /// throttled by sshd's unauthenticated-connection limit.
    pub(crate) fn start(pki: &Pki) -> anyhow::Result<Self> {
        let d = pki.dir.path();
        if pki.user == "root" {
            // sshd's privilege separation wants this directory when it runs as root.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cfg = d.join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nHostCertificate {}\n\
                 TrustedUserCAKeys {}\nPidFile {}\nAuthorizedKeysFile none\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nAllowTcpForwarding yes\nPermitRootLogin yes\n\
                 MaxStartups 1000\nLogLevel ERROR\n",
                pki.host_key.display(),
                pki.host_cert.display(),
                pki.user_ca.with_extension("pub").display(),
                d.join("sshd.pid").display(),
            ),
        )?;
        let log = std::fs::File::create(d.join("sshd.log"))?;
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {SSHD} (install Debian's openssh-server)"))?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self { child, port });
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
                bail!("sshd exited ({status}): {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("sshd did not accept connections on port {port} within 5 s")
    }
}
