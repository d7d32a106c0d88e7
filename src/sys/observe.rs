//! Seeing from outside whether a process waits for connections on a
//! listener it inherited, with no help from it (the readiness of servers
//! that send no `READY=1`).
//!
//! For each process looked at, and each of its threads:
//! - `/proc/PID/task/TID/syscall` names the call a blocked thread is in
//!   and its arguments: `accept`/`accept4` (or a receive, for a datagram
//!   listener) on an fd; `epoll_wait` family on an epoll fd, whose
//!   targets `/proc/PID/fdinfo/E` lists with their inodes (`ino:`);
//!   `poll`/`ppoll`/`select`/`pselect6` with a pointer to the set, read
//!   from the process with `process_vm_readv`.
//! - an fd of the process is one of our listeners when `/proc/PID/fd/N`
//!   is `socket:[INODE]` with the inode of our own fd (fstat).
//! - a connection it accepted is a connected socket of the process whose
//!   local address is a TCP listener's: the socket, duplicated into this
//!   process for a moment (`pidfd_getfd`, Linux 5.6; the same permission
//!   as the rest), answers getsockname. (`/proc/net/tcp` and sock_diag
//!   list every socket of the namespace, and a busy server leaves tens of
//!   thousands in TIME_WAIT: 100 ms a read.)
//!   a listening TCP socket there that is not one of ours is the process
//!   binding an address itself (the same as a listener's with
//!   SO_REUSEPORT, or its own default port).
//!
//! What it cannot see: a process it may not inspect (another user's, not
//! dumpable, /proc mounted with `hidepid`, ptrace restrictions): said as
//! `blind`, with the first reason; a wait in io_uring; a thread busy
//! between two waits (looked at again later). Every read is bounded:
//! threads, fds, bytes of each file, entries of each set, and a look's
//! time (`BUDGET`).
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IoSliceMut, Read};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::unistd::Pid;

pub mod calls;
pub mod parse;
#[cfg(test)]
mod tests;

pub use calls::Call;
use calls::Wait;

/// A listener as the workers have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    /// Its fd in the workers (as placed).
    pub fd: i32,
    /// The socket's inode (fstat of our own fd).
    pub inode: u64,
    /// A TCP listener's address: connections accepted from it have it as
    /// their local end.
    pub tcp: Option<SocketAddr>,
}

/// What a process was seen doing with a listener (`fd`: the listener's, as placed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Waiting { call: Call, fd: i32 },
    Accepted { fd: i32 },
}

/// A process listening on an address with a TCP socket of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnBind {
    pub pid: i32,
    pub address: SocketAddr,
    /// The inherited listener it does not wait on (the first TCP one).
    pub fd: i32,
}

/// One look at a set of processes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// The first process seen waiting on (or having accepted from) a listener.
    pub seen: Option<(i32, Seen)>,
    pub own_bind: Option<OwnBind>,
    /// Why a process could not be looked at (the first reason), when none was seen.
    pub blind: Option<String>,
    /// How many of the processes given were looked at (the others wait
    /// for the next look: `BUDGET`).
    pub looked: usize,
}

/// Processes looked at in one report, at most.
pub const MAX_PROCESSES: usize = 256;
/// The time one look may take: the processes it did not reach are the
/// caller's to look at next time (a prefork server with many children).
pub const BUDGET: Duration = Duration::from_millis(2);
/// Threads of one process looked at, at most.
const MAX_THREADS: usize = 1024;
/// fds of one process looked at, at most.
const MAX_FDS: usize = 1024;
/// Sockets of one process duplicated to see whether one is an accepted connection, at most.
const MAX_SOCKETS: usize = 64;
/// Bytes read of a small /proc file.
const SMALL: u64 = 4096;
/// Bytes read of an epoll fdinfo.
const LARGE: u64 = 8 << 20;

/// Look at `pids` in order (at most `MAX_PROCESSES` of them, and no more
/// once `BUDGET` has passed) for a wait on, or a connection from, one of
/// `listeners`.
pub fn look(pids: &[i32], listeners: &[Listener]) -> Report {
    let mut report = Report::default();
    if !calls::KNOWN_ARCH {
        report.blind = Some(format!("the system calls of {} are not known here", std::env::consts::ARCH));
        return report;
    }
    let start = Instant::now();
    for &pid in pids.iter().take(MAX_PROCESSES) {
        if report.looked > 0 && start.elapsed() > BUDGET {
            break;
        }
        report.looked += 1;
        match look_at(pid, listeners, &mut report) {
            Ok(Some(seen)) => {
                report.seen = Some((pid, seen));
                report.blind = None;
                return report;
            }
            Ok(None) => {}
            // Gone meanwhile: nothing to see, nothing hidden.
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                report.blind.get_or_insert_with(|| format!("cannot inspect pid {pid}: {e}"));
            }
        }
    }
    report
}

fn look_at(pid: i32, listeners: &[Listener], report: &mut Report) -> io::Result<Option<Seen>> {
    let sockets = sockets(pid)?;
    let by_inode: HashMap<u64, i32> = listeners.iter().map(|l| (l.inode, l.fd)).collect();
    // A process that holds no listener and no other socket has nothing to show.
    if sockets.is_empty() {
        return Ok(None);
    }
    let listener_of = |fd: i32| sockets.get(&fd).and_then(|inode| by_inode.get(inode)).copied();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))?;
    for task in tasks.take(MAX_THREADS) {
        let Ok(name) = task?.file_name().into_string() else { continue };
        let text = match read_bounded(&format!("/proc/{pid}/task/{name}/syscall"), SMALL) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Some((number, args)) = parse::syscall(&text) else { continue };
        let Some(wait) = calls::decode(number, &args) else { continue };
        if let Some(seen) = waits_on(pid, wait, &listener_of, &by_inode)? {
            return Ok(Some(seen));
        }
    }
    let others = sockets.values().filter(|inode| !by_inode.contains_key(inode)).count();
    if others > 0 && listeners.iter().any(|l| l.tcp.is_some()) {
        return Ok(connections(pid, &sockets, listeners, report));
    }
    Ok(None)
}

/// The listener `wait` is on, if it is on one (for reading).
fn waits_on(
    pid: i32,
    wait: Wait,
    listener_of: &impl Fn(i32) -> Option<i32>,
    by_inode: &HashMap<u64, i32>,
) -> io::Result<Option<Seen>> {
    let waiting = |call, fd| Some(Seen::Waiting { call, fd });
    let seen = match wait {
        Wait::Fd(call, fd) => listener_of(fd).and_then(|fd| waiting(call, fd)),
        Wait::Epoll(call, epfd) => {
            let text = match read_bounded(&format!("/proc/{pid}/fdinfo/{epfd}"), LARGE) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                read => read?,
            };
            let readable = |(_, events, _): &(i32, u32, u64)| events & libc::EPOLLIN as u32 != 0;
            let target = parse::epoll_targets(&text)
                .into_iter()
                .filter(readable)
                .find_map(|(_, _, ino)| by_inode.get(&ino).copied());
            target.and_then(|fd| waiting(call, fd))
        }
        Wait::Poll(call, address, count) => {
            let readable = |(_, events): &(i32, i16)| events & libc::POLLIN != 0;
            let mut target = None;
            let mut at = 0;
            // A chunk at a time: a large set is read only as far as the listener.
            while target.is_none() && at < count.min(parse::MAX_POLL_FDS) {
                let entries = (count.min(parse::MAX_POLL_FDS) - at).min(parse::POLL_CHUNK);
                let bytes = read_memory(pid, address.saturating_add(at * 8), entries * 8)?;
                if bytes.is_empty() {
                    break;
                }
                target =
                    parse::pollfds(&bytes).into_iter().filter(readable).find_map(|(fd, _)| listener_of(fd));
                at += entries;
            }
            target.and_then(|fd| waiting(call, fd))
        }
        Wait::Select(call, address, nfds) => {
            if address == 0 {
                return Ok(None);
            }
            let nfds = nfds.min(parse::MAX_SELECT_FDS);
            let word = std::mem::size_of::<libc::c_ulong>() as u64;
            let bytes = read_memory(pid, address, nfds.div_ceil(word * 8) * word)?;
            parse::fd_set(&bytes, nfds).into_iter().find_map(listener_of).and_then(|fd| waiting(call, fd))
        }
    };
    Ok(seen)
}

/// A connection `pid` holds that came through a TCP listener, or (said in
/// `report`) a listening TCP socket of its own. Looks at the sockets that
/// are not listeners, lowest fds first, at most `MAX_SOCKETS` of them;
/// nothing where they cannot be duplicated.
fn connections(
    pid: i32,
    sockets: &HashMap<i32, u64>,
    listeners: &[Listener],
    report: &mut Report,
) -> Option<Seen> {
    let inherited: Vec<u64> = listeners.iter().map(|l| l.inode).collect();
    let mut fds: Vec<i32> =
        sockets.iter().filter(|(_, inode)| !inherited.contains(inode)).map(|(&fd, _)| fd).collect();
    fds.sort_unstable();
    let pidfd = pidfd_open(pid).ok()?;
    for fd in fds.into_iter().take(MAX_SOCKETS) {
        let Ok(copy) = pidfd_getfd(pidfd.as_fd(), fd) else { continue };
        let socket = socket2::SockRef::from(&copy);
        if socket.r#type().ok() != Some(socket2::Type::STREAM) {
            continue;
        }
        let Some(local) = socket.local_addr().ok().and_then(|a| a.as_socket()) else { continue };
        if socket.is_listener().unwrap_or(false) {
            if let Some(first) = listeners.iter().find(|l| l.tcp.is_some()) {
                report.own_bind.get_or_insert(OwnBind { pid, address: local, fd: first.fd });
            }
            continue;
        }
        let through = listeners.iter().find(|l| l.tcp.is_some_and(|a| parse::came_through(local, a)));
        if let Some(listener) = through.filter(|_| socket.peer_addr().is_ok()) {
            return Some(Seen::Accepted { fd: listener.fd });
        }
    }
    None
}

/// A pidfd for `pid` (`pidfd_open`, Linux 5.3).
fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: the call takes two integers and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(fd)
}

/// A duplicate, in this process, of fd `fd` of the process `pidfd` refers
/// to (`pidfd_getfd`, Linux 5.6: close-on-exec, and closing it leaves the
/// process's own fd alone).
fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: the call takes three integers and touches no memory of ours.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned(copy)
}

/// The new fd a system call returned, or its error.
fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("fd out of range"))?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel has just created this fd for the caller; nothing
    // else in this process knows or owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The socket fds of `pid` and their inodes (at most `MAX_FDS` fds looked at).
fn sockets(pid: i32) -> io::Result<HashMap<i32, u64>> {
    let mut sockets = HashMap::new();
    let dir = format!("/proc/{pid}/fd");
    for entry in std::fs::read_dir(&dir)?.take(MAX_FDS) {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(link) = std::fs::read_link(entry.path()) else { continue };
        if let Some(inode) = link.to_str().and_then(parse::socket_inode) {
            sockets.insert(fd, inode);
        }
    }
    Ok(sockets)
}

/// The children of `pid` and theirs, `pid` first, at most `MAX_PROCESSES`
/// (`/proc/PID/task/TID/children`; a process that cannot be read has none).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() && found.len() < MAX_PROCESSES {
        let parent = found[next];
        next += 1;
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else { continue };
        for task in tasks.flatten().take(MAX_THREADS) {
            let path = task.path().join("children");
            let Ok(text) = read_bounded(&path.to_string_lossy(), SMALL * 16) else { continue };
            for child in parse::pids(&text) {
                if found.len() < MAX_PROCESSES && !found.contains(&child) {
                    found.push(child);
                }
            }
        }
    }
    found
}

/// At most `limit` bytes of a file, as text (invalid UTF-8 replaced).
fn read_bounded(path: &str, limit: u64) -> io::Result<String> {
    let mut bytes = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Up to `len` bytes at `address` in `pid`'s memory (fewer, or none, where
/// it is not mapped); an error when the process may not be read.
fn read_memory(pid: i32, address: u64, len: u64) -> io::Result<Vec<u8>> {
    let (Ok(len), Ok(base)) = (usize::try_from(len), usize::try_from(address)) else { return Ok(Vec::new()) };
    if len == 0 {
        return Ok(Vec::new());
    }
    let mut buffer = vec![0u8; len];
    let remote = [RemoteIoVec { base, len }];
    match process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(&mut buffer)], &remote) {
        Ok(read) => buffer.truncate(read),
        Err(nix::errno::Errno::EFAULT) => buffer.clear(),
        Err(nix::errno::Errno::ESRCH) => return Err(io::Error::from_raw_os_error(libc::ESRCH)),
        Err(e) => return Err(io::Error::other(format!("process_vm_readv: {e}"))),
    }
    Ok(buffer)
}
