//! The status file: one `GEN:PID\n` line per live generation, sorted
//! numerically (start_server sorted as strings, quirk Q9), written to a
//! new file of an unpredictable name next to it and renamed over PATH, so
//! readers never see a partial file and nobody can plant the temporary
//! name. It is removed only by the process that wrote it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::state::SafeDir;

/// The status file this supervisor maintains.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    written: bool,
    /// The file last renamed into place, which `remove` may delete.
    identity: Option<(u64, u64)>,
}

impl StatusFile {
    /// The status file at `path`; its directory is checked now (a
    /// directory another user can change is refused), nothing is written.
    /// It is walked again at each write, so no fd is held meanwhile.
    pub fn new(path: &Path) -> io::Result<StatusFile> {
        SafeDir::parent_of(path)?;
        Ok(StatusFile { path: path.to_path_buf(), written: false, identity: None })
    }

    /// The status file the previous image of this process kept (a
    /// self-upgrade), `written` as it said.
    pub fn resume(path: &Path, written: bool) -> StatusFile {
        StatusFile { path: path.to_path_buf(), written, identity: None }
    }

    /// Whether this process wrote it (and so removes it at exit).
    pub fn written(&self) -> bool {
        self.written
    }

    /// Atomically replaces the file with `GEN:PID` lines in numeric order:
    /// written to a new file of an unpredictable name (`O_EXCL`) in the
    /// same directory, then renamed over the path (a symlink planted there
    /// is replaced, never followed).
    pub fn write(&mut self, gens: &[(u64, u32)]) -> io::Result<()> {
        let mut sorted = gens.to_vec();
        sorted.sort_unstable();
        let text: String = sorted.iter().map(|(g, p)| format!("{g}:{p}\n")).collect();
        let (dir, name) = SafeDir::parent_of(&self.path)?;
        let prefix = format!(".{}.", name.to_string_lossy());
        let (fd, tmp) = dir.create_temp(&prefix, 0o644)?;
        let mut file = File::from(fd);
        let result = file
            .write_all(text.as_bytes())
            .and_then(|()| file.metadata())
            .and_then(|meta| dir.rename(&tmp, &name).map(|()| (meta.dev(), meta.ino())));
        match result {
            Ok(identity) => {
                self.written = true;
                self.identity = Some(identity);
                Ok(())
            }
            Err(e) => {
                let _ = dir.remove(&tmp);
                Err(e)
            }
        }
    }

    /// Removes the file if this process wrote it (start_server PR #32),
    /// and only while the path still names what it wrote.
    pub fn remove(self) -> io::Result<()> {
        if !self.written {
            return Ok(());
        }
        let (dir, name) = SafeDir::parent_of(&self.path)?;
        match self.identity {
            Some(identity) => dir.remove_if(&name, identity),
            None => dir.remove(&name),
        }
    }
}

/// Parses `GEN:PID` lines, sorted by generation. Blank or malformed lines
/// are skipped, so upstream's string-sorted files read the same.
pub fn parse_status(text: &str) -> Vec<(u64, u32)> {
    let mut gens: Vec<(u64, u32)> = text
        .lines()
        .filter_map(|line| {
            let (g, p) = line.trim().split_once(':')?;
            Some((g.trim().parse().ok()?, p.trim().parse().ok()?))
        })
        .collect();
    gens.sort_unstable();
    gens
}

pub fn read_status(path: &Path) -> io::Result<Vec<(u64, u32)>> {
    Ok(parse_status(&fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn status_is_numeric_atomic_and_owned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        let mut st = StatusFile::new(&path).unwrap();
        st.write(&[(10, 200), (9, 100)]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "9:100\n10:200\n");
        assert_eq!(read_status(&path).unwrap(), vec![(9, 100), (10, 200)]);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![OsString::from("status")], "temporary file left behind");
        st.write(&[]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "");
        st.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn status_not_written_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        fs::write(&path, "1:5\n").unwrap();
        StatusFile::new(&path).unwrap().remove().unwrap();
        assert!(path.exists());
    }

    #[test]
    fn status_parsing_is_tolerant() {
        assert_eq!(parse_status("10:17816\n9:17794\n"), vec![(9, 17794), (10, 17816)]);
        assert_eq!(parse_status("\n 1:5 \n\nbogus\n2:x\n3:7\r\n"), vec![(1, 5), (3, 7)]);
        assert_eq!(parse_status(""), vec![]);
    }

    mod fuzz;
}
