//! Where the drill writes: `--report DIR` (report.html, report.json),
//! `--junit FILE` and `--keep DIR` (output.log), all checked before
//! anything starts, and written as the supervisor's own files are.
//!
//! Invariants:
//! - A directory is reached through a checked walk ([`SafeDir`]): every
//!   directory on the way, the last one included, is root's or this
//!   user's and writable by nobody else unless sticky; in a sticky one,
//!   an entry of another user (a planted symlink or directory) is refused.
//!   A missing directory is created (0755 less the umask) one name at a
//!   time under a checked one.
//! - A file is opened relative to its directory's fd with `O_NOFOLLOW`
//!   (a symlink is refused, never followed), and before it is truncated
//!   it must be a regular file of this user (fstat) with one link; a new
//!   one is created with the mode 0644 less the umask.
//! - The check before the run and the write after use the same open
//!   directory, and the file is checked again when it is written.
//! - A refusal is one line naming the option, the path and the fix; before
//!   the run it exits 2 (usage).
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, mkdirat};

use crate::error::{Error, Result};
use crate::state::SafeDir;

/// Directories created on the way down at most (the walk's own bound on
/// symlinks keeps the rest finite).
const MAX_CREATED: usize = 64;

/// A file the drill will write: its checked directory and its name there.
pub struct FileDest {
    dir: SafeDir,
    name: OsString,
    option: &'static str,
}

fn usage(option: &str, path: &Path, why: impl std::fmt::Display) -> Error {
    Error::usage(format!("{option} {}: {why}", path.display()))
}

/// The line for an `io::Error` of the walk: a refusal's text names the
/// path and the fix already; other errors get one.
fn explain(option: &str, path: &Path, e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::PermissionDenied => usage(option, path, e),
        io::ErrorKind::NotFound => {
            usage(option, path, "its directory does not exist; create it or give another path")
        }
        _ if e.raw_os_error() == Some(libc::ENOTDIR) => {
            usage(option, path, "a part of it is not a directory; give a directory")
        }
        _ => usage(option, path, format!("{e}; give another path")),
    }
}

/// Opens `path` by a checked walk, creating what is missing (`depth`:
/// directories created so far).
fn open_or_create(path: &Path, depth: usize) -> io::Result<SafeDir> {
    match SafeDir::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && depth < MAX_CREATED => {}
        other => return other,
    }
    let (parent, name) = match SafeDir::parent_of(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let above = path.parent().filter(|p| !p.as_os_str().is_empty()).ok_or(e)?;
            open_or_create(above, depth + 1)?;
            SafeDir::parent_of(path)?
        }
        other => other?,
    };
    match mkdirat(parent.fd(), name.as_os_str(), Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => SafeDir::open(path),
        Err(e) => Err(e.into()),
    }
}

impl FileDest {
    /// `--junit FILE`: its directory checked, and what is there now (if
    /// anything) a regular file of this user.
    pub fn check(option: &'static str, path: &Path) -> Result<FileDest> {
        let (dir, name) = SafeDir::parent_of(path).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidInput => usage(option, path, "names no file; give a file's path"),
            _ => explain(option, path, &e),
        })?;
        FileDest { dir, name, option }.check_existing()
    }

    /// The file `name` in the directory `path` (`--report`, `--keep`),
    /// which is created if missing; both checked now.
    pub fn in_dir(option: &'static str, path: &Path, name: &str) -> Result<FileDest> {
        let dir = open_or_create(path, 0).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => {
                usage(option, path, "is not a directory; give a directory (created if missing)")
            }
            _ => explain(option, path, &e),
        })?;
        FileDest { dir, name: name.into(), option }.check_existing()
    }

    fn shown(&self) -> PathBuf {
        self.dir.shown(&self.name)
    }

    /// Itself, when what is there now (if anything) may be replaced.
    fn check_existing(self) -> Result<FileDest> {
        let shown = self.shown();
        let refuse = |why: String| Err(usage(self.option, &shown, why));
        let st = match self.dir.stat(&self.name) {
            Ok(Some(st)) => st,
            Ok(None) => return Ok(self),
            Err(e) => return Err(explain(self.option, &shown, &e)),
        };
        let kind = st.st_mode & SFlag::S_IFMT.bits();
        if kind == SFlag::S_IFLNK.bits() {
            return refuse(
                "is a symbolic link, which the drill does not follow for a file it writes; \
                 remove it or give the real path"
                    .into(),
            );
        }
        if kind == SFlag::S_IFDIR.bits() {
            return refuse("is a directory; give a file's path".into());
        }
        check_stat(&st).map_err(|why| usage(self.option, &shown, why))?;
        Ok(self)
    }

    /// Writes `bytes` to it (created, or truncated once checked again).
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let written = self.open().and_then(|mut file| file.write_all(bytes).and_then(|()| file.flush()));
        written.map_err(|e| {
            Error::runtime(format!("cannot write {} {}: {e}", self.option, self.shown().display()))
        })
    }

    /// Opens it for writing, empty: created, or an existing regular file
    /// of this user with one link, truncated only after that check.
    pub fn open(&self) -> io::Result<File> {
        let fd = self.dir.open_file(&self.name, OFlag::O_WRONLY | OFlag::O_CREAT, 0o644)?;
        let file = File::from(fd);
        let st = nix::sys::stat::fstat(&file).map_err(io::Error::from)?;
        check_stat(&st).map_err(|why| {
            io::Error::new(io::ErrorKind::PermissionDenied, format!("{}: {why}", self.shown().display()))
        })?;
        file.set_len(0)?;
        Ok(file)
    }
}

/// An existing file the drill may replace the contents of: a regular file
/// of this user with one link (another link could be anyone's file).
fn check_stat(st: &nix::sys::stat::FileStat) -> std::result::Result<(), String> {
    let euid = nix::unistd::geteuid().as_raw();
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Err("is not a regular file; remove it or give another path".into());
    }
    if st.st_uid != euid || st.st_nlink != 1 {
        return Err(format!(
            "belongs to uid {} (with {} links), not to this user (uid {euid}); remove it or give another path",
            st.st_uid, st.st_nlink
        ));
    }
    Ok(())
}

/// Every place the drill writes, checked before the run.
pub struct Outputs {
    pub junit: Option<FileDest>,
    /// report.html and report.json in `--report DIR`.
    pub report: Option<(FileDest, FileDest)>,
}

impl Outputs {
    pub fn check(drill: &super::run::Drill) -> Result<Outputs> {
        let junit = drill.junit.as_deref().map(|p| FileDest::check("--junit", p)).transpose()?;
        let report = match drill.report.as_deref() {
            Some(path) => {
                let file = |name| FileDest::in_dir("--report", path, name);
                Some((file("report.html")?, file("report.json")?))
            }
            None => None,
        };
        if let Some(path) = drill.keep.as_deref() {
            FileDest::in_dir("--keep", path, super::subject::OUTPUT_FILE)?;
        }
        Ok(Outputs { junit, report })
    }
}
