//! Listener specs and binding.
//!
//! A `ListenSpec` is what the operator typed (`--port`, `--path`); a
//! `Listener` is the bound socket the supervisor owns for its whole life and
//! hands to every generation. Sockets are created close-on-exec; only the
//! spawn module clears that flag, in the child, by placing them with dup2.
//!
//! CONTRACT (to be implemented):
//! - `ListenSpec::parse_port(s)` accepts every start_server 0.35 `--port`
//!   form, surrounding whitespace ignored:
//!     `8080`, `u8080`, `8080=5`          -> Inet { host: None, .. } (binds 0.0.0.0, IPv4 only)
//!     `host:8080`, `host:u8080`, `=FD`   -> host resolved (first IPv4 address) at bind time
//!     `[::1]:8080`, `::1:8080`           -> IPv6 (numeric only), IPV6_V6ONLY=1
//!     `[127.0.0.1]:8080`                 -> IPv4, brackets dropped from the key
//!   The host is split at the LAST colon followed by the port. Anything else
//!   is `SpecError` with a message like
//!   `invalid --port value "abc": expected PORT, HOST:PORT or [IPV6]:PORT, optionally u-prefixed and =FD`.
//!   Port must fit u16; FD must be a non-negative int.
//! - `ListenSpec::parse_path(s)` -> Unix { path } (path kept exactly as given).
//! - `key(port)`: the SERVER_STARTER_PORT key: `8080`, `host:8080` (host as
//!   typed), `[addr]:8080`, or the unix path as given. `port` is the port
//!   actually bound (differs from the spec only for port 0).
//! - `bind_all(specs, backlog)`: binds in order with socket2, SO_REUSEADDR,
//!   CLOEXEC (socket2 default), `listen(backlog)` for stream sockets, UDP
//!   only bound. `backlog` 0 means the default (SOMAXCONN, 4096 on Linux).
//!   Unix: an existing path that is a socket nobody listens on (connect
//!   gives ECONNREFUSED) is removed and replaced; a live socket or a
//!   non-socket file is refused. The socket file gets mode 0777 like
//!   start_server. On any error, files created so far are removed.
//!   Errors are one line naming the object: `cannot bind 127.0.0.1:8080:
//!   Address already in use`, `cannot resolve no.such.host: ...`,
//!   `refusing to replace /x/y.sock: not a socket (remove it or choose another --path)`,
//!   `refusing to replace /x/y.sock: a server is listening on it`.
//! - `Listener` removes a unix socket file it created when `remove_file()`
//!   is called (clean shutdown); never on drop (a forked child must not).
use std::os::fd::RawFd;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `--port`: `host` as typed (without brackets), `None` for a bare port.
    Inet {
        host: Option<String>,
        port: u16,
        udp: bool,
    },
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

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug)]
pub struct Listener {
    pub spec: ListenSpec,
    pub socket: socket2::Socket,
    /// SERVER_STARTER_PORT key, with the real port for port 0.
    pub key: String,
    /// Human-readable bound address: `tcp 127.0.0.1:41234`, `udp [::1]:53`, `unix /run/x.sock`.
    pub local: String,
    /// The socket file this process created, removed by `remove_file`.
    pub created_path: Option<PathBuf>,
}
