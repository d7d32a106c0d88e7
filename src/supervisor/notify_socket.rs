//! sd_notify in both directions.
//!
//! Downward, the supervisor owns a datagram socket that every worker gets
//! as `NOTIFY_SOCKET`. It is a path in a private directory (mode 0700) under
//! the runtime directory (`state::runtime_dir`), not an abstract name: several
//! client libraries (the Rust sd-notify crate among them) only speak paths.
//! The directory is removed when the socket is dropped, and locked while
//! it lives, so that a later start can remove what a killed supervisor
//! left (`clean_stale`). `SO_PASSCRED` makes the kernel attach the
//! sender's pid to each message, so a worker cannot speak for another; the
//! event loop maps the pid to a worker by process group, so a child of the
//! worker may report for it. A NOTIFY_SOCKET that handover inherited is
//! never passed down: it belongs to handover's own service manager, which
//! hears from handover alone (upward: READY, RELOADING, STOPPING, STATUS).
//! What a datagram says is read by `wire::sd_notify`.
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::fd::RawFd;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag, openat};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg, setsockopt, sockopt};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::machine::Upward;
use crate::state::SafeDir;
/// Where the private directory goes.
pub use crate::state::runtime_dir;
use crate::supervisor::carry::{Carry, Resuming, Written};
use crate::wire::sd_notify::{Message, parse};

pub struct NotifySocket {
    socket: UnixDatagram,
    dir: PathBuf,
    name: String,
    /// The directory, exclusively locked for this process's life: a later
    /// start that can take the lock knows its owner is gone.
    _lock: Flock<File>,
}

/// Datagrams read per turn of the loop.
const MAX_DATAGRAMS: usize = 256;

/// A runtime directory younger than this is never taken for stale: its
/// creator may not have locked it yet.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// Whether `name` is one of ours: `handover-` and 16 hex digits (6 letters
/// from versions that used mkdtemp).
fn is_runtime_name(name: &str) -> bool {
    let hex = |rest: &str| rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit());
    name.strip_prefix(PREFIX).is_some_and(|rest| rest.len() == 6 || hex(rest))
}

const PREFIX: &str = "handover-";

/// Removes the private directories under `parent` that supervisors which
/// are gone (killed with SIGKILL) left behind: ours by name and owner,
/// older than `STALE_AFTER`, not locked (their owner would hold the lock
/// while it lives) and with a notify socket nobody answers on (a
/// supervisor of an older version holds no lock). Returns how many.
pub fn clean_stale(parent: &Path) -> usize {
    let Ok(entries) = SafeDir::open(parent).and_then(|_| std::fs::read_dir(parent)) else { return 0 };
    let euid = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for entry in entries.flatten() {
        if !is_runtime_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let dir = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&dir) else { continue };
        let age = meta.modified().ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
        if !meta.is_dir() || meta.uid() != euid || age < STALE_AFTER {
            continue;
        }
        let Ok(handle) = File::open(&dir) else { continue };
        let Ok(_lock) = Flock::lock(handle, FlockArg::LockExclusiveNonblock) else { continue };
        let answered = UnixDatagram::unbound().and_then(|probe| probe.connect(dir.join("notify")));
        if answered.is_ok() {
            continue;
        }
        removed += usize::from(std::fs::remove_dir_all(&dir).is_ok());
    }
    removed
}

impl NotifySocket {
    pub fn bind() -> crate::error::Result<NotifySocket> {
        let parent = runtime_dir()?;
        NotifySocket::bind_in(&parent).map_err(|e| {
            crate::error::Error::runtime(format!("in {}: {}", parent.display(), crate::error::io_text(&e)))
        })
    }

    /// The socket in a new private directory (0700, an unpredictable
    /// name, `SafeDir::make_private`) under `parent`, which a checked walk
    /// must accept.
    pub fn bind_in(parent: &Path) -> io::Result<NotifySocket> {
        let (private, name) = SafeDir::open(parent)?.make_private(PREFIX)?;
        let dir = parent.join(&name);
        let bind = || -> io::Result<NotifySocket> {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
            let handle = File::from(openat(private.fd(), ".", flags, Mode::empty())?);
            let lock = Flock::lock(handle, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| e)?;
            let socket = UnixDatagram::bind(dir.join("notify"))?;
            socket.set_nonblocking(true)?;
            setsockopt(&socket, sockopt::PassCred, &true)?;
            let name = dir.join("notify").to_string_lossy().into_owned();
            Ok(NotifySocket { socket, name, dir: dir.clone(), _lock: lock })
        };
        bind().inspect_err(|_| drop(std::fs::remove_dir_all(&dir)))
    }

    /// The value of the workers' `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        Path::new(&self.name)
    }

    /// Let workers running with group `gid` reach the socket (and the
    /// einhorn socket beside it) without owning anything: the sockets stay
    /// ours, group `gid`, mode 0660, and the directory ours, group `gid`,
    /// mode 0710, so only that group may enter it. A worker that owned its
    /// socket could chmod it 0777 for anyone to send readiness. The sockets
    /// are set while the directory is still 0700 (nobody else can have
    /// replaced them: the chmod follows no link of anyone else's), the
    /// directory last, on its open file.
    pub fn grant(&self, gid: u32, others: &[&Path]) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let group = Some(nix::unistd::Gid::from_raw(gid));
        for path in std::iter::once(self.path()).chain(others.iter().copied()) {
            std::os::unix::fs::lchown(path, None, Some(gid))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        }
        nix::unistd::fchown(self._lock.as_fd(), None, group)?;
        nix::sys::stat::fchmod(self._lock.as_fd(), Mode::from_bits_truncate(0o710))?;
        Ok(())
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// The datagrams waiting, with their senders' pids: at most
    /// `MAX_DATAGRAMS` per call, so a worker that sends without end cannot
    /// keep the loop here (the rest wait for the next turn).
    pub fn receive(&self) -> Vec<Message> {
        let mut messages = Vec::new();
        for _ in 0..MAX_DATAGRAMS {
            let mut buf = [0u8; 4096];
            let mut cmsg = nix::cmsg_space!(libc::ucred);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC;
            let received = recvmsg::<UnixAddr>(self.socket.as_raw_fd(), &mut iov, Some(&mut cmsg), flags);
            let (len, pid) = match received {
                Ok(msg) => {
                    let pid = msg.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                        _ => None,
                    });
                    (msg.bytes, pid)
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            };
            if let Some(pid) = pid {
                messages.push(parse(pid, &String::from_utf8_lossy(&buf[..len])));
            }
        }
        messages
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Tell handover's own service manager, if it gave us a NOTIFY_SOCKET.
pub fn upward(state: &Upward) {
    use sd_notify::NotifyState;
    let result = match state {
        Upward::Ready => sd_notify::notify(&[NotifyState::Ready]),
        Upward::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
        Upward::Status(line) => sd_notify::notify(&[NotifyState::Status(&line.to_string())]),
        Upward::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
        Upward::ExtendTimeout(by) => {
            let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
            sd_notify::notify(&[NotifyState::ExtendTimeoutUsec(usec)])
        }
        Upward::Reloading => match NotifyState::monotonic_usec_now() {
            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
            Err(e) => Err(e),
        },
    };
    // A manager that went away is no reason to stop serving.
    let _ = result;
}

/// What a self-upgrade carries of the notify socket: the socket and its
/// private directory's lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyRecord {
    pub fd: RawFd,
    /// The private directory's fd, holding its lock.
    pub lock_fd: RawFd,
    pub dir: PathBuf,
}

impl Carry for NotifySocket {
    type Record = NotifyRecord;

    fn carry(&self, _: Written) -> NotifyRecord {
        NotifyRecord { fd: self.socket.as_raw_fd(), lock_fd: self._lock.as_raw_fd(), dir: self.dir.clone() }
    }

    fn fds(record: &NotifyRecord) -> Vec<RawFd> {
        vec![record.fd, record.lock_fd]
    }

    /// The socket, its directory still locked.
    fn resume(record: NotifyRecord, from: &mut Resuming, _: &Config) -> io::Result<NotifySocket> {
        let socket = UnixDatagram::from(from.fd(record.fd)?);
        let handle = File::from(from.fd(record.lock_fd)?);
        // The lock belongs to the open file, which the previous image held:
        // taking it again on the same file succeeds at once.
        let lock =
            Flock::lock(handle, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| io::Error::from(e))?;
        let name = record.dir.join("notify").to_string_lossy().into_owned();
        Ok(NotifySocket { socket, name, dir: record.dir, _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_with_the_senders_pid() {
        let socket = NotifySocket::bind().unwrap();
        let client = UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1", socket.path()).unwrap();
        let got = socket.receive();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pid, std::process::id() as i32);
        assert!(got[0].ready);
        let dir = socket.path().parent().unwrap().to_path_buf();
        drop(socket);
        assert!(!dir.exists(), "removed on drop");
    }

    /// A directory as a supervisor killed with SIGKILL leaves it, made
    /// `age` ago.
    fn left_behind(parent: &Path, name: &str, age: std::time::Duration) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        drop(UnixDatagram::bind(dir.join("notify")).unwrap());
        let then = std::time::SystemTime::now() - age;
        std::fs::File::open(&dir).unwrap().set_modified(then).unwrap();
        dir
    }

    #[test]
    fn a_start_removes_the_runtime_directories_of_supervisors_that_are_gone() {
        let parent = tempfile::tempdir().unwrap();
        let old = std::time::Duration::from_secs(3600);
        let stale = left_behind(parent.path(), "handover-aaaaaa", old);
        let young = left_behind(parent.path(), "handover-bbbbbb", std::time::Duration::ZERO);
        let other = left_behind(parent.path(), "something-else", old);
        let live = NotifySocket::bind_in(parent.path()).unwrap();
        let live_dir = live.path().parent().unwrap().to_path_buf();
        std::fs::File::open(&live_dir).unwrap().set_modified(std::time::SystemTime::now() - old).unwrap();
        // A supervisor of an older version: no lock, but its socket answers.
        let older = parent.path().join("handover-cccccc");
        std::fs::create_dir(&older).unwrap();
        let _older_socket = UnixDatagram::bind(older.join("notify")).unwrap();
        std::fs::File::open(&older).unwrap().set_modified(std::time::SystemTime::now() - old).unwrap();

        assert_eq!(clean_stale(parent.path()), 1);
        assert!(!stale.exists(), "a dead supervisor's directory stays");
        for kept in [&young, &other, &live_dir, &older] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
    }
}
