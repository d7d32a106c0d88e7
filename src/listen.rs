//! Listener specs and binding.
//!
//! A [`ListenSpec`] is what the operator typed (`--port`, `--path`); a
//! [`Listener`] is the bound socket the supervisor owns for its whole life
//! and hands to every generation of workers.
//!
//! Invariants:
//! - Parsing accepts exactly the start_server 0.35 `--port` grammar
//!   (`8080`, `u8080`, `HOST:PORT`, `[IPV6]:PORT`, `IPV6:PORT` split at the
//!   last colon, each with an optional `=FD` pin); nothing is resolved then.
//! - A [`Listener::key`] is the `SERVER_STARTER_PORT` key of start_server:
//!   the bare port, the host as typed, `[addr]` for IPv6, or the unix path
//!   as given, always with the port actually bound (port 0 gets the real one).
//! - Every socket is created close-on-exec and stays so here; only the spawn
//!   module clears the flag, in the child, by placing sockets with `dup2`.
//! - A bare port binds 0.0.0.0 only; IPv6 sockets are `IPV6_V6ONLY`.
//! - An existing `--path` is replaced only when it is a socket nobody
//!   accepts on. Anything else at the path is left alone and refused.
//! - `bind_all` is all or nothing: on error, the socket files it created
//!   are removed. Files are removed only by [`Listener::remove_file`],
//!   never on drop, so a forked child can never delete them.
//!
//! Limits: IPv6 hosts must be numeric (no scope ids), host names resolve to
//! their first IPv4 address, and unix keys of non-UTF-8 paths are lossy.

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use socket2::{Domain, SockAddr, Socket, Type};

/// `listen(2)` backlog used for `--backlog=0` (glibc's SOMAXCONN; the
/// kernel caps it at net.core.somaxconn).
pub const DEFAULT_BACKLOG: i32 = 4096;

const PORT_SYNTAX: &str = "expected PORT, HOST:PORT or [IPV6]:PORT, optionally u-prefixed and =FD";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `--port`: `host` as typed (without brackets), `None` for a bare port.
    Inet { host: Option<String>, port: u16, udp: bool },
    /// `--path`: the path exactly as given.
    Unix { path: PathBuf },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    pub address: Address,
    /// `=FD`: the fd number the worker gets this socket on.
    pub pin: Option<RawFd>,
    /// A name for LISTEN_FDNAMES (none for `--port`/`--path`).
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl ListenSpec {
    /// Parses a `--port` value (see the module docs for the grammar).
    pub fn parse_port(s: &str) -> Result<ListenSpec, SpecError> {
        let invalid = |why: String| SpecError(format!("invalid --port value {s:?}: {why}"));
        let (addr, pin) = match s.rsplit_once('=') {
            Some((addr, fd)) => (addr, Some(parse_fd(fd.trim()).map_err(invalid)?)),
            None => (s, None),
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((host, port)) => (Some(parse_host(host.trim()).map_err(invalid)?), port),
            None => (None, addr),
        };
        let (udp, port) = parse_port_number(port.trim()).map_err(invalid)?;
        Ok(ListenSpec { address: Address::Inet { host, port, udp }, pin, name: None })
    }

    /// A `--path` value: a unix stream socket at exactly this path.
    pub fn parse_path(s: &str) -> ListenSpec {
        ListenSpec { address: Address::Unix { path: s.into() }, pin: None, name: None }
    }

    /// The `SERVER_STARTER_PORT` key, with `bound_port` in place of the
    /// typed port (they differ only for port 0).
    pub fn key(&self, bound_port: u16) -> String {
        match &self.address {
            Address::Inet { host: None, .. } => bound_port.to_string(),
            Address::Inet { host: Some(h), .. } if h.contains(':') => format!("[{h}]:{bound_port}"),
            Address::Inet { host: Some(h), .. } => format!("{h}:{bound_port}"),
            Address::Unix { path } => path.to_string_lossy().into_owned(),
        }
    }
}

/// `[u]DIGITS` -> (udp, port).
fn parse_port_number(s: &str) -> Result<(bool, u16), String> {
    let (udp, digits) = match s.strip_prefix('u') {
        Some(digits) => (true, digits),
        None => (false, s),
    };
    if !is_number(digits) {
        return Err(PORT_SYNTAX.to_owned());
    }
    let port = digits.parse().map_err(|_| format!("port {digits} is out of range (0-65535)"))?;
    Ok((udp, port))
}

fn parse_fd(s: &str) -> Result<RawFd, String> {
    if !is_number(s) {
        return Err(PORT_SYNTAX.to_owned());
    }
    s.parse().map_err(|_| format!("fd {s} is out of range"))
}

/// `host`, `[host]` -> host without brackets; IPv6 must be numeric.
fn parse_host(s: &str) -> Result<String, String> {
    let host = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or(PORT_SYNTAX)?.trim(),
        None => s,
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err(PORT_SYNTAX.to_owned());
    }
    if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
        return Err(format!("{host:?} is not a numeric IPv6 address"));
    }
    Ok(host.to_owned())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug)]
pub struct Listener {
    pub spec: ListenSpec,
    pub socket: Socket,
    /// SERVER_STARTER_PORT key, with the real port for port 0.
    pub key: String,
    /// Human-readable bound address: `tcp 127.0.0.1:41234`, `udp [::1]:53`, `unix /run/x.sock`.
    pub local: String,
    /// The socket file this process created, removed by `remove_file`.
    pub created_path: Option<PathBuf>,
    /// A stale socket file was removed to make room for this one
    /// (start_server logs `removing existing socket file:PATH`).
    pub replaced_stale: bool,
}

impl Listener {
    /// Removes the socket file this process created, if any (clean
    /// shutdown). A file already gone is not an error.
    pub fn remove_file(&self) -> io::Result<()> {
        match &self.created_path {
            Some(path) => remove_if_present(path),
            None => Ok(()),
        }
    }

    /// TCP and unix sockets accept connections; UDP sockets do not.
    #[cfg(test)]
    pub fn is_stream(&self) -> bool {
        !matches!(self.spec.address, Address::Inet { udp: true, .. })
    }
}

/// Why `bind_all` failed; `Display` is one line naming the object.
#[derive(Debug)]
pub enum BindError {
    /// `cannot {action} {object}: {cause}`
    Io {
        action: &'static str,
        object: String,
        cause: io::Error,
    },
    Resolve {
        host: String,
        cause: String,
    },
    NotASocket {
        path: PathBuf,
    },
    Live {
        path: PathBuf,
    },
    /// Connecting to an existing socket file failed in an unexpected way.
    Probe {
        path: PathBuf,
        cause: io::Error,
    },
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Io { action, object, cause } => {
                write!(f, "cannot {action} {object}: {}", describe(cause))
            }
            BindError::Resolve { host, cause } => write!(f, "cannot resolve {host}: {cause}"),
            BindError::NotASocket { path } => write!(
                f,
                "refusing to replace {}: not a socket (remove it or choose another --path)",
                path.display()
            ),
            BindError::Live { path } => {
                write!(f, "refusing to replace {}: a server is listening on it", path.display())
            }
            BindError::Probe { path, cause } => write!(
                f,
                "refusing to replace {}: cannot tell whether a server is listening on it: {}",
                path.display(),
                describe(cause)
            ),
        }
    }
}

impl std::error::Error for BindError {}

/// The error text without std's ` (os error N)` suffix.
fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

/// Binds every spec in order; `backlog` 0 means [`DEFAULT_BACKLOG`].
/// On error, socket files created by this call are removed.
pub fn bind_all(specs: &[ListenSpec], backlog: i32) -> Result<Vec<Listener>, BindError> {
    let backlog = if backlog == 0 { DEFAULT_BACKLOG } else { backlog };
    let mut bound = Vec::with_capacity(specs.len());
    for spec in specs {
        let result = match &spec.address {
            Address::Inet { host, port, udp } => bind_inet(spec, host.as_deref(), *port, *udp, backlog),
            Address::Unix { path } => bind_unix(spec, path, backlog),
        };
        match result {
            Ok(listener) => bound.push(listener),
            Err(e) => {
                for listener in &bound {
                    let _ = listener.remove_file();
                }
                return Err(e);
            }
        }
    }
    Ok(bound)
}

fn bind_inet(
    spec: &ListenSpec,
    host: Option<&str>,
    port: u16,
    udp: bool,
    backlog: i32,
) -> Result<Listener, BindError> {
    let addr = resolve(host, port)?;
    let proto = if udp { "udp" } else { "tcp" };
    let io_err = |action, cause| BindError::Io { action, object: format!("{proto} {addr}"), cause };
    let ty = if udp { Type::DGRAM } else { Type::STREAM };
    let socket =
        Socket::new(Domain::for_address(addr), ty, None).map_err(|e| io_err("create a socket for", e))?;
    socket.set_reuse_address(true).map_err(|e| io_err("set SO_REUSEADDR on", e))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(|e| io_err("set IPV6_V6ONLY on", e))?;
    }
    socket.bind(&addr.into()).map_err(|e| io_err("bind", e))?;
    if !udp {
        socket.listen(backlog).map_err(|e| io_err("listen on", e))?;
    }
    let bound = socket.local_addr().map_err(|e| io_err("get the address of", e))?.as_socket().unwrap_or(addr);
    Ok(Listener {
        spec: spec.clone(),
        socket,
        key: spec.key(bound.port()),
        local: format!("{proto} {bound}"),
        created_path: None,
        replaced_stale: false,
    })
}

/// No host: 0.0.0.0. IPv6 hosts are numeric; names take the first IPv4.
fn resolve(host: Option<&str>, port: u16) -> Result<SocketAddr, BindError> {
    let resolve_err = |cause: String| BindError::Resolve { host: host.unwrap_or_default().to_owned(), cause };
    match host {
        None => Ok((Ipv4Addr::UNSPECIFIED, port).into()),
        Some(h) if h.contains(':') => h
            .parse::<Ipv6Addr>()
            .map(|ip| (ip, port).into())
            .map_err(|_| resolve_err("not a numeric IPv6 address".to_owned())),
        Some(h) => (h, port)
            .to_socket_addrs()
            .map_err(|e| resolve_err(describe(&e)))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| resolve_err("no IPv4 address".to_owned())),
    }
}

fn bind_unix(spec: &ListenSpec, path: &Path, backlog: i32) -> Result<Listener, BindError> {
    let replaced_stale = clear_stale_socket(path)?;
    let io_err = |action, cause| BindError::Io { action, object: path.display().to_string(), cause };
    let socket =
        Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| io_err("create a socket for", e))?;
    socket.set_reuse_address(true).map_err(|e| io_err("set SO_REUSEADDR on", e))?;
    let addr = SockAddr::unix(path).map_err(|e| io_err("bind", e))?;
    socket.bind(&addr).map_err(|e| io_err("bind", e))?;
    // From here on the file is ours: remove it if anything else fails.
    // start_server creates it with umask 0, so anyone may connect.
    let finish = || {
        fs::set_permissions(path, fs::Permissions::from_mode(0o777))
            .map_err(|e| io_err("set the mode of", e))?;
        socket.listen(backlog).map_err(|e| io_err("listen on", e))
    };
    if let Err(e) = finish() {
        let _ = remove_if_present(path);
        return Err(e);
    }
    Ok(Listener {
        spec: spec.clone(),
        socket,
        key: spec.key(0),
        local: format!("unix {}", path.display()),
        created_path: Some(path.to_owned()),
        replaced_stale,
    })
}

/// Makes room at `path`: nothing there is fine, a stale socket is removed
/// (returns true), a live socket or any other file is refused.
fn clear_stale_socket(path: &Path) -> Result<bool, BindError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(cause) => {
            return Err(BindError::Io { action: "inspect", object: path.display().to_string(), cause });
        }
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(BindError::NotASocket { path: path.into() });
        }
        Ok(_) => {}
    }
    if is_live_socket(path)? {
        return Err(BindError::Live { path: path.into() });
    }
    remove_if_present(path).map_err(|cause| BindError::Io {
        action: "remove the stale socket",
        object: path.display().to_string(),
        cause,
    })?;
    Ok(true)
}

/// Connects without blocking (a live server with a full backlog would
/// block a plain connect). Only ECONNREFUSED proves nobody is bound there;
/// EPROTOTYPE means a live socket of another type (datagram).
fn is_live_socket(path: &Path) -> Result<bool, BindError> {
    let probe_err = |cause| BindError::Probe { path: path.into(), cause };
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(probe_err)?;
    socket.set_nonblocking(true).map_err(probe_err)?;
    let addr = SockAddr::unix(path).map_err(probe_err)?;
    match socket.connect(&addr) {
        Ok(()) => Ok(true),
        Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
            Errno::ECONNREFUSED | Errno::ENOENT => Ok(false),
            Errno::EAGAIN | Errno::EINPROGRESS | Errno::EPROTOTYPE => Ok(true),
            _ => Err(probe_err(e)),
        },
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream, UdpSocket};
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};

    fn inet(host: Option<&str>, port: u16, udp: bool, pin: Option<RawFd>) -> ListenSpec {
        ListenSpec { address: Address::Inet { host: host.map(str::to_owned), port, udp }, pin, name: None }
    }

    #[test]
    fn parses_every_port_form() {
        let cases = [
            ("8080", inet(None, 8080, false, None)),
            ("u8080", inet(None, 8080, true, None)),
            ("8080=5", inet(None, 8080, false, Some(5))),
            ("u53=0", inet(None, 53, true, Some(0))),
            ("0", inet(None, 0, false, None)),
            ("127.0.0.1:8080", inet(Some("127.0.0.1"), 8080, false, None)),
            ("localhost:u53", inet(Some("localhost"), 53, true, None)),
            ("127.0.0.1:8080=0", inet(Some("127.0.0.1"), 8080, false, Some(0))),
            ("[::1]:8080", inet(Some("::1"), 8080, false, None)),
            ("::1:8080", inet(Some("::1"), 8080, false, None)),
            ("[::]:u8080=9", inet(Some("::"), 8080, true, Some(9))),
            ("fe80::1:2:443", inet(Some("fe80::1:2"), 443, false, None)),
            ("[127.0.0.1]:8080", inet(Some("127.0.0.1"), 8080, false, None)),
            (" 8080 ", inet(None, 8080, false, None)),
            (" 127.0.0.1 : u8080 = 5 ", inet(Some("127.0.0.1"), 8080, true, Some(5))),
            ("[ ::1 ]:80", inet(Some("::1"), 80, false, None)),
        ];
        for (input, want) in cases {
            assert_eq!(ListenSpec::parse_port(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn rejects_malformed_ports() {
        let syntax = "expected PORT, HOST:PORT or [IPV6]:PORT, optionally u-prefixed and =FD";
        let cases = [
            ("abc", syntax.to_owned()),
            ("", syntax.to_owned()),
            (":", syntax.to_owned()),
            (":8080", syntax.to_owned()),
            ("host:", syntax.to_owned()),
            ("[::1", syntax.to_owned()),
            ("::1]:80", syntax.to_owned()),
            ("8080=x", syntax.to_owned()),
            ("8080=-1", syntax.to_owned()),
            ("8080=", syntax.to_owned()),
            ("U8080", syntax.to_owned()),
            ("u 8080", syntax.to_owned()),
            ("+80", syntax.to_owned()),
            ("70000", "port 70000 is out of range (0-65535)".to_owned()),
            ("8080=99999999999", "fd 99999999999 is out of range".to_owned()),
            ("::zz:80", r#""::zz" is not a numeric IPv6 address"#.to_owned()),
            ("[1:2]:80", r#""1:2" is not a numeric IPv6 address"#.to_owned()),
        ];
        for (input, why) in cases {
            let want = SpecError(format!("invalid --port value {input:?}: {why}"));
            assert_eq!(ListenSpec::parse_port(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn keys_follow_start_server() {
        let key = |s: &str, port| ListenSpec::parse_port(s).unwrap().key(port);
        assert_eq!(key("8080", 8080), "8080");
        assert_eq!(key("u8080=5", 8080), "8080");
        assert_eq!(key("0", 41234), "41234");
        assert_eq!(key("127.0.0.1:8080", 8080), "127.0.0.1:8080");
        assert_eq!(key("localhost:u53", 53), "localhost:53");
        assert_eq!(key("127.0.0.1:0", 41234), "127.0.0.1:41234");
        assert_eq!(key("[::1]:8080", 8080), "[::1]:8080");
        assert_eq!(key("::1:8080", 8080), "[::1]:8080");
        assert_eq!(key("[::]:8080", 8080), "[::]:8080");
        assert_eq!(key("[127.0.0.1]:8080", 8080), "127.0.0.1:8080");
        assert_eq!(ListenSpec::parse_path("./x.sock").key(0), "./x.sock");
        assert_eq!(ListenSpec::parse_path("/tmp/s.sock").key(0), "/tmp/s.sock");
    }

    fn port_of(listener: &Listener) -> u16 {
        listener.socket.local_addr().unwrap().as_socket().unwrap().port()
    }

    #[test]
    fn binds_tcp_on_port_zero() {
        let specs = [ListenSpec::parse_port("127.0.0.1:0=7").unwrap()];
        let listeners = bind_all(&specs, 0).unwrap();
        let l = &listeners[0];
        let port = port_of(l);
        assert_ne!(port, 0);
        assert_eq!(l.key, format!("127.0.0.1:{port}"));
        assert_eq!(l.local, format!("tcp 127.0.0.1:{port}"));
        assert_eq!(l.spec, specs[0]);
        assert!(l.is_stream());
        assert!(l.socket.is_listener().unwrap());
        assert!(l.socket.reuse_address().unwrap());
        assert_eq!(l.created_path, None);
        let flags = nix::fcntl::fcntl(&l.socket, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0, "socket must stay close-on-exec");
        TcpStream::connect(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn resolves_localhost_to_ipv4() {
        let specs = [ListenSpec::parse_port("localhost:0").unwrap()];
        let l = &bind_all(&specs, 0).unwrap()[0];
        let port = port_of(l);
        assert_eq!(l.key, format!("localhost:{port}"));
        assert_eq!(l.local, format!("tcp 127.0.0.1:{port}"));
    }

    #[test]
    fn binds_udp_without_listening() {
        let specs = [ListenSpec::parse_port("127.0.0.1:u0").unwrap()];
        let l = &bind_all(&specs, 0).unwrap()[0];
        let port = port_of(l);
        assert_eq!(l.key, format!("127.0.0.1:{port}"));
        assert_eq!(l.local, format!("udp 127.0.0.1:{port}"));
        assert!(!l.is_stream());
        assert_eq!(l.socket.r#type().unwrap(), Type::DGRAM);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"x", ("127.0.0.1", port)).unwrap();
        let mut buf = [std::mem::MaybeUninit::new(0u8); 4];
        assert_eq!(l.socket.recv(&mut buf).unwrap(), 1);
    }

    #[test]
    fn binds_ipv6_v6only() {
        if TcpListener::bind("[::1]:0").is_err() {
            eprintln!("skipped: ::1 is not available");
            return;
        }
        let specs = [ListenSpec::parse_port("[::1]:0").unwrap()];
        let l = &bind_all(&specs, 0).unwrap()[0];
        let port = port_of(l);
        assert_eq!(l.key, format!("[::1]:{port}"));
        assert_eq!(l.local, format!("tcp [::1]:{port}"));
        assert!(l.socket.only_v6().unwrap());
    }

    #[test]
    fn backlog_zero_and_explicit_both_listen() {
        for backlog in [0, 7] {
            let specs = [ListenSpec::parse_port("127.0.0.1:0").unwrap()];
            let l = &bind_all(&specs, backlog).unwrap()[0];
            assert!(l.socket.is_listener().unwrap(), "backlog {backlog}");
        }
    }

    #[test]
    fn port_in_use_is_one_line_naming_the_address() {
        let first = bind_all(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], 0).unwrap();
        let port = port_of(&first[0]);
        let again = ListenSpec::parse_port(&format!("127.0.0.1:{port}")).unwrap();
        let err = bind_all(&[again], 0).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot bind tcp 127.0.0.1:{port}: Address already in use"));
    }

    #[test]
    fn creates_unix_socket_world_writable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let spec = ListenSpec::parse_path(path.to_str().unwrap());
        let l = &bind_all(&[spec], 0).unwrap()[0];
        assert_eq!(l.key, path.to_str().unwrap());
        assert_eq!(l.local, format!("unix {}", path.display()));
        assert_eq!(l.created_path.as_deref(), Some(path.as_path()));
        assert!(!l.replaced_stale);
        assert!(l.is_stream());
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        UnixStream::connect(&path).unwrap();
        l.remove_file().unwrap();
        assert!(!path.exists());
        l.remove_file().unwrap(); // already gone is fine
    }

    #[test]
    fn dropping_a_listener_keeps_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(bind_all(&[ListenSpec::parse_path(path.to_str().unwrap())], 0).unwrap());
        assert!(path.exists());
    }

    #[test]
    fn replaces_stale_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("stream.sock");
        let dgram = dir.path().join("dgram.sock");
        drop(UnixListener::bind(&stream).unwrap());
        drop(UnixDatagram::bind(&dgram).unwrap());
        let specs = [&stream, &dgram].map(|p| ListenSpec::parse_path(p.to_str().unwrap()));
        let listeners = bind_all(&specs, 0).unwrap();
        assert!(listeners.iter().all(|l| l.replaced_stale));
        UnixStream::connect(&stream).unwrap();
        UnixStream::connect(&dgram).unwrap();
    }

    #[test]
    fn refuses_live_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("stream.sock");
        let dgram = dir.path().join("dgram.sock");
        let _live_stream = UnixListener::bind(&stream).unwrap();
        let _live_dgram = UnixDatagram::bind(&dgram).unwrap();
        for path in [stream, dgram] {
            let err = bind_all(&[ListenSpec::parse_path(path.to_str().unwrap())], 0).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("refusing to replace {}: a server is listening on it", path.display())
            );
            assert!(path.exists());
        }
    }

    #[test]
    fn refuses_regular_files_and_leaves_them_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("important.txt");
        fs::write(&path, "keep me").unwrap();
        let err = bind_all(&[ListenSpec::parse_path(path.to_str().unwrap())], 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to replace {}: not a socket (remove it or choose another --path)",
                path.display()
            )
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn failure_removes_files_created_so_far() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let busy = bind_all(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], 0).unwrap();
        let specs = [
            ListenSpec::parse_path(path.to_str().unwrap()),
            ListenSpec::parse_port(&format!("127.0.0.1:{}", port_of(&busy[0]))).unwrap(),
        ];
        assert!(bind_all(&specs, 0).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn io_errors_drop_the_os_error_suffix() {
        let e = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(describe(&e), "Address already in use");
        let e = io::Error::other("plain");
        assert_eq!(describe(&e), "plain");
    }
}
