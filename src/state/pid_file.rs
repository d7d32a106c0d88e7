//! The supervisor's pid file, held with flock for its whole life, and the
//! clients' read-only watch on it.
//!
//! Invariants:
//! - The file is 0600 (also an existing one, once locked): a worker running
//!   as another user cannot open it, so cannot queue for its lock and take
//!   it over when the supervisor dies. Clients trust the file only while
//!   the pid it names holds the lock (`PidFileWatch::holder`).
//! - `PidFile::acquire` opens (or creates, mode 0600) the file WITHOUT
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

#[cfg(test)]
use std::fs;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};

use crate::error::{Error, io_text};
use crate::state::{OwnedPath, SafeDir, flock_holders, holds_flock};

#[derive(Debug)]
pub enum PidFileError {
    /// Another process holds the lock; `pid` is what the file says, if
    /// readable; `holder` is who /proc/locks says holds it when that is
    /// not `pid`.
    Running { path: PathBuf, pid: Option<u32>, holder: Option<u32> },
    /// Opening or locking failed; `action` is `open` or `lock`.
    Io { path: PathBuf, action: &'static str, error: io::Error },
}

impl std::fmt::Display for PidFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PidFileError::Running { path, pid, holder: Some(holder) } => {
                let named = pid.map(|p| format!(", not pid {p} it names,")).unwrap_or_default();
                write!(
                    f,
                    "pid file {} is locked by pid {holder}{named} (a leftover worker of a dead supervisor?); \
                     stop that process or choose another --pid-file",
                    path.display()
                )
            }
            PidFileError::Running { path, pid, holder: None } => {
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

impl From<PidFileError> for Error {
    fn from(e: PidFileError) -> Self {
        Error::runtime(e.to_string())
    }
}

/// The supervisor's pid file, exclusively locked for the life of the value.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
}

impl PidFile {
    /// Opens or creates `path` and locks it, never truncating before the
    /// lock. The file is opened relative to its checked directory, never
    /// through a symlink (`SafeDir::open_file`).
    pub fn acquire(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |action, error| PidFileError::Io { path: path.to_path_buf(), action, error };
        let (dir, name) = SafeDir::parent_of(path).map_err(|e| io_err("open", e))?;
        let file = dir
            .open_file(&name, OFlag::O_RDWR | OFlag::O_CREAT, 0o600)
            .map(File::from)
            .map_err(|e| io_err("open", e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => {
                // A file left by an older version (0644) is closed to others now.
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| io_err("open", e))?;
                Ok(PidFile { path: path.to_path_buf(), file })
            }
            Err((file, Errno::EWOULDBLOCK)) => {
                let pid = read_pid_at(&file, path).ok();
                // Named only when the pid the file names is not the holder.
                let holder = match pid {
                    Some(pid) if holds_flock(pid, &file).unwrap_or(true) => None,
                    _ => flock_holders(&file).ok().and_then(|h| h.first().copied()),
                };
                Err(PidFileError::Running { path: path.to_path_buf(), pid, holder })
            }
            Err((_, e)) => Err(io_err("lock", e.into())),
        }
    }

    /// The open file, for a self-upgrade to carry across `execve` with its lock.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&*self.file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid file the previous image of this process held, on the open
    /// file it carried over: the lock was never released (it belongs to
    /// the open file), and taking it again on that file succeeds at once.
    pub fn resume(path: PathBuf, fd: std::os::fd::OwnedFd) -> Result<PidFile, PidFileError> {
        match Flock::lock(File::from(fd), FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(PidFile { path, file }),
            Err((_, e)) => Err(PidFileError::Io { path, action: "lock", error: e.into() }),
        }
    }

    /// Replaces the content with `"{pid}\n"`. Callable again after a fork.
    pub fn write_pid(&mut self, pid: u32) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.write_all_at(format!("{pid}\n").as_bytes(), 0)?;
        self.file.flush()
    }

    /// Unlinks the path if it still names our file, relative to its
    /// checked directory. A path that is gone or now names another file is
    /// left alone. The lock is kept until this process exits (the
    /// descriptor is deliberately never closed), so a `stop` client waiting
    /// for it returns only once the supervisor is gone.
    pub fn remove(self) -> io::Result<()> {
        let ours = self.file.metadata()?;
        let result = OwnedPath::known(self.path.clone(), (ours.dev(), ours.ino())).remove();
        std::mem::forget(self.file);
        result
    }
}

fn parse_pid(text: &str, path: &Path) -> crate::error::Result<u32> {
    let first = text.lines().next().unwrap_or("").trim();
    let pid: u32 = first
        .parse()
        .map_err(|_| Error::runtime(format!("pid file {} is empty or not a number", path.display())))?;
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(Error::runtime(format!(
            "pid file {} holds {pid}, which is not a valid process id",
            path.display()
        )));
    }
    Ok(pid)
}

/// Reads the pid from an open pid file, at offset 0 (the position is unused).
fn read_pid_at(file: &File, path: &Path) -> crate::error::Result<u32> {
    let mut buf = [0u8; 64];
    let n = file
        .read_at(&mut buf, 0)
        .map_err(|e| Error::runtime(format!("cannot read pid file {}: {}", path.display(), io_text(&e))))?;
    parse_pid(&String::from_utf8_lossy(&buf[..n]), path)
}

/// Reads the pid on the first line of a pid file.
#[cfg(test)]
pub fn read_pid(path: &Path) -> crate::error::Result<u32> {
    let text = fs::read_to_string(path)
        .map_err(|e| Error::runtime(format!("cannot read pid file {}: {}", path.display(), io_text(&e))))?;
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
    /// Opens the pid file as the supervisor made it: through a checked
    /// walk (no directory another user can write, unless sticky), not
    /// through a symlink, and in a shared directory only a file of ours.
    /// A pid file someone else could plant would make this client signal
    /// whatever pid it names.
    pub fn open(path: &Path) -> io::Result<PidFileWatch> {
        let (dir, name) = SafeDir::parent_of(path)?;
        let file = File::from(dir.open_file(&name, OFlag::O_RDONLY, 0)?);
        Ok(PidFileWatch { path: path.to_path_buf(), file })
    }

    /// The pid written in the file this watch opened.
    pub fn read_pid(&self) -> crate::error::Result<u32> {
        read_pid_at(&self.file, &self.path)
    }

    /// Whether the pid the file names holds its lock: `Err` with one line
    /// when the file is locked by someone else (a process that took it over
    /// after the supervisor died), so the pid must not be trusted or
    /// signalled.
    pub fn holder(&self, pid: u32) -> crate::error::Result<()> {
        let path = self.path.display();
        match holds_flock(pid, &self.file) {
            Ok(true) => Ok(()),
            Ok(false) => {
                let by = match flock_holders(&self.file).ok().and_then(|h| h.first().copied()) {
                    Some(holder) if holder != pid => format!("pid {holder}"),
                    _ => "another process".to_string(),
                };
                Err(Error::runtime(format!(
                    "pid file {path} names pid {pid}, but its lock is held by {by}: not trusting it (the file \
                     was rewritten, the supervisor runs in another pid namespace, or it is gone and {by} took \
                     the lock; find out what {by} is before signalling anything)"
                )))
            }
            Err(e) => Err(Error::runtime(format!("cannot check who holds pid file {path}: {}", io_text(&e)))),
        }
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
                Err((_, e)) => return Err(e.into()),
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

#[cfg(test)]
mod tests;
