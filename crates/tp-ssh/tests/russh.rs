//! Interop with stock russh 0.65 (ring provider) for the standard parts: KEX, certificate
//! authentication, `session` and `direct-tcpip` channels, both directions.

mod common;

use std::sync::Arc;

use common::*;
use russh::keys::PublicKeyOrCertificate;
use ssh_key::LineEnding;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tp_ssh::{CipherAlg, KexAlg};

fn to_russh_key(k: &ssh_key::PrivateKey) -> russh::keys::PrivateKey {
    russh::keys::PrivateKey::from_openssh(k.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap()
}

fn to_russh_cert(c: &ssh_key::Certificate) -> russh::keys::Certificate {
    russh::keys::Certificate::from_openssh(&c.to_openssh().unwrap()).unwrap()
}

struct AcceptAny {
    saw_cert: Arc<std::sync::atomic::AtomicBool>,
}

impl russh::client::Handler for AcceptAny {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if matches!(key, PublicKeyOrCertificate::Certificate(_)) {
            self.saw_cert
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(true)
    }
}

#[tokio::test]
async fn russh_client_with_user_cert_to_tp_ssh_server() {
    let pki = Pki::new();
    for user_key in [ed25519(), p256()] {
        let user_cert = cert(
            &pki.user_ca,
            user_key.public_key(),
            &CertSpec::user(&["alice"]),
        );
        let scfg = Arc::new(pki.server(&ed25519(), &CertSpec::host(&["h"])));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, peer) = l.accept().await.unwrap();
            let (session, info) = tp_ssh::Server::accept(tcp, scfg, Some(peer.ip()))
                .await
                .unwrap();
            assert_eq!(info.user, "alice");
            let mut kinds = Vec::new();
            for _ in 0..2 {
                let inc = session.next_channel().await.unwrap();
                kinds.push(inc.kind().to_owned());
                let mut ch = inc.accept().unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 100_000];
                    ch.read_exact(&mut buf).await.unwrap();
                    ch.write_all(&buf).await.unwrap();
                    ch.shutdown().await.unwrap();
                });
            }
            (session, kinds)
        });
        let saw_cert = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tcp = TcpStream::connect(addr).await.unwrap();
        // Ask for host certificates (russh leaves them off by default).
        let config = russh::client::Config {
            preferred: russh::Preferred {
                host_key_certificates: std::borrow::Cow::Owned(vec![
                    russh::keys::Algorithm::Ed25519,
                ]),
                ..russh::Preferred::default()
            },
            ..Default::default()
        };
        let mut h = russh::client::connect_stream(
            Arc::new(config),
            tcp,
            AcceptAny {
                saw_cert: saw_cert.clone(),
            },
        )
        .await
        .unwrap();
        let ok = h
            .authenticate_openssh_cert(
                "alice",
                Arc::new(to_russh_key(&user_key)),
                to_russh_cert(&user_cert),
            )
            .await
            .unwrap();
        assert!(ok.success());
        for direct in [false, true] {
            let ch = if direct {
                h.channel_open_direct_tcpip("db", 5432, "127.0.0.1", 1)
                    .await
                    .unwrap()
            } else {
                h.channel_open_session().await.unwrap()
            };
            let mut s = ch.into_stream();
            let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            s.write_all(&data).await.unwrap();
            let mut back = vec![0u8; data.len()];
            s.read_exact(&mut back).await.unwrap();
            assert!(back == data);
        }
        let (_session, kinds) = server.await.unwrap();
        assert_eq!(kinds, ["session", "direct-tcpip"]);
        assert!(
            saw_cert.load(std::sync::atomic::Ordering::SeqCst),
            "russh saw our host certificate"
        );
    }
}

#[tokio::test]
async fn russh_client_with_untrusted_cert_is_refused() {
    let pki = Pki::new();
    let other = Pki::new();
    let user_key = ed25519();
    let user_cert = cert(
        &other.user_ca,
        user_key.public_key(),
        &CertSpec::user(&["alice"]),
    );
    let scfg = Arc::new(pki.server(&ed25519(), &CertSpec::host(&["h"])));
    let (a, b) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(tp_ssh::Server::accept(b, scfg, None));
    let mut h = russh::client::connect_stream(
        Arc::new(russh::client::Config::default()),
        a,
        AcceptAny {
            saw_cert: Arc::default(),
        },
    )
    .await
    .unwrap();
    let r = h
        .authenticate_openssh_cert(
            "alice",
            Arc::new(to_russh_key(&user_key)),
            to_russh_cert(&user_cert),
        )
        .await;
    assert!(!r.map(|r| r.success()).unwrap_or(false));
    drop(h);
    assert!(server.await.unwrap().is_err());
}

#[derive(Clone)]
struct EchoServer;

impl russh::server::Handler for EchoServer {
    type Error = russh::Error;

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<russh::server::Auth, Self::Error> {
        // Stock russh leaves the CA check to the application; the test only needs the
        // signature and certificate plumbing.
        if user == "alice" && certificate.valid_principals().iter().any(|p| p == "alice") {
            Ok(russh::server::Auth::Accept)
        } else {
            Ok(russh::server::Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(echo(channel));
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: russh::Channel<russh::server::Msg>,
        host: &str,
        port: u32,
        _oa: &str,
        _op: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        assert_eq!((host, port), ("target", 80));
        reply.accept().await;
        tokio::spawn(echo(channel));
        Ok(())
    }
}

async fn echo(channel: russh::Channel<russh::server::Msg>) {
    let s = channel.into_stream();
    let (mut r, mut w) = tokio::io::split(s);
    let _ = tokio::io::copy(&mut r, &mut w).await;
    let _ = w.shutdown().await;
}

#[tokio::test]
async fn tp_ssh_client_to_russh_server() {
    let pki = Pki::new();
    for (kex, cipher) in [
        (KexAlg::Curve25519, CipherAlg::ChaCha20Poly1305),
        (KexAlg::EcdhP256, CipherAlg::Aes256Gcm),
        (KexAlg::Curve25519, CipherAlg::Aes128Gcm),
    ] {
        let host = ed25519();
        let host_cert = cert(&pki.host_ca, host.public_key(), &CertSpec::host(&["russh"]));
        let config = russh::server::Config {
            keys: vec![to_russh_key(&host)],
            certificates: vec![to_russh_cert(&host_cert)],
            // russh leaves ecdh-sha2-nistp256 out of its default list.
            preferred: russh::Preferred {
                kex: std::borrow::Cow::Owned(vec![
                    russh::kex::CURVE25519,
                    russh::kex::ECDH_SHA2_NISTP256,
                    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
                    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
                ]),
                cipher: std::borrow::Cow::Owned(vec![
                    russh::cipher::CHACHA20_POLY1305,
                    russh::cipher::AES_256_GCM,
                    russh::cipher::AES_128_GCM,
                ]),
                ..russh::Preferred::default()
            },
            ..Default::default()
        };
        let (a, b) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let running = russh::server::run_stream(Arc::new(config), b, EchoServer)
                .await
                .unwrap();
            let _ = running.await;
        });
        let mut c = pki.client(&ed25519(), &CertSpec::user(&["alice"]));
        c.transport.kex = vec![kex];
        c.transport.ciphers = vec![cipher];
        c.host_principal = Some("russh".into());
        let session = tp_ssh::Client::connect(a, Arc::new(c))
            .await
            .expect("connects to russh");
        assert!(session.is_strict_kex(), "strict KEX with russh");
        for direct in [false, true] {
            let mut ch = if direct {
                session
                    .open_direct_tcpip("target", 80, "127.0.0.1", 1)
                    .await
                    .unwrap()
            } else {
                session.open_channel("session", b"").await.unwrap()
            };
            let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
            let (mut r, mut w) = tokio::io::split(&mut ch);
            let d2 = data.clone();
            let wr = async move {
                w.write_all(&d2).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let rd = r.read_to_end(&mut back);
            let (_, n) = tokio::join!(wr, rd);
            n.unwrap();
            assert!(back == data);
        }
        session.disconnect();
        let _ = srv.await;
    }
}
