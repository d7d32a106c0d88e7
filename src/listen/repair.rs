//! Listeners are the supervisor's, not the workers': a worker holds the
//! same open file description, so what it does to its fd (shutdown,
//! `O_NONBLOCK`, `listen(fd, 1)`, a socket filter) would outlive it and
//! hit every later generation. Before each spawn [`check_all`] looks at
//! every listener and puts it back as the supervisor made it.
//!
//! Invariants:
//! - A stream listener bound here gets `listen()` again with its
//!   configured backlog before every spawn (harmless when it listens,
//!   restores a shrunk backlog, re-listens after `shutdown(SHUT_RD)`); an
//!   inherited one only when it stopped listening, so the backlog its
//!   manager chose stays unless it had to be restored.
//! - `O_NONBLOCK` is put back to what this process first saw (clear for
//!   the sockets it binds), but only when no worker runs: a server that
//!   set it (libuv, Go, any event loop) accepts until `EAGAIN`, so clearing
//!   it under a serving generation would freeze that generation in
//!   `accept(2)` during the overlap. While one runs, the flag is left and
//!   said once.
//! - A classic filter (`SO_ATTACH_FILTER`) is detached; a locked one cannot
//!   be, nor can a unix listener shut down for reading listen again: such a
//!   listener bound here is replaced by a new socket on the same address
//!   (the old one is shut down first so the address is free; TCP and unix
//!   only), otherwise it is marked broken ([`Watch::broken`]) and stays so.
//! - What a worker changed is logged once per listener per change (the
//!   same finding at the next spawn is repaired silently).
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::time::Instant;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Address, DEFAULT_BACKLOG, Listener, bind};
use crate::error::{Error, Result, io_text};
use crate::sys::sockfilter;

/// What the supervisor remembers of one listener between spawns.
#[derive(Debug, Clone, Default)]
pub struct Watch {
    /// `O_NONBLOCK` as the socket should be: `None` until first seen.
    nonblocking: Option<bool>,
    /// The findings of the last check, so the same change is logged once.
    reported: Vec<String>,
    /// The generation checked last: its later spawns (more workers,
    /// respawns) find the listener as its own workers left it.
    checked: Option<u64>,
    /// `O_NONBLOCK` as the running generations had it, when the check for
    /// the generation being started changed it: put back if it never runs.
    nonblocking_before: Option<(u64, bool)>,
    /// Why this listener no longer accepts anything, once it could be
    /// neither repaired nor replaced.
    pub broken: Option<String>,
}

impl Watch {
    /// A socket this process made: blocking.
    pub fn bound() -> Self {
        Watch { nonblocking: Some(false), ..Watch::default() }
    }
}

/// Checks and repairs every listener before the first spawn of
/// `generation`; later spawns of the same generation (more workers,
/// respawns) leave them as its own workers made them, unless `alone` (no
/// worker of any generation runs: nobody relies on the listener as it
/// is). Returns the lines to log. `backlog` is `--backlog` (0:
/// [`DEFAULT_BACKLOG`]).
pub fn check_all(listeners: &mut [Listener], backlog: i32, generation: u64, alone: bool) -> Vec<String> {
    let backlog = if backlog == 0 { DEFAULT_BACKLOG } else { backlog };
    let mut lines = Vec::new();
    for listener in listeners {
        if listener.repair.checked == Some(generation) && !alone {
            continue;
        }
        listener.repair.nonblocking_before = None;
        check(listener, listener.spec.backlog.unwrap_or(backlog), generation, alone, &mut lines);
        listener.repair.checked = Some(generation);
    }
    lines
}

/// `generation` could not be started (its program did not run): the
/// workers still serving get `O_NONBLOCK` back as they had it.
pub fn not_started(listeners: &[Listener], generation: u64) {
    for l in listeners {
        if let Some((g, before)) = l.repair.nonblocking_before
            && g == generation
        {
            let _ = l.socket.set_nonblocking(before);
        }
    }
}

/// Names of the listeners that are broken, with why.
pub fn broken(listeners: &[Listener]) -> Vec<String> {
    (listeners.iter())
        .filter_map(|l| l.repair.broken.as_ref().map(|why| format!("listener {} is broken: {why}", l.local)))
        .collect()
}

fn check(l: &mut Listener, backlog: i32, generation: u64, alone: bool, lines: &mut Vec<String>) {
    if let Some(why) = &l.repair.broken {
        lines.push(format!(
            "listener {} is broken ({why}): connections to it fail in this generation too; \
             restart handover to bind it again",
            l.local
        ));
        return;
    }
    let stream = !matches!(l.spec.address, Address::Inet { udp: true, .. });
    let unix = matches!(l.spec.address, Address::Unix { .. });
    let mut found: Vec<String> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let mut replace: Option<String> = None;

    if stream {
        let accepting = l.socket.is_listener().unwrap_or(false);
        if !accepting {
            found.push("it stopped listening (shutdown)".to_owned());
        }
        if unix && read_shut(l) {
            found.push("it was shut down for reading".to_owned());
            replace = Some("shut down for reading".to_owned());
        }
        if !accepting && let Err(e) = rebind(l) {
            replace = Some(format!("cannot bind its address again: {}", io_text(&e)));
        }
        if replace.is_none() && (!accepting || l.inherited_fd.is_none()) {
            match l.socket.listen(backlog) {
                Ok(()) if !accepting => done.push(format!("listening again (backlog {backlog})")),
                Ok(()) => {}
                Err(e) => replace = Some(format!("cannot listen again: {}", io_text(&e))),
            }
        }
    }

    let flags = fcntl(&l.socket, FcntlArg::F_GETFL).map_err(io::Error::from);
    match flags.map(|flags| OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK)) {
        Ok(now) => {
            let want = *l.repair.nonblocking.get_or_insert(now);
            if now != want && !alone {
                found.push(format!(
                    "O_NONBLOCK was {} by a worker (left so while workers use it: it is \
                     put back once none runs)",
                    if now { "set" } else { "cleared" }
                ));
            } else if now != want {
                let (set, cleared) = if now { ("set", "cleared") } else { ("cleared", "set") };
                found.push(format!("O_NONBLOCK was {set}"));
                match l.socket.set_nonblocking(want) {
                    Ok(()) => {
                        done.push(format!("O_NONBLOCK {cleared}"));
                        l.repair.nonblocking_before = l.repair.checked.map(|_| (generation, now));
                    }
                    Err(e) => lines.push(format!("cannot reset O_NONBLOCK on {}: {}", l.local, io_text(&e))),
                }
            }
        }
        Err(e) => lines.push(format!("cannot read the flags of {}: {}", l.local, io_text(&e))),
    }

    match sockfilter::filter_len(l.socket.as_fd()) {
        Ok(0) => {}
        Ok(n) => {
            found.push(format!("a socket filter was attached ({n} BPF instructions)"));
            let locked = sockfilter::filter_locked(l.socket.as_fd()).unwrap_or(true);
            match sockfilter::detach_filter(l.socket.as_fd()) {
                Ok(()) => done.push("filter detached".to_owned()),
                Err(e) if locked => {
                    replace.get_or_insert(format!("its filter is locked ({})", io_text(&e)));
                }
                Err(e) => {
                    replace.get_or_insert(format!("cannot detach its filter: {}", io_text(&e)));
                }
            }
        }
        Err(e) => lines.push(format!("cannot read the socket filter of {}: {}", l.local, io_text(&e))),
    }

    if let Some(why) = replace {
        let old = l.local.clone();
        let started = Instant::now();
        match replace_socket(l, backlog) {
            Ok(()) => done.push(format!(
                "{why}: replaced by a new socket on the same address (not listening for {} µs)",
                started.elapsed().as_micros()
            )),
            Err(e) => {
                lines.push(format!(
                    "listener {old} is broken ({why}) and cannot be replaced: {e}; \
                     connections to it fail until handover is restarted"
                ));
                l.repair.broken = Some(format!("{why}; {e}"));
                return;
            }
        }
    }

    if found.iter().any(|f| !l.repair.reported.contains(f)) {
        let repaired =
            if done.is_empty() { String::new() } else { format!("; repaired: {}", done.join(", ")) };
        lines.push(format!("a worker changed listener {}: {}{repaired}", l.local, found.join(", ")));
    }
    l.repair.reported = found;
}

/// A unix listener shut down for reading refuses connections while still
/// listening; poll reports it as POLLRDHUP.
fn read_shut(l: &Listener) -> bool {
    // nix names no POLLRDHUP (and its revents() drops unknown bits): only
    // POLLRDHUP is asked for, and a listener shows POLLERR/POLLHUP only
    // when shut down too, so any event at all means shut down.
    let mut fds = [PollFd::new(l.socket.as_fd(), PollFlags::from_bits_retain(libc::POLLRDHUP))];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
}

/// A TCP socket bound to port 0 loses its port when shut down (the kernel
/// took no lock on it), and `listen()` alone would pick another: bound
/// again to the address it had, the same socket (and every worker's fd)
/// listens where it did.
fn rebind(l: &Listener) -> io::Result<()> {
    let Address::Inet { udp: false, .. } = l.spec.address else { return Ok(()) };
    let Some(want) = l.local.strip_prefix("tcp ").and_then(|a| a.parse::<SocketAddr>().ok()) else {
        return Ok(());
    };
    // getsockname still shows the old port: bind regardless; EINVAL means
    // the socket kept its port.
    match l.socket.bind(&want.into()) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// Binds a new socket where `l` is (its real port for port 0), after
/// shutting the old one down so the address is free; the old fd is
/// closed here, the workers that hold it see it stop listening.
fn replace_socket(l: &mut Listener, backlog: i32) -> Result<()> {
    if l.inherited_fd.is_some() {
        return Err(Error::runtime("it came from socket activation and only its manager can bind it again"));
    }
    let mut spec = l.spec.clone();
    match &mut spec.address {
        Address::Inet { udp: true, .. } => {
            return Err(Error::runtime("a UDP socket cannot be replaced while old workers hold its address"));
        }
        Address::Inet { port, .. } => {
            let bound = l.socket.local_addr().ok().and_then(|a| a.as_socket());
            *port = bound.map_or(*port, |a| a.port());
        }
        Address::Unix { .. } => {}
    }
    let _ = l.socket.shutdown(Shutdown::Read);
    let new = bind(&spec, backlog)?;
    // A socket bound anew: its own file and a fresh watch, under the old names.
    *l = Listener { spec: l.spec.clone(), key: l.key.clone(), local: l.local.clone(), ..new };
    Ok(())
}
