//! The supervisor's files: pid file (flock), status file (atomic rename),
//! envdir.
//!
//! Pid file invariants:
//! - `PidFile::acquire` opens (or creates, mode 0644) the file WITHOUT
//!   truncating it, takes `flock(LOCK_EX | LOCK_NB)`, and only then may the
//!   content change (`write_pid`). A second instance therefore fails at once
//!   with the first one's pid intact (start_server truncated first and then
//!   blocked: quirk Q7).
//! - The lock is held for the whole life of the `PidFile`. `remove` unlinks
//!   the path (only if it still names our file) and keeps the lock until the
//!   process exits, so whoever waits on it sees the supervisor gone.
//! - flock locks belong to the open file description, not to the process: a
//!   child forked for `--daemonize` shares it and keeps the lock after the
//!   parent is gone. The exiting parent must NOT drop its `PidFile`
//!   (dropping runs `flock(LOCK_UN)` on the shared description, nix
//!   `Flock`, which would release the child's lock too): it calls
//!   `leave_to_child` or leaves with `std::process::exit`/`_exit`. The fd is
//!   close-on-exec, so workers never hold it.
//! - Clients (`--stop`, `restart`, `status`) watch the lock through
//!   `PidFileWatch`, opened BEFORE they signal, so the release they wait for
//!   is that of the supervisor they signalled even if the path is unlinked.
//!   They use shared locks on a read-only fd: all they need to know is
//!   whether an exclusive holder is alive.
//!
//! Status file: one `GEN:PID\n` line per live generation, sorted
//! numerically (start_server sorted as strings, quirk Q9), written to
//! `PATH.<our pid>` and renamed over PATH, so readers never see a partial
//! file. It is removed only by the process that wrote it.
//!
//! Envdir: every entry whose name does not start with `.`; the value is the
//! first line without its `\n`, nothing else trimmed. Empty files,
//! directories and unreadable entries are skipped with a warning. The envdir
//! is re-read before every spawn and applied (`overlay_env`) on top of the
//! supervisor's environment AS IT WAS AT STARTUP: removing a file restores
//! the startup value, or unsets the variable if the startup environment did
//! not have it. This differs from start_server (quirk Q8), where removal
//! restored the value the envdir had at startup.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub use crate::error::io_text;

fn errno_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

// ---------------------------------------------------------------- pid file

#[derive(Debug)]
pub enum PidFileError {
    /// Another process holds the lock; `pid` is what the file says, if readable.
    Running { path: PathBuf, pid: Option<u32> },
    /// Opening or locking failed; `action` is `open` or `lock`.
    Io { path: PathBuf, action: &'static str, error: io::Error },
}

impl std::fmt::Display for PidFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PidFileError::Running { path, pid } => {
                write!(f, "another instance is running with pid file {}", path.display())?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                f.write_str("; stop it first or choose another --pid-file")
            }
            PidFileError::Io { path, action, error } => {
                write!(f, "cannot {action} pid file {}: {}", path.display(), io_text(error))
            }
        }
    }
}

impl std::error::Error for PidFileError {}

impl From<PidFileError> for crate::error::Error {
    fn from(e: PidFileError) -> Self {
        crate::error::Error::runtime(e.to_string())
    }
}

/// The supervisor's pid file, exclusively locked for the life of the value.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
}

impl PidFile {
    /// Opens or creates `path` and locks it, never truncating before the lock.
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |action, error| PidFileError::Io { path: path.to_path_buf(), action, error };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map_err(|e| io_err("open", e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(PidFile { path: path.to_path_buf(), file }),
            Err((file, Errno::EWOULDBLOCK)) => {
                let pid = read_pid_at(&file, path).ok();
                Err(PidFileError::Running { path: path.to_path_buf(), pid })
            }
            Err((_, e)) => Err(io_err("lock", errno_io(e))),
        }
    }

    /// Replaces the content with `"{pid}\n"`. Callable again after a fork.
    pub fn write_pid(&mut self, pid: u32) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.write_all_at(format!("{pid}\n").as_bytes(), 0)?;
        self.file.flush()
    }

    /// Unlinks the path if it still names our file. A path that is gone or
    /// now names another file is left alone. The lock is kept until this
    /// process exits (the descriptor is deliberately never closed), so a
    /// `stop` client waiting for it returns only once the supervisor is gone.
    pub fn remove(self) -> io::Result<()> {
        let ours = self.file.metadata()?;
        let result = match fs::metadata(&self.path) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => fs::remove_file(&self.path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        std::mem::forget(self.file);
        result
    }
}

fn parse_pid(text: &str, path: &Path) -> Result<u32, String> {
    let first = text.lines().next().unwrap_or("").trim();
    let pid: u32 =
        first.parse().map_err(|_| format!("pid file {} is empty or not a number", path.display()))?;
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(format!("pid file {} holds {pid}, which is not a valid process id", path.display()));
    }
    Ok(pid)
}

/// Reads the pid from an open pid file, at offset 0 (the position is unused).
fn read_pid_at(file: &File, path: &Path) -> Result<u32, String> {
    let mut buf = [0u8; 64];
    let n = file
        .read_at(&mut buf, 0)
        .map_err(|e| format!("cannot read pid file {}: {}", path.display(), io_text(&e)))?;
    parse_pid(&String::from_utf8_lossy(&buf[..n]), path)
}

/// Reads the pid on the first line of a pid file.
#[cfg(test)]
pub fn read_pid(path: &Path) -> Result<u32, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read pid file {}: {}", path.display(), io_text(&e)))?;
    parse_pid(&text, path)
}

/// Whether a live process holds the pid file's lock. A missing file is `false`.
#[cfg(test)]
pub fn is_locked(path: &Path) -> io::Result<bool> {
    match PidFileWatch::open(path) {
        Ok(watch) => watch.is_locked(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A read-only handle on a pid file, used to learn when its holder exits.
/// Open it before signalling the supervisor (start_server's `--stop` protocol).
#[derive(Debug)]
pub struct PidFileWatch {
    path: PathBuf,
    file: File,
}

impl PidFileWatch {
    pub fn open(path: &Path) -> io::Result<PidFileWatch> {
        Ok(PidFileWatch { path: path.to_path_buf(), file: File::open(path)? })
    }

    /// The pid written in the file this watch opened.
    pub fn read_pid(&self) -> Result<u32, String> {
        read_pid_at(&self.file, &self.path)
    }

    /// One attempt at a shared lock; `true` if it was free (then released again).
    fn try_shared(&self, blocking: bool) -> io::Result<bool> {
        let arg = if blocking { FlockArg::LockShared } else { FlockArg::LockSharedNonblock };
        loop {
            // A dup shares the open file description, so the lock is on the
            // description this watch opened; dropping `Flock` unlocks it.
            match Flock::lock(self.file.try_clone()?, arg) {
                Ok(_lock) => return Ok(true),
                Err((_, Errno::EWOULDBLOCK)) => return Ok(false),
                Err((_, Errno::EINTR)) => continue,
                Err((_, e)) => return Err(errno_io(e)),
            }
        }
    }

    /// Whether the holder is still alive (it holds the exclusive lock).
    pub fn is_locked(&self) -> io::Result<bool> {
        Ok(!self.try_shared(false)?)
    }

    /// Blocks until the holder has exited (its lock is released).
    pub fn wait(&self) -> io::Result<()> {
        self.try_shared(true).map(drop)
    }

    /// Like `wait`, polling every 20 ms; `false` if still held after `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.try_shared(false)? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }
}

// ------------------------------------------------------------- status file

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

// ------------------------------------------------------------------ envdir

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envdir {
    /// Sorted by name.
    pub vars: Vec<(OsString, OsString)>,
    /// One line each, e.g. `envdir /x: skipping EMPTY: empty file`.
    pub warnings: Vec<String>,
}

/// Reads one envdir entry: `Ok(value)` or `Err(reason it is skipped)`.
fn envdir_value(path: &Path, name: &OsStr) -> Result<OsString, String> {
    if name.as_bytes().contains(&b'=') {
        return Err("a variable name cannot contain '='".into());
    }
    if fs::metadata(path).map_err(|e| io_text(&e))?.is_dir() {
        return Err("a directory".into());
    }
    let bytes = fs::read(path).map_err(|e| io_text(&e))?;
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let line = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => &bytes[..end],
        None => &bytes[..],
    };
    if line.contains(&0) {
        return Err("the value contains a NUL byte".into());
    }
    Ok(OsString::from_vec(line.to_vec()))
}

/// Reads every variable of an envdir (see the module header for the rules).
pub fn read_envdir(dir: &Path) -> Result<Envdir, String> {
    let fail = |e: io::Error| format!("cannot read envdir {}: {}", dir.display(), io_text(&e));
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(fail)? {
        let name = entry.map_err(fail)?.file_name();
        if !name.as_bytes().starts_with(b".") {
            names.push(name);
        }
    }
    names.sort();
    let mut envdir = Envdir::default();
    for name in names {
        match envdir_value(&dir.join(&name), &name) {
            Ok(value) => envdir.vars.push((name, value)),
            Err(why) => envdir.warnings.push(format!(
                "envdir {}: skipping {}: {why}",
                dir.display(),
                name.to_string_lossy()
            )),
        }
    }
    Ok(envdir)
}

/// `base` with the envdir's values replacing or added to it. Pure.
pub fn overlay_env(
    base: &[(OsString, OsString)],
    envdir: &[(OsString, OsString)],
) -> Vec<(OsString, OsString)> {
    let mut env = base.to_vec();
    for (name, value) in envdir {
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((name.clone(), value.clone())),
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs.iter().map(|(n, v)| (n.into(), v.into())).collect()
    }

    #[test]
    fn pid_file_is_exclusive_and_keeps_the_holders_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        let mut first = PidFile::acquire(&path).unwrap();
        first.write_pid(1234).unwrap();
        // flock is per open file description: a second open in this process conflicts.
        let err = PidFile::acquire(&path).unwrap_err();
        assert!(matches!(err, PidFileError::Running { pid: Some(1234), .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "another instance is running with pid file {} (pid 1234); stop it first or choose another --pid-file",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "1234\n", "the failed acquire truncated");
        assert!(is_locked(&path).unwrap());
        assert_eq!(read_pid(&path), Ok(1234));
    }

    #[test]
    fn running_without_a_readable_pid_omits_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        let _first = PidFile::acquire(&path).unwrap();
        let err = PidFile::acquire(&path).unwrap_err();
        assert!(matches!(err, PidFileError::Running { pid: None, .. }));
        assert!(!err.to_string().contains("(pid"));
    }

    #[test]
    fn write_pid_replaces_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        fs::write(&path, "99999999 stale and long\nsecond line\n").unwrap();
        let mut pf = PidFile::acquire(&path).unwrap();
        pf.write_pid(42).unwrap();
        pf.write_pid(7).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "7\n");
    }

    #[test]
    fn remove_unlinks_and_keeps_the_lock_until_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        let mut pf = PidFile::acquire(&path).unwrap();
        pf.write_pid(1).unwrap();
        let watch = PidFileWatch::open(&path).unwrap();
        assert!(watch.is_locked().unwrap());
        pf.remove().unwrap();
        assert!(!path.exists());
        assert!(watch.is_locked().unwrap(), "released only when the process exits");
        assert!(!watch.wait_timeout(Duration::ZERO).unwrap());
        assert!(!is_locked(&path).unwrap(), "a missing pid file is not locked");
    }

    #[test]
    fn remove_leaves_a_file_that_replaced_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        let pf = PidFile::acquire(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, "5\n").unwrap();
        pf.remove().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "5\n");
    }

    #[test]
    fn watch_times_out_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        let _pf = PidFile::acquire(&path).unwrap();
        let watch = PidFileWatch::open(&path).unwrap();
        assert!(!watch.wait_timeout(Duration::from_millis(30)).unwrap());
    }

    #[test]
    fn pid_file_errors_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/pid");
        let err = PidFile::acquire(&missing).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot open pid file {}: No such file or directory", missing.display())
        );
        assert_eq!(
            read_pid(&missing).unwrap_err(),
            format!("cannot read pid file {}: No such file or directory", missing.display())
        );
        let path = dir.path().join("pid");
        for bad in ["", "\n", "abc\n", "0\n", "-5\n", "99999999999\n"] {
            fs::write(&path, bad).unwrap();
            let err = read_pid(&path).unwrap_err();
            assert!(err.starts_with(&format!("pid file {} ", path.display())), "{bad:?}: {err}");
        }
        fs::write(&path, " 321 \nrest\n").unwrap();
        assert_eq!(read_pid(&path), Ok(321));
    }

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

    #[test]
    fn envdir_table() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("FOO"), "foo1\nsecond line\n").unwrap();
        fs::write(d.join("BAR_SP"), "spaced  ").unwrap();
        fs::write(d.join("LEAD"), "  lead\t\n").unwrap();
        fs::write(d.join("BLANK_LINE"), "\nnext\n").unwrap();
        fs::write(d.join("BAR_EMPTY"), "").unwrap();
        fs::write(d.join(".hidden"), "x").unwrap();
        fs::create_dir(d.join("SUBDIR")).unwrap();
        std::os::unix::fs::symlink(d.join("nowhere"), d.join("BROKEN")).unwrap();
        let got = read_envdir(d).unwrap();
        assert_eq!(
            got.vars,
            os(&[("BAR_SP", "spaced  "), ("BLANK_LINE", ""), ("FOO", "foo1"), ("LEAD", "  lead\t")])
        );
        let shown = d.display();
        assert_eq!(
            got.warnings,
            vec![
                format!("envdir {shown}: skipping BAR_EMPTY: empty file"),
                format!("envdir {shown}: skipping BROKEN: No such file or directory"),
                format!("envdir {shown}: skipping SUBDIR: a directory"),
            ]
        );
    }

    #[test]
    fn envdir_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert_eq!(
            read_envdir(&missing).unwrap_err(),
            format!("cannot read envdir {}: No such file or directory", missing.display())
        );
    }

    #[test]
    fn overlay_replaces_adds_and_keeps_order() {
        let base = os(&[("PATH", "/bin"), ("FOO", "start")]);
        assert_eq!(
            overlay_env(&base, &os(&[("FOO", "dir"), ("NEW", "1")])),
            os(&[("PATH", "/bin"), ("FOO", "dir"), ("NEW", "1")])
        );
        // A file removed from the envdir: back to the startup environment.
        assert_eq!(overlay_env(&base, &[]), base);
    }
}
