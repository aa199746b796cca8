//! An identity file that a bot (tbot, `tctl auth sign` in a cron job) rewrites: new
//! connections get the newest good material, with no restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

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

struct State {
    material: Material,
    stamp: Option<Stamp>,
    last_error: Option<String>,
}

/// An identity file watched for changes. Each [`Credentials::load`] checks the file's
/// modification time, size and inode (a rename-into-place changes the inode); when they
/// changed it re-reads the file. A failed reload keeps the last good material, and the
/// error is kept for [`ReloadingIdentityFile::last_reload_error`].
pub struct ReloadingIdentityFile {
    path: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReloadingIdentityFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingIdentityFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ReloadingIdentityFile {
    /// Reads `path` now; fails if the first read fails.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        let before = stamp(&path);
        let material = IdentityFile::from_path(&path).load()?;
        Ok(Self {
            state: Mutex::new(State {
                material,
                stamp: before,
                last_error: None,
            }),
            path,
        })
    }

    /// Re-reads the file now. On failure the previous material stays in use and the
    /// error is returned (and kept for [`Self::last_reload_error`]).
    pub fn reload(&self) -> Result<(), Error> {
        let before = stamp(&self.path);
        let result = IdentityFile::from_path(&self.path).load();
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.stamp = before;
        match result {
            Ok(m) => {
                st.material = m;
                st.last_error = None;
                Ok(())
            }
            Err(e) => {
                st.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Why the last reload failed, if it did (cleared by a successful one).
    pub fn last_reload_error(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .last_error
            .clone()
    }
}

impl Credentials for ReloadingIdentityFile {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn load(&self) -> Result<Material, Error> {
        let changed = {
            let st = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stamp(&self.path) != st.stamp
        };
        if changed {
            // Failure is recorded and the last good material served.
            let _ = self.reload();
        }
        Ok(self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .material
            .clone())
    }
}
