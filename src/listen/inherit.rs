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
    let taken = (activation.fds().zip(owned))
        .map(|((fd, name), owned)| Inherited {
            fd,
            name: name.map(str::to_owned),
            socket: Socket::from(owned),
        })
        .collect();
    Ok(taken)
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
        spec: spec.clone(),
        socket: inherited.socket,
        key,
        local: found.describe(),
        created_path: None,
        inherited_fd: Some(inherited.fd),
        replaced_stale: false,
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
mod tests {
    use super::*;
    use crate::listen::open_all;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
    use std::path::PathBuf;

    fn given(fd: RawFd, name: Option<&str>, socket: impl Into<OwnedFd>) -> Inherited {
        Inherited { fd, name: name.map(str::to_owned), socket: Socket::from(socket.into()) }
    }

    fn tcp() -> (std::net::TcpListener, u16) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    fn udp() -> (std::net::UdpSocket, u16) {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        (socket, port)
    }

    fn spec(value: &str) -> ListenSpec {
        ListenSpec::parse_listen(value).unwrap()
    }

    fn port_of(socket: &Socket) -> u16 {
        socket.local_addr().unwrap().as_socket().unwrap().port()
    }

    #[test]
    fn pairs_by_name_then_in_order() {
        let pair = |fd, by_name| Some(Pairing { fd, by_name });
        type Names<'a> = &'a [Option<&'a str>];
        let cases: &[(Names, Names, Vec<Option<Pairing>>)] = &[
            // Names find each other whatever the order.
            (
                &[Some("web"), Some("admin")],
                &[Some("admin"), Some("web")],
                vec![pair(1, true), pair(0, true)],
            ),
            // Nothing named: in order; extra fds are left over.
            (&[None, None], &[None, None, None], vec![pair(0, false), pair(1, false)]),
            // More specs than fds: the rest are bound.
            (&[None, None], &[None], vec![pair(0, false), None]),
            // A named spec takes an unnamed fd, never one named otherwise.
            (&[Some("web")], &[None], vec![pair(0, false)]),
            (&[Some("web")], &[Some("admin")], vec![None]),
            (&[Some("web")], &[Some("admin"), None], vec![pair(1, false)]),
            // An unnamed spec takes what the names left, in order.
            (&[None, Some("web")], &[Some("web"), Some("http")], vec![pair(1, false), pair(0, true)]),
            (
                &[Some("a"), None, Some("b")],
                &[None, Some("b"), None],
                vec![pair(0, false), pair(2, false), pair(1, true)],
            ),
            // Duplicate names: first come, first served.
            (&[Some("x"), Some("x")], &[Some("x"), Some("x")], vec![pair(0, true), pair(1, true)]),
            (&[], &[None], vec![]),
            (&[None], &[], vec![None]),
        ];
        for (specs, fds, want) in cases {
            assert_eq!(&assign(specs, fds), want, "specs {specs:?}, fds {fds:?}");
        }
    }

    #[test]
    fn adopts_by_name_keeps_order_of_specs_and_reports_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let (web, port) = tcp();
        let (stats, _) = udp();
        let admin = UnixListener::bind(&path).unwrap();
        let specs = [spec("web=tcp://127.0.0.1:8080"), spec(&format!("admin=unix:{}", path.display()))];
        let inherited =
            vec![given(3, Some("admin"), admin), given(4, Some("stats"), stats), given(5, Some("web"), web)];
        let opened = open_all(&specs, 0, inherited).unwrap();
        let [web, admin] = &opened.listeners[..] else { panic!("{opened:?}") };
        assert_eq!(web.inherited_fd, Some(5));
        assert_eq!(port_of(&web.socket), port, "the inherited socket itself");
        assert_eq!(web.key, format!("127.0.0.1:{port}"), "the real port");
        assert_eq!(web.local, format!("tcp 127.0.0.1:{port}"));
        assert_eq!(web.spec, specs[0]);
        assert_eq!(admin.inherited_fd, Some(3));
        assert_eq!(admin.key, path.to_str().unwrap());
        assert_eq!(admin.local, format!("unix {}", path.display()));
        assert_eq!(admin.created_path, None, "its manager owns the file");
        admin.remove_file().unwrap();
        assert!(path.exists());
        let unmatched: Vec<String> = opened.unmatched.iter().map(|i| i.to_string()).collect();
        assert_eq!(unmatched, ["fd 4 (stats)"]);
    }

    #[test]
    fn specs_without_an_inherited_fd_are_bound() {
        let (web, port) = tcp();
        let specs = [spec("api=tcp://127.0.0.1:0"), spec("web=tcp://127.0.0.1:0")];
        let opened = open_all(&specs, 0, vec![given(3, Some("web"), web)]).unwrap();
        let [api, web] = &opened.listeners[..] else { panic!("{opened:?}") };
        assert_eq!(api.inherited_fd, None);
        assert_ne!(port_of(&api.socket), port);
        assert!(api.socket.is_listener().unwrap());
        assert_eq!((web.inherited_fd, port_of(&web.socket)), (Some(3), port));
        assert!(opened.unmatched.is_empty());
    }

    #[test]
    fn unnamed_specs_take_unnamed_fds_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let (first, port) = tcp();
        let unix = UnixListener::bind(&path).unwrap();
        let specs = [
            ListenSpec::parse_port(&format!("127.0.0.1:{port}")).unwrap(),
            // Another spelling of the same file still pairs.
            ListenSpec::parse_path(&format!("{}/./a.sock", dir.path().display())),
        ];
        let inherited = vec![given(3, None, first), given(4, None, unix)];
        let opened = open_all(&specs, 0, inherited).unwrap();
        let fds: Vec<_> = opened.listeners.iter().map(|l| l.inherited_fd).collect();
        assert_eq!(fds, [Some(3), Some(4)]);
        assert_eq!(opened.listeners[0].key, format!("127.0.0.1:{port}"));
        assert_eq!(opened.listeners[1].key, format!("{}/./a.sock", dir.path().display()));
    }

    #[test]
    fn a_socket_of_another_kind_is_refused_naming_both() {
        let (dns, port) = udp();
        let err = adopt_fds(&[spec("web=tcp://127.0.0.1:80")], vec![given(3, Some("web"), dns)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("inherited fd 3 (web) is udp 127.0.0.1:{port}, but listener web is tcp 127.0.0.1:80")
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let datagram = UnixDatagram::bind(&path).unwrap();
        let specs =
            [ListenSpec::parse_port("127.0.0.1:0").unwrap(), ListenSpec::parse_path(path.to_str().unwrap())];
        let (web, _) = tcp();
        let err = adopt_fds(&specs, vec![given(3, None, web), given(4, None, datagram)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "inherited fd 4 is a unix datagram socket on {0}, but listener 2 is unix {0} \
                 (paired in order; give both the same name to pair them by name)",
                path.display()
            )
        );
    }

    #[test]
    fn pairs_made_by_order_must_agree_on_port_and_file() {
        let (other, port) = tcp();
        let err = adopt_fds(&[ListenSpec::parse_port("127.0.0.1:1").unwrap()], vec![given(3, None, other)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "inherited fd 3 is tcp 127.0.0.1:{port}, but listener 1 is tcp 127.0.0.1:1 \
                 (paired in order; give both the same name to pair them by name)"
            )
        );
        // By name, the name decides: the port in the spec is for running without systemd.
        let (other, port) = tcp();
        let (adopted, _) =
            adopt_fds(&[spec("web=tcp://0.0.0.0:1")], vec![given(3, Some("web"), other)]).unwrap();
        assert_eq!(adopted[0].as_ref().unwrap().key, format!("0.0.0.0:{port}"));

        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.sock");
        let unix = UnixListener::bind(&real).unwrap();
        let wanted = dir.path().join("wanted.sock");
        let err = adopt_fds(&[ListenSpec::parse_path(wanted.to_str().unwrap())], vec![given(3, None, unix)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "inherited fd 3 is unix {}, but listener 1 is unix {} \
                 (paired in order; give both the same name to pair them by name)",
                real.display(),
                wanted.display()
            )
        );
    }

    #[test]
    fn stream_sockets_must_listen() {
        let bound = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).unwrap();
        bound.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
        let port = port_of(&bound);
        let err = adopt_fds(&[ListenSpec::parse_port("127.0.0.1:0").unwrap()], vec![given(3, None, bound)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "inherited fd 3 is tcp 127.0.0.1:{port} but does not listen: \
                 pass listening sockets (not Accept=yes connections)"
            )
        );
        let (pair, _) = UnixStream::pair().unwrap();
        let err = open_all(&[], 0, vec![given(3, Some("conn"), pair)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "inherited fd 3 (conn) is unix (unnamed) but does not listen: \
             pass listening sockets (not Accept=yes connections)"
        );
    }

    #[test]
    fn without_specs_every_inherited_socket_is_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let (web, tcp_port) = tcp();
        let (dns, udp_port) = udp();
        let unix = UnixListener::bind(&path).unwrap();
        let inherited = vec![given(3, Some("web"), web), given(4, None, unix), given(5, Some("dns"), dns)];
        let opened = open_all(&[], 0, inherited).unwrap();
        let summary: Vec<(String, String, Option<&str>, Option<RawFd>)> = opened
            .listeners
            .iter()
            .map(|l| {
                let name = l.spec.name.as_deref();
                (l.key.clone(), l.local.clone(), name, l.inherited_fd)
            })
            .collect();
        let path_text = path.display().to_string();
        assert_eq!(
            summary,
            [
                (format!("127.0.0.1:{tcp_port}"), format!("tcp 127.0.0.1:{tcp_port}"), Some("web"), Some(3)),
                (path_text.clone(), format!("unix {path_text}"), None, Some(4)),
                (format!("127.0.0.1:{udp_port}"), format!("udp 127.0.0.1:{udp_port}"), Some("dns"), Some(5)),
            ]
        );
        assert!(opened.listeners.iter().all(|l| l.created_path.is_none()));
        assert_eq!(
            opened.listeners[1].spec.address,
            Address::Unix { path: PathBuf::from(&path), options: UnixOptions::default() }
        );
    }

    #[test]
    fn ipv6_keys_get_brackets() {
        let Ok(listener) = std::net::TcpListener::bind("[::1]:0") else {
            eprintln!("skipped: ::1 is not available");
            return;
        };
        let port = listener.local_addr().unwrap().port();
        let opened = open_all(&[], 0, vec![given(3, None, listener)]).unwrap();
        assert_eq!(opened.listeners[0].key, format!("[::1]:{port}"));
        assert_eq!(opened.listeners[0].local, format!("tcp [::1]:{port}"));
    }

    #[test]
    fn what_cannot_be_passed_on_is_refused() {
        let null = fs::File::open("/dev/null").unwrap();
        let err = open_all(&[], 0, vec![given(3, None, null)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "inherited fd 3 is not a socket: only tcp, udp and unix stream sockets can be passed on"
        );
        let null = fs::File::open("/dev/null").unwrap();
        let err = adopt_fds(&[spec("web=tcp://h:1")], vec![given(7, Some("web"), null)]).unwrap_err();
        assert_eq!(err.to_string(), "inherited fd 7 (web) is not a socket, but listener web is tcp h:1");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let datagram = UnixDatagram::bind(&path).unwrap();
        let err = open_all(&[], 0, vec![given(3, None, datagram)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "inherited fd 3 is a unix datagram socket on {}: \
                 only tcp, udp and unix stream sockets can be passed on",
                path.display()
            )
        );
    }
}
