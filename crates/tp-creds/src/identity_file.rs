//! Identity files (`tctl auth sign --format=file`, `tsh login --out`): one text file with
//! the private key, the SSH certificate, the TLS certificate, `@cert-authority` lines and
//! the TLS CA certificates (wire-client spec §2). Also the other `tctl auth sign` output
//! formats tp writes: `tls` (`.key`, `.crt`, `.cas`) and `openssh` (key and `-cert.pub`).
//!
//! Reading follows Teleport's parser: lines are trimmed; a line whose first token is an
//! SSH certificate type is the SSH certificate (the last one wins); `@cert-authority`
//! lines are SSH host CAs; PEM blocks are placed by position — the first is the private
//! key, the second the TLS certificate, the rest TLS CAs — whatever their labels say.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::material::{client_config, parse_cas, ssh_material, tls_parts};
use crate::write::{PRIVATE_FILE_MODE, write_atomic};
use crate::{Credentials, Error, Material, PrivateKey, material::DEFAULT_SERVER_NAME};

/// The key, certificates and CAs of one identity: what an identity file holds and what
/// every writer writes.
#[derive(Debug)]
#[non_exhaustive]
pub struct IdentityBundle {
    /// The private key (shared by the SSH and TLS certificates).
    pub key: PrivateKey,
    /// The SSH user certificate in authorized-keys form (`<type>-cert-v01@openssh.com ...`).
    pub ssh_cert: Option<String>,
    /// The TLS certificate (PEM).
    pub tls_cert: Option<String>,
    /// SSH host CAs as known_hosts lines (`@cert-authority <hosts> <type> <key> type=host`).
    pub ssh_cas: Vec<String>,
    /// TLS CA certificates (one PEM block each).
    pub tls_cas: Vec<String>,
}

/// How `tctl auth sign --format` lays an identity out on disk (the formats tp writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// One identity file at the path (the default).
    File,
    /// `<path>.key`, `<path>.crt`, `<path>.cas` (what `KeyPair` loads).
    Tls,
    /// `<path>` (OpenSSH private key) and `<path>-cert.pub`.
    OpenSsh,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(Self::File),
            "tls" => Ok(Self::Tls),
            "openssh" => Ok(Self::OpenSsh),
            other => Err(format!(
                "unknown identity format {other:?}; expected file, tls or openssh"
            )),
        }
    }
}

fn is_ssh_cert_type(token: &str) -> bool {
    // ^[a-z0-9\-]+-cert-v[0-9]{2}@openssh\.com$
    let Some(head) = token.strip_suffix("@openssh.com") else {
        return false;
    };
    let Some((name, ver)) = head.rsplit_once("-cert-v") else {
        return false;
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && ver.len() == 2
        && ver.bytes().all(|b| b.is_ascii_digit())
}

/// Appends `\n` unless `s` already ends with one.
fn with_newline(out: &mut String, s: &str) {
    out.push_str(s);
    if !s.ends_with('\n') {
        out.push('\n');
    }
}

impl IdentityBundle {
    /// A bundle of `key` and nothing else yet.
    pub fn new(key: PrivateKey) -> Self {
        Self {
            key,
            ssh_cert: None,
            tls_cert: None,
            ssh_cas: vec![],
            tls_cas: vec![],
        }
    }

    /// Parses identity-file text. `origin` names the source in errors. A missing SSH
    /// certificate is allowed here (the file loader falls back to `<path>-cert.pub`).
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let mut pems: Vec<String> = Vec::new();
        let mut ssh_cert = None;
        let mut ssh_cas = Vec::new();
        let mut lines = text.lines().map(str::trim);
        let mut n = 0usize;
        while let Some(line) = lines.next() {
            n += 1;
            if line.starts_with("-----BEGIN") {
                let begin = n;
                let mut block = format!("{line}\n");
                loop {
                    let Some(next) = lines.next() else {
                        return Err(Error::invalid(
                            origin,
                            format!("PEM block at line {begin} has no END line (truncated?)"),
                        ));
                    };
                    n += 1;
                    block.push_str(next);
                    block.push('\n');
                    if next.starts_with("-----END") {
                        break;
                    }
                }
                pems.push(block);
            } else if line.starts_with("@cert-authority") {
                ssh_cas.push(format!("{line}\n"));
            } else if line.split(' ').next().is_some_and(is_ssh_cert_type) {
                ssh_cert = Some(format!("{line}\n"));
            }
        }
        let mut pems = pems.into_iter();
        let key_pem = Zeroizing::new(pems.next().ok_or_else(|| {
            Error::missing(
                origin,
                "private key (the first PEM block of an identity file)",
            )
        })?);
        let key = PrivateKey::from_pem(&key_pem, origin)?;
        let tls_cert = pems.next();
        Ok(Self {
            key,
            ssh_cert,
            tls_cert,
            ssh_cas,
            tls_cas: pems.collect(),
        })
    }

    /// The identity-file text: key, SSH certificate, TLS certificate, SSH CA lines, TLS
    /// CAs, each ending in a newline.
    pub fn encode(&self) -> Result<Zeroizing<String>, Error> {
        let mut out = Zeroizing::new(String::new());
        with_newline(&mut out, &self.key.to_pem()?);
        if let Some(c) = &self.ssh_cert {
            with_newline(&mut out, c);
        }
        if let Some(c) = &self.tls_cert {
            with_newline(&mut out, c);
        }
        for c in self.ssh_cas.iter().chain(&self.tls_cas) {
            with_newline(&mut out, c);
        }
        Ok(out)
    }

    /// Builds the connection material. `origin` names the source in errors.
    pub fn material(&self, origin: &str) -> Result<Material, Error> {
        let cert = self.tls_cert.as_deref().ok_or_else(|| {
            Error::missing(
                origin,
                "TLS certificate (the second PEM block of an identity file)",
            )
        })?;
        let tls = tls_parts(cert, &self.key, origin)?;
        let cas = parse_cas(&self.tls_cas.concat(), origin)?;
        let ssh = match &self.ssh_cert {
            Some(line) => Some(ssh_material(line, &self.key, &self.ssh_cas, origin)?),
            None => None,
        };
        Ok(Material {
            tls: client_config(tls.leaf, &self.key, &cas, origin)?,
            server_name: DEFAULT_SERVER_NAME.to_string(),
            ssh,
            proxy_addr: None,
            tls_validity: Some(tls.validity),
            identity: Some(tls.identity),
            origin: origin.to_string(),
        })
    }

    /// Writes the bundle in `format` at `path` (see [`Format`]); private files 0600, each
    /// write atomic. Returns the files written.
    pub fn write(&self, format: Format, path: &Path) -> Result<Vec<PathBuf>, Error> {
        let p = path.display().to_string();
        match format {
            Format::File => {
                write_atomic(path, self.encode()?.as_bytes(), PRIVATE_FILE_MODE)?;
                Ok(vec![path.to_path_buf()])
            }
            Format::Tls => {
                let cert = self
                    .tls_cert
                    .as_deref()
                    .ok_or_else(|| Error::missing(&p, "TLS certificate to write"))?;
                let files =
                    [format!("{p}.key"), format!("{p}.crt"), format!("{p}.cas")].map(PathBuf::from);
                write_atomic(&files[0], self.key.to_pem()?.as_bytes(), PRIVATE_FILE_MODE)?;
                write_atomic(&files[1], cert.as_bytes(), PRIVATE_FILE_MODE)?;
                write_atomic(
                    &files[2],
                    self.tls_cas.concat().as_bytes(),
                    PRIVATE_FILE_MODE,
                )?;
                Ok(files.to_vec())
            }
            Format::OpenSsh => {
                let cert = self
                    .ssh_cert
                    .as_deref()
                    .ok_or_else(|| Error::missing(&p, "SSH certificate to write"))?;
                let cert_path = PathBuf::from(format!("{p}-cert.pub"));
                write_atomic(
                    path,
                    self.key.to_openssh_pem()?.as_bytes(),
                    PRIVATE_FILE_MODE,
                )?;
                write_atomic(&cert_path, cert.as_bytes(), PRIVATE_FILE_MODE)?;
                Ok(vec![path.to_path_buf(), cert_path])
            }
        }
    }
}

enum Source {
    Path(PathBuf),
    Text(Zeroizing<String>),
}

/// Credentials from an identity file, read lazily on first use (like Teleport's
/// `LoadIdentityFile` / `LoadIdentityFileFromString`).
pub struct IdentityFile {
    source: Source,
    loaded: OnceLock<Material>,
}

impl std::fmt::Debug for IdentityFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityFile")
            .field("origin", &self.origin())
            .finish_non_exhaustive()
    }
}

impl IdentityFile {
    /// The identity file at `path`. If it has no SSH certificate, `<path>-cert.pub` is read.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        Self {
            source: Source::Path(path.into()),
            loaded: OnceLock::new(),
        }
    }

    /// An identity file's contents (no `-cert.pub` fallback: the SSH certificate is
    /// required).
    pub fn from_string(text: impl Into<String>) -> Self {
        Self {
            source: Source::Text(Zeroizing::new(text.into())),
            loaded: OnceLock::new(),
        }
    }

    /// Reads and parses the file (every call re-reads it).
    pub fn read_bundle(&self) -> Result<IdentityBundle, Error> {
        let origin = self.origin();
        match &self.source {
            Source::Text(t) => {
                let b = IdentityBundle::parse(t, &origin)?;
                if b.ssh_cert.is_none() {
                    return Err(Error::missing(
                        origin,
                        "SSH certificate in the identity file",
                    ));
                }
                Ok(b)
            }
            Source::Path(p) => {
                let text = Zeroizing::new(crate::error::read_text(p)?);
                if text.trim().is_empty() {
                    return Err(Error::invalid(origin, "the identity file is empty"));
                }
                let mut b = IdentityBundle::parse(&text, &origin)?;
                if b.ssh_cert.is_none() {
                    let fallback = PathBuf::from(format!("{}-cert.pub", p.display()));
                    match std::fs::read_to_string(&fallback) {
                        Ok(c) => b.ssh_cert = Some(c),
                        Err(_) => {
                            return Err(Error::missing(
                                origin,
                                format!(
                                    "SSH certificate in the identity file or {}",
                                    fallback.display()
                                ),
                            ));
                        }
                    }
                }
                Ok(b)
            }
        }
    }
}

impl Credentials for IdentityFile {
    fn origin(&self) -> String {
        match &self.source {
            Source::Path(p) => p.display().to_string(),
            Source::Text(_) => "identity file (from a string)".to_string(),
        }
    }

    fn load(&self) -> Result<Material, Error> {
        if let Some(m) = self.loaded.get() {
            return Ok(m.clone());
        }
        let m = self.read_bundle()?.material(&self.origin())?;
        Ok(self.loaded.get_or_init(|| m).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_cert_types_match_teleports_pattern() {
        assert!(is_ssh_cert_type("ssh-ed25519-cert-v01@openssh.com"));
        assert!(is_ssh_cert_type("ecdsa-sha2-nistp256-cert-v01@openssh.com"));
        assert!(!is_ssh_cert_type("ssh-ed25519"));
        assert!(!is_ssh_cert_type("Ssh-rsa-cert-v01@openssh.com"));
        assert!(!is_ssh_cert_type("ssh-rsa-cert-v1@openssh.com"));
    }

    #[test]
    fn formats_parse_by_name() {
        assert_eq!("tls".parse::<Format>(), Ok(Format::Tls));
        assert!(
            "kubernetes"
                .parse::<Format>()
                .unwrap_err()
                .contains("expected file, tls or openssh")
        );
    }
}
