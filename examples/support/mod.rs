//! Shared plumbing of the example workers (`hello`, `worker`): finding the
//! sockets a supervisor passed down, adopting them, and reporting readiness.
//!
//! Included with `#[path = "support/mod.rs"] mod support;`. This is the only
//! `unsafe` of the examples: [`adopt`]. `probe` deliberately does not use
//! this module, because it is the independent check of what the supervisor
//! encodes.
//!
//! Note on `O_NONBLOCK`: [`Listener::open`] makes the listener non-blocking
//! so that a poll loop never hangs in `accept` when another generation took
//! the connection first. That flag lives on the open file description, which
//! every generation shares (Go and tokio servers do the same), so a worker
//! that wants blocking `accept` on the same sockets must not rely on it.
#![allow(dead_code)] // each example uses a different subset

use std::env;
use std::io;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use nix::poll::PollTimeout;
use nix::sys::socket::{SockaddrStorage, getsockname};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;
use socket2::{SockRef, Type};

/// The sockets this process inherited, as `(name, fd)`, from the first
/// protocol present, in this order: `SERVER_STARTER_PORT` (name = its KEY),
/// `LISTEN_FDS` (only when `LISTEN_PID` is our pid; name from
/// `LISTEN_FDNAMES`, else `fdN`), `EINHORN_FD_COUNT` (name `einhorn@i`).
///
/// An fd below 3, listed twice, or not an open socket is dropped with a
/// warning on stderr, so that each fd returned may be given to [`adopt`]
/// exactly once.
pub fn inherited_fds() -> Vec<(String, RawFd)> {
    let raw = decode_env();
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for (name, fd) in raw {
        let problem = if fd < 3 {
            Some("is not above stderr")
        } else if seen.contains(&fd) {
            Some("is listed twice")
        } else if getsockname::<SockaddrStorage>(fd).is_err() {
            Some("is not an open socket")
        } else {
            None
        };
        match problem {
            Some(why) => say_line(&format!("support: ignoring inherited fd {fd} ({name}): it {why}")),
            None => {
                seen.push(fd);
                out.push((name, fd));
            }
        }
    }
    out
}

fn decode_env() -> Vec<(String, RawFd)> {
    let var = |name: &str| env::var(name).ok();
    if let Some(value) = var("SERVER_STARTER_PORT") {
        // KEY=FD;KEY=FD. The fd is digits, so split at the last `=`: a unix
        // path may itself contain `=`.
        return value
            .split(';')
            .filter(|item| !item.is_empty())
            .filter_map(|item| {
                let (key, fd) = item.rsplit_once('=')?;
                Some((key.to_string(), fd.trim().parse().ok()?))
            })
            .collect();
    }
    let own_pid = std::process::id().to_string();
    if let (Some(count), Some(pid)) = (var("LISTEN_FDS"), var("LISTEN_PID"))
        && pid.trim() == own_pid
    {
        let count: RawFd = count.trim().parse().unwrap_or(0);
        let names = var("LISTEN_FDNAMES").unwrap_or_default();
        let mut names = names.split(':');
        return (0..count)
            .map(|i| {
                let fd = 3 + i;
                let name = names.next().filter(|n| !n.is_empty());
                (name.map_or_else(|| format!("fd{fd}"), str::to_string), fd)
            })
            .collect();
    }
    if let Some(count) = var("EINHORN_FD_COUNT") {
        let count: usize = count.trim().parse().unwrap_or(0);
        return (0..count)
            .filter_map(|i| {
                let fd = var(&format!("EINHORN_FD_{i}"))?.trim().parse().ok()?;
                Some((format!("einhorn@{i}"), fd))
            })
            .collect();
    }
    Vec::new()
}

/// Takes ownership of an inherited socket fd (and marks it close-on-exec, so
/// the worker's own children do not inherit it).
///
/// Call it only with an fd from [`inherited_fds`], once per fd.
#[allow(unsafe_code)]
pub fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: the fd was passed to us by the supervisor, is open (checked by
    // inherited_fds with getsockname) and owned by nothing else in this
    // process; inherited_fds lists each fd once and callers adopt it once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = SockRef::from(&owned).set_cloexec(true);
    owned
}

/// Tells the supervisor `READY=1` on `$NOTIFY_SOCKET` (nothing if unset).
/// Errors are ignored: readiness then falls back to the supervisor's timer.
pub fn notify_ready() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
}

/// `SERVER_STARTER_GENERATION`, 0 when absent or not a number.
pub fn generation() -> u64 {
    env::var("SERVER_STARTER_GENERATION").ok().and_then(|g| g.trim().parse().ok()).unwrap_or(0)
}

/// A self-pipe for `signals`: the handlers only write a byte; poll
/// `get_read()` and call `pending()` (which drains the pipe first).
pub type SignalPipe = SignalDelivery<UnixStream, SignalOnly>;

/// The signals are blocked while the handlers are set up: signal-hook
/// drops one that arrives in the middle of that (a TERM sent the moment a
/// worker starts would be lost), blocked it waits for the handler.
pub fn signal_pipe(signals: &[i32]) -> io::Result<SignalPipe> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut blocked = SigSet::empty();
    signals.iter().filter_map(|&n| Signal::try_from(n).ok()).for_each(|s| blocked.add(s));
    let mut mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), Some(&mut mask))?;
    let (read, write) = UnixStream::pair()?;
    let delivery = SignalDelivery::with_pipe(read, write, SignalOnly, signals);
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None)?;
    delivery
}

/// Milliseconds until `deadline` for `poll`, rounded up; no deadline waits
/// forever.
pub fn poll_timeout(deadline: Option<Instant>) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            let ms = left.as_millis() + u128::from(left.subsec_nanos() % 1_000_000 != 0);
            PollTimeout::try_from(ms.min(i32::MAX as u128)).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// An adopted socket, by kind.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
    Udp(UdpSocket),
    /// Anything else (unix datagram, a connected stream, ...): kept open,
    /// not served.
    Other(OwnedFd),
}

impl Listener {
    /// Classifies an adopted socket with getsockopt(SO_TYPE),
    /// getsockopt(SO_ACCEPTCONN) and getsockname, and makes the ones it
    /// serves non-blocking. Returns it with a description such as
    /// `tcp 127.0.0.1:8080`, `unix /run/x.sock`, `udp [::1]:53`.
    pub fn open(fd: OwnedFd) -> (Listener, String) {
        let sock = SockRef::from(&fd);
        let addr = sock.local_addr().ok();
        let inet = addr.as_ref().and_then(socket2::SockAddr::as_socket);
        let unix = addr.as_ref().filter(|a| a.is_unix()).map(|a| {
            if let Some(p) = a.as_pathname() {
                p.display().to_string()
            } else if let Some(name) = a.as_abstract_namespace() {
                format!("@{}", String::from_utf8_lossy(name))
            } else {
                "(unnamed)".to_string()
            }
        });
        let kind = sock.r#type().ok();
        let listening = sock.is_listener().unwrap_or(false);
        let nonblocking = |s: &SockRef<'_>| s.set_nonblocking(true).is_ok();
        match (kind, inet, unix) {
            (Some(Type::STREAM), Some(a), _) if listening && nonblocking(&sock) => {
                (Listener::Tcp(fd.into()), format!("tcp {a}"))
            }
            (Some(Type::STREAM), None, Some(p)) if listening && nonblocking(&sock) => {
                (Listener::Unix(fd.into()), format!("unix {p}"))
            }
            (Some(Type::DGRAM), Some(a), _) if nonblocking(&sock) => {
                (Listener::Udp(fd.into()), format!("udp {a}"))
            }
            (kind, inet, unix) => {
                let what = match kind {
                    Some(Type::STREAM) if !listening => "non-listening stream",
                    Some(Type::STREAM) => "stream",
                    Some(Type::DGRAM) => "datagram",
                    _ => "unsupported",
                };
                let at = inet.map(|a| a.to_string()).or(unix).unwrap_or_default();
                (Listener::Other(fd), format!("{what} socket {at}"))
            }
        }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
            Listener::Udp(s) => s.as_fd(),
            Listener::Other(fd) => fd.as_fd(),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// One line on stderr in a single write(2), so it never interleaves with
/// lines of the supervisor or other workers sharing the file.
/// An append-only journal file that the processes of a test share. Each
/// line goes out in one write(2), so with O_APPEND the lines of several
/// processes never interleave. Without a path nothing is written.
pub struct JournalFile {
    file: Option<std::fs::File>,
    program: &'static str,
}

impl JournalFile {
    /// Opens `path` for appending (creating it); `program` names the
    /// example in error messages. Exits 1 when the file cannot be opened.
    pub fn open(path: Option<&std::path::Path>, program: &'static str) -> JournalFile {
        let file = path.map(|path| {
            let opened = std::fs::OpenOptions::new().append(true).create(true).open(path);
            opened.unwrap_or_else(|e| {
                say_line(&format!("{program}: cannot open journal {}: {e}", path.display()));
                std::process::exit(1)
            })
        });
        JournalFile { file, program }
    }

    /// Appends `head`, then ` extra` unless it is empty, and a newline.
    pub fn line(&self, head: &str, extra: &str) {
        use std::io::Write;
        let Some(mut file) = self.file.as_ref() else { return };
        let line = if extra.is_empty() { format!("{head}\n") } else { format!("{head} {extra}\n") };
        match file.write(line.as_bytes()) {
            Ok(n) if n == line.len() => {}
            Ok(n) => {
                say_line(&format!("{}: short journal write ({n} of {} bytes)", self.program, line.len()))
            }
            Err(e) => say_line(&format!("{}: cannot write the journal: {e}", self.program)),
        }
    }
}

pub fn say_line(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// `eprintln!`, but one write per line.
macro_rules! say {
    ($($arg:tt)*) => { $crate::support::say_line(&format!($($arg)*)) };
}
#[allow(unused_imports)]
pub(crate) use say;

/// Answers everything queued on one stream listener with `reply`, without
/// blocking (the listener is non-blocking); `who` names the program in errors.
#[allow(dead_code)]
pub fn serve_line(listener: &Listener, reply: &[u8], who: &str) {
    loop {
        let accepted = match listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| socket2::Socket::from(s)),
            Listener::Unix(l) => l.accept().map(|(s, _)| socket2::Socket::from(s)),
            _ => return,
        };
        match accepted {
            Ok(sock) => answer(sock, reply),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                say_line(&format!("{who}: accept on fd {} failed: {e}", listener.raw_fd()));
                return;
            }
        }
    }
}

/// Writes the reply and closes. Whatever the client sent is drained first,
/// so that the close is a FIN rather than a reset that could destroy the
/// reply before the client reads it.
#[allow(dead_code)]
pub fn answer(mut sock: socket2::Socket, reply: &[u8]) {
    use std::io::{Read, Write};
    let _ = sock.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    let _ = sock.write_all(reply);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    if sock.set_nonblocking(true).is_ok() {
        let mut buf = [0u8; 1024];
        while matches!(sock.read(&mut buf), Ok(n) if n > 0) {}
    }
}
