//! What every credential yields, and the one trait the transport takes.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;

use crate::cert::Validity;
use crate::{Error, PrivateKey, TlsIdentity};

/// The TLS server name a Teleport client sends unless told otherwise; every Auth and
/// Proxy certificate carries it as a DNS name.
pub const DEFAULT_SERVER_NAME: &str = "teleport.cluster.local";

/// SSH material for the reverse tunnel: signer, user certificate and trusted host CAs.
#[derive(Clone)]
pub struct SshMaterial {
    /// The private key the certificate was issued for.
    pub signer: Arc<ssh_key::PrivateKey>,
    /// The user certificate.
    pub certificate: ssh_key::Certificate,
    /// Host CA keys from `@cert-authority` lines; a host must present a certificate
    /// signed by one of them. (Host patterns on those lines are ignored, as Teleport does.)
    pub host_cas: Vec<ssh_key::PublicKey>,
    /// The SSH user to log in as: the certificate's first principal, else its key ID.
    pub user: String,
}

impl std::fmt::Debug for SshMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshMaterial")
            .field("user", &self.user)
            .field("key_id", &self.certificate.key_id())
            .field("host_cas", &self.host_cas.len())
            .finish_non_exhaustive()
    }
}

/// Everything a connection needs, from one credential source.
#[derive(Clone)]
#[non_exhaustive]
pub struct Material {
    /// The rustls client configuration: client certificate and key (always sent), the
    /// trusted CAs, ALPN `h2`.
    pub tls: Arc<rustls::ClientConfig>,
    /// The TLS server name to send: [`DEFAULT_SERVER_NAME`] unless set.
    pub server_name: String,
    /// SSH material, where the source has it.
    pub ssh: Option<SshMaterial>,
    /// The proxy's web address (`host:port`), where the source names one (profiles).
    pub proxy_addr: Option<String>,
    /// The TLS client certificate's validity (unknown for a caller-built TLS config).
    pub tls_validity: Option<Validity>,
    /// The identity decoded from the TLS client certificate.
    pub identity: Option<TlsIdentity>,
    /// Where the material came from, for messages.
    pub origin: String,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Material")
            .field("origin", &self.origin)
            .field("server_name", &self.server_name)
            .field("ssh", &self.ssh)
            .field("proxy_addr", &self.proxy_addr)
            .field("tls_validity", &self.tls_validity)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Material {
    /// Fails with [`Error::Expired`] or [`Error::NotYetValid`] unless the TLS and SSH
    /// certificates are valid at `now`. Call it before dialling: a stale credential is
    /// then a clear local error rather than an opaque handshake failure.
    pub fn check_time(&self, now: SystemTime) -> Result<(), Error> {
        if let Some(v) = &self.tls_validity {
            v.check(now, "TLS", &self.origin)?;
        }
        if let Some(ssh) = &self.ssh {
            crate::cert::ssh_validity(&ssh.certificate).check(now, "SSH", &self.origin)?;
        }
        Ok(())
    }
}

/// A source of credentials: a profile, an identity file, a key pair, a TLS configuration.
///
/// `load` reads (or re-reads) the source; loaders are lazy, so nothing is read before the
/// first call.
pub trait Credentials: Send + Sync + std::fmt::Debug {
    /// Where the credentials come from (a path, or a description).
    fn origin(&self) -> String;

    /// Reads the material.
    fn load(&self) -> Result<Material, Error>;

    /// Reads the material and checks that its certificates are valid at `now`.
    fn load_valid(&self, now: SystemTime) -> Result<Material, Error> {
        let m = self.load()?;
        m.check_time(now)?;
        Ok(m)
    }
}

/// Parses every PEM `CERTIFICATE` in `text` as a trusted CA. Any other block, or a block
/// that is not a certificate, is an error naming `origin`.
pub(crate) fn parse_cas(text: &str, origin: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let mut out = Vec::new();
    for block in crate::pem::parse_all(text, origin)? {
        if block.label != "CERTIFICATE" {
            return Err(Error::invalid(
                origin,
                format!(
                    "found a PEM {:?} block among CA certificates; expected CERTIFICATE",
                    block.label
                ),
            ));
        }
        crate::cert::parse_x509(&block.der, origin)?;
        out.push(CertificateDer::from(block.der));
    }
    Ok(out)
}

/// Builds the client TLS configuration Teleport's `configureTLS` produces: the client
/// certificate always sent, the CAs as roots, ALPN `h2`, TLS 1.2 and 1.3 on ring.
pub(crate) fn client_config(
    leaf: CertificateDer<'static>,
    key: &PrivateKey,
    cas: &[CertificateDer<'static>],
    origin: &str,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    if cas.is_empty() {
        return Err(Error::missing(
            origin,
            "trusted CA certificate (expected at least one PEM CERTIFICATE)",
        ));
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(|e| {
            Error::invalid(
                origin,
                format!("CA certificate not usable as a trust anchor: {e}"),
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid(origin, format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![leaf], key.to_rustls()?)
        .map_err(|e| {
            Error::invalid(
                origin,
                format!("client certificate and key not usable for TLS: {e}"),
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// Parses the `@cert-authority` lines of a known_hosts file (or identity file) into host
/// CA keys. Other lines are ignored.
pub(crate) fn parse_host_cas(
    lines: &[String],
    origin: &str,
) -> Result<Vec<ssh_key::PublicKey>, Error> {
    let mut out = Vec::new();
    for line in lines {
        let mut tokens = line.split_whitespace();
        if tokens.next() != Some("@cert-authority") {
            continue;
        }
        let _hosts = tokens.next();
        let (Some(kind), Some(b64)) = (tokens.next(), tokens.next()) else {
            return Err(Error::invalid(
                origin,
                format!("@cert-authority line has no key: {line:?}"),
            ));
        };
        let key = ssh_key::PublicKey::from_openssh(&format!("{kind} {b64}")).map_err(|e| {
            Error::invalid(origin, format!("@cert-authority key does not parse: {e}"))
        })?;
        out.push(key);
    }
    Ok(out)
}

/// The TLS certificate and key checked against each other, plus the decoded identity and
/// validity.
pub(crate) struct TlsParts {
    pub leaf: CertificateDer<'static>,
    pub identity: TlsIdentity,
    pub validity: Validity,
}

pub(crate) fn tls_parts(cert_pem: &str, key: &PrivateKey, origin: &str) -> Result<TlsParts, Error> {
    let blocks = crate::pem::parse_all(cert_pem, origin)?;
    let block = blocks
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .ok_or_else(|| Error::missing(origin, "PEM CERTIFICATE block for the TLS certificate"))?;
    crate::cert::check_x509_key(&block.der, key, origin)?;
    let validity = crate::cert::x509_validity(&block.der, origin)?;
    let identity = TlsIdentity::from_certificate_der(&block.der, origin)?;
    Ok(TlsParts {
        leaf: CertificateDer::from(block.der),
        identity,
        validity,
    })
}

pub(crate) fn ssh_material(
    cert_line: &str,
    key: &PrivateKey,
    host_ca_lines: &[String],
    origin: &str,
) -> Result<SshMaterial, Error> {
    let certificate = crate::cert::parse_ssh_cert(cert_line, origin)?;
    crate::cert::check_ssh_key(&certificate, key, origin)?;
    Ok(SshMaterial {
        signer: Arc::new(key.to_ssh()?),
        user: crate::sshcert::ssh_login_user(&certificate),
        certificate,
        host_cas: parse_host_cas(host_ca_lines, origin)?,
    })
}
