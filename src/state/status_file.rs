//! The status file: one `GEN:PID\n` line per live generation, sorted
//! numerically (start_server sorted as strings, quirk Q9), written to
//! `PATH.<our pid>` and renamed over PATH, so readers never see a partial
//! file. It is removed only by the process that wrote it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The status file this supervisor maintains.
#[derive(Debug)]
pub struct StatusFile {
    path: PathBuf,
    written: bool,
}

impl StatusFile {
    pub fn new(path: &Path) -> StatusFile {
        StatusFile { path: path.to_path_buf(), written: false }
    }

    /// The status file the previous image of this process kept (a
    /// self-upgrade), `written` as it said.
    pub fn resume(path: &Path, written: bool) -> StatusFile {
        StatusFile { path: path.to_path_buf(), written }
    }

    /// Whether this process wrote it (and so removes it at exit).
    pub fn written(&self) -> bool {
        self.written
    }

    /// Atomically replaces the file with `GEN:PID` lines in numeric order.
    pub fn write(&mut self, gens: &[(u64, u32)]) -> io::Result<()> {
        let mut sorted = gens.to_vec();
        sorted.sort_unstable();
        let text: String = sorted.iter().map(|(g, p)| format!("{g}:{p}\n")).collect();
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(format!(".{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let result = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| fs::rename(&tmp, &self.path));
        match result {
            Ok(()) => {
                self.written = true;
                Ok(())
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Removes the file if this process ever wrote it (start_server PR #32).
    pub fn remove(self) -> io::Result<()> {
        if !self.written {
            return Ok(());
        }
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
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
        let mut st = StatusFile::new(&path);
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
        StatusFile::new(&path).remove().unwrap();
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
