//! Sockets handed to the supervisor by its own manager (systemd socket
//! activation, `systemd-socket-activate`), adopted instead of bound.
//!
//! [`take_inherited`] gets the owned fds from `sys::fd`, the only place
//! that turns raw fd numbers into owned ones; everything else works on sockets already owned, so the
//! matching is tested with sockets a test creates.
//!
//! Matching, for specs given on the command line:
//! 1. a named listener takes the inherited fd of the same name;
//! 2. every other listener, in order, takes the next inherited fd not yet
//!    taken, a named listener only an unnamed fd;
//! 3. a listener left without an fd is bound as usual; an fd left without
//!    a listener is returned, to be logged and closed.
//!
//! Each pairing is checked: the socket must be what the spec asks for (tcp,
//! udp or unix stream, and listening), and a pair made by order must also
//! agree on the port (a non-zero one) or the unix socket file, because
//! order alone cannot catch two sockets listed in another order. With no
//! specs at all, every inherited fd becomes a listener, in fd order, keyed
//! by its real address. Options of a spec (backlog, mode, owner) do not
//! apply to an inherited socket: its manager made it.
//!
//! Limits: fds are checked through `/proc/self/fd` (Linux).

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use socket2::{Socket, Type};

use super::{Address, BindError, ListenSpec, Listener, UnixOptions};
use crate::error::io_text;
use crate::sys;
use crate::wire::env::Activation;

/// A socket received from our own manager, not yet matched to a listener.
#[derive(Debug)]
pub struct Inherited {
    /// The fd number it arrived on (3, 4, ...), for messages.
    pub fd: RawFd,
    /// Its `LISTEN_FDNAMES` name, `None` when it has none.
    pub name: Option<String>,
    pub socket: Socket,
}

/// `fd 5 (admin)` or `fd 5`.
impl fmt::Display for Inherited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "fd {} ({name})", self.fd),
            None => write!(f, "fd {}", self.fd),
        }
    }
}

impl Inherited {
    fn fail(&self, problem: String) -> BindError {
        BindError::Inherited { fd: self.fd, name: self.name.clone(), problem }
    }
}

/// Takes ownership of the fds of `activation` (3, 4, ...) and makes them
/// close-on-exec. Call it once, while the process is single-threaded and
/// before anything else could close or reuse those numbers.
pub fn take_inherited(activation: &Activation) -> Result<Vec<Inherited>, BindError> {
    let count = activation.names.len();
    let name_of =
        |fd: RawFd| activation.fds().find(|&(n, _)| n == fd).and_then(|(_, name)| name.map(str::to_owned));
    let first = activation.fds().next().map_or(3, |(fd, _)| fd);
    let owned = sys::fd::take_inherited(first, count).map_err(|(fd, e)| {
        let problem = match e.raw_os_error() {
            Some(libc::EBADF) => format!("is not open, but LISTEN_FDS={count}"),
            _ => format!("cannot be made close-on-exec: {}", io_text(&e)),
        };
        BindError::Inherited { fd, name: name_of(fd), problem }
    })?;
    let taken = activation.fds().zip(owned);
    Ok(taken
        .map(|((fd, name), owned)| Inherited { fd, name: name.map(str::to_owned), socket: owned.into() })
        .collect())
}

/// Adopts inherited sockets for the specs they serve (see the module
/// docs): one entry per spec, `None` where the spec is to be bound, and
/// the inherited sockets no spec took.
pub(super) fn adopt_fds(
    specs: &[ListenSpec],
    inherited: Vec<Inherited>,
) -> Result<(Vec<Option<Listener>>, Vec<Inherited>), BindError> {
    let spec_names: Vec<Option<&str>> = specs.iter().map(|s| s.name.as_deref()).collect();
    let fd_names: Vec<Option<&str>> = inherited.iter().map(|i| i.name.as_deref()).collect();
    let pairs = assign(&spec_names, &fd_names);
    let mut left: Vec<Option<Inherited>> = inherited.into_iter().map(Some).collect();
    let mut adopted = Vec::with_capacity(specs.len());
    for (index, (spec, pair)) in specs.iter().zip(pairs).enumerate() {
        adopted.push(match pair {
            Some(Pairing { fd, by_name }) => {
                let inherited = left[fd].take().expect("each fd is assigned once");
                Some(adopt_for(index, spec, inherited, by_name)?)
            }
            None => None,
        });
    }
    Ok((adopted, left.into_iter().flatten().collect()))
}

/// An inherited socket no spec asked for (there are no specs): a listener
/// keyed by its real address, named as its manager named it.
pub(super) fn adopt_unasked(inherited: Inherited) -> Result<Listener, BindError> {
    let found = inspect(&inherited.socket);
    let address = match &found {
        Found::Tcp { addr, listening: true } => inet(addr, false),
        Found::Udp(addr) => inet(addr, true),
        Found::Unix { path, listening: true } => {
            Address::Unix { path: path.into(), options: UnixOptions::default() }
        }
        Found::Tcp { .. } | Found::Unix { .. } => return Err(not_listening(&inherited, &found)),
        Found::Other(what) => {
            return Err(
                inherited.fail(format!("is {what}: only tcp, udp and unix stream sockets can be passed on"))
            );
        }
    };
    let spec = ListenSpec { name: inherited.name.clone(), ..ListenSpec::new(address) };
    Ok(listener(&spec, inherited, &found))
}

fn inet(addr: &SocketAddr, udp: bool) -> Address {
    Address::Inet { host: Some(addr.ip().to_string()), port: addr.port(), udp }
}

/// Which inherited fd serves each spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pairing {
    fd: usize,
    by_name: bool,
}

/// The matching rules of the module docs, over names only: specs' and
/// inherited fds' names in order -> the fd index each spec takes.
fn assign(specs: &[Option<&str>], fds: &[Option<&str>]) -> Vec<Option<Pairing>> {
    let mut taken = vec![false; fds.len()];
    let mut pairs = vec![None; specs.len()];
    for (spec, name) in specs.iter().enumerate() {
        if let Some(name) = name
            && let Some(fd) = (0..fds.len()).find(|&fd| !taken[fd] && fds[fd] == Some(name))
        {
            taken[fd] = true;
            pairs[spec] = Some(Pairing { fd, by_name: true });
        }
    }
    for (spec, name) in specs.iter().enumerate() {
        if pairs[spec].is_some() {
            continue;
        }
        let free = |fd: usize| !taken[fd] && (name.is_none() || fds[fd].is_none());
        if let Some(fd) = (0..fds.len()).find(|&fd| free(fd)) {
            taken[fd] = true;
            pairs[spec] = Some(Pairing { fd, by_name: false });
        }
    }
    pairs
}

/// Checks that `inherited` can serve `spec` (the `index`th listener).
fn adopt_for(
    index: usize,
    spec: &ListenSpec,
    inherited: Inherited,
    by_name: bool,
) -> Result<Listener, BindError> {
    let found = inspect(&inherited.socket);
    let wanted = match &spec.name {
        Some(name) => format!("listener {name} is {}", spec.describe()),
        None => format!("listener {} is {}", index + 1, spec.describe()),
    };
    let mismatch = |inherited: &Inherited| {
        let hint =
            if by_name { "" } else { " (paired in order; give both the same name to pair them by name)" };
        inherited.fail(format!("is {}, but {wanted}{hint}", found.describe()))
    };
    match (&spec.address, &found) {
        (Address::Inet { udp: false, .. }, Found::Tcp { listening: false, .. })
        | (Address::Unix { .. }, Found::Unix { listening: false, .. }) => {
            Err(not_listening(&inherited, &found))
        }
        (Address::Inet { udp: false, port, .. }, Found::Tcp { addr, .. })
        | (Address::Inet { udp: true, port, .. }, Found::Udp(addr)) => {
            if !by_name && *port != 0 && *port != addr.port() {
                return Err(mismatch(&inherited));
            }
            Ok(listener(spec, inherited, &found))
        }
        (Address::Unix { path, .. }, Found::Unix { path: real, .. }) => {
            if !by_name && !same_file(path, Path::new(real)) {
                return Err(mismatch(&inherited));
            }
            Ok(listener(spec, inherited, &found))
        }
        _ => Err(mismatch(&inherited)),
    }
}

fn not_listening(inherited: &Inherited, found: &Found) -> BindError {
    inherited.fail(format!(
        "is {} but does not listen: pass listening sockets (not Accept=yes connections)",
        found.describe()
    ))
}

/// Whether both paths name one existing file (`/var/run/x` and `/run/x`).
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn listener(spec: &ListenSpec, inherited: Inherited, found: &Found) -> Listener {
    let key = match found {
        Found::Tcp { addr, .. } | Found::Udp(addr) => spec.key(addr.port()),
        _ => spec.key(0),
    };
    Listener {
        inherited_fd: Some(inherited.fd),
        repair: super::Watch::default(),
        ..Listener::bound(spec, inherited.socket, key, found.describe())
    }
}

/// What an inherited fd turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Found {
    Tcp {
        addr: SocketAddr,
        listening: bool,
    },
    Udp(SocketAddr),
    /// A unix stream socket; `path` is `@name` in the abstract namespace.
    Unix {
        path: String,
        listening: bool,
    },
    /// Anything else, described: `not a socket`, `a unix datagram socket on /x`.
    Other(String),
}

impl Found {
    /// `tcp 127.0.0.1:80`, `udp [::]:53`, `unix /run/x.sock`, or the description.
    fn describe(&self) -> String {
        match self {
            Found::Tcp { addr, .. } => format!("tcp {addr}"),
            Found::Udp(addr) => format!("udp {addr}"),
            Found::Unix { path, .. } => format!("unix {path}"),
            Found::Other(what) => what.clone(),
        }
    }
}

fn inspect(socket: &Socket) -> Found {
    let ty = match socket.r#type() {
        Ok(ty) => ty,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Found::Other("not a socket".to_owned());
        }
        Err(e) => {
            return Found::Other(format!("a socket that cannot be inspected: {}", io_text(&e)));
        }
    };
    let addr = match socket.local_addr() {
        Ok(addr) => addr,
        Err(e) => return Found::Other(format!("a socket without an address: {}", io_text(&e))),
    };
    let listening = ty == Type::STREAM && socket.is_listener().unwrap_or(false);
    let kind = match ty {
        Type::STREAM => "stream",
        Type::DGRAM => "datagram",
        Type::SEQPACKET => "seqpacket",
        _ => "other",
    };
    if let Some(addr) = addr.as_socket() {
        return match ty {
            Type::STREAM => Found::Tcp { addr, listening },
            Type::DGRAM => Found::Udp(addr),
            _ => Found::Other(format!("an inet {kind} socket on {addr}")),
        };
    }
    if addr.is_unix() {
        let path = match (addr.as_pathname(), addr.as_abstract_namespace()) {
            (Some(path), _) => path.to_string_lossy().into_owned(),
            (None, Some(name)) => format!("@{}", String::from_utf8_lossy(name)),
            (None, None) => "(unnamed)".to_owned(),
        };
        return match ty {
            Type::STREAM => Found::Unix { path, listening },
            _ => Found::Other(format!("a unix {kind} socket on {path}")),
        };
    }
    Found::Other(format!("a socket of address family {}", addr.family()))
}

#[cfg(test)]
mod tests;
