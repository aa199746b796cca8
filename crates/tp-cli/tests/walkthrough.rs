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

struct Tpd {
    child: Child,
    web: String,
    dir: tempfile::TempDir,
}

impl Drop for Tpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tpd() -> Tpd {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--cluster-name",
            "example.com",
            "--auth-addr",
            "127.0.0.1:0",
            "--web-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut web = String::new();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(rest) = line.trim().strip_prefix("proxy: https://") {
            web = rest.split_whitespace().next().unwrap().to_string();
        }
        if line.contains("state:") {
            break;
        }
    }
    assert!(!web.is_empty(), "tpd printed its web address");
    Tpd { child, web, dir }
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
    let ca = std::fs::read(t.dir.path().join("admin/ca.pem")).unwrap();
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
    let tcp = TcpStream::connect(&t.web).await.unwrap();
    let ip = t.web.rsplit_once(':').unwrap().0.to_string();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(ip).unwrap(), tcp)
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        t.web,
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
    let t = tpd();
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

    // A second tpd on the same port.
    let auth_addr = std::fs::read_to_string(t.dir.path().join("admin/auth-addr")).unwrap();
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tpd"))
        .args([
            "start",
            "--web-addr",
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

    // An unreachable Auth server.
    let (ok, _, err) = tpctl(&t, &["--auth-server", "127.0.0.1:1", "status"]);
    assert!(!ok);
    assert!(err.contains("is tpd running?"), "{err}");
}
