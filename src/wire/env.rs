//! Wire formats of the environment handed to a worker.
//!
//! Every fd-passing protocol handover speaks is encoded here, as pure
//! functions over already-placed fds, with every variable name as a
//! constant. No I/O happens in this module.
//!
//! Invariants:
//! - `SERVER_STARTER_PORT` and `EINHORN_FD_COUNT` are always set, even
//!   with no listeners (empty value, count 0), so workers can tell that
//!   they run under a supervisor.
//! - `LISTEN_FDS`/`LISTEN_FDNAMES` are set only when the listeners sit at
//!   exactly 3, 4, ... in order: systemd's protocol cannot say anything
//!   else. `LISTEN_PID` is never produced here: it must be the worker's own
//!   pid, so the spawn module writes it after fork.
//! - Keys and names are written as given, without escaping: a unix path
//!   containing `;` or `=` breaks `SERVER_STARTER_PORT`, as in start_server.
//! - The one variable set read here, socket activation addressed to the
//!   supervisor itself, is validated as sd_listen_fds(3) does before any fd
//!   is trusted: `LISTEN_PID` must be our pid, `LISTEN_FDS` a number (at
//!   most `MAX_LISTEN_FDS`), and `LISTEN_FDNAMES`, when present, must name
//!   exactly that many fds.
//! - `{fd}` and `{fd:NAME}` are the only placeholders in a worker's
//!   arguments; any other text, braces included, is passed on unchanged.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use crate::error::{Error, Result, printable};

pub const SERVER_STARTER_PORT: &str = "SERVER_STARTER_PORT";
pub const SERVER_STARTER_GENERATION: &str = "SERVER_STARTER_GENERATION";
pub const LISTEN_FDS: &str = "LISTEN_FDS";
pub const LISTEN_PID: &str = "LISTEN_PID";
pub const LISTEN_FDNAMES: &str = "LISTEN_FDNAMES";
pub const EINHORN_CHILD_INDEX: &str = "EINHORN_CHILD_INDEX";
pub const HANDOVER_WORKER_INDEX: &str = "HANDOVER_WORKER_INDEX";
pub const EINHORN_FD_COUNT: &str = "EINHORN_FD_COUNT";
/// Followed by the listener's index: `EINHORN_FD_0`, `EINHORN_FD_1`, ...
pub const EINHORN_FD_PREFIX: &str = "EINHORN_FD_";
pub const EINHORN_SOCK_PATH: &str = "EINHORN_SOCK_PATH";
pub const EINHORN_SOCK_FD: &str = "EINHORN_SOCK_FD";
pub const EINHORN_MASTER_PID: &str = "EINHORN_MASTER_PID";
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";
/// Set by a supervisor re-executing itself (`handover upgrade`): the fd of
/// its state record. Removed from the environment first thing in `main`.
pub const HANDOVER_UPGRADE_STATE: &str = "HANDOVER_UPGRADE_STATE";
pub const ENVDIR: &str = "ENVDIR";
pub const ENABLE_AUTO_RESTART: &str = "ENABLE_AUTO_RESTART";
pub const AUTO_RESTART_INTERVAL: &str = "AUTO_RESTART_INTERVAL";
pub const KILL_OLD_DELAY: &str = "KILL_OLD_DELAY";

/// The first fd of systemd socket activation (`SD_LISTEN_FDS_START`).
pub const FIRST_LISTEN_FD: i32 = 3;
/// The most fds `LISTEN_FDS` may pass: Linux's default ceiling on a
/// process's open files (`fs.nr_open`). More cannot be real, and each
/// costs memory before the first fd is checked.
pub const MAX_LISTEN_FDS: usize = 1 << 20;
/// systemd's name for a passed fd that has none.
pub const UNNAMED_FD: &str = "unknown";

/// One listener as the worker sees it, in command-line order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot<'a> {
    /// The `SERVER_STARTER_PORT` key (`8080`, `host:8080`, `[::1]:8080`, a path).
    pub key: &'a str,
    /// The LISTEN_FDNAMES entry, `unknown` when `None`.
    pub name: Option<&'a str>,
    /// The fd number in the worker.
    pub fd: i32,
}

/// Where einhorn-speaking workers send `worker:ack`; they check that the
/// master pid is their parent before they do.
pub fn einhorn_env(socket: &str, master_pid: u32) -> Vec<(String, String)> {
    vec![(EINHORN_SOCK_PATH.into(), socket.into()), (EINHORN_MASTER_PID.into(), master_pid.to_string())]
}

/// Which of the generation's `--workers` this one is (0-based), in
/// einhorn's variable and handover's own.
pub fn worker_index_env(index: usize) -> Vec<(String, String)> {
    [EINHORN_CHILD_INDEX, HANDOVER_WORKER_INDEX]
        .iter()
        .map(|name| (name.to_string(), index.to_string()))
        .collect()
}

/// Which fd protocols the listeners are announced in (`--announce`): all
/// three by default; a server that misreads one is spared it (uWSGI takes
/// `LISTEN_FDS` for its own sockets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announce {
    pub server_starter: bool,
    pub systemd: bool,
    pub einhorn: bool,
}

impl Announce {
    pub const ALL: Announce = Announce { server_starter: true, systemd: true, einhorn: true };
    /// The names `--announce` takes.
    pub const NAMES: [&'static str; 3] = ["server-starter", "systemd", "einhorn"];

    /// `server-starter,systemd`: a comma-separated list of `NAMES`, at least one.
    pub fn parse(text: &str) -> Result<Announce> {
        let mut announce = Announce { server_starter: false, systemd: false, einhorn: false };
        for name in text.split(',').map(str::trim) {
            match name {
                "server-starter" => announce.server_starter = true,
                "systemd" => announce.systemd = true,
                "einhorn" => announce.einhorn = true,
                _ => {
                    let known = Announce::NAMES.join(", ");
                    return Err(Error::usage(format!(
                        "invalid --announce value {text:?}: {name:?} is not one of {known}"
                    )));
                }
            }
        }
        Ok(announce)
    }
}

/// `SERVER_STARTER_PORT`, then `LISTEN_FDS` and `LISTEN_FDNAMES` when
/// systemd's protocol applies, then `EINHORN_FD_COUNT` and `EINHORN_FD_n`;
/// each only if `announce` says so.
pub fn listener_env(slots: &[Slot], announce: Announce) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if announce.server_starter {
        let pairs = slots.iter().map(|s| format!("{}={}", s.key, s.fd)).collect::<Vec<_>>().join(";");
        env.push((SERVER_STARTER_PORT.to_owned(), pairs));
    }
    if announce.systemd && speaks_systemd(slots) {
        let names = slots.iter().map(|s| s.name.unwrap_or(UNNAMED_FD)).collect::<Vec<_>>().join(":");
        env.push((LISTEN_FDS.to_owned(), slots.len().to_string()));
        env.push((LISTEN_FDNAMES.to_owned(), names));
    }
    if announce.einhorn {
        env.push((EINHORN_FD_COUNT.to_owned(), slots.len().to_string()));
        for (index, slot) in slots.iter().enumerate() {
            env.push((format!("{EINHORN_FD_PREFIX}{index}"), slot.fd.to_string()));
        }
    }
    env
}

/// Whether the slots can be announced with systemd socket activation: at
/// least one, at fds 3, 4, ... in order. The spawn module sets
/// `LISTEN_PID` exactly when this holds.
pub fn speaks_systemd(slots: &[Slot]) -> bool {
    !slots.is_empty() && (FIRST_LISTEN_FD..).zip(slots).all(|(expected, slot)| slot.fd == expected)
}

pub fn generation_env(generation: u64) -> (&'static str, String) {
    (SERVER_STARTER_GENERATION, generation.to_string())
}

/// Variables a worker must never inherit from the supervisor's own
/// environment or an envdir: handover re-defines them for the worker (or
/// deliberately leaves them out, as a protocol `--announce` does not name),
/// or they belong to the supervisor's own manager. Every protocol's
/// variables are here whether it is announced or not.
pub fn is_supervisor_private(name: &OsStr) -> bool {
    let name = name.as_bytes();
    let fixed = [
        SERVER_STARTER_PORT,
        SERVER_STARTER_GENERATION,
        EINHORN_CHILD_INDEX,
        HANDOVER_WORKER_INDEX,
        LISTEN_FDS,
        LISTEN_PID,
        LISTEN_FDNAMES,
        NOTIFY_SOCKET,
        WATCHDOG_USEC,
        WATCHDOG_PID,
        EINHORN_FD_COUNT,
        EINHORN_SOCK_PATH,
        EINHORN_SOCK_FD,
        EINHORN_MASTER_PID,
        HANDOVER_UPGRADE_STATE,
    ];
    let einhorn_fd = name
        .strip_prefix(EINHORN_FD_PREFIX.as_bytes())
        .is_some_and(|index| !index.is_empty() && index.iter().all(u8::is_ascii_digit));
    einhorn_fd || fixed.iter().any(|v| v.as_bytes() == name)
}

/// Places listeners on worker fds: a pinned listener gets its pin, the
/// others get 3, 4, 5, ... in order, skipping every pinned number.
pub fn place(pins: &[Option<i32>]) -> Result<Vec<i32>> {
    let mut pinned = HashSet::new();
    for &fd in pins.iter().flatten() {
        if fd < 0 {
            return Err(Error::usage(format!("cannot pin a listener to fd {fd}")));
        }
        if !pinned.insert(fd) {
            return Err(Error::usage(format!(
                "two listeners are pinned to fd {fd} (check the =FD suffixes)"
            )));
        }
    }
    let mut free = (FIRST_LISTEN_FD..).filter(|fd| !pinned.contains(fd));
    Ok(pins.iter().map(|pin| pin.unwrap_or_else(|| free.next().expect("fd numbers are unbounded"))).collect())
}

/// Sockets passed to this process by its own manager (systemd socket
/// activation): `LISTEN_FDS` fds from [`FIRST_LISTEN_FD`] up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    /// One entry per fd, in fd order: its `LISTEN_FDNAMES` name, `None`
    /// when it has none (`unknown`, empty, or no `LISTEN_FDNAMES`).
    pub names: Vec<Option<String>>,
}

impl Activation {
    /// (fd number, name) of every passed fd, in order.
    pub fn fds(&self) -> impl Iterator<Item = (i32, Option<&str>)> {
        (FIRST_LISTEN_FD..).zip(self.names.iter().map(Option::as_deref))
    }
}

/// Socket activation addressed to `own_pid`, from the supervisor's own
/// environment: `None` unless `LISTEN_PID` is exactly `own_pid` and
/// `LISTEN_FDS` is more than 0 (the fds are then someone else's, or none).
/// Malformed values addressed to us are an error naming the variable.
pub fn decode_activation(env: &[(OsString, OsString)], own_pid: u32) -> Result<Option<Activation>> {
    let var = |name: &str| env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let addressed = var(LISTEN_PID)
        .and_then(|pid| pid.to_str())
        .is_some_and(|pid| is_decimal(pid) && pid.parse() == Ok(own_pid));
    if !addressed {
        return Ok(None);
    }
    let count = match var(LISTEN_FDS) {
        None => return Ok(None),
        Some(value) => value
            .to_str()
            .filter(|v| is_decimal(v))
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n <= MAX_LISTEN_FDS)
            .ok_or_else(|| {
                Error::usage(format!(
                    "invalid {LISTEN_FDS} value {value:?}: expected the number of passed fds"
                ))
            })?,
    };
    if count == 0 {
        return Ok(None);
    }
    let names = match var(LISTEN_FDNAMES) {
        None => vec![None; count],
        Some(value) => {
            let names: Vec<Option<String>> = value
                .as_bytes()
                .split(|&b| b == b':')
                .map(|name| match String::from_utf8_lossy(name) {
                    name if name.is_empty() || name == UNNAMED_FD => None,
                    name => Some(name.into_owned()),
                })
                .collect();
            if names.len() != count {
                return Err(Error::usage(format!(
                    "{LISTEN_FDNAMES} has {} names for {LISTEN_FDS}={count}",
                    names.len()
                )));
            }
            names
        }
    };
    Ok(Some(Activation { names }))
}

fn is_decimal(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

const FD_PLACEHOLDER: &[u8] = b"{fd";

/// The worker command with `{fd}` (the first listener's fd in the worker)
/// and `{fd:NAME}` (the fd of the listener named NAME) replaced, anywhere
/// inside an argument (`fd://{fd}`). The program itself is left alone.
/// Nothing else changes: there are no escapes, and `{fd` not followed by
/// `}` or `:NAME}` stays as it is.
pub fn expand_placeholders(argv: &[OsString], slots: &[Slot]) -> Result<Vec<OsString>> {
    let mut expanded = argv.to_vec();
    for arg in expanded.iter_mut().skip(1) {
        if arg.as_bytes().windows(FD_PLACEHOLDER.len()).any(|w| w == FD_PLACEHOLDER) {
            *arg = OsString::from_vec(expand_arg(arg.as_bytes(), slots)?);
        }
    }
    Ok(expanded)
}

/// Startup check of the placeholders in `argv` against the listeners'
/// names, in order (`None` for an unnamed listener): the errors
/// [`expand_placeholders`] would give.
pub fn check_placeholders(argv: &[OsString], names: &[Option<&str>]) -> Result<()> {
    let slots: Vec<Slot> =
        (FIRST_LISTEN_FD..).zip(names).map(|(fd, &name)| Slot { key: "", name, fd }).collect();
    expand_placeholders(argv, &slots).map(drop)
}

fn expand_arg(mut rest: &[u8], slots: &[Slot]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(rest.len());
    while let Some(start) = (rest.windows(FD_PLACEHOLDER.len())).position(|w| w == FD_PLACEHOLDER) {
        out.extend_from_slice(&rest[..start]);
        rest = &rest[start + FD_PLACEHOLDER.len()..];
        let (slot, tail) = if let Some(tail) = rest.strip_prefix(b"}") {
            let first = slots
                .first()
                .ok_or_else(|| Error::usage("the worker command uses {fd}, but there is no listener"))?;
            (first, tail)
        } else if let Some((name, tail)) = rest
            .strip_prefix(b":")
            .and_then(|named| Some(named.split_at(named.iter().position(|&b| b == b'}')?)))
        {
            (find_named(slots, name)?, &tail[1..])
        } else {
            out.extend_from_slice(FD_PLACEHOLDER);
            continue;
        };
        out.extend_from_slice(slot.fd.to_string().as_bytes());
        rest = tail;
    }
    out.extend_from_slice(rest);
    Ok(out)
}

fn find_named<'s, 'a>(slots: &'s [Slot<'a>], name: &[u8]) -> Result<&'s Slot<'a>> {
    if let Some(slot) = slots.iter().find(|s| s.name.map(str::as_bytes) == Some(name)) {
        return Ok(slot);
    }
    // Names from LISTEN_FDNAMES or argv may hold anything: escaped, so the error stays one line.
    let name = String::from_utf8_lossy(name);
    let names: Vec<String> = slots.iter().filter_map(|s| s.name).map(printable).collect();
    let known = if names.is_empty() {
        "no listener has a name (--listen NAME=...)".to_owned()
    } else {
        format!("the names are {}", names.join(", "))
    };
    let typed = printable(&name);
    Err(Error::usage(format!(
        "the worker command uses {{fd:{typed}}}, but no listener is named {name:?}; {known}"
    )))
}

#[cfg(test)]
mod tests;
