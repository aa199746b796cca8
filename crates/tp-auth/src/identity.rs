//! Who is calling: the identity Teleport encodes in an X.509 client certificate, and
//! which of the cluster's CAs vouches for it.
//!
//! Subject attributes (wire-client spec §4.1): CN = user name (or `<host id>.<cluster>`
//! for hosts), O = roles (system roles for hosts), OU = usage restrictions, L = logins,
//! STREET = route-to-cluster, postalCode = traits as JSON, and `1.3.9999.1.7` = the
//! cluster of origin. A certificate verified by the TLS layer is attributed to the user
//! CA or the host CA by checking its signature against each.

use std::collections::BTreeMap;

use tp_creds::TlsIdentity;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Which CA signed the caller's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signer {
    /// The user CA: a person or a bot.
    UserCa,
    /// The host CA: a cluster component (proxy, node, the local admin identity).
    HostCa,
}

/// The identity a client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// The user (or host) name, from CN.
    pub username: String,
    /// Roles (O): role names for users, system roles for hosts.
    pub groups: Vec<String>,
    /// Usage restrictions (OU); empty means full API access.
    pub usage: Vec<String>,
    /// Allowed logins (L).
    pub principals: Vec<String>,
    /// Route-to-cluster (STREET).
    pub route_to_cluster: String,
    /// Traits (postalCode JSON).
    pub traits: BTreeMap<String, Vec<String>>,
    /// The cluster that issued the certificate (`1.3.9999.1.7`).
    pub teleport_cluster: String,
    /// Which CA signed it.
    pub signer: Signer,
    /// The end of the certificate's validity, seconds since the epoch.
    pub not_after: i64,
}

/// Why a client certificate does not carry a usable identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// The connection presented no certificate.
    NoCertificate,
    /// The certificate could not be parsed.
    Malformed(String),
    /// Neither CA's key verifies the certificate's signature.
    UnknownSigner,
    /// CN or O is missing ("missing identity groups" in Teleport).
    Incomplete(&'static str),
}

impl std::fmt::Display for IdentityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCertificate => f.write_str("no client certificate"),
            Self::Malformed(e) => write!(f, "malformed client certificate: {e}"),
            Self::UnknownSigner => {
                f.write_str("client certificate is not signed by this cluster's user or host CA")
            }
            Self::Incomplete(what) => write!(f, "client certificate has no {what}"),
        }
    }
}

impl std::error::Error for IdentityError {}

fn signed_by(leaf: &X509Certificate<'_>, ca_der: &[u8]) -> bool {
    let Ok((_, ca)) = X509Certificate::from_der(ca_der) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// Decodes the identity of a verified client certificate (`leaf_der`), attributing it
/// to the user CA or the host CA by signature. The subject is decoded by
/// [`tp_creds::TlsIdentity`], the same code that encodes it.
pub fn from_certificate(
    leaf_der: &[u8],
    user_cas: &[Vec<u8>],
    host_cas: &[Vec<u8>],
) -> Result<Identity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(leaf_der).map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let signer = if user_cas.iter().any(|ca| signed_by(&cert, ca)) {
        Signer::UserCa
    } else if host_cas.iter().any(|ca| signed_by(&cert, ca)) {
        Signer::HostCa
    } else {
        return Err(IdentityError::UnknownSigner);
    };
    let tls = TlsIdentity::from_name(cert.subject(), "client certificate")
        .map_err(|e| IdentityError::Malformed(e.to_string()))?;
    if tls.username.is_empty() {
        return Err(IdentityError::Incomplete("user name (CN)"));
    }
    if tls.groups.is_empty() {
        return Err(IdentityError::Incomplete("roles (O)"));
    }
    Ok(Identity {
        username: tls.username,
        groups: tls.groups,
        usage: tls.usage,
        principals: tls.principals,
        route_to_cluster: tls.route_to_cluster,
        traits: tls.traits,
        teleport_cluster: tls.teleport_cluster,
        signer,
        not_after: cert.validity().not_after.timestamp(),
    })
}
