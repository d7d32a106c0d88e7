//! Listener specs, binding, and adopting sockets from our own manager.
//!
//! A [`ListenSpec`] is what the operator typed (`--port`, `--path`,
//! `--listen`, see [`spec`]); a [`Listener`] is the socket the supervisor
//! owns for its whole life and hands to every generation of workers: bound
//! here, or inherited through systemd socket activation (see [`inherit`]).
//!
//! Invariants:
//! - A [`Listener::key`] is the `SERVER_STARTER_PORT` key of start_server:
//!   the bare port, the host as typed, `[addr]` for IPv6, or the unix path
//!   as given, always with the port actually bound (port 0 gets the real one).
//! - Every socket is close-on-exec here (inherited ones are made so when
//!   taken); only the spawn module clears the flag, in the child, by placing
//!   sockets with `dup2`.
//! - A bare port binds 0.0.0.0 only; IPv6 sockets are `IPV6_V6ONLY`.
//! - An existing unix socket file is replaced only when it is a socket
//!   nobody accepts on. Anything else at the path is left alone and refused.
//!   A new one gets its owner and group (when asked), then its mode (0777
//!   unless asked otherwise), then starts listening (see [`unix`]).
//! - [`open_all`] is all or nothing: on error, the socket files it created
//!   are removed. Files are removed only by [`Listener::remove_file`],
//!   never on drop, so a forked child can never delete them, and never for
//!   an inherited socket: its manager owns the file.
//!
//! Limits: IPv6 hosts must be numeric (no scope ids), host names resolve to
//! their first IPv4 address, and unix keys of non-UTF-8 paths are lossy.

mod inherit;
mod repair;
mod spec;
mod unix;

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::RawFd;
use std::path::PathBuf;

use socket2::{Domain, Socket, Type};

use crate::error::io_text;
use crate::state::OwnedPath;

pub use inherit::{Inherited, take_inherited};
pub use repair::{Watch, broken, check_all, not_started};
pub use spec::{Address, ListenSpec, UnixOptions, check_unique_names};
pub use unix::is_live;

/// `listen(2)` backlog used for `--backlog=0` (glibc's SOMAXCONN; the
/// kernel caps it at net.core.somaxconn).
pub const DEFAULT_BACKLOG: i32 = 4096;

#[derive(Debug)]
pub struct Listener {
    pub spec: ListenSpec,
    pub socket: Socket,
    /// SERVER_STARTER_PORT key, with the real port for port 0.
    pub key: String,
    /// Human-readable bound address: `tcp 127.0.0.1:41234`, `udp [::1]:53`, `unix /run/x.sock`.
    pub local: String,
    /// The socket file this process created, removed by `remove_file`
    /// unless another has replaced it.
    pub created_path: Option<OwnedPath>,
    /// The fd this socket arrived on from our own manager (socket
    /// activation); `None` when it was bound here.
    pub inherited_fd: Option<RawFd>,
    /// A stale socket file was removed to make room for this one
    /// (start_server logs `removing existing socket file:PATH`).
    pub replaced_stale: bool,
    /// What the supervisor checks and repairs before each spawn (see [`repair`]).
    pub repair: Watch,
}

impl Listener {
    /// A socket bound here for `spec`, with no file of its own.
    fn bound(spec: &ListenSpec, socket: Socket, key: String, local: String) -> Listener {
        Listener {
            spec: spec.clone(),
            socket,
            key,
            local,
            created_path: None,
            inherited_fd: None,
            replaced_stale: false,
            repair: Watch::bound(),
        }
    }

    /// Removes the socket file this process created, if any (clean
    /// shutdown). A file already gone is not an error.
    pub fn remove_file(&self) -> io::Result<()> {
        self.created_path.as_ref().map_or(Ok(()), OwnedPath::remove)
    }
}

/// Why `open_all` failed; `Display` is one line naming the object.
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
    /// An existing file at a unix socket's path is left alone: `refusing to replace {path}: {why}`.
    Refused {
        path: PathBuf,
        why: String,
    },
    /// `?owner=` or `?group=` names nobody (`cause: None`), or the lookup failed.
    Owner {
        /// `user` or `group`
        what: &'static str,
        name: String,
        path: PathBuf,
        cause: Option<String>,
    },
    /// An fd from socket activation cannot be used: `inherited fd 3 (web) {problem}`.
    Inherited {
        fd: RawFd,
        name: Option<String>,
        problem: String,
    },
}

impl From<BindError> for crate::error::Error {
    fn from(e: BindError) -> Self {
        crate::error::Error::runtime(e.to_string())
    }
}

impl fmt::Display for BindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindError::Io { action, object, cause } => {
                write!(f, "cannot {action} {object}: {}", io_text(cause))
            }
            BindError::Resolve { host, cause } => write!(f, "cannot resolve {host}: {cause}"),
            BindError::Refused { path, why } => write!(f, "refusing to replace {}: {why}", path.display()),
            BindError::Owner { what, name, path, cause: None } => {
                write!(f, "unknown {what} {name:?} in --listen unix:{}", path.display())
            }
            BindError::Owner { what, name, path, cause: Some(cause) } => {
                write!(f, "cannot look up {what} {name:?} for --listen unix:{}: {cause}", path.display())
            }
            BindError::Inherited { fd, name, problem } => match name {
                Some(name) => write!(f, "inherited fd {fd} ({name}) {problem}"),
                None => write!(f, "inherited fd {fd} {problem}"),
            },
        }
    }
}

impl std::error::Error for BindError {}

/// What [`open_all`] produced.
#[derive(Debug)]
pub struct Opened {
    /// One per spec, in spec order; with no specs at all, one per
    /// inherited socket, in fd order.
    pub listeners: Vec<Listener>,
    /// Inherited sockets that serve no spec. The caller logs them
    /// (`inherited fd 5 (admin) matches no listener; closed`) and drops them.
    pub unmatched: Vec<Inherited>,
}

/// Adopts the inherited sockets that serve a spec (see [`inherit`] for the
/// matching), then binds every other spec in order; `backlog` 0 means
/// [`DEFAULT_BACKLOG`], a spec's own `?backlog=` wins. With no specs at all,
/// every inherited socket becomes a listener. On error, socket files
/// created by this call are removed.
pub fn open_all(specs: &[ListenSpec], backlog: i32, inherited: Vec<Inherited>) -> Result<Opened, BindError> {
    if specs.is_empty() {
        let listeners = inherited.into_iter().map(inherit::adopt_unasked).collect::<Result<_, _>>()?;
        return Ok(Opened { listeners, unmatched: Vec::new() });
    }
    let (adopted, unmatched) = inherit::adopt_fds(specs, inherited)?;
    let backlog = if backlog == 0 { DEFAULT_BACKLOG } else { backlog };
    let mut listeners = Vec::with_capacity(specs.len());
    for (spec, adopted) in specs.iter().zip(adopted) {
        match adopted.map_or_else(|| bind(spec, backlog), Ok) {
            Ok(listener) => listeners.push(listener),
            Err(e) => {
                listeners.iter().for_each(|listener| drop(listener.remove_file()));
                return Err(e);
            }
        }
    }
    Ok(Opened { listeners, unmatched })
}

/// What the previous image of this process knew of a listener it carried
/// across a self-upgrade.
pub struct Carried {
    pub socket: Socket,
    pub key: String,
    pub local: String,
    /// Its `LISTEN_FDNAMES` name (for one adopted without a spec).
    pub name: Option<String>,
    pub created_path: Option<OwnedPath>,
    pub inherited_fd: Option<RawFd>,
}

/// A carried listener as it was: `spec` is its spec from the command line,
/// or `None` when every adopted socket is a listener (no spec asked for),
/// and then it is read off the socket as it was at the first start.
pub fn resume(spec: Option<&ListenSpec>, carried: Carried) -> Result<Listener, BindError> {
    let Some(spec) = spec else {
        let inherited =
            Inherited { fd: carried.inherited_fd.unwrap_or(-1), name: carried.name, socket: carried.socket };
        return inherit::adopt_unasked(inherited).map(|l| Listener {
            key: carried.key,
            local: carried.local,
            ..l
        });
    };
    Ok(Listener {
        created_path: carried.created_path,
        repair: if carried.inherited_fd.is_some() { Watch::default() } else { Watch::bound() },
        inherited_fd: carried.inherited_fd,
        ..Listener::bound(spec, carried.socket, carried.key, carried.local)
    })
}

fn bind(spec: &ListenSpec, backlog: i32) -> Result<Listener, BindError> {
    let backlog = spec.backlog.unwrap_or(backlog);
    match &spec.address {
        Address::Inet { host, port, udp } => bind_inet(spec, host.as_deref(), *port, *udp, backlog),
        Address::Unix { path, options } => unix::bind_unix(spec, path, options, backlog),
    }
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
        if spec.nodelay == Some(true) {
            socket.set_tcp_nodelay(true).map_err(|e| io_err("set TCP_NODELAY on", e))?;
        }
        socket.listen(backlog).map_err(|e| io_err("listen on", e))?;
    }
    let bound = socket.local_addr().map_err(|e| io_err("get the address of", e))?.as_socket().unwrap_or(addr);
    Ok(Listener::bound(spec, socket, spec.key(bound.port()), format!("{proto} {bound}")))
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
            .map_err(|e| resolve_err(io_text(&e)))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| resolve_err("no IPv4 address".to_owned())),
    }
}

#[cfg(test)]
mod tests;
