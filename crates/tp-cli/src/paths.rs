//! Where tp keeps its files: the data directory and the local admin identity in it.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::CliError;

/// The default data directory: `$XDG_DATA_HOME/tp`, else `~/.local/share/tp` (never a
/// path that needs root).
#[allow(
    clippy::disallowed_methods,
    reason = "the CLI reads its own defaults from the environment"
)]
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("tp");
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/tp")
}

/// The local admin identity's files in a data directory.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// The private key (PEM, mode 0600).
    pub key: PathBuf,
    /// The host CA certificate the Auth server's certificate chains to (PEM).
    pub ca: PathBuf,
    /// The Auth server's address, as `tpd` last listened on it.
    pub auth_addr: PathBuf,
}

impl AdminIdentity {
    /// The files under `data_dir/admin`.
    pub fn in_dir(data_dir: &Path) -> Self {
        let d = data_dir.join("admin");
        Self {
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
            ca: d.join("ca.pem"),
            auth_addr: d.join("auth-addr"),
        }
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn private_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| {
            CliError::new(
                format!("cannot create {}: {e}", dir.display()),
                "choose a writable directory with --data-dir",
            )
        })
}

/// Writes `data` to `path` atomically (a temporary file in the same directory, fsync,
/// rename) with `mode`, so a crash never leaves half a file.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let fail = |e: std::io::Error| {
        CliError::new(
            format!("cannot write {}: {e}", path.display()),
            "check the directory's permissions and free space",
        )
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(data).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn atomic_writes_land_whole_with_the_mode_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key.pem");
        write_atomic(&p, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn unwritable_directory_is_explained() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        // A directory cannot be made inside a regular file (tests run as root, so
        // permission bits would not stop them).
        let e = private_dir(&file.join("sub")).unwrap_err();
        assert!(e.to_string().contains("cannot create"), "{e}");
    }
}
