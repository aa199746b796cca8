//! Password login through the proxy, as `tsh login` does it: `POST /v1/webapi/ssh/certs`
//! returns an SSH and a TLS certificate for the user's keys and the host CA; a wrong
//! password is refused without saying why; repeated failures are rate limited.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tp_client::UserTokenType;
use tp_proto::proto::ChangeUserAuthenticationRequest;
use tp_proto::types::UserV2;
use tp_proxy::web::{WebConfig, router};
use tp_tests::cluster::TestCluster;
use tp_transport::discovery::ProxySettings;

async fn post_json(addr: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn password_login_returns_certificates() {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let admin = c.admin().await;
    let proxy_identity = c.client(&c.host_identity("Proxy")).await;
    admin
        .create_user(UserV2::new("alice", &["access"]))
        .await
        .unwrap();
    let token = admin
        .create_reset_password_token("alice", UserTokenType::Invite, Duration::ZERO)
        .await
        .unwrap();
    proxy_identity
        .change_user_authentication(ChangeUserAuthenticationRequest {
            token_id: token.metadata.unwrap().name,
            new_password: b"correct horse".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();

    let web = router(
        Arc::new(WebConfig::new("example.com", ProxySettings::default())),
        Some(proxy_identity),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, web).await });

    let tls_key = rcgen::KeyPair::generate().unwrap();
    let ssh_key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let login = |password: &str| {
        serde_json::json!({
            "user": "alice",
            "password": password,
            "ssh_pub_key": b64(&ssh_key.public_key().to_openssh().unwrap()),
            "tls_pub_key": b64(&tls_key.public_key_pem()),
            "ttl": 3_600_000_000_000i64,
        })
    };
    let (status, body) = post_json(&addr, "/v1/webapi/ssh/certs", &login("correct horse")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["username"], "alice");
    let dec = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    };
    let cert = String::from_utf8(dec(&body["cert"])).unwrap();
    let ssh_cert = ssh_key::Certificate::from_openssh(cert.trim()).unwrap();
    assert_eq!(ssh_cert.key_id(), "alice");
    assert!(
        String::from_utf8(dec(&body["tls_cert"]))
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(body["host_signers"][0]["domain_name"], "example.com");
    assert!(
        String::from_utf8(dec(&body["host_signers"][0]["checking_keys"][0]))
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );

    // A wrong password and an unknown user look the same.
    let (status, body) = post_json(&addr, "/webapi/ssh/certs", &login("wrong horse")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["message"], "invalid user name or password");
    let mut ghost = login("whatever");
    ghost["user"] = "ghost".into();
    let (status, body) = post_json(&addr, "/webapi/ssh/certs", &ghost).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (403, Some("invalid user name or password"))
    );

    // Bad input is a 400 with a message.
    let (status, body) = post_json(
        &addr,
        "/webapi/ssh/certs",
        &serde_json::json!({"user": "alice", "password": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // After too many failures even the right password waits.
    for _ in 0..5 {
        post_json(&addr, "/webapi/ssh/certs", &login("wrong horse")).await;
    }
    let (status, body) = post_json(&addr, "/webapi/ssh/certs", &login("correct horse")).await;
    assert_eq!(status, 429, "{body}");
}
