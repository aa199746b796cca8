//! `tsh` profile directories (wire-client spec §3): `<dir>/current-profile`,
//! `<dir>/<proxy host>.yaml`, `<dir>/known_hosts` and `<dir>/keys/<proxy host>/`.
//!
//! Reading accepts both key layouts: v17 (`<user>.key` + `<user>.crt`, SSH key `<user>`)
//! and v16 (one key `<user>` with `<user>-x509.pem`). TLS CAs come from every file in
//! `cas/`, else the legacy `certs.pem`. Writing produces the v17 layout.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::read_text;
use crate::material::{DEFAULT_SERVER_NAME, client_config, parse_cas, ssh_material, tls_parts};
use crate::write::{PRIVATE_FILE_MODE, create_private_dir, write_atomic};
use crate::{Credentials, Error, IdentityBundle, Material, PrivateKey};

/// The fields of a profile's YAML that tp reads and writes (Teleport's names). Unknown
/// fields are ignored when reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct ProfileConfig {
    /// The proxy's web address, `host:port` (required; the profile is named after its host).
    pub web_proxy_addr: String,
    /// The proxy's SSH address.
    pub ssh_proxy_addr: String,
    /// The proxy's Kubernetes address.
    pub kube_proxy_addr: String,
    /// The Teleport user name (names the key files).
    pub user: String,
    /// The cluster name (names the SSH certificate and CA files); defaults to the profile name.
    pub cluster: String,
    /// Whether the proxy routes every protocol over its web port by ALPN.
    pub tls_routing_enabled: bool,
    /// Whether connections must be upgraded through an L7 load balancer.
    pub tls_routing_conn_upgrade_required: bool,
    /// The auth connector used to log in (`local`, ...).
    pub auth_connector: String,
}

impl ProfileConfig {
    /// A profile for `user` at the proxy `web_proxy_addr` in `cluster`.
    pub fn new(
        web_proxy_addr: impl Into<String>,
        user: impl Into<String>,
        cluster: impl Into<String>,
    ) -> Self {
        Self {
            web_proxy_addr: web_proxy_addr.into(),
            user: user.into(),
            cluster: cluster.into(),
            ..Self::default()
        }
    }

    /// The profile's name: the host part of `web_proxy_addr`.
    pub fn name(&self) -> String {
        host_of(&self.web_proxy_addr).to_string()
    }

    fn to_yaml(&self) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        format!(
            "web_proxy_addr: {}\nssh_proxy_addr: {}\nkube_proxy_addr: {}\nuser: {}\ncluster: {}\ntls_routing_enabled: {}\ntls_routing_conn_upgrade_required: {}\nauth_connector: {}\n",
            q(&self.web_proxy_addr),
            q(&self.ssh_proxy_addr),
            q(&self.kube_proxy_addr),
            q(&self.user),
            q(&self.cluster),
            self.tls_routing_enabled,
            self.tls_routing_conn_upgrade_required,
            q(&self.auth_connector),
        )
    }
}

fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => addr,
    }
}

/// Credentials from a `tsh` profile directory (Teleport's `LoadProfile`).
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
    name: Option<String>,
}

impl Profile {
    /// The profile `name` (or the current one, if `None`) in `dir`.
    pub fn new(dir: impl Into<PathBuf>, name: Option<&str>) -> Self {
        Self {
            dir: dir.into(),
            name: name.map(str::to_string),
        }
    }

    /// The profile `name` (or the current one) in `$TELEPORT_HOME`, else `~/.tsh`, as tsh
    /// looks for it.
    #[allow(
        clippy::disallowed_methods,
        reason = "from_env is where tp-creds reads the environment"
    )]
    pub fn from_env(name: Option<&str>) -> Self {
        let dir = match std::env::var_os("TELEPORT_HOME") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from(".tsh"), |h| PathBuf::from(h).join(".tsh")),
        };
        Self::new(dir, name)
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The profile's name: the one given, else the contents of `current-profile`.
    pub fn resolve_name(&self) -> Result<String, Error> {
        if let Some(n) = &self.name {
            return Ok(n.clone());
        }
        let path = self.dir.join("current-profile");
        let name = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(Error::Read { path, source }),
        };
        if name.is_empty() {
            return Err(Error::NoCurrentProfile {
                dir: self.dir.clone(),
            });
        }
        Ok(name)
    }

    /// Reads and checks the profile YAML.
    pub fn config(&self) -> Result<ProfileConfig, Error> {
        let name = self.resolve_name()?;
        let path = self.dir.join(format!("{name}.yaml"));
        let origin = path.display().to_string();
        let text = read_text(&path)?;
        let mut cfg: ProfileConfig = serde_saphyr::from_str(&text)
            .map_err(|e| Error::invalid(&origin, format!("profile could not be decoded: {e}")))?;
        if cfg.web_proxy_addr.is_empty() {
            return Err(Error::invalid(
                origin,
                "invalid or empty profile: web_proxy_addr is not set",
            ));
        }
        if cfg.user.is_empty() {
            return Err(Error::invalid(origin, "invalid profile: user is not set"));
        }
        if cfg.cluster.is_empty() {
            cfg.cluster = name;
        }
        Ok(cfg)
    }
}

fn read_key(path: &Path) -> Result<PrivateKey, Error> {
    let text = Zeroizing::new(read_text(path)?);
    PrivateKey::from_pem(&text, &path.display().to_string())
}

impl Credentials for Profile {
    fn origin(&self) -> String {
        match self.resolve_name() {
            Ok(n) => format!("profile {n} in {}", self.dir.display()),
            Err(_) => format!("profile in {}", self.dir.display()),
        }
    }

    fn load(&self) -> Result<Material, Error> {
        let name = self.resolve_name()?;
        let cfg = self.config()?;
        let keys = self.dir.join("keys").join(&name);
        let user = &cfg.user;
        // v17: <user>.crt + <user>.key; v16: <user>-x509.pem + <user>.
        let (cert_path, tls_key_path) = if keys.join(format!("{user}.crt")).exists() {
            (
                keys.join(format!("{user}.crt")),
                keys.join(format!("{user}.key")),
            )
        } else {
            (keys.join(format!("{user}-x509.pem")), keys.join(user))
        };
        let tls_key = read_key(&tls_key_path)?;
        let cert_origin = cert_path.display().to_string();
        let tls = tls_parts(&read_text(&cert_path)?, &tls_key, &cert_origin)?;

        let cas_dir = keys.join("cas");
        let mut cas = Vec::new();
        if cas_dir.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&cas_dir)
                .map_err(|source| Error::Read {
                    path: cas_dir.clone(),
                    source,
                })?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for p in entries {
                let found = parse_cas(&read_text(&p)?, &p.display().to_string())?;
                if found.is_empty() {
                    return Err(Error::invalid(
                        p.display().to_string(),
                        "invalid CA cert PEM: no CERTIFICATE block",
                    ));
                }
                cas.extend(found);
            }
        } else {
            let legacy = keys.join("certs.pem");
            if legacy.exists() {
                cas = parse_cas(&read_text(&legacy)?, &legacy.display().to_string())?;
            }
        }
        if cas.is_empty() {
            return Err(Error::missing(
                keys.display().to_string(),
                "trusted CA certificate (expected files under cas/ or certs.pem)",
            ));
        }

        let ssh_cert_path = keys
            .join(format!("{user}-ssh"))
            .join(format!("{}-cert.pub", cfg.cluster));
        let ssh = if ssh_cert_path.exists() {
            let ssh_key = read_key(&keys.join(user))?;
            let known_hosts = match std::fs::read_to_string(self.dir.join("known_hosts")) {
                Ok(t) => t.lines().map(str::to_string).collect(),
                Err(_) => vec![],
            };
            Some(ssh_material(
                &read_text(&ssh_cert_path)?,
                &ssh_key,
                &known_hosts,
                &ssh_cert_path.display().to_string(),
            )?)
        } else {
            None
        };
        let origin = self.origin();
        Ok(Material {
            tls: client_config(tls.leaf, &tls_key, &cas, &origin)?,
            server_name: DEFAULT_SERVER_NAME.to_string(),
            ssh,
            proxy_addr: Some(cfg.web_proxy_addr.clone()),
            tls_validity: Some(tls.validity),
            identity: Some(tls.identity),
            origin,
        })
    }
}

/// Writes `bundle` as the profile `cfg` into `dir` in the v17 layout (the one key is
/// written as both the SSH and the TLS key) and, if `make_current`, points
/// `current-profile` at it. Host CA lines are merged into `known_hosts`. Every file is
/// written atomically with mode 0600 in directories of mode 0700.
pub fn write_profile(
    dir: &Path,
    cfg: &ProfileConfig,
    bundle: &IdentityBundle,
    make_current: bool,
) -> Result<(), Error> {
    let origin = dir.display().to_string();
    let name = cfg.name();
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::invalid(
            origin,
            format!(
                "web_proxy_addr {:?} does not name a proxy host",
                cfg.web_proxy_addr
            ),
        ));
    }
    if cfg.user.is_empty() || cfg.user.contains('/') || cfg.user.starts_with('.') {
        return Err(Error::invalid(
            origin,
            format!("user {:?} cannot name key files", cfg.user),
        ));
    }
    let cluster = if cfg.cluster.is_empty() {
        name.clone()
    } else {
        cfg.cluster.clone()
    };
    let tls_cert = bundle
        .tls_cert
        .as_deref()
        .ok_or_else(|| Error::missing(&origin, "TLS certificate to write"))?;
    create_private_dir(dir)?;
    let keys = dir.join("keys").join(&name);
    let user = &cfg.user;
    let key_pem = bundle.key.to_pem()?;
    write_atomic(&keys.join(user), key_pem.as_bytes(), PRIVATE_FILE_MODE)?;
    let pubkey = bundle
        .key
        .ssh_public_key()?
        .to_openssh()
        .map_err(|e| Error::invalid(&origin, format!("SSH public key: {e}")))?;
    write_atomic(
        &keys.join(format!("{user}.pub")),
        format!("{pubkey}\n").as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    write_atomic(
        &keys.join(format!("{user}.key")),
        key_pem.as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    write_atomic(
        &keys.join(format!("{user}.crt")),
        tls_cert.as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    write_atomic(
        &keys.join("cas").join(format!("{cluster}.pem")),
        bundle.tls_cas.concat().as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    if let Some(ssh) = &bundle.ssh_cert {
        let path = keys
            .join(format!("{user}-ssh"))
            .join(format!("{cluster}-cert.pub"));
        write_atomic(&path, ssh.as_bytes(), PRIVATE_FILE_MODE)?;
    }
    if !bundle.ssh_cas.is_empty() {
        let kh = dir.join("known_hosts");
        let mut lines: Vec<String> = std::fs::read_to_string(&kh)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        for l in &bundle.ssh_cas {
            let l = l.trim_end().to_string();
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        write_atomic(
            &kh,
            format!("{}\n", lines.join("\n")).as_bytes(),
            PRIVATE_FILE_MODE,
        )?;
    }
    let mut written = cfg.clone();
    written.cluster = cluster;
    write_atomic(
        &dir.join(format!("{name}.yaml")),
        written.to_yaml().as_bytes(),
        PRIVATE_FILE_MODE,
    )?;
    if make_current {
        write_atomic(
            &dir.join("current-profile"),
            format!("{name}\n").as_bytes(),
            PRIVATE_FILE_MODE,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_are_proxy_hosts() {
        assert_eq!(host_of("proxy.example.com:3080"), "proxy.example.com");
        assert_eq!(host_of("proxy.example.com"), "proxy.example.com");
        assert_eq!(host_of("[::1]:3080"), "::1");
    }

    #[test]
    fn yaml_written_reads_back() {
        let mut cfg = ProfileConfig::new("p.example.com:443", "alice", "example.com");
        cfg.tls_routing_enabled = true;
        let back: ProfileConfig = serde_saphyr::from_str(&cfg.to_yaml()).unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn no_current_profile_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let e = Profile::new(dir.path(), None)
            .load()
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with(
                "current-profile is not set; pass a profile (proxy host) name or log in with tsh"
            ),
            "{e}"
        );
    }
}
