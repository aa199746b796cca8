//! The seed's walkthrough with the real binaries: `tpd start`, `tpctl create -f`,
//! `tpctl users add`, the invite completed over HTTPS, a password login through the
//! proxy, and the issued certificates used with tp-client (the role can be read, users
//! cannot be listed). Plus the CLI's bad-input answers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A data directory: a temporary one, or the one of a cluster started elsewhere.
struct DataDir {
    path: std::path::PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl DataDir {
    fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl From<tempfile::TempDir> for DataDir {
    fn from(t: tempfile::TempDir) -> Self {
        Self {
            path: t.path().to_path_buf(),
            _tmp: Some(t),
        }
    }
}

struct Tpd {
    /// `None` for a cluster started elsewhere (`cargo xtask test-cluster`).
    child: Option<Child>,
    web: String,
    diag: String,
    tunnel: String,
    dir: DataDir,
    /// The rest of tpd's standard output, read by a thread so tpd never writes to a
    /// closed pipe.
    rest: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Tpd {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tpd() -> Tpd {
    tpd_in(
        tempfile::tempdir().unwrap().into(),
        &["--cluster-name", "example.com"],
    )
}

/// The cluster `cargo xtask test-cluster` started, when it runs this test against one
/// (`TP_TEST_CLUSTER=<data dir>,<web addr>,<diag addr>`); else a fresh tpd.
#[allow(
    clippy::disallowed_methods,
    reason = "the test reads which cluster to use from its environment"
)]
fn cluster_under_test() -> Tpd {
    match std::env::var("TP_TEST_CLUSTER") {
        Ok(spec) => {
            let parts: Vec<&str> = spec.split(',').collect();
            assert_eq!(
                parts.len(),
                4,
                "TP_TEST_CLUSTER is <data dir>,<web addr>,<diag addr>,<tunnel addr>"
            );
            Tpd {
                child: None,
                web: parts[1].to_string(),
                diag: parts[2].to_string(),
                tunnel: parts[3].to_string(),
                dir: DataDir {
                    path: parts[0].into(),
                    _tmp: None,
                },
                rest: None,
            }
        }
        Err(_) => tpd(),
    }
}

/// Starts tpd on free loopback ports with `dir` as its data directory; returns once it
/// has printed where it listens.
fn tpd_in(dir: DataDir, extra: &[&str]) -> Tpd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--auth-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--diag-addr",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut web = String::new();
    let mut diag = String::new();
    let mut tunnel = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("proxy: https://") {
            web = rest.split_whitespace().next().unwrap().to_string();
        }
        if let Some(rest) = line.trim().strip_prefix("tunnel: ") {
            tunnel = rest.split_whitespace().next().unwrap().to_string();
        }
        if let Some(rest) = line.trim().strip_prefix("diag:  http://") {
            diag = rest.split_whitespace().next().unwrap().to_string();
        }
        if line.contains("proxy identity:") {
            break;
        }
        if line.contains("state:") {
            assert!(
                line.contains(&dir.path().join("backend/sqlite.db").display().to_string())
                    || extra.contains(&"--in-memory"),
                "tpd keeps its state in the data dir: {line}"
            );
            break;
        }
    }
    let auth_only = extra.windows(2).any(|w| w == ["--roles", "auth"]);
    assert!(auth_only || !web.is_empty(), "tpd printed its web address");
    let rest =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    Tpd {
        child: Some(child),
        web,
        diag,
        tunnel,
        dir,
        rest: Some(rest),
    }
}

impl Tpd {
    /// Stops tpd with SIGTERM, as a service manager does; returns its data directory
    /// and what it printed after starting.
    fn stop(mut self) -> (DataDir, String) {
        let mut child = self.child.take().expect("a tpd this test started");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(exit.success(), "tpd exits cleanly on SIGTERM: {exit:?}");
        let printed = self.rest.take().unwrap().join().unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap().into());
        (dir, printed)
    }

    fn auth_addr(&self) -> tp_transport::addr::HostPort {
        let auth_addr = std::fs::read_to_string(self.dir.path().join("admin/auth-addr")).unwrap();
        tp_transport::addr::parse_host_port(
            auth_addr.trim(),
            tp_transport::addr::PortRule::Default(3025),
        )
        .unwrap()
    }

    /// The host CA certificate tpd wrote for tpctl (DER).
    fn host_ca(&self) -> Vec<u8> {
        let pem = std::fs::read(self.dir.path().join("admin/ca.pem")).unwrap();
        CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
    }

    /// A client with the local admin identity, as tpctl connects.
    async fn admin(&self) -> tp_client::Client {
        let d = self.dir.path().join("admin");
        tp_cli::cluster::connect_with(
            &self.auth_addr(),
            &std::fs::read(d.join("cert.pem")).unwrap(),
            &std::fs::read(d.join("key.pem")).unwrap(),
            &[self.host_ca()],
        )
        .await
        .unwrap()
    }
}

fn tpctl(t: &Tpd, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tpctl"))
        .arg("--data-dir")
        .arg(t.dir.path())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTPS request to the proxy's web port, trusting the cluster's host CA.
async fn https(t: &Tpd, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let ca = t.dir.path().join("admin/ca.pem");
    https_at(&t.web, &ca, method, path, content_type, body).await
}

/// One HTTPS request to the web port at `web`, trusting the CA in the PEM file `ca`.
async fn https_at(
    web: &str,
    ca: &std::path::Path,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let ca = std::fs::read(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(web).await.unwrap();
    let ip = web.rsplit_once(':').unwrap().0.to_string();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(ip).unwrap(), tcp)
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_seed_walkthrough_with_the_binaries() {
    let t = cluster_under_test();
    let role = t.dir.path().join("api-role.yaml");
    std::fs::write(&role, "kind: role\nversion: v5\nmetadata:\n  name: api-role\nspec:\n  allow:\n    rules:\n      - resources: [role]\n        verbs: [read]\n").unwrap();
    let (ok, out, err) = tpctl(&t, &["create", "-f", role.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "role 'api-role' has been created");

    let (ok, out, err) = tpctl(&t, &["users", "add", "api-user", "--roles=api-role"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("User \"api-user\" has been created but requires a password."),
        "{out}"
    );
    assert!(out.contains("link is valid for 1h:"), "{out}");
    let url = out
        .lines()
        .find(|l| l.starts_with("https://"))
        .unwrap()
        .to_string();
    let path = url.split_once(&t.web).unwrap().1.to_string();

    let (status, body) = https(&t, "GET", &path, "text/plain", "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = https(
        &t,
        "POST",
        &path,
        "application/x-www-form-urlencoded",
        "password=correct%20horse&confirm=correct%20horse",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Password login through the proxy for a fresh key pair.
    let key = rcgen::KeyPair::generate().unwrap();
    let login = serde_json::json!({
        "user": "api-user",
        "password": "correct horse",
        "tls_pub_key": base64::engine::general_purpose::STANDARD.encode(key.public_key_pem()),
    });
    let (status, body) = https(
        &t,
        "POST",
        "/v1/webapi/ssh/certs",
        "application/json",
        &login.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let resp: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cert = base64::engine::general_purpose::STANDARD
        .decode(resp["tls_cert"].as_str().unwrap())
        .unwrap();
    let host_ca = base64::engine::general_purpose::STANDARD
        .decode(resp["host_signers"][0]["tls_certs"][0].as_str().unwrap())
        .unwrap();

    // The program of the walkthrough: tp-client with the issued certificate.
    let auth_addr = std::fs::read_to_string(t.dir.path().join("admin/auth-addr")).unwrap();
    let addr = tp_transport::addr::parse_host_port(
        auth_addr.trim(),
        tp_transport::addr::PortRule::Default(3025),
    )
    .unwrap();
    let roots = vec![CertificateDer::from_pem_slice(&host_ca).unwrap().to_vec()];
    let client =
        tp_cli::cluster::connect_with(&addr, &cert, key.serialize_pem().as_bytes(), &roots)
            .await
            .unwrap();
    assert!(client.get_role("api-role").await.is_ok());
    let e = client.get_users(false).await.unwrap_err();
    assert_eq!(e.kind(), tp_client::ErrorKind::AccessDenied);

    // And tpctl sees the user.
    let (ok, out, _) = tpctl(&t, &["users", "ls"]);
    assert!(ok);
    assert!(
        out.contains("api-user") && out.contains("api-role"),
        "{out}"
    );

    // The audit log has the user's creation and the login's certificate, as JSON lines
    // and as a table.
    let (ok, out, err) = tpctl(&t, &["audit", "ls", "--last", "0", "--format", "json"]);
    assert!(ok, "{err}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "user.create"
            && e["name"] == "api-user"
            && e["success"] == true),
        "{out}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "cert.create" && e["user"] == "api-user"),
        "{out}"
    );
    let (ok, table, _) = tpctl(&t, &["audit", "ls", "--last", "2"]);
    assert!(ok);
    assert!(table.starts_with("Time (UTC)"), "{table}");
    assert_eq!(table.lines().count(), 3, "{table}");

    // tpsh login writes a tsh-layout profile; a tp-client program uses it (through the
    // proxy's web port, by TLS routing).
    let (home, out) = tpsh_login(&t, "api-user", "correct horse");
    assert!(
        out.contains("Logged in as:       api-user") && out.contains("api-role"),
        "{out}"
    );
    let (ok, out, _) = tpsh(&home, &["status"], "");
    assert!(
        ok && out.contains("Valid until:") && out.contains("example.com"),
        "{out}"
    );
    // tpctl on a host without tpd uses that profile, as tctl falls back to tsh's.
    let elsewhere = tempfile::tempdir().unwrap();
    let tpctl_profile = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tpctl"))
            .env("HOME", elsewhere.path())
            .env_remove("XDG_DATA_HOME")
            .env("TELEPORT_HOME", &home)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = tpctl_profile(&["get", "role/api-role"]);
    assert!(ok && out.contains("name: api-role"), "{out}{err}");
    let (ok, _, err) = tpctl_profile(&["users", "ls"]);
    assert!(!ok && err.contains("access denied"), "{err}");
    let profile = tp_creds::Profile::new(&home, None);
    let config = tp_client::Config::new().credentials(&profile, &[]).unwrap();
    let client = tp_client::Client::connect(config).await.unwrap();
    assert!(client.get_role("api-role").await.is_ok());
    assert_eq!(
        client.get_users(false).await.unwrap_err().kind(),
        tp_client::ErrorKind::AccessDenied
    );

    // tpctl auth sign writes an identity file; the same program with IdentityFile
    // credentials, directly to the Auth server and through the proxy's web port.
    let id_path = t.dir.path().join("api-user.pem");
    let (ok, out, err) = tpctl(
        &t,
        &[
            "auth",
            "sign",
            "--user=api-user",
            "--out",
            id_path.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("The credentials have been written to "),
        "{out}"
    );
    let creds = tp_creds::IdentityFile::from_path(&id_path);
    let auth = t.auth_addr().to_string();
    // The Auth server directly, the proxy's web port (TLS routing) and the proxy's
    // reverse tunnel (SSH): each address is raced in every mode; only the right one can
    // succeed.
    for addr in [auth.as_str(), t.web.as_str(), t.tunnel.as_str()] {
        let config = tp_client::Config::new()
            .credentials(&creds, &[addr])
            .unwrap();
        let client = tp_client::Client::connect(config).await.unwrap();
        assert!(client.get_role("api-role").await.is_ok(), "{addr}");
        assert_eq!(
            client.get_users(false).await.unwrap_err().kind(),
            tp_client::ErrorKind::AccessDenied,
            "{addr}"
        );
    }
    // tpctl itself with the identity: reads roles, is denied users.
    let (ok, _, err) = tpctl(
        &t,
        &[
            "-i",
            id_path.to_str().unwrap(),
            "--auth-server",
            &auth,
            "get",
            "role/api-role",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = tpctl(
        &t,
        &[
            "-i",
            id_path.to_str().unwrap(),
            "--auth-server",
            &auth,
            "users",
            "ls",
        ],
    );
    assert!(!ok && err.contains("access denied"), "{err}");

    // The tunnel mode on its own.
    let material = tp_creds::Credentials::load(&creds).unwrap();
    let config = tp_client::Config::new().target(tp_transport::connector::Target::Tunnel {
        tunnel_addr: tp_transport::addr::parse_host_port(
            &t.tunnel,
            tp_transport::addr::PortRule::Default(3024),
        )
        .unwrap(),
        ssh: Box::new(material.ssh.clone().unwrap()),
        tls: material.tls.clone(),
        server_name: "teleport.cluster.local".into(),
        credential: "api-user.pem".into(),
    });
    let client = tp_client::Client::connect(config).await.unwrap();
    assert!(client.get_role("api-role").await.is_ok());

    // Teleport's own Go client with the same identity file: directly, through the
    // proxy's reverse tunnel, and given only the proxy's web address (discovery, then the
    // tunnel; or the tunnel over the web port by TLS routing): the same results.
    for addr in [auth.as_str(), t.tunnel.as_str(), t.web.as_str()] {
        let id = id_path.to_str().unwrap();
        go_clientcheck(addr, ["-i", id, "-"], "user", addr == t.web);
    }

    // The proxy's SSH host certificate, as ssh-keygen sees it, and the ping JSON as curl
    // gets it (verifying the web certificate against the cluster's CA).
    let cert = t.dir.path().join("proxy/ssh_host_cert.pub");
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .expect("ssh-keygen (openssh-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("host certificate"),
        "{text}"
    );
    let tunnel_ip = t.tunnel.rsplit_once(':').unwrap().0;
    for p in ["localhost", tunnel_ip] {
        assert!(
            text.contains(&format!("\n                {p}\n")),
            "principal {p}: {text}"
        );
    }
    assert!(
        text.contains("x-teleport-role Proxy") || text.contains("x-teleport-role"),
        "{text}"
    );
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(t.dir.path().join("admin/ca.pem"))
        .arg(format!("https://{}/webapi/ping", t.web))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ping: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ping["cluster_name"], "example.com", "{ping}");
    assert_eq!(
        ping["proxy"]["ssh"]["tunnel_listen_addr"],
        t.tunnel.as_str(),
        "{ping}"
    );
    assert!(
        ping["server_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{ping}"
    );

    // The diagnostics endpoint: ready, and the RPCs and issuances above are counted.
    let (status, _) = http_get(&t.diag, "/readyz");
    assert_eq!(status, 200);
    let (status, metrics) = http_get(&t.diag, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tp_rpc_total{method=\"/proto.AuthService/GetRole\",code=\"OK\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("code=\"PermissionDenied\""), "{metrics}");
    let issued: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tp_certificates_issued_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(
        issued >= 3,
        "password login, tpsh login and auth sign issued certificates: {metrics}"
    );
    // The tunnel carried the tunnel-mode clients above, both ways.
    let counter = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: {metrics}"))
    };
    assert!(counter("tp_tunnel_connections_total ") >= 2, "{metrics}");
    assert!(
        counter("tp_tunnel_bytes_total{direction=\"to_auth\"} ") > 1000,
        "{metrics}"
    );
    assert!(
        counter("tp_tunnel_bytes_total{direction=\"from_auth\"} ") > 1000,
        "{metrics}"
    );

    // tpctl status names the cluster and pins its CAs.
    let (ok, out, err) = tpctl(&t, &["status"]);
    assert!(ok, "{err}");
    let pin = tp_creds::cert::ca_pin(&t.host_ca(), "host CA").unwrap();
    assert!(out.contains(&format!("host CA:      TLS {pin}")), "{out}");
    assert!(out.contains("user CA:      SSH SHA256:"), "{out}");

    // Join tokens: add, list, remove.
    let (ok, out, err) = tpctl(&t, &["tokens", "add", "--type=node", "--ttl=5m"]);
    assert!(ok, "{err}");
    let token = out
        .lines()
        .next()
        .unwrap()
        .strip_prefix("The invite token: ")
        .unwrap()
        .to_string();
    assert!(out.contains("This token will expire in 5m."), "{out}");
    let (ok, out, _) = tpctl(&t, &["tokens", "ls"]);
    assert!(ok && out.contains(&token) && out.contains("Node"), "{out}");
    let (ok, out, _) = tpctl(&t, &["tokens", "rm", &token]);
    assert!(
        ok && out.trim() == format!("Token {token} has been deleted"),
        "{out}"
    );
    let (_, out, _) = tpctl(&t, &["tokens", "ls"]);
    assert!(!out.contains(&token), "{out}");

    // A password reset link, and the CAs exported.
    let (ok, out, err) = tpctl(&t, &["users", "reset", "api-user"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("User \"api-user\" has been reset.")
            && out.contains("link is valid for 8h:"),
        "{out}"
    );
    let (ok, out, _) = tpctl(&t, &["auth", "export", "--type=host"]);
    assert!(
        ok && out.starts_with("@cert-authority example.com,*.example.com "),
        "{out}"
    );
    let (ok, out, _) = tpctl(&t, &["auth", "export", "--type=tls-host"]);
    assert!(ok);
    assert_eq!(
        tp_creds::pem::parse_all(&out, "export").unwrap()[0].der,
        t.host_ca()
    );

    // Logging out removes the profile.
    let (ok, out, _) = tpsh(&home, &["logout"], "");
    assert!(ok && out.starts_with("Logged out api-user"), "{out}");
    assert!(
        !home
            .join("keys")
            .join(t.web.split(':').next().unwrap())
            .exists()
    );
}

/// A plain-HTTP GET (the diagnostics listener).
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    (
        status,
        resp.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

fn tpsh(home: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tpsh"))
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_one_line_and_a_hint() {
    let t = tpd();
    let (ok, _, err) = tpctl(&t, &["create", "-f", "/nonexistent.yaml"]);
    assert!(!ok);
    assert!(
        err.starts_with("error: cannot read /nonexistent.yaml"),
        "{err}"
    );
    assert!(err.contains("\nhint: "), "{err}");

    let bad = t.dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: role\nversion: v7\nmetadata:\n  name: [oops\n").unwrap();
    let (ok, _, err) = tpctl(&t, &["create", "-f", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not valid YAML"), "{err}");
    assert!(err.contains("line 4"), "the message shows the line: {err}");

    std::fs::write(&bad, "kind: dragon\nversion: v1\nmetadata: {name: x}\n").unwrap();
    let (_, _, err) = tpctl(&t, &["create", "-f", bad.to_str().unwrap()]);
    assert!(err.contains("unknown resource kind \"dragon\""), "{err}");

    std::fs::write(&bad, "kind: role\nversion: v7\nmetadata: {name: x}\nspec:\n  allow:\n    rules: [{resources: [role], verbs: [raed]}]\n").unwrap();
    let (_, _, err) = tpctl(&t, &["create", "-f", bad.to_str().unwrap()]);
    assert!(err.contains("unknown verb \"raed\""), "{err}");

    let (ok, _, err) = tpctl(&t, &["users", "add", "bob", "--roles=ghost"]);
    assert!(!ok);
    assert!(err.contains("role \"ghost\" is not found"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_tpctl"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage errors exit 2");

    // A data directory that cannot be created (its parent is a file).
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--auth-addr",
            "127.0.0.1:0",
            "--data-dir",
            "/etc/hostname/tp",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/etc/hostname/tp") && err.contains("\nhint: "),
        "{err}"
    );

    // A second tpd on the same port.
    let auth_addr = std::fs::read_to_string(t.dir.path().join("admin/auth-addr")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--auth-addr",
            auth_addr.trim(),
            "--data-dir",
        ])
        .arg(other.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another process listens on"), "{err}");

    // A second tpd on the same data directory.
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--auth-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(t.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another tpd is already running with data directory"),
        "{err}"
    );

    // An unreachable Auth server.
    let (ok, _, err) = tpctl(&t, &["--auth-server", "127.0.0.1:1", "status"]);
    assert!(!ok);
    assert!(err.contains("is tpd running?"), "{err}");

    // auth sign for an unknown user.
    let out_path = t.dir.path().join("nobody.pem");
    let (ok, _, err) = tpctl(
        &t,
        &[
            "auth",
            "sign",
            "--user=nobody",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err.starts_with("error: user \"nobody\" is not found\nhint: "),
        "{err}"
    );
    assert!(!out_path.exists(), "nothing is written on failure");

    // --out to an existing file without --overwrite (checked before anything is issued).
    std::fs::write(&out_path, "keep me").unwrap();
    let (ok, _, err) = tpctl(
        &t,
        &[
            "auth",
            "sign",
            "--user=admin",
            "--out",
            out_path.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("exists") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "keep me");

    // An expired identity: refused before any dial, naming the file.
    let role = t.dir.path().join("r.yaml");
    std::fs::write(
        &role,
        "kind: role\nversion: v7\nmetadata:\n  name: r\nspec: {}\n",
    )
    .unwrap();
    assert!(tpctl(&t, &["create", role.to_str().unwrap()]).0);
    let short = t.dir.path().join("short.pem");
    let (ok, _, err) = tpctl(&t, &["users", "add", "shorty", "--roles=r"]);
    assert!(ok, "{err}");
    let (ok, _, err) = tpctl(
        &t,
        &[
            "auth",
            "sign",
            "--user=shorty",
            "--ttl=1s",
            "--out",
            short.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (ok, _, err) = tpctl(
        &t,
        &[
            "-i",
            short.to_str().unwrap(),
            "--auth-server",
            "192.0.2.1:3025",
            "status",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains(short.to_str().unwrap()) && err.contains("expired at"),
        "{err}"
    );
    assert!(err.contains("hint: issue a new identity"), "{err}");

    // A wrong password at login.
    let home = t.dir.path().join("tsh");
    let ca_file = t.dir.path().join("admin/ca.pem");
    let (ok, _, err) = tpsh(
        &home,
        &[
            "login",
            "--proxy",
            &t.web,
            "--user",
            "shorty",
            "--ca-file",
            ca_file.to_str().unwrap(),
        ],
        "wrong\n",
    );
    assert!(!ok);
    assert!(
        err.starts_with("error: login failed")
            && err.contains("hint: check the user name and password"),
        "{err}"
    );
    assert!(
        !home.join("current-profile").exists(),
        "no profile is written on failure"
    );
    // A proxy whose certificate is not trusted.
    let (ok, _, err) = tpsh(
        &home,
        &["login", "--proxy", &t.web, "--user", "shorty"],
        "x\n",
    );
    assert!(!ok);
    assert!(
        err.contains("cannot reach the proxy") && err.contains("--ca-file"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_tpd_keeps_its_cluster() {
    let t = tpd();
    let role = t.dir.path().join("api-role.yaml");
    std::fs::write(&role, "kind: role\nversion: v5\nmetadata:\n  name: api-role\nspec:\n  allow:\n    rules:\n      - resources: [role]\n        verbs: [read]\n").unwrap();
    let (ok, _, err) = tpctl(&t, &["create", "-f", role.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, _, err) = tpctl(&t, &["users", "add", "api-user", "--roles=api-role"]);
    assert!(ok, "{err}");
    let (ok, role_before, err) = tpctl(&t, &["get", "role/api-role", "--format", "yaml"]);
    assert!(ok, "{err}");
    let host_ca_before = t.host_ca();

    // A certificate for api-user, signed before the restart (as `tpctl auth sign`).
    let key = rcgen::KeyPair::generate().unwrap();
    let certs = t
        .admin()
        .await
        .generate_user_certs(tp_proto::proto::UserCertsRequest {
            username: "api-user".into(),
            tls_public_key: key.public_key_pem().into_bytes(),
            ..Default::default()
        })
        .await
        .unwrap();

    // A watcher stays open across the stop: tpd drains calls, cuts what is still open
    // after its grace period, and exits cleanly, within that period and a margin.
    let admin = t.admin().await;
    let mut events = admin
        .watch_events(tp_proto::proto::Watch {
            kinds: vec![tp_proto::types::WatchKind {
                kind: "role".into(),
                ..Default::default()
            }],
            allow_partial_success: false,
        })
        .await
        .unwrap();
    use futures_util::StreamExt as _;
    assert!(events.next().await.unwrap().is_ok(), "the INIT event");
    let asked = std::time::Instant::now();
    let (dir, printed) = t.stop();
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(9),
        "{:?}",
        asked.elapsed()
    );
    assert!(printed.contains("tpd: stopped"), "{printed}");
    drop(events);

    // The same data directory under another name is refused with a clear error.
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--cluster-name",
            "other.example.com",
            "--auth-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to cluster \"example.com\"") && err.contains("\nhint: "),
        "{err}"
    );

    // Without --cluster-name the stored cluster starts again, on new ports.
    let t = tpd_in(dir, &[]);
    assert_eq!(t.host_ca(), host_ca_before, "the same host CA");
    let (ok, role_after, err) = tpctl(&t, &["get", "role/api-role", "--format", "yaml"]);
    assert!(ok, "{err}");
    assert_eq!(
        role_after, role_before,
        "the same role, at the same revision"
    );
    let (ok, out, _) = tpctl(&t, &["users", "ls"]);
    assert!(ok);
    assert!(
        out.contains("api-user") && out.contains("api-role"),
        "{out}"
    );
    let (ok, out, _) = tpctl(&t, &["status"]);
    assert!(ok && out.contains("example.com"), "{out}");

    // The certificate from before the restart still works: the same user CA.
    let user = tp_cli::cluster::connect_with(
        &t.auth_addr(),
        &certs.tls,
        key.serialize_pem().as_bytes(),
        &[t.host_ca()],
    )
    .await
    .unwrap();
    assert!(user.get_role("api-role").await.is_ok());
    assert_eq!(
        user.get_users(false).await.unwrap_err().kind(),
        tp_client::ErrorKind::AccessDenied
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn in_separate_listener_mode_clients_follow_discovery_to_the_tunnel() {
    let t = tpd_in_memory(&["--listener-mode", "separate"]);
    add_user(&t, "bob", "editor");
    let id_path = t.dir.path().join("bob.pem");
    auth_sign(&t, "bob", "file", &id_path);

    // Discovery says TLS routing is off, and the web port refuses to route Auth.
    let (status, body) = https(&t, "GET", "/webapi/find", "application/json", "").await;
    assert_eq!(status, 200, "{body}");
    let find: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(find["proxy"]["tls_routing_enabled"], false, "{body}");
    let creds = tp_creds::IdentityFile::from_path(&id_path);
    let material = tp_creds::Credentials::load(&creds).unwrap();
    let web_addr =
        tp_transport::addr::parse_host_port(&t.web, tp_transport::addr::PortRule::Default(443))
            .unwrap();
    let routed = tp_client::Config::new()
        .target(tp_transport::connector::Target::TlsRouting {
            web_addr: web_addr.clone(),
            cluster: "example.com".into(),
            tls: material.tls.clone(),
            server_name: "teleport.cluster.local".into(),
            credential: "bob.pem".into(),
        })
        .dial_timeout(std::time::Duration::from_secs(5));
    assert!(tp_client::Client::connect(routed).await.is_err());

    // So given only the web address, tp-client (discovery, then the advertised tunnel)
    // and Teleport's Go client both get through, by the tunnel alone.
    let discovered = tp_client::Config::new().target(tp_transport::connector::Target::Discovery {
        web_addr,
        cluster: String::new(),
        tls: material.tls.clone(),
        server_name: "teleport.cluster.local".into(),
        ssh: material.ssh.clone().map(Box::new),
        credential: "bob.pem".into(),
    });
    let client = tp_client::Client::connect(discovered).await.unwrap();
    assert!(client.get_role("editor").await.is_ok());
    let config = tp_client::Config::new()
        .credentials(&creds, &[t.web.as_str()])
        .unwrap();
    let client = tp_client::Client::connect(config).await.unwrap();
    assert_eq!(client.ping().await.unwrap().cluster_name, "example.com");

    go_clientcheck(&t.web, ["-i", id_path.to_str().unwrap(), "-"], "ping", true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_rsa_cluster_issues_credentials_that_every_client_uses() {
    let t = tpd_in_memory(&["--signature-algorithm-suite", "legacy"]);
    add_user(&t, "bob", "editor");
    let out = t.dir.path().join("bob");
    auth_sign(&t, "bob", "openssh", &out);

    // OpenSSH reads the user certificate as signed by an RSA CA with an RSA-SHA2
    // signature.
    let cert = t.dir.path().join("bob-cert.pub");
    let listed = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&cert)
        .output()
        .expect("ssh-keygen (openssh-client)");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{text}");
    assert!(
        text.contains("Signing CA: RSA SHA256:") && text.contains("using rsa-sha2-512"),
        "{text}"
    );
    // The CA tpctl exports is RSA-2048.
    let (ok, exported, err) = tpctl(&t, &["auth", "export", "--type=tls-user"]);
    assert!(ok, "{err}");
    let ca_file = t.dir.path().join("user-ca.pem");
    std::fs::write(&ca_file, &exported).unwrap();
    let x = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&ca_file)
        .output()
        .expect("openssl");
    let x = String::from_utf8_lossy(&x.stdout);
    assert!(
        x.contains("Public-Key: (2048 bit)") && x.contains("sha256WithRSAEncryption"),
        "{x}"
    );

    // An identity file from the same cluster works directly, through the tunnel (the
    // proxy's host certificate is RSA-signed too) and by TLS routing, for tp-client
    // and for Teleport's Go client.
    let id_path = t.dir.path().join("bob.pem");
    auth_sign(&t, "bob", "file", &id_path);
    let creds = tp_creds::IdentityFile::from_path(&id_path);
    let auth = t.auth_addr().to_string();
    for addr in [auth.as_str(), t.tunnel.as_str(), t.web.as_str()] {
        let config = tp_client::Config::new()
            .credentials(&creds, &[addr])
            .unwrap();
        let client = tp_client::Client::connect(config).await.unwrap();
        assert!(client.get_role("editor").await.is_ok(), "{addr}");
        let id = id_path.to_str().unwrap();
        go_clientcheck(addr, ["-i", id, "-"], "ping", addr == t.web);
    }
}

/// A connection target for `mode` ("direct", "tunnel", "tls-routing", "discovery") with
/// `m`; `None` where the mode needs SSH material the credential lacks.
fn target_for(
    mode: &str,
    m: &tp_creds::Material,
    t: &Tpd,
) -> Option<tp_transport::connector::Target> {
    use tp_transport::addr::{PortRule, parse_host_port};
    use tp_transport::connector::Target;
    let web = parse_host_port(&t.web, PortRule::Default(443)).unwrap();
    let (tls, server_name, credential) = (m.tls.clone(), m.server_name.clone(), m.origin.clone());
    Some(match mode {
        "direct" => Target::Direct {
            addr: t.auth_addr(),
            tls,
            server_name,
            credential,
        },
        "tunnel" => Target::Tunnel {
            tunnel_addr: parse_host_port(&t.tunnel, PortRule::Default(3024)).unwrap(),
            ssh: Box::new(m.ssh.clone()?),
            tls,
            server_name,
            credential,
        },
        "tls-routing" => Target::TlsRouting {
            web_addr: web,
            cluster: "example.com".into(),
            tls,
            server_name,
            credential,
        },
        "discovery" => Target::Discovery {
            web_addr: web,
            cluster: String::new(),
            tls,
            server_name,
            ssh: m.ssh.clone().map(Box::new),
            credential,
        },
        other => panic!("no mode {other}"),
    })
}

/// Every loader in every mode against one tpd, with the seed's api-user: get_role
/// succeeds, get_users is AccessDenied, a missing role is NotFound; with an editor's
/// identity, creating an existing role is AlreadyExists. Then Teleport's Go client with
/// the same files (identity file, key pair, profile) gets the same answers.
#[tokio::test(flavor = "multi_thread")]
async fn every_loader_in_every_mode() {
    use tp_client::ErrorKind;
    let t = tpd_in_memory(&[]);
    let d = t.dir.path().to_path_buf();
    let role = d.join("api-role.yaml");
    std::fs::write(&role, "kind: role\nversion: v5\nmetadata:\n  name: api-role\nspec:\n  allow:\n    rules:\n      - resources: [role]\n        verbs: [read]\n").unwrap();
    assert!(tpctl(&t, &["create", "-f", role.to_str().unwrap()]).0);
    for (user, roles) in [("api-user", "api-role"), ("ed", "editor")] {
        add_user(&t, user, roles);
    }
    let sign = |user: &str, format: &str, out: &std::path::Path| auth_sign(&t, user, format, out);
    // The four loaders, all for api-user.
    let id_path = d.join("api-user.pem");
    sign("api-user", "file", &id_path);
    let tls_base = d.join("api-user-tls");
    sign("api-user", "tls", &tls_base);
    let with_ext = |ext: &str| std::path::PathBuf::from(format!("{}.{ext}", tls_base.display()));
    let key_pair = tp_creds::KeyPair::new(with_ext("crt"), with_ext("key"), with_ext("cas"));
    let home = d.join("tsh");
    let bundle = tp_creds::IdentityBundle::parse(
        &std::fs::read_to_string(&id_path).unwrap(),
        "api-user.pem",
    )
    .unwrap();
    tp_creds::write_profile(
        &home,
        &tp_creds::ProfileConfig::new(&t.web, "api-user", "example.com"),
        &bundle,
        true,
    )
    .unwrap();
    let identity = tp_creds::IdentityFile::from_path(&id_path);
    let profile = tp_creds::Profile::new(&home, None);
    let raw_tls = tp_creds::Tls::new(tp_creds::Credentials::load(&key_pair).unwrap().tls);
    let loaders: [(&str, &dyn tp_creds::Credentials); 4] = [
        ("identity file", &identity),
        ("profile", &profile),
        ("key pair", &key_pair),
        ("tls config", &raw_tls),
    ];

    let modes = ["direct", "tunnel", "tls-routing", "discovery"];
    for (loader, creds) in loaders {
        let m = creds.load().unwrap();
        for mode in modes {
            let Some(target) = target_for(mode, &m, &t) else {
                // Only the tunnel needs SSH material, and only TLS-only loaders lack it.
                assert_eq!(mode, "tunnel", "{loader}");
                assert!(matches!(loader, "key pair" | "tls config"), "{loader}");
                continue;
            };
            let what = format!("{loader} via {mode}");
            let client = tp_client::Client::connect(tp_client::Config::new().target(target))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(client.get_role("api-role").await.is_ok(), "{what}");
            assert_eq!(
                client.get_users(false).await.unwrap_err().kind(),
                ErrorKind::AccessDenied,
                "{what}"
            );
            assert_eq!(
                client.get_role("no-such-role").await.unwrap_err().kind(),
                ErrorKind::NotFound,
                "{what}"
            );
        }
    }

    // AlreadyExists needs a caller allowed to create roles: the editor, every mode.
    let ed_path = d.join("ed.pem");
    sign("ed", "file", &ed_path);
    let ed = tp_creds::Credentials::load(&tp_creds::IdentityFile::from_path(&ed_path)).unwrap();
    let existing =
        tp_proto::resource::parse(&std::fs::read_to_string(&role).unwrap(), "api-role.yaml")
            .unwrap();
    for mode in modes {
        let client = tp_client::Client::connect(
            tp_client::Config::new().target(target_for(mode, &ed, &t).unwrap()),
        )
        .await
        .unwrap();
        let tp_proto::resource::Resource::Role(r) = existing[0].clone() else {
            panic!("a role");
        };
        assert_eq!(
            client.create_role(r).await.unwrap_err().kind(),
            ErrorKind::AlreadyExists,
            "editor via {mode}"
        );
    }

    // Teleport's Go client with the same files, at each address (it races its own modes):
    // the same answers for api-user (clientcheck's "user" case).
    let auth = t.auth_addr().to_string();
    let (crt, key, ca) = (with_ext("crt"), with_ext("key"), with_ext("cas"));
    let go_loaders: [(&str, [&str; 3]); 3] = [
        ("identity file", ["-i", id_path.to_str().unwrap(), "-"]),
        (
            "key pair",
            [
                crt.to_str().unwrap(),
                key.to_str().unwrap(),
                ca.to_str().unwrap(),
            ],
        ),
        ("profile", ["-p", home.to_str().unwrap(), "-"]),
    ];
    for (loader, [cert, key, ca]) in go_loaders {
        for addr in [auth.as_str(), t.tunnel.as_str(), t.web.as_str()] {
            if loader == "key pair" && addr != auth {
                // Go tries the proxy's modes only with SSH material (client.go, connect);
                // tp also tries TLS routing with TLS-only credentials (checked above).
                continue;
            }
            go_clientcheck(addr, [cert, key, ca], "user", addr == t.web);
        }
    }
}

/// One W3C WebDriver command to the chromedriver at `port` (plain JSON over HTTP/1.1 on
/// loopback; a client library would add a dependency tree for eight requests); returns
/// the response's `value`, panicking with chromedriver's message on an error.
fn webdriver(port: u16, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let body = if method == "GET" || method == "DELETE" {
        String::new()
    } else {
        body.to_string()
    };
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "chromedriver closed early");
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("chromedriver sends Content-Length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}: {head}\n{body}"));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "chromedriver {method} {path}: {head}\n{v}"
    );
    v["value"].clone()
}

/// Debian's chromedriver on a free port; killed on drop.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChromeDriver {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; .ci/run installs it)");
        // Owned at once, so the process is reaped on every path (Drop).
        let driver = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("chromedriver did not listen on {port} within 10 s");
    }

    /// A headless Chromium session; returns its id. The web certificate is signed by the
    /// cluster's own CA, which the browser does not know: certificate errors are ignored
    /// for this session only (curl verifies the same certificate in the walkthrough).
    fn session(&self, profile: &std::path::Path) -> String {
        let caps = serde_json::json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }}
        });
        let v = webdriver(self.port, "POST", "/session", caps);
        v["sessionId"].as_str().unwrap().to_string()
    }
}

/// The invite flow in a real browser: the URL `tpctl users add` prints, opened in
/// headless Chromium; the form filled and submitted; then `tpsh login` with that
/// password succeeds. A mismatched confirmation is refused on the page first.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_sets_a_password_in_a_browser_and_logs_in() {
    let t = tpd_in_memory(&[]);
    let (ok, out, err) = tpctl(&t, &["users", "add", "web-user", "--roles=access"]);
    assert!(ok, "{err}");
    let url = out
        .lines()
        .find(|l| l.starts_with("https://"))
        .expect("an invite URL")
        .to_string();

    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().unwrap();
    let session = driver.session(profile.path());
    let wd = |method: &str, path: &str, body: serde_json::Value| {
        webdriver(
            driver.port,
            method,
            &format!("/session/{session}{path}"),
            body,
        )
    };
    let element = |css: &str| -> String {
        let v = wd(
            "POST",
            "/element",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|id| id.as_str())
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    };
    let fill = |css: &str, text: &str| {
        let id = element(css);
        wd(
            "POST",
            &format!("/element/{id}/clear"),
            serde_json::json!({}),
        );
        wd(
            "POST",
            &format!("/element/{id}/value"),
            serde_json::json!({ "text": text }),
        );
    };
    let text_of = |css: &str| -> String {
        let id = element(css);
        wd(
            "GET",
            &format!("/element/{id}/text"),
            serde_json::Value::Null,
        )
        .as_str()
        .unwrap()
        .to_string()
    };

    // Finding an element waits (up to 20 s) for it to appear: a submitted form loads a
    // new page, and a click does not wait for that.
    wd(
        "POST",
        "/timeouts",
        serde_json::json!({ "implicit": 20_000 }),
    );
    wd("POST", "/url", serde_json::json!({ "url": url }));
    let title = wd("GET", "/title", serde_json::Value::Null);
    assert!(
        title.as_str().unwrap().to_lowercase().contains("password"),
        "{title}"
    );
    // A confirmation that does not match: the page says so and sets nothing.
    fill("#password", "correct horse battery");
    fill("#confirm", "correct horse batterx");
    wd(
        "POST",
        &format!("/element/{}/click", element("#submit")),
        serde_json::json!({}),
    );
    assert!(
        text_of("#error").contains("do not match"),
        "mismatch message"
    );
    // Then the real thing.
    fill("#password", "correct horse battery");
    fill("#confirm", "correct horse battery");
    wd(
        "POST",
        &format!("/element/{}/click", element("#submit")),
        serde_json::json!({}),
    );
    let done = text_of("#done");
    assert!(
        done.contains("web-user") && done.contains("is set"),
        "{done}"
    );
    wd("DELETE", "", serde_json::Value::Null);

    // The password the browser set logs in.
    let (_, out) = tpsh_login(&t, "web-user", "correct horse battery");
    assert!(out.contains("Logged in as:       web-user"), "{out}");
}

/// `--log-format json`: every line tpd writes to standard error is one JSON object, and
/// the start and the SIGTERM stop are among them with their fields.
#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--in-memory",
            "--cluster-name",
            "example.com",
            "--auth-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("state:")),
        "tpd started"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let started = events
        .iter()
        .find(|e| e["fields"]["message"] == "tpd started")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["fields"]["cluster"], "example.com");
    assert!(started["timestamp"].is_string());
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "tpd stopping" && e["fields"]["reason"] == "SIGTERM"),
        "{stderr}"
    );
}

/// `tpd start --config`: a Teleport-style file sets the cluster name and the listener
/// mode; flags given too win (the test's free ports).
#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_sets_what_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tp.yaml");
    std::fs::write(
        &config,
        "version: v3\nauth_service:\n  enabled: yes\n  listen_addr: 127.0.0.1:1\n  cluster_name: conf.example\n  proxy_listener_mode: separate\nproxy_service:\n  enabled: yes\n  public_addr: proxy.conf.example:443\n",
    )
    .unwrap();
    let t = tpd_in(
        tempfile::tempdir().unwrap().into(),
        &["--in-memory", "--config", config.to_str().unwrap()],
    );
    // The flag's free port won over the file's port 1.
    assert_ne!(t.auth_addr().port, 1);
    let (ok, out, err) = tpctl(&t, &["status"]);
    assert!(ok, "{err}");
    assert!(out.contains("conf.example"), "{out}");
    let (status, body) = https(&t, "GET", "/webapi/find", "application/json", "").await;
    assert_eq!(status, 200, "{body}");
    let find: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(find["proxy"]["tls_routing_enabled"], false, "{body}");
    assert_eq!(
        find["proxy"]["ssh"]["public_addr"], "proxy.conf.example:443",
        "{body}"
    );
}

/// Runs Teleport's Go client (`tests/interop-go/cmd/clientcheck`) at `addr` with the
/// credential arguments `creds` (`-i FILE -`, `-p DIR -`, or `CERT KEY CA`) as `who`
/// (`user` or `ping`); panics with its output unless every case passed. `insecure`
/// skips verifying the web proxy's certificate (signed by the test cluster's own CA).
fn go_clientcheck(addr: &str, creds: [&str; 3], who: &str, insecure: bool) {
    let out = Command::new("go")
        .env("CLIENTCHECK_INSECURE", if insecure { "1" } else { "0" })
        .args(["run", "./cmd/clientcheck", addr])
        .args(creds)
        .arg(who)
        .current_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/interop-go"
        ))
        .output()
        .expect("Go runs the reference client (install Go; see README.md)");
    assert!(
        out.status.success(),
        "Go client at {addr} with {creds:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `curl --cacert CA https://ADDR/webapi/ping`: whether curl verified and fetched it,
/// and what it said.
fn curl_ping(ca: &std::path::Path, addr: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .arg(format!("https://{addr}/webapi/ping"))
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--web-cert`/`--web-key`: the web port serves the operator's certificate (curl
/// verifies it against the operator's CA, not the cluster's), and a key that does not
/// belong to the certificate is refused at start, naming both files.
#[test]
fn an_operator_web_certificate_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The operator's own CA and a leaf for this host.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "operator CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(d.join("web.crt"), leaf.pem()).unwrap();
    std::fs::write(d.join("web.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(
        d.join("other.key"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();

    let web_cert = d.join("web.crt").display().to_string();
    let web_key = d.join("web.key").display().to_string();
    let t = tpd_in(
        tempfile::tempdir().unwrap().into(),
        &[
            "--in-memory",
            "--web-cert",
            &web_cert,
            "--web-key",
            &web_key,
        ],
    );
    let (ok, err) = curl_ping(&d.join("ca.pem"), &t.web);
    assert!(ok, "the operator's CA verifies it: {err}");
    let (ok, _) = curl_ping(&t.dir.path().join("admin/ca.pem"), &t.web);
    assert!(
        !ok,
        "the cluster's CA does not: it is not the host-CA certificate"
    );
    drop(t);

    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--in-memory",
            "--auth-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
            "--tunnel-addr",
            "127.0.0.1:0",
            "--web-cert",
            &web_cert,
            "--web-key",
        ])
        .arg(d.join("other.key"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: web certificate {web_cert} and key ")),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check that the key belongs to the certificate"),
        "{stderr}"
    );
}

/// A fresh in-memory tpd for cluster `example.com`, with `extra` flags.
fn tpd_in_memory(extra: &[&str]) -> Tpd {
    let mut args = vec!["--cluster-name", "example.com", "--in-memory"];
    args.extend_from_slice(extra);
    tpd_in(tempfile::tempdir().unwrap().into(), &args)
}

/// `tpctl users add NAME --roles=ROLES`, which must succeed.
fn add_user(t: &Tpd, name: &str, roles: &str) {
    let (ok, _, err) = tpctl(t, &["users", "add", name, &format!("--roles={roles}")]);
    assert!(ok, "{err}");
}

/// `tpctl auth sign --user=USER --format=FORMAT --out=OUT`, which must succeed.
fn auth_sign(t: &Tpd, user: &str, format: &str, out: &std::path::Path) {
    let (ok, _, err) = tpctl(
        t,
        &[
            "auth",
            "sign",
            &format!("--user={user}"),
            &format!("--format={format}"),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
}

/// `tpsh login` as `user` with `password` through the proxy (trusting the cluster's CA),
/// into `<data dir>/tsh`, which must succeed; returns that profile directory and what
/// tpsh printed.
fn tpsh_login(t: &Tpd, user: &str, password: &str) -> (std::path::PathBuf, String) {
    let home = t.dir.path().join("tsh");
    let ca_file = t.dir.path().join("admin/ca.pem");
    let (ok, out, err) = tpsh(
        &home,
        &[
            "login",
            "--proxy",
            &t.web,
            "--user",
            user,
            "--ca-file",
            ca_file.to_str().unwrap(),
        ],
        &format!("{password}\n"),
    );
    assert!(ok, "{err}");
    (home, out)
}

/// `tpd start --roles proxy ...` with `args`, expected to fail; returns what it printed
/// on standard error.
fn tpd_fails(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args(["start", "--roles", "proxy", "--data-dir"])
        .arg(dir)
        .args(["--web-addr", "127.0.0.1:0", "--tunnel-addr", "127.0.0.1:0"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "tpd {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A proxy started alone: `tpctl tokens add --type=proxy` prints the join command with
/// the CA pin; the proxy joins with the token read from a file (a token on the command
/// line, a wrong token and a wrong pin are refused with clear errors); clients reach the
/// Auth server through it by TLS routing and the tunnel, the invite and password login
/// work through it, and a restart reuses its identity without the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_started_alone_joins_with_a_token_file() {
    let auth = tpd_in(
        tempfile::tempdir().unwrap().into(),
        &[
            "--cluster-name",
            "example.com",
            "--in-memory",
            "--roles",
            "auth",
        ],
    );
    assert!(
        auth.web.is_empty() && auth.tunnel.is_empty(),
        "no proxy here"
    );
    let auth_addr = auth.auth_addr().to_string();
    let (ok, out, err) = tpctl(&auth, &["tokens", "add", "--type=proxy"]);
    assert!(ok, "{err}");
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("The invite token: "))
        .unwrap()
        .to_string();
    let pin = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("--ca-pin="))
        .unwrap()
        .trim_end_matches(" \\")
        .to_string();
    assert!(
        out.contains(&format!("--auth-server={auth_addr}")) && out.contains("--roles=proxy"),
        "{out}"
    );
    let (ok, out, _) = tpctl(&auth, &["tokens", "ls"]);
    assert!(
        ok && out.contains("Proxy"),
        "stored as Teleport spells it: {out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("join-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let proxy_dir = dir.path().join("proxy-data");

    // The token itself given to --token: refused, saying why files are asked for.
    let e = tpd_fails(
        &proxy_dir,
        &[
            "--auth-server",
            &auth_addr,
            "--token",
            &token,
            "--ca-pin",
            &pin,
        ],
    );
    assert!(e.contains("cannot read the join token file"), "{e}");
    assert!(!e.contains(&token), "the token is not echoed: {e}");
    assert!(e.contains("never from the command line"), "{e}");
    // A wrong token, and a pin of another cluster.
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "0123456789abcdef\n").unwrap();
    let e = tpd_fails(
        &proxy_dir,
        &[
            "--auth-server",
            &auth_addr,
            "--token",
            wrong.to_str().unwrap(),
            "--ca-pin",
            &pin,
        ],
    );
    assert!(e.contains("the join token is not valid"), "{e}");
    let other_pin = format!("sha256:{}", "ab".repeat(32));
    let e = tpd_fails(
        &proxy_dir,
        &[
            "--auth-server",
            &auth_addr,
            "--token",
            token_file.to_str().unwrap(),
            "--ca-pin",
            &other_pin,
        ],
    );
    assert!(e.contains("matches none of the CA pins"), "{e}");
    // Without a token and never joined: says how to join.
    let e = tpd_fails(&proxy_dir, &["--auth-server", &auth_addr]);
    assert!(e.contains("has not joined a cluster yet"), "{e}");
    assert!(!proxy_dir.join("proxy/identity").exists());
    // The flags that go with joining: an Auth server to join, a well-formed pin, and
    // no join flags beside a local Auth server.
    let e = tpd_fails(&proxy_dir, &["--token", token_file.to_str().unwrap()]);
    assert!(e.contains("--roles proxy needs --auth-server"), "{e}");
    let e = tpd_fails(
        &proxy_dir,
        &["--auth-server", &auth_addr, "--ca-pin", "sha256:ab"],
    );
    assert!(e.contains("expected sha256: and 64 hex digits"), "{e}");
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--in-memory",
            "--auth-server",
            &auth_addr,
            "--data-dir",
        ])
        .arg(&proxy_dir)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{e}");
    assert!(e.contains("are for a proxy started alone"), "{e}");

    let proxy_args = [
        "--roles",
        "proxy",
        "--auth-server",
        auth_addr.as_str(),
        "--token",
        token_file.to_str().unwrap(),
        "--ca-pin",
        pin.as_str(),
    ];
    let proxy = tpd_in(
        DataDir {
            path: proxy_dir.clone(),
            _tmp: None,
        },
        &proxy_args,
    );
    use std::os::unix::fs::PermissionsExt as _;
    let identity = proxy_dir.join("proxy/identity");
    assert_eq!(
        std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bundle =
        tp_creds::IdentityBundle::parse(&std::fs::read_to_string(&identity).unwrap(), "identity")
            .unwrap();
    let der = CertificateDer::from_pem_slice(bundle.tls_cert.unwrap().as_bytes()).unwrap();
    let id = tp_creds::TlsIdentity::from_certificate_der(&der, "proxy cert").unwrap();
    assert_eq!(id.groups, ["Proxy"]);
    assert_eq!(id.teleport_cluster, "example.com");
    let ssh = tp_creds::cert::parse_ssh_cert(bundle.ssh_cert.as_deref().unwrap(), "ssh").unwrap();
    assert_eq!(ssh.cert_type(), ssh_key::certificate::CertType::Host);
    assert!(ssh.valid_principals().iter().any(|p| p == "127.0.0.1"));

    // Clients reach the Auth server through the joined proxy.
    add_user(&auth, "bob", "editor");
    let id_path = dir.path().join("bob.pem");
    auth_sign(&auth, "bob", "file", &id_path);
    let creds = tp_creds::IdentityFile::from_path(&id_path);
    let material = tp_creds::Credentials::load(&creds).unwrap();
    for mode in ["tls-routing", "tunnel", "discovery"] {
        let target = target_for(mode, &material, &proxy).unwrap();
        let client = tp_client::Client::connect(tp_client::Config::new().target(target))
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(client.get_role("editor").await.is_ok(), "{mode}");
    }
    go_clientcheck(
        &proxy.web,
        ["-i", id_path.to_str().unwrap(), "-"],
        "ping",
        true,
    );
    go_clientcheck(
        &proxy.tunnel,
        ["-i", id_path.to_str().unwrap(), "-"],
        "ping",
        true,
    );

    // The invite and a password login, through the joined proxy's own Auth client.
    let (ok, out, err) = tpctl(&auth, &["users", "add", "carol", "--roles=access"]);
    assert!(ok, "{err}");
    let url = out.lines().find(|l| l.starts_with("https://")).unwrap();
    let path = format!("/web/invite/{}", url.rsplit_once('/').unwrap().1);
    let ca = auth.dir.path().join("admin/ca.pem");
    let (status, body) = https_at(
        &proxy.web,
        &ca,
        "POST",
        &path,
        "application/x-www-form-urlencoded",
        "password=correct%20horse&confirm=correct%20horse",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let home = dir.path().join("tsh");
    let (ok, _, err) = tpsh(
        &home,
        &[
            "login",
            "--proxy",
            &proxy.web,
            "--user",
            "carol",
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        "correct horse\n",
    );
    assert!(ok, "login through the joined proxy: {err}");

    // A restart needs no token: the stored identity is used.
    let (dir_back, _) = proxy.stop();
    std::fs::remove_file(&token_file).unwrap();
    let proxy = tpd_in(dir_back, &proxy_args[..4]);
    let target = target_for("tls-routing", &material, &proxy).unwrap();
    let client = tp_client::Client::connect(tp_client::Config::new().target(target))
        .await
        .unwrap();
    assert_eq!(client.ping().await.unwrap().cluster_name, "example.com");

    // Given a token again and a public name its certificates lack, it joins again so
    // that clients dialling that name accept it.
    drop(client);
    let (dir_back, _) = proxy.stop();
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let renamed = [
        &proxy_args[..],
        &["--public-addr", "proxy.example.test:443"],
    ]
    .concat();
    let proxy = tpd_in(dir_back, &renamed);
    let bundle = tp_creds::IdentityBundle::parse(
        &std::fs::read_to_string(proxy.dir.path().join("proxy/identity")).unwrap(),
        "identity",
    )
    .unwrap();
    let ssh = tp_creds::cert::parse_ssh_cert(bundle.ssh_cert.as_deref().unwrap(), "ssh").unwrap();
    assert!(
        ssh.valid_principals()
            .iter()
            .any(|p| p == "proxy.example.test"),
        "{:?}",
        ssh.valid_principals()
    );

    // Told to trust another cluster's CA, the stored identity is refused, naming it.
    let (dir_back, _) = proxy.stop();
    let e = tpd_fails(
        dir_back.path(),
        &["--auth-server", &auth_addr, "--ca-pin", &other_pin],
    );
    assert!(e.contains("proxy/identity"), "{e}");
    assert!(e.contains("matches none of the --ca-pin values"), "{e}");
}
