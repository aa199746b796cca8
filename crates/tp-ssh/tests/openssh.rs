//! Interop with OpenSSH: `sshd` (unprivileged, high port) and `ssh -W`, with certificates
//! made by `ssh-keygen -s`. Needs openssh-server and openssh-client (installed by CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ring::digest;
use ssh_key::{Certificate, PrivateKey, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tp_ssh::{CipherAlg, ClientConfig, KexAlg, KeyPair, ServerConfig, fingerprint};

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let p = dir.join(name);
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-t", kind, "-N", "", "-C", name, "-f"])
        .arg(&p);
    if kind == "rsa" {
        c.args(["-b", "2048"]);
    }
    run(&mut c);
    p
}

fn sign(dir: &Path, ca: &Path, key: &Path, host: bool, principals: &str) -> PathBuf {
    let mut c = Command::new("ssh-keygen");
    c.current_dir(dir)
        .arg("-q")
        .arg("-s")
        .arg(ca)
        .args(["-I", "test-id", "-n", principals, "-V", "-5m:+1h"]);
    if host {
        c.arg("-h");
    }
    c.arg(key.with_extension("pub"));
    run(&mut c);
    let mut s = key.as_os_str().to_owned();
    s.push("-cert.pub");
    PathBuf::from(s)
}

fn pubkey(p: &Path) -> PublicKey {
    PublicKey::read_openssh_file(&p.with_extension("pub")).unwrap()
}

fn keypair(key: &Path, cert: &Path) -> KeyPair {
    let k = PrivateKey::read_openssh_file(key).unwrap();
    let c = Certificate::read_file(cert).unwrap();
    KeyPair::new(&k).unwrap().with_certificate(c).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn sshd_path() -> &'static str {
    "/usr/sbin/sshd"
}

struct Sshd {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(
    clippy::zombie_processes,
    reason = "Sshd's Drop kills and waits; the panic path ends the test"
)]
fn start_sshd(dir: &Path, host_key: &Path, host_cert: &Path, user_ca: &Path) -> Sshd {
    if whoami() == "root" {
        let _ = std::fs::create_dir_all("/run/sshd");
    }
    // The free port can be taken between our probe and sshd's bind (tests run in
    // parallel): then sshd exits and something else answers. Try a new port until our
    // own sshd greets us.
    for _ in 0..5 {
        if let Some(sshd) = try_start_sshd(dir, host_key, host_cert, user_ca) {
            return sshd;
        }
    }
    panic!("sshd did not start");
}

fn try_start_sshd(dir: &Path, host_key: &Path, host_cert: &Path, user_ca: &Path) -> Option<Sshd> {
    let port = free_port();
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nHostCertificate {}\nTrustedUserCAKeys {}\n\
             PidFile {}\nAuthorizedKeysFile none\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nAllowTcpForwarding yes\nPermitRootLogin yes\nLogLevel ERROR\n",
            host_key.display(),
            host_cert.display(),
            user_ca.with_extension("pub").display(),
            dir.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(sshd_path())
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .spawn()
        .expect("sshd starts (install openssh-server)");
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return None; // could not bind
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read as _;
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut banner = [0u8; 8];
            let greeted = s.read_exact(&mut banner).is_ok() && &banner == b"SSH-2.0-";
            drop(s);
            std::thread::sleep(Duration::from_millis(20));
            if greeted && matches!(child.try_wait(), Ok(None)) {
                return Some(Sshd { child, port });
            }
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// An echo server: returns each connection's bytes; reports nothing.
async fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A sink that answers with the SHA-256 of everything it received, after EOF.
async fn hash_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut ctx = digest::Context::new(&digest::SHA256);
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    ctx.update(&buf[..n]);
                }
                s.write_all(ctx.finish().as_ref()).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    port
}

#[allow(clippy::disallowed_methods, reason = "test knob: TP_SSH_BULK_MIB")]
fn bulk_bytes() -> usize {
    std::env::var("TP_SSH_BULK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
        * 1024
        * 1024
}

async fn send_and_hash<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    total: usize,
) {
    let (r, w) = tokio::io::split(stream);
    send_and_hash_rw(r, w, total).await;
}

async fn send_and_hash_rw<R, W>(mut r: R, mut w: W, total: usize)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let writer = tokio::spawn(async move {
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut block = vec![0u8; 128 * 1024];
        let mut sent = 0usize;
        let mut x: u32 = 12345;
        while sent < total {
            for b in block.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            let n = block.len().min(total - sent);
            w.write_all(&block[..n]).await.unwrap();
            ctx.update(&block[..n]);
            sent += n;
        }
        w.shutdown().await.unwrap();
        drop(w);
        ctx.finish().as_ref().to_vec()
    });
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.unwrap();
    let want = writer.await.unwrap();
    assert_eq!(got, want, "SHA-256 differs at the two ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tp_ssh_client_through_openssh_sshd() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let user_ca = keygen(d, "user_ca", "ed25519");
    let host_ca = keygen(d, "host_ca", "ed25519");
    let host_key = keygen(d, "host_key", "ed25519");
    let host_cert = sign(d, &host_ca, &host_key, true, "localhost,127.0.0.1");
    let sshd = start_sshd(d, &host_key, &host_cert, &user_ca);
    let user = whoami();
    let echo = echo_server().await;
    let hash = hash_server().await;
    for (kind, kexes, ciphers) in [
        (
            "ed25519",
            vec![KexAlg::Curve25519],
            vec![CipherAlg::ChaCha20Poly1305],
        ),
        ("ecdsa", vec![KexAlg::EcdhP256], vec![CipherAlg::Aes128Gcm]),
        ("rsa", vec![KexAlg::Curve25519], vec![CipherAlg::Aes256Gcm]),
    ] {
        let user_key = keygen(d, &format!("user_{kind}"), kind);
        let user_cert = sign(d, &user_ca, &user_key, false, &user);
        let mut cfg = ClientConfig::new(user.clone(), Arc::new(keypair(&user_key, &user_cert)));
        cfg.trusted_host_cas = vec![fingerprint(&pubkey(&host_ca))];
        cfg.host_principal = Some("localhost".into());
        cfg.transport.kex = kexes;
        cfg.transport.ciphers = ciphers;
        cfg.transport.rekey_bytes = 1024 * 1024;
        let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
        let session = tp_ssh::Client::connect(tcp, Arc::new(cfg))
            .await
            .expect("connects to sshd");
        assert!(session.is_strict_kex(), "strict KEX with OpenSSH");
        let mut ch = session
            .open_direct_tcpip("127.0.0.1", echo, "127.0.0.1", 1)
            .await
            .unwrap();
        ch.write_all(b"ping through sshd").await.unwrap();
        let mut buf = [0u8; 17];
        ch.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping through sshd");
        drop(ch);
        // keepalive-style global request: sshd answers failure.
        let r = session
            .global_request("keepalive@openssh.com", true, b"")
            .await
            .unwrap();
        assert!(!r.unwrap().0);
        let ch = session
            .open_direct_tcpip("127.0.0.1", hash, "127.0.0.1", 1)
            .await
            .unwrap();
        send_and_hash(ch, bulk_bytes()).await;
        assert!(
            session.kex_count() >= 2,
            "rekeyed with sshd: {}",
            session.kex_count()
        );
        session.disconnect();
    }
    // An untrusted host CA is refused.
    let user_key = keygen(d, "user_x", "ed25519");
    let user_cert = sign(d, &user_ca, &user_key, false, &user);
    let mut cfg = ClientConfig::new(user.clone(), Arc::new(keypair(&user_key, &user_cert)));
    cfg.trusted_host_cas = vec![fingerprint(&pubkey(&user_ca))];
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    let r = tp_ssh::Client::connect(tcp, Arc::new(cfg)).await;
    assert!(matches!(r, Err(tp_ssh::Error::HostKey(_))), "{r:?}");
    // A user certificate from another CA is refused by sshd.
    let other_ca = keygen(d, "other_ca", "ed25519");
    let user_cert = sign(d, &other_ca, &user_key, false, &user);
    let mut cfg = ClientConfig::new(user.clone(), Arc::new(keypair(&user_key, &user_cert)));
    cfg.trusted_host_cas = vec![fingerprint(&pubkey(&host_ca))];
    let tcp = TcpStream::connect(("127.0.0.1", sshd.port)).await.unwrap();
    let r = tp_ssh::Client::connect(tcp, Arc::new(cfg)).await;
    assert!(matches!(r, Err(tp_ssh::Error::Auth(_))), "{r:?}");
}

/// A tp-ssh server that forwards `direct-tcpip` channels.
async fn tp_ssh_server(cfg: Arc<ServerConfig>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = l.accept().await else {
                return;
            };
            let cfg = cfg.clone();
            tokio::spawn(async move {
                let Ok((session, _info)) = tp_ssh::Server::accept(tcp, cfg, Some(peer.ip())).await
                else {
                    return;
                };
                while let Some(inc) = session.next_channel().await {
                    let Some((host, port)) = inc
                        .direct_tcpip_target()
                        .filter(|_| inc.kind() == "direct-tcpip")
                    else {
                        let _ = inc.reject(1, "only direct-tcpip");
                        continue;
                    };
                    tokio::spawn(async move {
                        match TcpStream::connect((host.as_str(), port)).await {
                            Ok(mut t) => {
                                if let Ok(mut ch) = inc.accept() {
                                    let _ = tokio::io::copy_bidirectional(&mut ch, &mut t).await;
                                }
                            }
                            Err(_) => {
                                let _ = inc.reject(2, "connect failed");
                            }
                        }
                    });
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods, reason = "test knob: TP_SSH_DEBUG")]
async fn openssh_ssh_w_through_tp_ssh_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let user_ca = keygen(d, "user_ca", "ed25519");
    let host_ca = keygen(d, "host_ca", "ed25519");
    let hash = hash_server().await;
    for (host_kind, user_kind, cipher) in [
        ("ed25519", "ed25519", "chacha20-poly1305@openssh.com"),
        ("ecdsa", "rsa", "aes128-gcm@openssh.com"),
        ("rsa", "ecdsa", "aes256-gcm@openssh.com"),
    ] {
        let host_key = keygen(d, &format!("host_{host_kind}"), host_kind);
        let host_cert = sign(d, &host_ca, &host_key, true, "localhost");
        let user_key = keygen(d, &format!("user_{user_kind}"), user_kind);
        let _user_cert = sign(d, &user_ca, &user_key, false, "alice");
        let mut cfg = ServerConfig::new(
            Arc::new(keypair(&host_key, &host_cert)),
            vec![fingerprint(&pubkey(&user_ca))],
        );
        cfg.transport.rekey_bytes = 1024 * 1024;
        let port = tp_ssh_server(Arc::new(cfg)).await;
        let known = d.join("known_hosts");
        std::fs::write(
            &known,
            format!(
                "@cert-authority * {}\n",
                pubkey(&host_ca).to_openssh().unwrap()
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", &format!("Ciphers={cipher}")])
            .args(
                std::env::var("TP_SSH_DEBUG")
                    .map(|_| vec!["-vvv"])
                    .unwrap_or_default(),
            )
            .arg("-i")
            .arg(&user_key)
            .args([
                "-p",
                &port.to_string(),
                "-W",
                &format!("127.0.0.1:{hash}"),
                "alice@localhost",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let done = tokio::time::timeout(
            Duration::from_secs(300),
            send_and_hash_rw(stdout, stdin, bulk_bytes()),
        )
        .await;
        if done.is_err() {
            let _ = child.start_kill();
            let mut e = String::new();
            let _ = stderr.read_to_string(&mut e).await;
            panic!("ssh -W transfer did not finish: {e}");
        }
        let out = child.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "ssh -W failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // ssh with a certificate from an untrusted CA fails.
    let host_key = keygen(d, "host_z", "ed25519");
    let host_cert = sign(d, &host_ca, &host_key, true, "localhost");
    let cfg = ServerConfig::new(
        Arc::new(keypair(&host_key, &host_cert)),
        vec![fingerprint(&pubkey(&user_ca))],
    );
    let port = tp_ssh_server(Arc::new(cfg)).await;
    let other_ca = keygen(d, "other_ca", "ed25519");
    let user_key = keygen(d, "user_bad", "ed25519");
    let _ = sign(d, &other_ca, &user_key, false, "alice");
    let known = d.join("known_hosts");
    let out = tokio::process::Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-i")
        .arg(&user_key)
        .args([
            "-p",
            &port.to_string(),
            "-W",
            &format!("127.0.0.1:{hash}"),
            "alice@localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
