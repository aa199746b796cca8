//! An identity file that a bot (tbot, `tctl auth sign` in a cron job) rewrites: new
//! connections use the newest good material, with no restart.
//!
//! The TLS configuration this loader hands out is built once and stays valid: its client
//! certificate resolver and its server certificate verifier read the current state on
//! every handshake (what Teleport's `DynamicIdentityFileCreds` does), so a client holding
//! it — including one reconnecting on its own — presents the renewed certificate and
//! trusts rotated CAs as soon as the file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::material::DEFAULT_SERVER_NAME;
use crate::{Credentials, Error, IdentityFile, Material};

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// One good version of the identity: its material and what the TLS hooks need.
struct Loaded {
    material: Material,
    certified: Arc<CertifiedKey>,
    verifier: Arc<WebPkiServerVerifier>,
}

struct State {
    loaded: Loaded,
    stamp: Option<Stamp>,
    last_error: Option<String>,
}

struct Shared {
    path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    state: Mutex<State>,
}

fn load_version(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Loaded, Error> {
    let origin = path.display().to_string();
    let file = IdentityFile::from_path(path);
    let bundle = file.read_bundle()?;
    let material = bundle.material(&origin)?;
    let bad = |e: &dyn std::fmt::Display| Error::invalid(&origin, e.to_string());
    let leaf = crate::pem::parse_all(bundle.tls_cert.as_deref().unwrap_or_default(), &origin)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::missing(&origin, "TLS certificate"))?;
    let key = provider
        .key_provider
        .load_private_key(bundle.key.to_rustls()?)
        .map_err(|e| bad(&e))?;
    let certified = Arc::new(CertifiedKey::new(vec![CertificateDer::from(leaf.der)], key));
    let mut roots = rustls::RootCertStore::empty();
    for ca in crate::material::parse_cas(&bundle.tls_cas.concat(), &origin)? {
        roots.add(ca).map_err(|e| bad(&e))?;
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| bad(&e))?;
    Ok(Loaded {
        material,
        certified,
        verifier,
    })
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Re-reads the file; on failure keeps the current version and records the error.
    fn reload(&self) -> Result<(), Error> {
        let before = stamp(&self.path);
        let result = load_version(&self.path, &self.provider);
        let mut st = self.lock();
        st.stamp = before;
        match result {
            Ok(l) => {
                st.loaded = l;
                st.last_error = None;
                Ok(())
            }
            Err(e) => {
                st.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn refresh_if_changed(&self) {
        let changed = stamp(&self.path) != self.lock().stamp;
        if changed {
            let _ = self.reload();
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingIdentity")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ResolvesClientCert for Shared {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        // Always send the certificate, whatever CAs the server names (as Teleport does).
        self.refresh_if_changed();
        Some(self.lock().loaded.certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerCertVerifier for Shared {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.refresh_if_changed();
        let verifier = self.lock().loaded.verifier.clone();
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An identity file watched for changes. Its TLS configuration follows the file: each
/// handshake checks the file's modification time, size and inode (a rename into place
/// changes the inode) and re-reads it when they changed. A failed reload keeps the last
/// good material; the error is kept for [`ReloadingIdentityFile::last_reload_error`].
#[derive(Debug)]
pub struct ReloadingIdentityFile {
    shared: Arc<Shared>,
    tls: Arc<rustls::ClientConfig>,
}

impl ReloadingIdentityFile {
    /// Reads `path` now; fails if the first read fails.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let before = stamp(&path);
        let loaded = load_version(&path, &provider)?;
        let shared = Arc::new(Shared {
            path,
            provider: provider.clone(),
            state: Mutex::new(State {
                loaded,
                stamp: before,
                last_error: None,
            }),
        });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| {
                Error::invalid(
                    shared.path.display().to_string(),
                    format!("TLS configuration: {e}"),
                )
            })?
            .dangerous()
            .with_custom_certificate_verifier(shared.clone())
            .with_client_cert_resolver(shared.clone());
        tls.alpn_protocols = vec![b"h2".to_vec()];
        // A resumed session would skip both hooks and carry the old identity over.
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            shared,
            tls: Arc::new(tls),
        })
    }

    /// Re-reads the file now. On failure the previous material stays in use and the
    /// error is returned (and kept for [`Self::last_reload_error`]).
    pub fn reload(&self) -> Result<(), Error> {
        self.shared.reload()
    }

    /// Why the last reload failed, if it did (cleared by a successful one).
    pub fn last_reload_error(&self) -> Option<String> {
        self.shared.lock().last_error.clone()
    }
}

impl Credentials for ReloadingIdentityFile {
    fn origin(&self) -> String {
        self.shared.path.display().to_string()
    }

    /// The current material, with the TLS configuration that follows the file.
    fn load(&self) -> Result<Material, Error> {
        self.shared.refresh_if_changed();
        let mut m = self.shared.lock().loaded.material.clone();
        m.tls = self.tls.clone();
        m.server_name = DEFAULT_SERVER_NAME.to_string();
        Ok(m)
    }
}
