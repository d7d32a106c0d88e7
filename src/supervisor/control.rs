//! The control socket (`--control PATH`), the supervisor's side; the
//! client (`handover status`, `restart --wait`, `stop` with `--control
//! PATH`) is `client/control.rs`.
//!
//! Protocol: a unix stream socket, one JSON object per line (UTF-8, `\n`
//! terminated, at most 64 KiB per line). The client sends requests
//!
//! ```text
//! {"command":"status"}
//! {"command":"restart"}
//! {"command":"stop"}
//! {"command":"upgrade","binary":"/usr/bin/handover","wait":true}
//! ```
//!
//! (and `reopen`, `events`, `follow`, `metrics`: `wire::control`)
//! and the server answers each with exactly one JSON object on one line, in
//! the order of the requests, whatever order their outcomes are known in.
//! Other fields of a request are ignored; blank lines are skipped; a last
//! line without `\n` before the client's half-close counts. A `status`
//! reply comes at once, a `restart` reply when the restart has succeeded
//! or failed, a `stop` reply when the stop has begun. A request that is not
//! JSON, has no `"command"` string or names an unknown command is answered
//! `{"ok":false,"error":"..."}`; a line over 64 KiB is answered so and the
//! connection is closed. Every other reply is the supervisor's (this module
//! does not know its shape; by convention it carries `"ok"`). A connection
//! carries any number of requests. Once the client has half-closed
//! (`shutdown(SHUT_WR)`), the server closes the connection after the last
//! reply. Until then it stays open while it waits for a reply still to be
//! made, for the supervisor's exit (after a `stop`) or follows the events;
//! one owed nothing that has neither sent nor taken a byte for
//! `IDLE_TIMEOUT` (5 s) is closed. `handover stop` relies on that: it does
//! not half-close, and returns when the connection ends, i.e. when the
//! supervisor has exited.
//!
//! Invariants:
//! - The socket file is mode 0600 before `listen(2)`, so nobody ever
//!   connects through a wider mode; each peer is still checked with
//!   `SO_PEERCRED` (root or our effective uid) and closed at once otherwise,
//!   with one log line. A stale socket file is replaced; a live one, or any
//!   other file, is refused. `remove` deletes the file only while it is
//!   still the one we bound.
//! - Nothing blocks: sockets are non-blocking, replies go to a per-connection
//!   buffer written as the peer reads (with `MSG_NOSIGNAL`). A client that
//!   stops reading, or floods requests, stops being read once it has 64
//!   unanswered requests or 1 MiB of unsent output, instead of costing
//!   memory.
//! - `status` and `stop` are answered at once whoever else waits: at most
//!   32 connections wait (for a `restart` or `upgrade` reply, or for the
//!   exit after a `stop`; the first `stop` goes through the bound), and a
//!   request that would make one more wait is refused at once. The table
//!   holds twice that (64), so it always has connections owed nothing to
//!   close for a newcomer (the one idle the longest); only a table full of
//!   connections that wait would stop `accept`, and there is none.
//! - A connection is polled only while it wants something (input, or room
//!   for output), so a hung-up peer cannot make `poll(2)` spin.
//! - A `RequestId` stays valid until replied to; a reply for a client that
//!   went away is dropped.

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use nix::sys::socket::{getsockopt, sockopt};
use serde::Serialize;

use crate::error::{Error, Result, io_text};
use crate::state::OwnedPath;
use crate::state::SafeDir;
use crate::supervisor::line_conn::{LineConn, accept_up_to, listen_at, poll_set};
pub use crate::supervisor::line_conn::{MAX_LINE, MAX_OUTPUT};
use crate::wire::control::{Request, encode, peer_allowed};
use conn::{Answer, Conn};
use crowd::{Crowd, MAX_WAITING};
use throttle::Throttle;

/// The connection table: twice what may wait (`MAX_WAITING`), so that
/// there are always connections to close for a newcomer.
const MAX_CONNECTIONS: usize = 2 * MAX_WAITING;
/// Unanswered requests per connection before it stops being read.
const MAX_PENDING: usize = 64;
/// Replies a client has not taken, in bytes, beyond which its next
/// requests wait: a client that does not read costs the loop one reply's
/// work, not one per request it piped (60 of them asking 2000 `events`
/// each held `status` up for 1.4 s).
const REPLY_ROOM: usize = 64 * 1024;
/// A connection that owes and is owed nothing, silent this long, is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// One request, to be answered with `ControlServer::reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

pub struct ControlServer {
    listener: UnixListener,
    /// The file we bound: `remove` spares a successor's.
    file: OwnedPath,
    euid: u32,
    conns: Vec<Conn>,
    next_id: u64,
    /// `accept` failed (EMFILE...): the listener sits out the next poll.
    accept_paused: bool,
    refused: Throttle,
    dropped: Throttle,
    /// Lines to hand out at the next `service`.
    notes: Vec<String>,
}

impl ControlServer {
    /// Binds at `path`: a stale socket file (nobody listening) is replaced,
    /// a live one or any other file is refused. Mode 0600, close-on-exec,
    /// non-blocking. Errors are one line naming the path.
    pub fn bind(path: &Path) -> Result<ControlServer> {
        clear_stale(path)?;
        let listener = listen_at(path, 0o600).map_err(|e| fail(path, "bind", e))?;
        let file = OwnedPath::record(path).map_err(|e| fail(path, "inspect", e))?;
        Ok(ControlServer::new(listener, file, Vec::new(), 0))
    }

    fn new(listener: UnixListener, file: OwnedPath, conns: Vec<Conn>, next_id: u64) -> ControlServer {
        let (euid, throttle) = (nix::unistd::geteuid().as_raw(), Throttle::default);
        let (refused, dropped, notes) = (throttle(), throttle(), Vec::new());
        ControlServer { listener, file, euid, conns, next_id, accept_paused: false, refused, dropped, notes }
    }

    /// Every fd the poll loop must watch, with the events to ask for.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let room = self.conns.len() < MAX_CONNECTIONS || self.conns.iter().any(Conn::idle);
        let listener = (!self.accept_paused && room).then_some(&self.listener);
        poll_set(listener, self.conns.iter().map(|c| (&c.io, c.waiting.len() < MAX_PENDING)))
    }

    /// When the next idle connection is to be closed, or `now` when
    /// requests wait in a buffer (`service` takes them in turns).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if self.conns.iter().any(Conn::has_work) {
            return Some(now);
        }
        self.conns.iter().filter_map(Conn::idle_deadline).min()
    }

    /// Accepts, reads and writes what is ready without blocking, and closes
    /// connections idle since before `now - IDLE_TIMEOUT`; returns the
    /// complete requests and lines to log. Call after every poll.
    pub fn service(&mut self, now: Instant) -> (Vec<(RequestId, Request)>, Vec<String>) {
        let (mut requests, mut logs) = (Vec::new(), std::mem::take(&mut self.notes));
        self.accept_paused = false;
        self.accept(now, &mut logs);
        let mut crowd = Crowd {
            waiting: self.conns.iter().filter(|c| c.waits()).count(),
            stopping: self.conns.iter().any(|c| c.stopping),
        };
        for conn in &mut self.conns {
            // (`fill` reads only while the connection can take more.)
            if conn.waiting.len() < MAX_PENDING && conn.io.fill() {
                conn.heard_at = now;
            }
            if conn.follow.is_some() {
                // A follower says nothing more: its input is read only to see it go.
                drop(conn.io.lines(usize::MAX));
            } else if conn.waiting.len() < MAX_PENDING && conn.io.unsent() < REPLY_ROOM {
                conn.take_requests(&mut self.next_id, &mut crowd, &mut requests);
            }
            follow::catch_up(conn, now);
        }
        self.conns.retain(|c| !c.done() && c.idle_deadline().is_none_or(|at| now < at));
        (requests, logs)
    }

    /// Queues the reply to a request and writes what can go now (dropped
    /// if its client went away). Replies leave in request order per
    /// connection.
    pub fn reply(&mut self, id: RequestId, reply: &impl Serialize) {
        let found = self.conns.iter_mut().find_map(|conn| {
            let slot = conn.waiting.iter_mut().find(|s| s.id == Some(id))?;
            slot.reply = Some(encode(reply));
            Some(conn)
        });
        if let Some(conn) = found {
            conn.release();
            follow::catch_up(conn, Instant::now());
            if conn.io.unsent() > MAX_OUTPUT {
                // Its replies pile up: it does not read them. Dropping it
                // frees them; its requests were taken, so nothing hangs.
                conn.io.broken = true;
                let line = "control: closed a connection that does not read its replies".to_string();
                self.dropped.note(Instant::now(), line, &mut self.notes);
            }
        }
        self.conns.retain(|c| !c.done());
    }

    /// Writes what the sockets take now: call before exiting, so a reply
    /// queued on the way out (to `stop`) is not lost.
    pub fn flush(&mut self) {
        for conn in &mut self.conns {
            conn.io.flush();
        }
        self.conns.retain(|c| !c.done());
    }

    /// Removes the socket file, unless another one has replaced it.
    pub fn remove(&self) -> io::Result<()> {
        self.file.remove()
    }

    /// Takes waiting connections, at most `MAX_CONNECTIONS` per call, none
    /// while the table is full of connections that wait (any other one
    /// can make room, and each newcomer is one that can).
    fn accept(&mut self, now: Instant, logs: &mut Vec<String>) {
        let room = self.conns.len() < MAX_CONNECTIONS || self.conns.iter().any(Conn::idle);
        let (streams, failed) = accept_up_to(&self.listener, if room { MAX_CONNECTIONS } else { 0 });
        for stream in streams {
            let refusal = match getsockopt(&stream, sockopt::PeerCredentials) {
                Ok(cred) if peer_allowed(cred.uid(), self.euid) => None,
                Ok(cred) => Some(format!(
                    "refused connection from uid {} (pid {}): not uid 0 or ours",
                    cred.uid(),
                    cred.pid()
                )),
                Err(e) => Some(format!("refused a connection: no credentials: {}", e.desc())),
            };
            match (refusal, LineConn::new(stream)) {
                (Some(refusal), _) => self.refused.note(now, format!("control: {refusal}"), logs),
                (None, Ok(io)) => {
                    self.make_room();
                    let waiting = VecDeque::new();
                    self.conns.push(Conn { io, waiting, heard_at: now, stopping: false, follow: None })
                }
                (None, Err(e)) => logs.push(format!("control: dropped a connection: {e}")),
            }
        }
        if let Some(e) = failed {
            logs.push(format!("control: cannot accept: {}", io_text(&e)));
            self.accept_paused = true;
        }
    }

    /// With a full table, closes the connection idle the longest (one that
    /// is owed nothing, or only replies it does not read), so a new client
    /// always gets in (`accept` takes one only when one is idle).
    fn make_room(&mut self) {
        if self.conns.len() < MAX_CONNECTIONS {
            return;
        }
        let oldest = (self.conns.iter().enumerate())
            .filter(|(_, c)| c.idle())
            .min_by_key(|(_, c)| c.heard_at)
            .map(|(at, _)| at);
        if let Some(at) = oldest {
            self.conns.remove(at);
        }
    }
}

fn fail(path: &Path, what: &str, e: io::Error) -> Error {
    Error::runtime(format!("cannot {what} control socket {}: {}", path.display(), io_text(&e)))
}

/// Makes room at `path`: nothing there is fine, a stale socket is removed,
/// a live socket or any other file is refused.
fn clear_stale(path: &Path) -> Result<()> {
    let shown = path.display();
    let (dir, name) = SafeDir::parent_of(path).map_err(|e| fail(path, "bind", e))?;
    match dir.stat(&name) {
        Ok(None) => return Ok(()),
        Err(e) => return Err(fail(path, "inspect", e)),
        Ok(Some(st)) if st.st_mode & libc::S_IFMT != libc::S_IFSOCK => {
            let text = "a file that is not a socket is in the way";
            return Err(Error::runtime(format!("cannot bind control socket {shown}: {text}")));
        }
        Ok(_) => {}
    }
    if crate::listen::is_live(path).map_err(|e| fail(path, "probe", e))? {
        let hint = format!("is another supervisor running with --control {shown}?");
        return Err(Error::runtime(format!("control socket {shown} is in use ({hint})")));
    }
    dir.remove(&name).map_err(|e| fail(path, "remove stale", e))
}

pub mod carry;
mod conn;
mod crowd;
mod follow;
#[cfg(test)]
mod tests;
mod throttle;
