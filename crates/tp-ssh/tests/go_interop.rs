//! Interop with Go's golang.org/x/crypto/ssh (the stack Teleport uses), through the
//! Teleport tunnel profile: `teleport-transport` + `teleport-transport-dial`. The Go peer
//! lives in tests/interop-go/cmd/sshpeer and is built with the machine's `go`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};

use common::*;
use ssh_key::LineEnding;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tp_ssh::teleport::{self, DialRequest};

fn sshpeer() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop-go");
        let out = std::env::temp_dir().join(format!("tp-ssh-sshpeer-{}", std::process::id()));
        let status = std::process::Command::new("go")
            .current_dir(&module)
            .args(["build", "-o"])
            .arg(&out)
            .arg("./cmd/sshpeer")
            .status()
            .expect("go is installed");
        assert!(status.success(), "go build ./cmd/sshpeer");
        out
    })
}

struct Files {
    _dir: tempfile::TempDir,
    d: PathBuf,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_owned();
        Self { _dir: dir, d }
    }
    fn key(&self, name: &str, k: &ssh_key::PrivateKey) -> PathBuf {
        let p = self.d.join(name);
        std::fs::write(&p, k.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
        p
    }
    fn public(&self, name: &str, k: &ssh_key::PublicKey) -> PathBuf {
        let p = self.d.join(name);
        std::fs::write(&p, k.to_openssh().unwrap()).unwrap();
        p
    }
    fn cert(&self, name: &str, c: &ssh_key::Certificate) -> PathBuf {
        let p = self.d.join(name);
        std::fs::write(&p, c.to_openssh().unwrap()).unwrap();
        p
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + i / 977) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_opens_teleport_transport_on_tp_ssh_server() {
    let pki = Pki::new();
    let f = Files::new();
    let user = ed25519();
    let user_cert = cert(&pki.user_ca, user.public_key(), &CertSpec::user(&["alice"]));
    let mut scfg = pki.server(&ed25519(), &CertSpec::host(&["127.0.0.1"]));
    scfg.transport.rekey_bytes = 256 * 1024;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, peer) = l.accept().await.unwrap();
        let (session, info) = tp_ssh::Server::accept(tcp, Arc::new(scfg), Some(peer.ip()))
            .await
            .unwrap();
        assert_eq!(info.user, "alice");
        let inc = session.next_channel().await.unwrap();
        teleport::serve_transport(inc, |req: DialRequest| async move {
            assert_eq!(req.address, "@remote-auth-server");
            let (a, b) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(b);
                tokio::io::copy(&mut r, &mut w).await.unwrap();
                w.shutdown().await.unwrap();
            });
            Ok(a)
        })
        .await
        .unwrap();
        session
    });
    let out = tokio::process::Command::new(sshpeer())
        .arg("client")
        .arg(format!("-addr=127.0.0.1:{port}"))
        .arg("-user=alice")
        .arg("-key")
        .arg(f.key("user", &user))
        .arg("-cert")
        .arg(f.cert("user-cert.pub", &user_cert))
        .arg("-host-ca")
        .arg(f.public("host_ca.pub", pki.host_ca.public_key()))
        .arg("-bytes=8388608")
        .arg("-rekey=65536")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "go client: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    let session = server.await.unwrap();
    assert!(session.is_strict_kex(), "strict KEX negotiated with Go");
    assert!(session.kex_count() > 3, "rekeys: {}", session.kex_count());
}

async fn go_server(pki: &Pki, f: &Files, rekey: u64) -> (tokio::process::Child, u16) {
    let host = ed25519();
    let host_cert = cert(
        &pki.host_ca,
        host.public_key(),
        &CertSpec::host(&["127.0.0.1"]),
    );
    let mut child = tokio::process::Command::new(sshpeer())
        .arg("server")
        .arg("-host-key")
        .arg(f.key("host", &host))
        .arg("-host-cert")
        .arg(f.cert("host-cert.pub", &host_cert))
        .arg("-user-ca")
        .arg(f.public("user_ca.pub", pki.user_ca.public_key()))
        .arg(format!("-rekey={rekey}"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap();
    let port = line.strip_prefix("port ").unwrap().parse().unwrap();
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tp_ssh_client_opens_teleport_transport_on_go_server() {
    let pki = Pki::new();
    let f = Files::new();
    let (_child, port) = go_server(&pki, &f, 1 << 20).await;
    let mut c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
    c.host_principal = Some("127.0.0.1".into());
    c.transport.rekey_bytes = 64 * 1024;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let session = tp_ssh::Client::connect(tcp, Arc::new(c))
        .await
        .expect("connects to Go");
    assert!(session.is_strict_kex(), "strict KEX negotiated with Go");
    let ch = teleport::dial_transport(&session, &DialRequest::auth_server())
        .await
        .unwrap();
    let data = pattern(8 * 1024 * 1024);
    let (mut r, mut w) = tokio::io::split(ch);
    let d2 = data.clone();
    let wt = tokio::spawn(async move {
        w.write_all(&d2).await.unwrap();
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    let _w = wt.await.unwrap();
    assert!(back == data, "echo through Go differs");
    assert!(session.kex_count() > 3, "rekeys: {}", session.kex_count());
    // A refused dial returns the server's stderr text.
    let mut req = DialRequest::auth_server();
    req.address = "node-1".into();
    let err = teleport::dial_transport(&session, &req).await.unwrap_err();
    assert_eq!(err.to_string(), "bad dial request");
}
