//! Credentials from a certificate, a key and a CA bundle (the `tls` output of
//! `tctl auth sign`), and from a caller-built rustls configuration.

use std::path::PathBuf;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::material::{DEFAULT_SERVER_NAME, client_config, parse_cas, tls_parts};
use crate::{Credentials, Error, Material, PrivateKey};

/// Three PEM files: the TLS certificate, its private key and the trusted CA
/// certificates (Teleport's `LoadKeyPair`). Read on every [`Credentials::load`], so a
/// renewed certificate is picked up by the next connection.
#[derive(Debug, Clone)]
pub struct KeyPair {
    cert: PathBuf,
    key: PathBuf,
    cas: PathBuf,
}

impl KeyPair {
    /// The certificate, key and CA files.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, cas: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            cas: cas.into(),
        }
    }
}

impl Credentials for KeyPair {
    fn origin(&self) -> String {
        format!("key pair {}", self.cert.display())
    }

    fn load(&self) -> Result<Material, Error> {
        let cert = crate::error::read_text(&self.cert)?;
        let key_origin = self.key.display().to_string();
        let key_text = Zeroizing::new(crate::error::read_text(&self.key)?);
        let key = PrivateKey::from_pem(&key_text, &key_origin)?;
        let cert_origin = self.cert.display().to_string();
        if cert.trim().is_empty() {
            return Err(Error::invalid(cert_origin, "the certificate file is empty"));
        }
        let tls = tls_parts(&cert, &key, &cert_origin)?;
        let ca_origin = self.cas.display().to_string();
        let cas = parse_cas(&crate::error::read_text(&self.cas)?, &ca_origin)?;
        Ok(Material {
            tls: client_config(tls.leaf, &key, &cas, &ca_origin)?,
            server_name: DEFAULT_SERVER_NAME.to_string(),
            ssh: None,
            proxy_addr: None,
            tls_validity: Some(tls.validity),
            identity: Some(tls.identity),
            origin: cert_origin,
        })
    }
}

/// A rustls client configuration built by the caller (Teleport's `LoadTLS`). `h2` is
/// appended to its ALPN list if absent; its validity is unknown, so no time check applies.
#[derive(Debug, Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    server_name: String,
}

impl Tls {
    /// Wraps `config`; the server name is [`DEFAULT_SERVER_NAME`].
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self {
            config,
            server_name: DEFAULT_SERVER_NAME.to_string(),
        }
    }

    /// Sends `name` as the TLS server name instead.
    #[must_use]
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }
}

impl Credentials for Tls {
    fn origin(&self) -> String {
        "caller-provided TLS configuration".to_string()
    }

    fn load(&self) -> Result<Material, Error> {
        let mut config = self.config.clone();
        if !config.alpn_protocols.iter().any(|p| p == b"h2") {
            Arc::make_mut(&mut config)
                .alpn_protocols
                .push(b"h2".to_vec());
        }
        Ok(Material {
            tls: config,
            server_name: self.server_name.clone(),
            ssh: None,
            proxy_addr: None,
            tls_validity: None,
            identity: None,
            origin: self.origin(),
        })
    }
}
