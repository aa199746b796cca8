//! A client holding a `ReloadingIdentityFile`'s TLS configuration follows the file: after
//! a bot rewrites it, the next handshake presents the new certificate and trusts the new
//! CAs, without loading the credentials again.

mod common;

use std::sync::Arc;

use common::{Pki, now};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tp_creds::sign::{X509Signer, self_signed_ca};
use tp_creds::{Credentials, Format, KeyAlgorithm, PrivateKey, ReloadingIdentityFile, TlsIdentity};

/// A TLS server with a certificate from its own host CA that requires client
/// certificates from `user_ca` and answers each connection with the client's CN.
async fn server(user_ca: &[u8]) -> (String, Vec<u8>) {
    let host_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let host_ca = self_signed_ca("example.com", &host_key, now() - 60, now() + 3600).unwrap();
    let leaf_key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).unwrap();
    let leaf = X509Signer::new(&host_ca, &host_key)
        .unwrap()
        .issue(
            &TlsIdentity::host("auth", "example.com", "Auth"),
            &leaf_key.public_key_spki_der().unwrap(),
            now() - 60,
            now() + 3600,
            &["teleport.cluster.local".into()],
        )
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(user_ca.to_vec())).unwrap();
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(
            vec![CertificateDer::from(leaf)],
            PrivateKeyDer::try_from(leaf_key.to_pkcs8_der().unwrap().to_vec()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
                let cn = TlsIdentity::from_certificate_der(&peer, "peer")
                    .unwrap()
                    .username;
                let _ = tls.write_all(cn.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, host_ca)
}

async fn who_am_i(tls: Arc<rustls::ClientConfig>, addr: &str) -> Result<String, std::io::Error> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("teleport.cluster.local").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

fn identity_for(pki: &Pki, user: &str, host_ca: &[u8]) -> tp_creds::IdentityBundle {
    let mut b = pki.valid_bundle(KeyAlgorithm::EcdsaP256);
    let mut id = pki.tls_identity();
    id.username = user.into();
    let tls = X509Signer::new(&pki.ca_der, &pki.ca_key)
        .unwrap()
        .issue(
            &id,
            &b.key.public_key_spki_der().unwrap(),
            now() - 60,
            now() + 3600,
            &[],
        )
        .unwrap();
    b.tls_cert = Some(tp_creds::pem::encode("CERTIFICATE", &tls));
    b.tls_cas = vec![tp_creds::pem::encode("CERTIFICATE", host_ca)];
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn handshakes_follow_the_rewritten_file() {
    let pki = Pki::new(KeyAlgorithm::EcdsaP256);
    let (addr1, host_ca1) = server(&pki.ca_der).await;
    let (addr2, host_ca2) = server(&pki.ca_der).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity");
    identity_for(&pki, "alice", &host_ca1)
        .write(Format::File, &path)
        .unwrap();

    let creds = ReloadingIdentityFile::new(&path).unwrap();
    let tls = creds.load().unwrap().tls; // held by the client from now on
    assert_eq!(who_am_i(tls.clone(), &addr1).await.unwrap(), "alice");
    assert!(
        who_am_i(tls.clone(), &addr2).await.is_err(),
        "server 2's host CA is not trusted yet"
    );

    // The bot writes a new identity: another user, and server 2's host CA.
    identity_for(&pki, "bob", &host_ca2)
        .write(Format::File, &path)
        .unwrap();
    assert_eq!(who_am_i(tls.clone(), &addr2).await.unwrap(), "bob");
    assert!(
        who_am_i(tls.clone(), &addr1).await.is_err(),
        "server 1's host CA is no longer trusted"
    );

    // A broken rewrite: handshakes keep using bob's identity, and the error is kept.
    std::fs::write(&path, "garbage").unwrap();
    assert_eq!(who_am_i(tls.clone(), &addr2).await.unwrap(), "bob");
    assert!(
        creds
            .last_reload_error()
            .unwrap()
            .contains(&path.display().to_string())
    );
}
