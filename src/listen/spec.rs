//! What the operator typed: `--port`, `--path` and `--listen` values.
//!
//! Parsing is pure: nothing is resolved or touched here.
//!
//! - `--port` accepts exactly the start_server 0.35 grammar (`8080`,
//!   `u8080`, `HOST:PORT`, `[IPV6]:PORT`, `IPV6:PORT` split at the last
//!   colon, each with an optional `=FD` pin).
//! - `--path` is a unix stream socket at exactly that path.
//! - `--listen` is `[NAME=]tcp://HOST:PORT`, `udp://HOST:PORT` or
//!   `unix:PATH` (also `unix://PATH`), with options as a query string:
//!   `?backlog=N` (tcp, unix), `?nodelay=0|1` (tcp),
//!   `?mode=0660&owner=USER&group=GROUP` (unix).
//!   HOST is required (`0.0.0.0` says "every IPv4 address"), IPv6 goes in
//!   brackets, there is no `=FD` pin (fds follow the order), and a unix
//!   path cannot contain `?`. NAME follows systemd's rules for
//!   `LISTEN_FDNAMES` (1-255 printable ASCII characters, no `:`), and has
//!   no `=` (it ends the name).

use std::net::Ipv6Addr;
use std::os::fd::RawFd;
use std::path::PathBuf;

use crate::error::{Error, Result, printable};
use crate::wire::env::UNNAMED_FD;

const PORT_SYNTAX: &str = "expected PORT, HOST:PORT or [IPV6]:PORT, optionally u-prefixed and =FD";
const LISTEN_SYNTAX: &str = "expected [NAME=]tcp://HOST:PORT, udp://HOST:PORT or unix:PATH, \
                             optionally followed by ?OPTION=VALUE&...";

/// systemd's limit on a `LISTEN_FDNAMES` entry (`FDNAME_MAX`).
const MAX_NAME_LEN: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `host` as typed (without brackets), `None` for a bare `--port`.
    Inet { host: Option<String>, port: u16, udp: bool },
    /// The path exactly as given.
    Unix { path: PathBuf, options: UnixOptions },
}

/// How a unix socket file is created. `None` keeps the default: mode
/// 0777 (start_server's: anyone may connect), owner and group of the
/// supervisor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixOptions {
    pub mode: Option<u32>,
    /// A user name or a numeric uid.
    pub owner: Option<String>,
    /// A group name or a numeric gid.
    pub group: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenSpec {
    pub address: Address,
    /// `=FD`: the fd number the worker gets this socket on (`--port` only).
    pub pin: Option<RawFd>,
    /// The `LISTEN_FDNAMES` entry and `{fd:NAME}` (`--listen` only).
    pub name: Option<String>,
    /// `?backlog=N`: this socket's listen(2) backlog instead of `--backlog`.
    pub backlog: Option<i32>,
    /// TCP_NODELAY for a TCP listener (`?nodelay=0|1`; config fills in the
    /// default); accepted connections inherit it.
    pub nodelay: Option<bool>,
}

impl ListenSpec {
    pub(super) fn new(address: Address) -> ListenSpec {
        ListenSpec { address, pin: None, name: None, backlog: None, nodelay: None }
    }

    /// Parses a `--port` value (see the module docs for the grammar).
    pub fn parse_port(s: &str) -> Result<ListenSpec> {
        let invalid = |why: Error| Error::usage(format!("invalid --port value {s:?}: {why}"));
        let (addr, pin) = match s.rsplit_once('=') {
            Some((addr, fd)) => (addr, Some(parse_fd(fd.trim()).map_err(invalid)?)),
            None => (s, None),
        };
        let (host, port) = match addr.rsplit_once(':') {
            Some((host, port)) => (Some(parse_host(host.trim()).map_err(invalid)?), port),
            None => (None, addr),
        };
        let (udp, port) = parse_port_number(port.trim()).map_err(invalid)?;
        Ok(ListenSpec { pin, ..ListenSpec::new(Address::Inet { host, port, udp }) })
    }

    /// A `--path` value: a unix stream socket at exactly this path.
    pub fn parse_path(s: &str) -> ListenSpec {
        ListenSpec::new(Address::Unix { path: s.into(), options: UnixOptions::default() })
    }

    /// Parses a `--listen` value (see the module docs for the grammar).
    pub fn parse_listen(s: &str) -> Result<ListenSpec> {
        listen_value(s).map_err(|why| Error::usage(format!("invalid --listen value {s:?}: {why}")))
    }

    /// The `SERVER_STARTER_PORT` key, with `bound_port` in place of the
    /// typed port (they differ only for port 0).
    pub fn key(&self, bound_port: u16) -> String {
        match &self.address {
            Address::Inet { host: None, .. } => bound_port.to_string(),
            Address::Inet { host: Some(h), .. } if h.contains(':') => format!("[{h}]:{bound_port}"),
            Address::Inet { host: Some(h), .. } => format!("{h}:{bound_port}"),
            Address::Unix { path, .. } => path.to_string_lossy().into_owned(),
        }
    }

    /// `tcp 0.0.0.0:8080`, `udp [::1]:53`, `unix /run/app.sock`: what this
    /// spec asks for, in the words of [`Listener::local`](super::Listener).
    pub fn describe(&self) -> String {
        match &self.address {
            Address::Inet { host, port, udp } => {
                let proto = if *udp { "udp" } else { "tcp" };
                let at = if host.is_some() { self.key(*port) } else { format!("0.0.0.0:{port}") };
                format!("{proto} {at}")
            }
            Address::Unix { path, .. } => format!("unix {}", path.display()),
        }
    }
}

/// Two listeners with one name could not be told apart (`{fd:NAME}`,
/// socket activation): refused at startup.
pub fn check_unique_names(specs: &[ListenSpec]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in specs.iter().filter_map(|s| s.name.as_deref()) {
        if !seen.insert(name) {
            return Err(Error::usage(format!("two listeners are named {name:?}: names must be unique")));
        }
    }
    Ok(())
}

fn listen_value(s: &str) -> Result<ListenSpec> {
    // A name has no ':', every address has one: the first '=' ends a name
    // only when nothing before it is an address.
    let (name, rest) = match s.split_once('=') {
        Some((name, rest)) if !name.contains(':') => (Some(parse_name(name)?), rest),
        _ => (None, s),
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    let inet = ["tcp", "udp"]
        .into_iter()
        .find_map(|scheme| Some((scheme, address.strip_prefix(scheme)?.strip_prefix("://")?)));
    let mut spec = if let Some((scheme, authority)) = inet {
        let (host, port) = parse_authority(scheme, authority)?;
        ListenSpec::new(Address::Inet { host: Some(host), port, udp: scheme == "udp" })
    } else if let Some(path) = (address.strip_prefix("unix://")).or(address.strip_prefix("unix:")) {
        if path.is_empty() {
            return Err(Error::usage("unix: needs a PATH"));
        }
        ListenSpec::parse_path(path)
    } else {
        return Err(Error::usage(match address.split_once(':') {
            Some((scheme @ ("tcp" | "udp"), _)) => {
                format!("expected {scheme}://HOST:PORT or {scheme}://[IPV6]:PORT")
            }
            Some((scheme, rest)) if rest.starts_with("//") && !scheme.is_empty() => {
                format!("unknown scheme {scheme:?} (expected tcp://, udp:// or unix:)")
            }
            _ => LISTEN_SYNTAX.to_owned(),
        }));
    };
    spec.name = name;
    if let Some(query) = query {
        apply_options(&mut spec, query)?;
    }
    Ok(spec)
}

/// systemd's `fdname_is_valid`, minus the empty name, plus no `=`; and not
/// `unknown`, which `LISTEN_FDNAMES` uses for "no name".
fn parse_name(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(Error::usage("the listener name before '=' is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::usage(format!("the listener name is longer than {MAX_NAME_LEN} characters")));
    }
    if !name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b':') {
        return Err(Error::usage(format!(
            "listener name {name:?} may hold printable ASCII characters only, without ':'"
        )));
    }
    if name == UNNAMED_FD {
        return Err(Error::usage(format!(
            "listener name {UNNAMED_FD:?} is systemd's word for an unnamed socket; choose another"
        )));
    }
    Ok(name.to_owned())
}

/// `HOST:PORT` or `[IPV6]:PORT` -> (host without brackets, port).
fn parse_authority(scheme: &str, authority: &str) -> Result<(String, u16)> {
    let syntax = || Error::usage(format!("expected {scheme}://HOST:PORT or {scheme}://[IPV6]:PORT"));
    let (host, port) = authority.rsplit_once(':').ok_or_else(syntax)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => {
            let inner = inner.strip_suffix(']').ok_or_else(syntax)?;
            if inner.parse::<Ipv6Addr>().is_err() {
                return Err(Error::usage(format!("{inner:?} is not a numeric IPv6 address")));
            }
            inner
        }
        None if host.contains(':') => {
            let (host, port) = (printable(host), printable(port));
            return Err(Error::usage(format!(
                "an IPv6 address goes in brackets: {scheme}://[{host}]:{port}"
            )));
        }
        None => host,
    };
    if host.is_empty() {
        let port = printable(port);
        return Err(Error::usage(format!(
            "HOST is required ({scheme}://0.0.0.0:{port} for every IPv4 address)"
        )));
    }
    let bad = |c: char| c.is_whitespace() || c.is_control() || "[]/@#".contains(c);
    if host.contains(bad) || !is_number(port) {
        return Err(syntax());
    }
    let port = port.parse().map_err(|_| Error::usage(format!("port {port} is out of range (0-65535)")))?;
    Ok((host.to_owned(), port))
}

/// `OPTION=VALUE&...`, each option at most once, checked against the kind.
fn apply_options(spec: &mut ListenSpec, query: &str) -> Result<()> {
    let (kind, allowed): (&str, &[&str]) = match &spec.address {
        Address::Inet { udp: false, .. } => ("tcp", &["backlog", "nodelay"]),
        Address::Inet { udp: true, .. } => ("udp", &[]),
        Address::Unix { .. } => ("unix", &["mode", "owner", "group", "backlog"]),
    };
    let takes = match allowed {
        [] => format!("{kind} takes no options"),
        _ => format!("{kind} takes {}", allowed.join(", ")),
    };
    let mut seen = Vec::new();
    for item in query.split('&') {
        let Some((option, value)) = item.split_once('=') else {
            return Err(Error::usage(format!("expected OPTION=VALUE, found {item:?}")));
        };
        if !allowed.contains(&option) {
            let known = ["mode", "owner", "group", "backlog", "nodelay"].contains(&option);
            let what = if known { "option" } else { "unknown option" };
            return Err(Error::usage(format!("{what} {option:?} ({takes})")));
        }
        if seen.contains(&option) {
            return Err(Error::usage(format!("option {option:?} is given twice")));
        }
        seen.push(option);
        if value.is_empty() {
            return Err(Error::usage(format!("option {option:?} needs a value")));
        }
        let options = match &mut spec.address {
            Address::Unix { options, .. } => Some(options),
            Address::Inet { .. } => None,
        };
        match (option, options) {
            ("backlog", _) => spec.backlog = Some(parse_backlog(value)?),
            ("nodelay", _) => spec.nodelay = Some(parse_flag("nodelay", value)?),
            ("mode", Some(options)) => options.mode = Some(parse_mode(value)?),
            ("owner", Some(options)) => options.owner = Some(value.to_owned()),
            ("group", Some(options)) => options.group = Some(value.to_owned()),
            _ => unreachable!("options are checked against the kind above"),
        }
    }
    Ok(())
}

fn parse_flag(option: &str, value: &str) -> Result<bool> {
    match value {
        "1" | "on" | "yes" | "true" => Ok(true),
        "0" | "off" | "no" | "false" => Ok(false),
        _ => Err(Error::usage(format!("{option} {value:?} is not 1 or 0"))),
    }
}

fn parse_backlog(value: &str) -> Result<i32> {
    match value.parse::<i32>() {
        Ok(n) if n > 0 && is_number(value) => Ok(n),
        _ => Err(Error::usage(format!("backlog {value:?} is not a number from 1 to {}", i32::MAX))),
    }
}

/// Octal permission bits, `0660` or `660`, at most `0777`.
fn parse_mode(value: &str) -> Result<u32> {
    let octal = value.len() <= 4 && value.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(value, 8) {
        Ok(mode) if octal && mode <= 0o777 => Ok(mode),
        _ => Err(Error::usage(format!("mode {value:?} is not an octal permission mode like 0660"))),
    }
}

/// `[u]DIGITS` -> (udp, port).
fn parse_port_number(s: &str) -> Result<(bool, u16)> {
    let (udp, digits) = match s.strip_prefix('u') {
        Some(digits) => (true, digits),
        None => (false, s),
    };
    if !is_number(digits) {
        return Err(Error::usage(PORT_SYNTAX));
    }
    let port =
        digits.parse().map_err(|_| Error::usage(format!("port {digits} is out of range (0-65535)")))?;
    Ok((udp, port))
}

fn parse_fd(s: &str) -> Result<RawFd> {
    if !is_number(s) {
        return Err(Error::usage(PORT_SYNTAX));
    }
    s.parse().map_err(|_| Error::usage(format!("fd {s} is out of range")))
}

/// `host`, `[host]` -> host without brackets; IPv6 must be numeric.
fn parse_host(s: &str) -> Result<String> {
    let host = match s.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']').ok_or_else(|| Error::usage(PORT_SYNTAX))?.trim(),
        None => s,
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return Err(Error::usage(PORT_SYNTAX));
    }
    if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
        return Err(Error::usage(format!("{host:?} is not a numeric IPv6 address")));
    }
    Ok(host.to_owned())
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
