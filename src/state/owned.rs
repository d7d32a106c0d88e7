//! A file this process created (a unix socket), known by its device and
//! inode, so that removing it at exit spares a file that replaced it since
//! (a successor's socket at the same path).
use std::io;
use std::path::{Path, PathBuf};

use crate::state::SafeDir;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPath {
    path: PathBuf,
    identity: (u64, u64),
}

impl OwnedPath {
    /// Records what is at `path` now (not following a symlink), reached
    /// through its checked directory.
    pub fn record(path: &Path) -> io::Result<OwnedPath> {
        let (dir, name) = SafeDir::parent_of(path)?;
        let st = dir.stat(&name)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(OwnedPath { path: path.to_owned(), identity: (st.st_dev, st.st_ino) })
    }

    /// A file recorded earlier (by the previous image of this process).
    pub fn known(path: PathBuf, identity: (u64, u64)) -> OwnedPath {
        OwnedPath { path, identity }
    }

    /// Its device and inode when recorded.
    pub fn identity(&self) -> (u64, u64) {
        self.identity
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the one recorded, relative to its
    /// directory reached by a checked walk; gone already is fine, and so is
    /// a directory that is gone.
    pub fn remove(&self) -> io::Result<()> {
        match SafeDir::parent_of(&self.path) {
            Ok((dir, name)) => dir.remove_if(&name, self.identity),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn removes_only_the_file_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        fs::write(&path, "ours").unwrap();
        let ours = OwnedPath::record(&path).unwrap();
        // Held open, as a bound socket holds its file: the inode is not reused.
        let _held = fs::File::open(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "a successor's").unwrap();
        ours.remove().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "a successor's");
        let theirs = OwnedPath::record(&path).unwrap();
        theirs.remove().unwrap();
        assert!(!path.exists());
        theirs.remove().unwrap();
    }
}
