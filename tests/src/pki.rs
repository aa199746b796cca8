//! Test PKI for the Auth server's tests: throwaway user and host CAs, certificates with
//! Teleport's subject encoding, and client TLS configurations.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses part of this module"
)]

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use tp_client::{Client, Config, Target};
use tp_transport::addr::HostPort;
use tp_transport::alpn;

/// A certificate chain and its private key.
pub type Creds = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// The ring crypto provider (the only one tp uses).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate authority made for one test.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

impl Ca {
    /// A CA whose subject is CN and O `cluster`, as Teleport's CAs are.
    pub fn new(cluster: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cluster);
        dn.push(DnType::OrganizationName, cluster);
        p.distinguished_name = dn;
        Self {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// The CA certificate.
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate with a Teleport identity subject: CN `name`, one O `role`, L `name`,
    /// traits and the cluster of origin. (rcgen keeps one value per attribute type.)
    pub fn identity(&self, name: &str, role: &str, expired: bool) -> Creds {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, role);
        dn.push(DnType::LocalityName, name);
        dn.push(
            DnType::CustomDnType(vec![2, 5, 4, 17]),
            r#"{"logins":["alice","root"]}"#,
        );
        dn.push(DnType::CustomDnType(vec![1, 3, 9999, 1, 7]), "example.com");
        p.distinguished_name = dn;
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 1, 2);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    /// A server certificate for `teleport.cluster.local` and `*.teleport.cluster.local`.
    pub fn server(&self) -> Creds {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![
            alpn::CLUSTER_LOCAL.to_string(),
            "*.teleport.cluster.local".to_string(),
        ])
        .unwrap()
        .signed_by(&key, &self.issuer)
        .unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// A client configuration trusting `trust`, presenting `creds` if given, offering h2.
pub fn client_tls(trust: &Ca, creds: Option<Creds>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.der()).unwrap();
    let b = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut c = match creds {
        Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(c)
}

/// Connects tp-client to `addr` in `mode` (`direct`, or TLS routing otherwise).
pub async fn connect(
    addr: &HostPort,
    tls: Arc<ClientConfig>,
    mode: &str,
) -> tp_client::Result<Client> {
    let target = match mode {
        "direct" => Target::Direct {
            addr: addr.clone(),
            tls,
            server_name: alpn::CLUSTER_LOCAL.into(),
            credential: "test".into(),
        },
        // What a proxy forwards untouched: ALPN teleport-auth@… first, then h2.
        _ => Target::TlsRouting {
            web_addr: addr.clone(),
            cluster: "example.com".into(),
            tls,
            server_name: alpn::CLUSTER_LOCAL.into(),
            credential: "test".into(),
        },
    };
    Client::connect(
        Config::new()
            .target(target)
            .dial_timeout(Duration::from_secs(5)),
    )
    .await
}

/// PEM-encodes one DER object.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// Writes `creds` and `ca` as PEM files `cert.pem`, `key.pem` (mode 0600) and `ca.pem`
/// in `dir`, the layout Teleport's Go `client.LoadKeyPair` reads.
pub fn write_key_pair(dir: &std::path::Path, creds: &Creds, ca: &Ca) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::write(dir.join("cert.pem"), pem("CERTIFICATE", &creds.0[0]))?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join("key.pem"))?;
    key.write_all(pem("PRIVATE KEY", creds.1.secret_der()).as_bytes())?;
    std::fs::write(dir.join("ca.pem"), pem("CERTIFICATE", &ca.der()))
}
