//! tp-ssh client ↔ tp-ssh server.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tp_ssh::teleport::{self, DialRequest};
use tp_ssh::{CipherAlg, KexAlg};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[tokio::test]
async fn every_kex_and_cipher_with_custom_channel_and_request() {
    let pki = Pki::new();
    for kex in KexAlg::ALL {
        for cipher in CipherAlg::ALL {
            let mut c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
            c.transport.kex = vec![kex];
            c.transport.ciphers = vec![cipher];
            let s = pki.server(&ed25519(), &CertSpec::host(&["proxy"]));
            let (client, server) = connected(c, s).await;
            assert!(client.is_strict_kex() && server.is_strict_kex());
            let srv = tokio::spawn(async move {
                let inc = server.next_channel().await.unwrap();
                assert_eq!(inc.kind(), "my-custom-channel");
                assert_eq!(&inc.extra()[..], b"extra");
                let mut ch = inc.accept().unwrap();
                let req = ch.next_request().await.unwrap();
                assert_eq!(req.name, "my-request");
                assert_eq!(&req.payload[..], b"{\"raw\":true}");
                ch.reply(true).unwrap();
                let req = ch.next_request().await.unwrap();
                assert_eq!(req.name, "second");
                ch.reply(false).unwrap();
                let mut buf = Vec::new();
                ch.read_to_end(&mut buf).await.unwrap();
                ch.write_all(&buf).await.unwrap();
                ch.shutdown().await.unwrap();
                server
            });
            let mut ch = client
                .open_channel("my-custom-channel", b"extra")
                .await
                .unwrap();
            assert!(
                ch.request("my-request", true, b"{\"raw\":true}")
                    .await
                    .unwrap()
            );
            assert!(!ch.request("second", true, b"").await.unwrap());
            let data = pattern(300_000);
            ch.write_all(&data).await.unwrap();
            ch.shutdown().await.unwrap();
            let mut back = Vec::new();
            ch.read_to_end(&mut back).await.unwrap();
            assert!(back == data, "echo mismatch for {kex:?}/{cipher:?}");
            let _server = srv.await.unwrap();
        }
    }
}

#[tokio::test]
async fn all_user_and_host_key_types() {
    let pki = Pki::new();
    let keys = [ed25519(), p256(), rsa()];
    for user in &keys {
        for host in &keys {
            let c = pki.client(user, &CertSpec::user(&["alice"]));
            let s = pki.server(host, &CertSpec::host(&["proxy"]));
            let (client, server) = connected(c, s).await;
            let srv = tokio::spawn(async move {
                let mut ch = server.next_channel().await.unwrap().accept().unwrap();
                ch.write_all(b"hi").await.unwrap();
                ch.shutdown().await.unwrap();
                server
            });
            let mut ch = client.open_channel("x", b"").await.unwrap();
            let mut s = String::new();
            ch.read_to_string(&mut s).await.unwrap();
            assert_eq!(s, "hi");
            srv.await.unwrap();
        }
    }
}

#[tokio::test]
async fn rekey_mid_stream_with_tiny_threshold_keeps_data_intact() {
    let pki = Pki::new();
    for cipher in CipherAlg::ALL {
        let mut c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
        c.transport.rekey_bytes = 64 * 1024;
        c.transport.ciphers = vec![cipher];
        let mut s = pki.server(&p256(), &CertSpec::host(&["proxy"]));
        s.transport.rekey_bytes = 200 * 1024;
        let (client, server) = connected(c, s).await;
        let srv = tokio::spawn(async move {
            let mut ch = server.next_channel().await.unwrap().accept().unwrap();
            let (mut r, mut w) = tokio::io::split(&mut ch);
            tokio::io::copy(&mut r, &mut w).await.unwrap();
            w.shutdown().await.unwrap();
            drop((r, w));
            server
        });
        let ch = client.open_channel("echo", b"").await.unwrap();
        let (mut r, mut w) = tokio::io::split(ch);
        let data = pattern(4 * 1024 * 1024 + 17);
        let d2 = data.clone();
        let wt = tokio::spawn(async move {
            w.write_all(&d2).await.unwrap();
            w.shutdown().await.unwrap();
            w
        });
        let mut back = Vec::new();
        r.read_to_end(&mut back).await.unwrap();
        let _w = wt.await.unwrap();
        assert!(back == data);
        let server = srv.await.unwrap();
        assert!(
            client.kex_count() > 3,
            "client kex count {}",
            client.kex_count()
        );
        assert!(server.kex_count() > 3);
        client.rekey().unwrap();
    }
}

#[tokio::test]
async fn teleport_transport_success_and_stderr_error() {
    let pki = Pki::new();
    let c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
    let s = pki.server(&ed25519(), &CertSpec::host(&["proxy"]));
    let (client, server) = connected(c, s).await;
    let srv = tokio::spawn(async move {
        // First: a successful dial to an in-memory echo "auth server".
        let inc = server.next_channel().await.unwrap();
        let ok = tokio::spawn(teleport::serve_transport(
            inc,
            |req: DialRequest| async move {
                assert_eq!(req.address, "@remote-auth-server");
                assert_eq!(req.conn_type, "node");
                let (a, mut b) = tokio::io::duplex(4096);
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    b.read_exact(&mut buf).await.unwrap();
                    b.write_all(&buf).await.unwrap();
                });
                Ok(a)
            },
        ));
        let inc2 = server.next_channel().await.unwrap();
        let fail = teleport::serve_transport(inc2, |_req| async move {
            Err::<tokio::io::DuplexStream, _>("failed to dial auth server".to_string())
        })
        .await;
        assert!(fail.is_err());
        let inc3 = server.next_channel().await.unwrap();
        assert_eq!(inc3.kind(), "session");
        teleport::serve_transport(inc3, |_req| async move {
            Err::<tokio::io::DuplexStream, _>("nope".to_string())
        })
        .await
        .unwrap();
        ok.await.unwrap().unwrap();
        server
    });
    let mut ch = teleport::dial_transport(&client, &DialRequest::auth_server())
        .await
        .unwrap();
    ch.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    ch.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    let err = teleport::dial_transport(&client, &DialRequest::auth_server())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "failed to dial auth server");
    let err = client.open_channel("session", b"").await.unwrap_err();
    assert!(err.to_string().contains("reverse tunnel"), "{err}");
    drop(ch);
    srv.await.unwrap();
}

#[tokio::test]
async fn dial_request_json_matches_teleport() {
    let j = serde_json::to_string(&DialRequest::auth_server()).unwrap();
    assert_eq!(j, r#"{"address":"@remote-auth-server","conn_type":"node"}"#);
}

#[tokio::test]
async fn direct_tcpip_and_global_requests() {
    let pki = Pki::new();
    let c = pki.client(&p256(), &CertSpec::user(&["alice"]));
    let s = pki.server(&ed25519(), &CertSpec::host(&["proxy"]));
    let (client, server) = connected(c, s).await;
    // Unknown global requests (and keepalive) are answered with failure.
    let r = client
        .global_request("keepalive@openssh.com", true, b"")
        .await
        .unwrap();
    assert!(!r.unwrap().0);
    let r = server
        .global_request("tracing@goteleport.com", true, b"x")
        .await
        .unwrap();
    assert!(!r.unwrap().0);
    let srv = tokio::spawn(async move {
        let inc = server.next_channel().await.unwrap();
        assert_eq!(inc.kind(), "direct-tcpip");
        assert_eq!(
            inc.direct_tcpip_target(),
            Some(("db.internal".to_string(), 5432))
        );
        let mut ch = inc.accept().unwrap();
        ch.write_all(b"pong").await.unwrap();
        drop(ch);
        server
    });
    let mut ch = client
        .open_direct_tcpip("db.internal", 5432, "127.0.0.1", 40000)
        .await
        .unwrap();
    let mut s = String::new();
    ch.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "pong");
    let server = srv.await.unwrap();
    // Server-initiated channel towards the client works too.
    let cl = tokio::spawn(async move {
        let mut ch = client.next_channel().await.unwrap().accept().unwrap();
        ch.write_all(b"back").await.unwrap();
        ch.shutdown().await.unwrap();
        client
    });
    let mut ch = server.open_channel("forwarded-tcpip", b"").await.unwrap();
    let mut s = String::new();
    ch.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "back");
    let client = cl.await.unwrap();
    client.disconnect();
    let e = server.closed().await;
    assert!(matches!(e, tp_ssh::Error::PeerDisconnected { .. }), "{e:?}");
}

#[tokio::test]
async fn window_backpressure_and_dropping_every_handle_disconnects() {
    let pki = Pki::new();
    let c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
    let s = pki.server(&ed25519(), &CertSpec::host(&["proxy"]));
    let (client, server) = connected(c, s).await;
    let srv = tokio::spawn(async move {
        let ch = server.next_channel().await.unwrap().accept().unwrap();
        (server, ch)
    });
    let mut ch = client.open_channel("x", b"").await.unwrap();
    let (server, mut sch) = srv.await.unwrap();
    // The server never reads: the writer stalls once the 2 MiB window is used up.
    let big = vec![7u8; 10 * 1024 * 1024];
    let r = tokio::time::timeout(std::time::Duration::from_millis(500), ch.write_all(&big)).await;
    assert!(r.is_err(), "write of 10 MiB must block on the window");
    // Reading on the server side reopens the window.
    let mut buf = vec![0u8; 1024 * 1024];
    sch.read_exact(&mut buf).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), ch.write(&big))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    drop(ch);
    drop(client);
    let e = server.closed().await;
    assert!(matches!(e, tp_ssh::Error::PeerDisconnected { .. }), "{e:?}");
    drop(sch);
}
