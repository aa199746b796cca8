//! A proxy started on its own (`tpd start --roles proxy`): its host identity, obtained
//! from the Auth server with a provision token read from a file, and kept in the data
//! directory so that a restart needs no token.
//!
//! The identity is one ECDSA P-256 key with an X.509 host certificate (its client
//! certificate toward the Auth server, and the web port's default certificate) and an
//! SSH host certificate (the reverse tunnel's host key), both with system role `Proxy`,
//! stored with the host CA as one identity file in Teleport's layout
//! (`<data dir>/proxy/identity`, mode 0600, written atomically).

use std::path::{Path, PathBuf};

use tp_creds::{IdentityBundle, KeyAlgorithm, PrivateKey};
use tp_proto::types::RegisterUsingTokenRequest;
use tp_transport::addr::HostPort;

use crate::CliError;
use crate::paths::{private_dir, write_atomic};

/// How a proxy without a local Auth server joins the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSettings {
    /// The Auth server (`host:port`).
    pub auth_server: HostPort,
    /// The file holding the provision token; needed only until the first join succeeds.
    pub token_file: Option<PathBuf>,
    /// CA pins (`sha256:<hex>`) the Auth server's host CA must match.
    pub ca_pins: Vec<String>,
}

/// Checks the form of a CA pin: `sha256:` and 64 hex digits.
pub fn check_ca_pin(pin: &str) -> Result<(), String> {
    let hex = pin.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{pin:?}: expected sha256: and 64 hex digits"))
    }
}

/// Where the joined identity lives in `data_dir`.
pub fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("proxy").join("identity")
}

/// Reads the join token from `path`: one line, no spaces. Warns when other users may
/// read the file.
pub fn read_token(path: &Path) -> Result<String, CliError> {
    let hint = "tpd reads the join token from a file, never from the command line (shell \
                history and `ps` would show it): write the token that `tpctl tokens add` \
                printed to a file only tpd's user can read, and pass its path to --token";
    // The argument is not echoed: someone used to Teleport may have given the token
    // itself, and an error line ends up in logs.
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::new(
            format!("--token: cannot read the join token file it names: {e}"),
            hint,
        )
    })?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(CliError::new(
            "--token: expected the join token alone on one line of the file it names",
            hint,
        ));
    }
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the join token file can be read by other users; chmod 600 it"
        );
    }
    Ok(token.to_string())
}

/// The host ID in `<data dir>/host_uuid`, created (a random UUID) on first use, as
/// Teleport keeps it.
pub fn host_id(data_dir: &Path) -> Result<String, CliError> {
    let path = data_dir.join("host_uuid");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CliError::plain(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    }
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| CliError::plain("the system random source failed"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    write_atomic(&path, format!("{id}\n").as_bytes(), 0o600)?;
    Ok(id)
}

/// The stored identity when it is there, its certificates are valid at `now`, it
/// trusts a CA the pins (if any) name, and it names every one of `principals`;
/// `Ok(None)` when there is none, or it should be replaced and a token is at hand; an
/// error naming the file otherwise.
fn stored(
    path: &Path,
    now: i64,
    have_token: bool,
    pins: &[String],
    principals: &[String],
) -> Result<Option<IdentityBundle>, CliError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => zeroize::Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError::plain(format!(
                "cannot read the proxy's identity {}: {e}",
                path.display()
            )));
        }
    };
    let origin = path.display().to_string();
    let bundle = IdentityBundle::parse(&text, &origin).map_err(|e| {
        CliError::new(
            e.to_string(),
            "remove the file and join again with a new token (--token FILE)",
        )
    })?;
    let tls = bundle.tls_cert.as_deref().unwrap_or_default();
    let der = tp_creds::pem::parse_all(tls, &origin)
        .map_err(|e| CliError::plain(e.to_string()))?
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .ok_or_else(|| {
            CliError::new(
                format!("{origin}: no TLS certificate"),
                "remove the file and join again with a new token (--token FILE)",
            )
        })?;
    let der = tp_creds::cert::x509_validity(&der.der, &origin)
        .map_err(|e| CliError::plain(e.to_string()))?;
    if der.not_after <= now {
        if have_token {
            tracing::info!(file = %origin, "the proxy's host certificate has expired; joining again");
            return Ok(None);
        }
        return Err(CliError::new(
            format!(
                "{origin}: the proxy's host certificate expired (not after {})",
                der.not_after
            ),
            "join again: create a token with `tpctl tokens add --type=proxy` and pass its file \
             with --token",
        ));
    }
    let rejoin = "remove the file and join again with a new token (--token FILE)";
    let mut cas = Vec::new();
    for pem in &bundle.tls_cas {
        for b in tp_creds::pem::parse_all(pem, &origin)
            .map_err(|e| CliError::new(e.to_string(), rejoin))?
        {
            cas.push(b.der);
        }
    }
    if cas.is_empty() {
        return Err(CliError::new(
            format!("{origin}: no CA certificate to trust"),
            rejoin,
        ));
    }
    if !pins.is_empty() {
        for ca in &cas {
            let pin =
                tp_creds::cert::ca_pin(ca, &origin).map_err(|e| CliError::plain(e.to_string()))?;
            if !pins.iter().any(|p| p.eq_ignore_ascii_case(&pin)) {
                return Err(CliError::new(
                    format!(
                        "{origin}: the proxy joined a cluster whose CA ({pin}) matches none of the --ca-pin values"
                    ),
                    rejoin,
                ));
            }
        }
    }
    let ssh =
        tp_creds::cert::parse_ssh_cert(bundle.ssh_cert.as_deref().unwrap_or_default(), &origin)
            .map_err(|e| CliError::new(e.to_string(), rejoin))?;
    let missing: Vec<&String> = principals
        .iter()
        .filter(|p| !ssh.valid_principals().contains(p))
        .collect();
    if !missing.is_empty() {
        if have_token {
            tracing::info!(file = %origin, ?missing, "the proxy's names changed; joining again");
            return Ok(None);
        }
        tracing::warn!(
            file = %origin,
            ?missing,
            "the proxy's certificates do not name all the addresses it listens on now; clients \
             that dial those names will refuse it: join again with a new token (--token FILE)"
        );
    }
    Ok(Some(bundle))
}

/// The proxy's identity: the stored one when valid, else a new one from the Auth server
/// in exchange for the token (then stored). `principals` are the names clients reach the
/// proxy by (listen IPs, public host, `localhost`), for both certificates.
pub async fn load_or_join(
    data_dir: &Path,
    settings: &JoinSettings,
    principals: &[String],
    now: i64,
) -> Result<IdentityBundle, CliError> {
    let path = identity_path(data_dir);
    if let Some(b) = stored(
        &path,
        now,
        settings.token_file.is_some(),
        &settings.ca_pins,
        principals,
    )? {
        tracing::info!(file = %path.display(), "using the proxy's stored host identity");
        return Ok(b);
    }
    let Some(token_file) = settings.token_file.as_deref() else {
        return Err(CliError::new(
            format!(
                "this proxy has not joined a cluster yet (no {})",
                path.display()
            ),
            "create a token with `tpctl tokens add --type=proxy` on the Auth server's host, \
             write it to a file, and pass --token FILE (with --ca-pin)",
        ));
    };
    let token = read_token(token_file)?;
    let host_id = host_id(data_dir)?;
    let fail = |what: &str, e: &dyn std::fmt::Display| CliError::plain(format!("{what}: {e}"));
    let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256).map_err(|e| fail("host key", &e))?;
    let spki = key
        .public_key_spki_der()
        .map_err(|e| fail("host key", &e))?;
    let ssh_pub = key
        .ssh_public_key()
        .map_err(|e| fail("host key", &e))?
        .to_openssh()
        .map_err(|e| fail("host key", &e))?;
    let req = RegisterUsingTokenRequest {
        host_id: host_id.clone(),
        node_name: "proxy".into(),
        role: "Proxy".into(),
        token,
        additional_principals: principals.to_vec(),
        dns_names: principals.to_vec(),
        public_tls_key: tp_creds::pem::encode("PUBLIC KEY", &spki).into_bytes(),
        public_ssh_key: ssh_pub.into_bytes(),
        ..Default::default()
    };
    let cfg =
        tp_client::join::JoinConfig::new(settings.auth_server.clone(), settings.ca_pins.clone());
    let certs = tp_client::join::register_using_token(&cfg, req)
        .await
        .map_err(|e| {
            CliError::new(
                format!(
                    "cannot join the cluster through the Auth server at {}: {e}",
                    settings.auth_server
                ),
                "check --auth-server, that the token (tpctl tokens ls) allows role proxy and has \
                 not expired, and the --ca-pin that tpctl printed",
            )
        })?;
    let text = |b: &[u8], what: &str| {
        String::from_utf8(b.to_vec())
            .map_err(|_| CliError::plain(format!("the Auth server's {what} is not text")))
    };
    let mut bundle = IdentityBundle::new(key);
    bundle.tls_cert = Some(text(&certs.tls, "TLS certificate")?);
    bundle.ssh_cert = Some(format!("{}\n", text(&certs.ssh, "SSH certificate")?.trim()));
    for ca in &certs.tlsca_certs {
        bundle.tls_cas.push(text(ca, "CA certificate")?);
    }
    let encoded = bundle
        .encode()
        .map_err(|e| fail("the proxy's identity", &e))?;
    if let Some(d) = path.parent() {
        private_dir(d)?;
    }
    write_atomic(&path, encoded.as_bytes(), 0o600)?;
    tracing::info!(host_id, file = %path.display(), "joined the cluster as a proxy");
    Ok(bundle)
}
