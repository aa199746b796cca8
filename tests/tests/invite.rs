//! The invite flow across the cluster: the admin creates a user and an invite token on
//! the Auth server; the proxy's invite page (with the proxy's own identity) shows the
//! form, refuses mismatched or short passwords with a message, sets the password once,
//! and shows an expired-link page afterwards.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tp_client::UserTokenType;
use tp_proto::types::UserV2;
use tp_proxy::web::{WebConfig, router};
use tp_tests::cluster::TestCluster;
use tp_transport::discovery::ProxySettings;

/// One HTTP/1.1 exchange; returns the status and the body.
async fn http(addr: &str, method: &str, path: &str, form: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let body = form.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.unwrap();
    let status = resp.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A cluster with `api-user` (role access), an invite for them valid for `ttl` (zero for
/// the default), and the proxy's web routes on loopback: the cluster, the web address,
/// and the invite's path.
async fn invited(ttl: Duration) -> (TestCluster, String, String) {
    let c = TestCluster::start("proxy.example.com:3080").await;
    let admin = c.admin().await;
    let proxy_identity = c.client(&c.host_identity("Proxy")).await;

    admin
        .create_user(UserV2::new("api-user", &["access"]))
        .await
        .unwrap();
    let token = admin
        .create_reset_password_token("api-user", UserTokenType::Invite, ttl)
        .await
        .unwrap();
    let url = token.spec.unwrap().url;
    let path = url
        .strip_prefix("https://proxy.example.com:3080")
        .expect("the URL names the proxy")
        .to_string();
    assert!(path.starts_with("/web/invite/"), "{url}");

    let mut proxy = ProxySettings::default();
    proxy.ssh.public_addr = "proxy.example.com:3080".into();
    let web = router(
        Arc::new(WebConfig::new("example.com", proxy)),
        Some(proxy_identity),
    );
    let wl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = wl.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(wl, web).await });
    (c, web_addr, path)
}

#[tokio::test]
async fn invite_page_sets_a_password_once() {
    let (c, web_addr, path) = invited(Duration::ZERO).await;
    let admin = c.admin().await;
    let (status, body) = http(&web_addr, "GET", &path, None).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<strong id=\"user\">api-user</strong>"),
        "{body}"
    );
    assert!(!body.contains("<script"), "no scripts");

    let (status, body) = http(
        &web_addr,
        "POST",
        &path,
        Some("password=abcdefgh&confirm=abcdefgX"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("do not match"), "{body}");
    let (status, body) = http(&web_addr, "POST", &path, Some("password=abc&confirm=abc")).await;
    assert_eq!(status, 400);
    assert!(body.contains("at least 6 characters"), "{body}");

    let (status, body) = http(
        &web_addr,
        "POST",
        &path,
        Some("password=correct%20horse&confirm=correct%20horse"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("id=\"done\""), "{body}");
    assert!(
        body.contains("tpsh login --proxy=proxy.example.com:3080 --user=api-user"),
        "{body}"
    );
    let user = admin.get_user("api-user", true).await.unwrap();
    assert!(
        !user
            .spec
            .unwrap()
            .local_auth
            .unwrap()
            .password_hash
            .is_empty()
    );

    // Used: the link is now dead.
    let (status, body) = http(&web_addr, "GET", &path, None).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("invalid, has already been used, or has expired"),
        "{body}"
    );
    let (status, _) = http(&web_addr, "GET", "/web/invite/not-a-token", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn an_expired_invite_shows_the_expired_page_and_sets_nothing() {
    let (c, web_addr, path) = invited(Duration::from_secs(1)).await;
    // Valid at first...
    let (status, _) = http(&web_addr, "GET", &path, None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // ...then expired: the page says so, and a post sets no password.
    let (status, body) = http(&web_addr, "GET", &path, None).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("invalid, has already been used, or has expired"),
        "{body}"
    );
    let (status, body) = http(
        &web_addr,
        "POST",
        &path,
        Some("password=correct%20horse&confirm=correct%20horse"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let user = c.admin().await.get_user("api-user", true).await.unwrap();
    let hash = user
        .spec
        .and_then(|s| s.local_auth)
        .map(|a| a.password_hash)
        .unwrap_or_default();
    assert!(hash.is_empty(), "no password was set");
}
