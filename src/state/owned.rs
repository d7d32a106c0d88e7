//! A file this process created (a unix socket), known by its device and
//! inode, so that removing it at exit spares a file that replaced it since
//! (a successor's socket at the same path).
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPath {
    path: PathBuf,
    identity: (u64, u64),
}

impl OwnedPath {
    /// Records what is at `path` now (not following a symlink).
    pub fn record(path: &Path) -> io::Result<OwnedPath> {
        let meta = fs::symlink_metadata(path)?;
        Ok(OwnedPath { path: path.to_owned(), identity: (meta.dev(), meta.ino()) })
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

    /// Removes the file if it is still the one recorded; gone already is fine.
    pub fn remove(&self) -> io::Result<()> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => match fs::remove_file(&self.path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            },
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
