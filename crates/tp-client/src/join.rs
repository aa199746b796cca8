//! Joining a cluster with a provision token, as Teleport's `teleport start --token`
//! does against an Auth server: the host has no certificate yet, so it connects with
//! TLS but no client certificate and calls `proto.JoinService/RegisterUsingToken` with
//! the public keys it generated; the answer is its host certificates.
//!
//! Trusting the server: with CA pins (`sha256:<hex>` of the host CA's public key, which
//! `tpctl tokens add` prints), the host CA is first fetched over an unverified
//! connection (`GetClusterCACert`), every CA certificate must match a pin, and the join
//! itself then runs over a connection verified against that CA. Without pins the server
//! is not verified, as Teleport does: a warning is logged, because anyone on the path
//! could then hand out certificates of their own.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tonic::transport::{Channel, Endpoint};
use tp_proto::proto::Certs;
use tp_proto::proto::auth_service_client::AuthServiceClient;
use tp_proto::proto::join_service_client::JoinServiceClient;
use tp_proto::types::RegisterUsingTokenRequest;
use tp_transport::addr::HostPort;
use tp_transport::connector::{Connector, Target};
use tp_transport::danger::NoServerVerification;

use crate::{Error, ErrorKind, Result};

/// Where to join and how to trust the server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JoinConfig {
    /// The Auth server (`host:3025`).
    pub auth_server: HostPort,
    /// CA pins (`sha256:<hex>`); empty joins without verifying the server.
    pub ca_pins: Vec<String>,
    /// How long each connection attempt may take.
    pub dial_timeout: Duration,
}

impl JoinConfig {
    /// Joining through `auth_server`, trusting the CA `ca_pins` name.
    pub fn new(auth_server: HostPort, ca_pins: Vec<String>) -> Self {
        Self {
            auth_server,
            ca_pins,
            dial_timeout: Duration::from_secs(10),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error) -> Error {
    Error::new(ErrorKind::BadParameter, format!("TLS configuration: {e}"))
}

/// TLS without a client certificate: verified against `roots`, or not verified at all.
fn tls(roots: Option<Vec<CertificateDer<'static>>>) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let mut config = match roots {
        Some(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store.add(r).map_err(tls_error)?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoServerVerification::new(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

async fn channel(cfg: &JoinConfig, tls: rustls::ClientConfig, what: &str) -> Result<Channel> {
    let target = Target::Direct {
        addr: cfg.auth_server.clone(),
        tls: Arc::new(tls),
        server_name: "teleport.cluster.local".into(),
        credential: what.into(),
    };
    let connector = Connector::new(vec![target], cfg.dial_timeout, Default::default());
    Endpoint::from_static("http://teleport.cluster.local")
        .connect_with_connector(connector)
        .await
        .map_err(crate::client::connect_error)
}

/// Checks that every CA certificate matches one of `pins`.
fn check_pins(cas: &[CertificateDer<'static>], pins: &[String], origin: &str) -> Result<()> {
    if cas.is_empty() {
        return Err(Error::new(
            ErrorKind::BadParameter,
            format!("{origin}: the server sent no CA certificate to check the pins against"),
        ));
    }
    for ca in cas {
        let pin = tp_creds::cert::ca_pin(ca, origin)
            .map_err(|e| Error::new(ErrorKind::BadParameter, e.to_string()))?;
        if !pins.iter().any(|p| p.eq_ignore_ascii_case(&pin)) {
            return Err(Error::new(
                ErrorKind::AccessDenied,
                format!(
                    "{origin}: the Auth server's CA ({pin}) matches none of the CA pins given; \
                     the server is not the cluster the pins name (or the pins are stale)"
                ),
            ));
        }
    }
    Ok(())
}

fn parse_cas(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::new(
                ErrorKind::BadParameter,
                format!("{origin}: not PEM certificates: {e}"),
            )
        })
}

/// The cluster's host CA certificates, fetched without verifying the server (check them
/// against a pin before trusting them).
pub async fn fetch_cluster_ca(cfg: &JoinConfig) -> Result<Vec<CertificateDer<'static>>> {
    let ch = channel(cfg, tls(None)?, "no credentials (fetching the CA)").await?;
    let resp = AuthServiceClient::new(ch)
        .get_cluster_ca_cert(())
        .await?
        .into_inner();
    parse_cas(&resp.tlsca, "GetClusterCACert")
}

/// Registers with `req` (its token, host ID, role and public keys) and returns the host
/// certificates, having checked the server against the pins when there are any. The
/// returned CA certificates are checked against the pins too.
pub async fn register_using_token(
    cfg: &JoinConfig,
    req: RegisterUsingTokenRequest,
) -> Result<Certs> {
    let roots = if cfg.ca_pins.is_empty() {
        tracing::warn!(
            auth_server = %cfg.auth_server,
            "joining without a CA pin: the Auth server's identity is not verified; pass the \
             --ca-pin that `tpctl tokens add` prints"
        );
        None
    } else {
        let cas = fetch_cluster_ca(cfg).await?;
        check_pins(&cas, &cfg.ca_pins, "GetClusterCACert")?;
        Some(cas)
    };
    let ch = channel(cfg, tls(roots)?, "provision token").await?;
    let certs = JoinServiceClient::new(ch)
        .register_using_token(req)
        .await?
        .into_inner();
    if !cfg.ca_pins.is_empty() {
        let mut cas = Vec::new();
        for pem in &certs.tlsca_certs {
            cas.extend(parse_cas(pem, "RegisterUsingToken CA certificates")?);
        }
        check_pins(&cas, &cfg.ca_pins, "RegisterUsingToken")?;
    }
    Ok(certs)
}
