//! Paths touched without trusting them: every file handover creates,
//! opens or removes (pid and status files, unix sockets, the runtime
//! directory, the envdir, the log file) is reached through a [`SafeDir`],
//! an open directory whose every ancestor was checked on the way down.
//!
//! Invariants:
//! - The walk starts at `/` and opens one component at a time
//!   (`O_PATH | O_NOFOLLOW`). Each directory met must be owned by root or
//!   by this user, and writable by nobody else unless it is sticky (as
//!   `/tmp`): another user could otherwise swap what lies below it
//!   (OpenSSH's StrictModes, systemd's chase with CHASE_SAFE). In a sticky
//!   directory that others can write, the next entry (directory or
//!   symlink) must be root's or ours. A symlink is followed only after
//!   those checks, at most [`MAX_LINKS`] of them.
//! - Once walked, the directory is an fd: everything after is relative to
//!   it (`openat`, `renameat`, `unlinkat`), so renaming a parent later
//!   changes nothing. Files are opened with `O_NOFOLLOW`; in a directory
//!   others can write, an existing file must be ours with one link.
//! - New files are created `O_EXCL` under unpredictable names, their mode
//!   set on the fd, then renamed into place. A unix socket's file has no
//!   fd of its own: its mode and owner are set relative to the directory
//!   fd without following a link (`AT_SYMLINK_NOFOLLOW`), right after
//!   `bind` made it and before `listen`, in a directory where nobody else
//!   can rename it. It is not bound elsewhere and renamed in: its address
//!   (`getsockname`, which workers may print) stays the path it serves.
//! - A refusal is an `io::Error` of kind `PermissionDenied` whose text
//!   names the path, its owner and mode, and the fix.
use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, fchmod, fchmodat, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, unlinkat};

/// Symlinks followed in one walk before giving up (the kernel's own limit).
pub const MAX_LINKS: usize = 40;

/// An open directory reached by a checked walk.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
    /// Sticky and writable by others: its entries must be checked for owner.
    shared: bool,
}

/// A refusal: `PermissionDenied` with the text naming the path and the fix.
fn refuse(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, text)
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

fn is_type(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// A name nobody can guess: SipHash under this process's random keys.
pub fn random_name(prefix: &str) -> OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(nanos.as_nanos());
    OsString::from(format!("{prefix}{:016x}", hasher.finish()))
}

/// Tries `make` with fresh names starting with `prefix` until one was not taken.
fn fresh<T>(prefix: &str, mut make: impl FnMut(&OsStr) -> nix::Result<T>) -> io::Result<(T, OsString)> {
    loop {
        let name = random_name(prefix);
        match make(&name) {
            Err(Errno::EEXIST) => continue,
            made => return Ok((made?, name)),
        }
    }
}

const DIR_FLAGS: OFlag =
    OFlag::O_PATH.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Opens the directory `name` in `at` as a step of the walk, shown as
/// `path`, and checks it: owned by root or this user, and writable by no
/// other user (a group other than root's, or everyone) unless sticky.
fn open_dir(at: impl AsFd, name: &OsStr, path: PathBuf) -> io::Result<SafeDir> {
    let fd = openat(at, name, DIR_FLAGS, Mode::empty())?;
    let st = fstat(&fd)?;
    let (owner, mode, shown) = (st.st_uid, st.st_mode & 0o7777, path.display());
    if !trusted_owner(owner) {
        return Err(refuse(format!(
            "directory {shown} belongs to uid {owner} (mode {mode:04o}), so that user could swap what is in it; \
             use a directory owned by root or by this user"
        )));
    }
    let shared = (st.st_mode & 0o020 != 0 && st.st_gid != 0) || st.st_mode & 0o002 != 0;
    if shared && mode & 0o1000 == 0 {
        return Err(refuse(format!(
            "directory {shown} is writable by other users (owner uid {owner}, mode {mode:04o}); \
             make it writable only by its owner (chmod go-w) or sticky (chmod +t), or use another directory"
        )));
    }
    Ok(SafeDir { fd, path, shared })
}

impl SafeDir {
    /// Opens the directory `path`, checking every directory on the way.
    pub fn open(path: &Path) -> io::Result<SafeDir> {
        let absolute =
            if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
        let root = || open_dir(AT_FDCWD, OsStr::new("/"), PathBuf::from("/"));
        let mut todo: VecDeque<OsString> = components(&absolute);
        let mut cur = root()?;
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            match name.as_bytes() {
                b"/" => cur = root()?,
                b"" | b"." => {}
                b".." => {
                    let up = cur.path.parent().unwrap_or(&cur.path).to_path_buf();
                    cur = open_dir(&cur.fd, &name, up)?;
                }
                _ => {
                    let st = fstatat(&cur.fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
                    let link = is_type(&st, SFlag::S_IFLNK);
                    if cur.shared && !trusted_owner(st.st_uid) {
                        let what = match () {
                            _ if link => "symbolic link",
                            _ if is_type(&st, SFlag::S_IFDIR) => "directory",
                            _ => "file",
                        };
                        return Err(refuse(format!(
                            "{} is a {what} of uid {} in directory {}, which others can write; \
                             remove it or use another path",
                            cur.path.join(&name).display(),
                            st.st_uid,
                            cur.path.display()
                        )));
                    }
                    if !link {
                        let path = cur.path.join(&name);
                        cur = open_dir(&cur.fd, &name, path)?;
                        continue;
                    }
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(io::Error::from(Errno::ELOOP));
                    }
                    let target = readlinkat(&cur.fd, name.as_os_str())?;
                    for part in components(Path::new(&target)).into_iter().rev() {
                        todo.push_front(part);
                    }
                }
            }
        }
        // The walk's own name for it, the one the user gave.
        cur.path = path.to_path_buf();
        Ok(cur)
    }

    /// The directory holding `path`, checked, and the file's name in it.
    pub fn parent_of(path: &Path) -> io::Result<(SafeDir, OsString)> {
        let name = match path.file_name() {
            Some(name) if !path.as_os_str().as_bytes().ends_with(b"/") => name.to_owned(),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} names no file", path.display()),
                ));
            }
        };
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut dir = SafeDir::open(parent)?;
        // As given: a bare name's directory shows as nothing, so that
        // `shown` gives back the path itself.
        dir.path = path.parent().unwrap_or(Path::new("")).to_path_buf();
        Ok((dir, name))
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it, for messages.
    pub fn shown(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// Whether others can write it (sticky): existing files must be ours.
    #[cfg(test)]
    pub fn shared(&self) -> bool {
        self.shared
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A path that reaches `name` through this open directory
    /// (`/proc/self/fd/N/NAME`), for the calls that only take paths
    /// (`bind`, `connect`); the given path where /proc is not mounted.
    pub fn via_fd(&self, name: &OsStr) -> PathBuf {
        let proc = PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
        if proc.is_dir() { proc.join(name) } else { self.shown(name) }
    }

    /// Binds `socket` at `name`, then sets its mode, owner and group
    /// relative to this directory without following a link. Returns the
    /// file's (device, inode). Nobody can connect before the caller's
    /// `listen`, so the file's first mode matters to no one.
    ///
    /// `bind` takes a path: it is this directory's, every step of which
    /// was checked, so only root or this user could change where it leads
    /// (in a sticky directory, nobody else can rename our entry), and it is
    /// the address workers see (`getsockname`).
    pub fn bind_socket(
        &self,
        socket: &socket2::Socket,
        name: &OsStr,
        mode: u32,
        owner: Option<Uid>,
        group: Option<Gid>,
    ) -> io::Result<(u64, u64)> {
        socket.bind(&socket2::SockAddr::unix(self.shown(name))?)?;
        let identity = match self.stat(name)? {
            Some(st) if is_type(&st, SFlag::S_IFSOCK) && st.st_uid == euid() => (st.st_dev, st.st_ino),
            _ => return Err(io::Error::other("the socket file was replaced as it was made")),
        };
        let mode = Mode::from_bits_truncate(mode & 0o777);
        let set = || -> nix::Result<()> {
            if owner.is_some() || group.is_some() {
                fchownat(&self.fd, name, owner, group, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            }
            // EOPNOTSUPP: a link, or no /proc for the C library to refuse
            // one through. Still the socket we made (in a directory where
            // nobody else can rename it), it is set the plain way.
            match fchmodat(&self.fd, name, mode, FchmodatFlags::NoFollowSymlink) {
                Err(Errno::EOPNOTSUPP) => match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if (st.st_dev, st.st_ino) == identity && is_type(&st, SFlag::S_IFSOCK) => {
                        fchmodat(&self.fd, name, mode, FchmodatFlags::FollowSymlink)
                    }
                    _ => Err(Errno::EOPNOTSUPP),
                },
                other => other,
            }
        };
        if let Err(e) = set() {
            let _ = self.remove_if(name, identity);
            return Err(e.into());
        }
        Ok(identity)
    }

    /// What is at `name`, not following a symlink; `None` if nothing.
    pub fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// Opens the regular file `name` with `flags` (plus `O_NOFOLLOW`,
    /// `O_CLOEXEC`; `mode` if created). A symlink, something other than a
    /// regular file, or (in a shared directory) a file of another user or
    /// with other links is refused.
    pub fn open_file(&self, name: &OsStr, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        let shown = self.shown(name);
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = openat(&self.fd, name, flags | OFlag::O_NONBLOCK, Mode::from_bits_truncate(mode))
            .map_err(|e| match e {
                Errno::ELOOP => refuse(format!(
                    "{} is a symbolic link; handover does not follow links for the files it writes: give the real path",
                    shown.display()
                )),
                e => io::Error::from(e),
            })?;
        let st = fstat(&fd)?;
        if !is_type(&st, SFlag::S_IFREG) {
            return Err(refuse(format!(
                "{} is not a regular file; remove it or use another path",
                shown.display()
            )));
        }
        if self.shared && (st.st_uid != euid() || st.st_nlink != 1) {
            return Err(refuse(format!(
                "{} belongs to uid {} (with {} links) in directory {}, which others can write; \
                 remove it or use another path",
                shown.display(),
                st.st_uid,
                st.st_nlink,
                self.path.display()
            )));
        }
        reset_status(&fd, flags)?;
        Ok(fd)
    }

    /// Opens `name` for a log: like `open_file` in a shared directory; in
    /// one that only root or this user can write, a symlink there was put
    /// by one of them and is followed, and any kind of file is taken
    /// (`/dev/stdout`, a FIFO a log reader holds).
    pub fn open_log(&self, name: &OsStr, flags: OFlag, mode: u32) -> io::Result<OwnedFd> {
        if self.shared {
            return self.open_file(name, flags, mode);
        }
        let flags = flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        let fd = openat(&self.fd, name, flags | OFlag::O_NONBLOCK, Mode::from_bits_truncate(mode))?;
        reset_status(&fd, flags)?;
        Ok(fd)
    }

    /// A new empty file under an unpredictable name starting with
    /// `prefix`, created `O_EXCL`, mode `mode` set on its fd.
    pub fn create_temp(&self, prefix: &str, mode: u32) -> io::Result<(OwnedFd, OsString)> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let (fd, name) =
            fresh(prefix, |name| openat(&self.fd, name, flags, Mode::from_bits_truncate(0o600)))?;
        fchmod(&fd, Mode::from_bits_truncate(mode))?;
        Ok((fd, name))
    }

    /// A new private directory (0700, ours) under an unpredictable name.
    pub fn make_private(&self, prefix: &str) -> io::Result<(SafeDir, OsString)> {
        let ((), name) = fresh(prefix, |name| mkdirat(&self.fd, name, Mode::from_bits_truncate(0o700)))?;
        let private = openat(&self.fd, name.as_os_str(), DIR_FLAGS, Mode::empty()).and_then(|fd| {
            let st = fstat(&fd)?;
            if st.st_uid != euid() || st.st_mode & 0o077 != 0 { Err(Errno::EPERM) } else { Ok(fd) }
        });
        match private {
            Ok(fd) => Ok((SafeDir { fd, path: self.shown(&name), shared: false }, name)),
            Err(e) => {
                let _ = unlinkat(&self.fd, name.as_os_str(), UnlinkatFlags::RemoveDir);
                Err(e.into())
            }
        }
    }

    /// Renames `from` to `to` in this directory, replacing what is there.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Removes `name` if it is still the file `identity` (device, inode)
    /// names; gone already, or another file now, is fine.
    pub fn remove_if(&self, name: &OsStr, identity: (u64, u64)) -> io::Result<()> {
        match self.stat(name)? {
            Some(st) if (st.st_dev, st.st_ino) == identity => self.remove(name),
            _ => Ok(()),
        }
    }

    /// Removes the file (not directory) `name`; gone already is fine.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        match unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(io::Error::from(e)),
        }
    }
}

/// Files are opened non-blocking, so that a FIFO planted at the name cannot
/// hang the open; the status flags asked for are set back after.
fn reset_status(fd: &OwnedFd, flags: OFlag) -> io::Result<()> {
    if !flags.contains(OFlag::O_NONBLOCK) {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags & OFlag::O_APPEND))?;
    }
    Ok(())
}

/// `path` cut into names, `/` first when absolute.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components().map(|c| c.as_os_str().to_owned()).collect()
}

#[cfg(test)]
mod tests;
