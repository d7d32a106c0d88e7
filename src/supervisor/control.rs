//! The control socket (`--control PATH`) and its client (`handover status`,
//! `restart --wait`, `stop` with `--control PATH`).
//!
//! Protocol: a unix stream socket, one JSON object per line (UTF-8, `\n`
//! terminated, at most 64 KiB per line). The client sends requests
//!
//! ```text
//! {"command":"status"}
//! {"command":"restart"}
//! {"command":"stop"}
//! ```
//!
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
//! reply; until then it stays open, at most as long as the supervisor
//! lives. `handover stop` relies on that: it does not half-close, and
//! returns when the connection ends, i.e. when the supervisor has exited.
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
//!   memory; a full connection table (64) stops `accept`.
//! - A connection is polled only while it wants something (input, or room
//!   for output), so a hung-up peer cannot make `poll(2)` spin.
//! - A `RequestId` stays valid until replied to; a reply for a client that
//!   went away is dropped.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;
use nix::sys::socket::{getsockopt, sockopt};
use serde::Serialize;

use crate::error::io_text;
pub use crate::supervisor::lines::MAX_LINE;
use crate::supervisor::lines::{LineConn, listen_at};
use crate::wire::control::{Command, Verdict, encode, parse_request};

const MAX_CONNECTIONS: usize = 64;
/// Unanswered requests per connection before it stops being read.
const MAX_PENDING: usize = 64;

/// One request, to be answered with `ControlServer::reply`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(pub u64);

/// Who may use the control socket: root, and the supervisor's own user.
pub fn peer_allowed(peer_uid: u32, our_euid: u32) -> bool {
    peer_uid == 0 || peer_uid == our_euid
}

struct Slot {
    /// None for an error this module answered by itself.
    id: Option<RequestId>,
    reply: Option<Vec<u8>>,
}

struct Conn {
    io: LineConn,
    /// Requests in arrival order; replies leave from the front only.
    waiting: VecDeque<Slot>,
}

impl Conn {
    fn wants_input(&self) -> bool {
        self.waiting.len() < MAX_PENDING && self.io.can_read()
    }

    fn done(&self) -> bool {
        self.io.broken || (self.io.eof && self.waiting.is_empty() && !self.io.has_output())
    }

    /// Turns every buffered line into a request (a line left in the buffer
    /// could wait for input that never comes: the pending limit stops
    /// reading instead).
    fn take_requests(&mut self, next_id: &mut u64, out: &mut Vec<(RequestId, Command)>) {
        let (lines, too_long) = self.io.lines();
        for line in lines {
            match parse_request(&line) {
                Ok(command) => {
                    let id = RequestId(*next_id);
                    *next_id += 1;
                    let reply = None;
                    self.waiting.push_back(Slot { id: Some(id), reply });
                    out.push((id, command));
                }
                Err(message) => self.answer_now(&message),
            }
        }
        if too_long {
            self.answer_now(&format!("request line longer than {MAX_LINE} bytes"));
        }
    }

    fn answer_now(&mut self, error: &str) {
        let reply = Some(encode(&Verdict::refused(error)));
        self.waiting.push_back(Slot { id: None, reply });
        self.release();
    }

    /// Moves the answered requests at the front to the output.
    fn release(&mut self) {
        while let Some(bytes) = self.waiting.front_mut().and_then(|s| s.reply.take()) {
            self.waiting.pop_front();
            self.io.queue(&bytes);
        }
    }
}

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the file we bound, so `remove` spares a successor's.
    identity: (u64, u64),
    euid: u32,
    conns: Vec<Conn>,
    next_id: u64,
    /// `accept` failed (EMFILE...): the listener sits out the next poll.
    accept_paused: bool,
}

impl ControlServer {
    /// Binds at `path`: a stale socket file (nobody listening) is replaced,
    /// a live one or any other file is refused. Mode 0600, close-on-exec,
    /// non-blocking. Errors are one line naming the path.
    pub fn bind(path: &Path) -> io::Result<ControlServer> {
        let fail = |what: &str, e: io::Error| {
            let text = io_text(&e);
            io::Error::other(format!("cannot {what} control socket {}: {text}", path.display()))
        };
        clear_stale(path)?;
        let listener = listen_at(path, 0o600).map_err(|e| fail("bind", e))?;
        let meta = fs::symlink_metadata(path).map_err(|e| fail("inspect", e))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
            identity: (meta.dev(), meta.ino()),
            euid: nix::unistd::geteuid().as_raw(),
            conns: Vec::new(),
            next_id: 0,
            accept_paused: false,
        })
    }

    /// Every fd the poll loop must watch, with the events to ask for.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        if !self.accept_paused && self.conns.len() < MAX_CONNECTIONS {
            fds.push((self.listener.as_fd(), PollFlags::POLLIN));
        }
        for conn in &self.conns {
            let flags = conn.io.interest(conn.waiting.len() < MAX_PENDING);
            if !flags.is_empty() {
                fds.push((conn.io.stream().as_fd(), flags));
            }
        }
        fds
    }

    /// Accepts, reads and writes what is ready without blocking; returns
    /// the complete requests and lines to log. Call after every poll.
    pub fn service(&mut self) -> (Vec<(RequestId, Command)>, Vec<String>) {
        let (mut requests, mut logs) = (Vec::new(), Vec::new());
        self.accept_paused = false;
        self.accept(&mut logs);
        for conn in &mut self.conns {
            if conn.wants_input() {
                conn.io.fill();
                conn.take_requests(&mut self.next_id, &mut requests);
            }
            conn.io.flush();
        }
        self.conns.retain(|c| !c.done());
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
            conn.io.flush();
        }
        self.conns.retain(|c| !c.done());
    }

    /// Writes what the sockets take now: call before exiting, so a reply
    /// queued on the way out (to `stop`) is not lost.
    pub fn flush(&mut self) {
        self.conns.iter_mut().for_each(|c| c.io.flush());
        self.conns.retain(|c| !c.done());
    }

    /// Removes the socket file, unless another one has replaced it.
    pub fn remove(&self) -> io::Result<()> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => fs::remove_file(&self.path),
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn accept(&mut self, logs: &mut Vec<String>) {
        while self.conns.len() < MAX_CONNECTIONS {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    logs.push(format!("control: cannot accept: {}", io_text(&e)));
                    self.accept_paused = true;
                    break;
                }
            };
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
                (Some(refusal), _) => logs.push(format!("control: {refusal}")),
                (None, Ok(io)) => self.conns.push(Conn { io, waiting: VecDeque::new() }),
                (None, Err(e)) => logs.push(format!("control: dropped a connection: {e}")),
            }
        }
    }

    #[cfg(test)]
    fn connections(&self) -> usize {
        self.conns.len()
    }
}

/// Makes room at `path`: nothing there is fine, a stale socket is removed,
/// a live socket or any other file is refused.
fn clear_stale(path: &Path) -> io::Result<()> {
    let shown = path.display();
    let fail = |what: &str, e: io::Error| {
        io::Error::other(format!("cannot {what} control socket {shown}: {}", io_text(&e)))
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail("inspect", e)),
        Ok(meta) if !meta.file_type().is_socket() => {
            let text = "a file that is not a socket is in the way";
            return Err(io::Error::other(format!("cannot bind control socket {shown}: {text}")));
        }
        Ok(_) => {}
    }
    if crate::listen::is_live(path).map_err(|e| fail("probe", e))? {
        let hint = format!("is another supervisor running with --control {shown}?");
        return Err(io::Error::other(format!("control socket {shown} is in use ({hint})")));
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(fail("remove stale", e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Shutdown;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use crate::client::control::call;
    use crate::error::Error;
    use serde_json::{Value, json};
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::thread;

    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    use nix::poll::{PollFd, PollTimeout, poll};

    /// The watchdog: no test step may wait longer than this.
    const GUARD: Duration = Duration::from_secs(10);

    /// Services the server, polling in between, until `done` holds.
    fn pump(
        server: &mut ControlServer,
        mut done: impl FnMut(&ControlServer, &[(RequestId, Command)]) -> bool,
    ) -> Vec<(RequestId, Command)> {
        let mut got = Vec::new();
        loop {
            let (requests, logs) = server.service();
            assert!(logs.is_empty(), "{logs:?}");
            got.extend(requests);
            if done(server, &got) {
                return got;
            }
            let wanted = server.poll_fds();
            let mut fds: Vec<PollFd> = wanted.iter().map(|&(fd, ev)| PollFd::new(fd, ev)).collect();
            let ready = poll(&mut fds, PollTimeout::try_from(GUARD).unwrap()).unwrap();
            assert!(ready > 0, "no progress within {GUARD:?}");
        }
    }

    fn requests(server: &mut ControlServer, n: usize) -> Vec<(RequestId, Command)> {
        pump(server, |_, got| got.len() >= n)
    }

    struct Client {
        stream: UnixStream,
        reader: BufReader<UnixStream>,
    }

    impl Client {
        fn connect(path: &Path) -> Client {
            let stream = UnixStream::connect(path).unwrap();
            stream.set_read_timeout(Some(GUARD)).unwrap();
            let reader = BufReader::new(stream.try_clone().unwrap());
            Client { stream, reader }
        }

        fn send(&mut self, text: &str) {
            self.stream.write_all(text.as_bytes()).unwrap();
        }

        /// The next reply, None at end of stream.
        fn reply(&mut self) -> Option<Value> {
            let mut line = String::new();
            match self.reader.read_line(&mut line).unwrap() {
                0 => None,
                _ => Some(serde_json::from_str(&line).unwrap()),
            }
        }

        fn nothing_yet(&mut self) -> bool {
            self.stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let idle = matches!(self.stream.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
            self.stream.set_nonblocking(false).unwrap();
            idle
        }
    }

    fn bound() -> (tempfile::TempDir, PathBuf, ControlServer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        let server = ControlServer::bind(&path).unwrap();
        (dir, path, server)
    }

    #[test]
    fn binds_private_close_on_exec_non_blocking() {
        let (_dir, path, server) = bound();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let fd_flags = FdFlag::from_bits_truncate(fcntl(&server.listener, FcntlArg::F_GETFD).unwrap());
        assert!(fd_flags.contains(FdFlag::FD_CLOEXEC));
        let fl_flags = OFlag::from_bits_truncate(fcntl(&server.listener, FcntlArg::F_GETFL).unwrap());
        assert!(fl_flags.contains(OFlag::O_NONBLOCK));
        server.remove().unwrap();
        assert!(!path.exists());
        server.remove().unwrap();
    }

    #[test]
    fn replaces_a_stale_socket_and_refuses_a_live_one_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control");
        drop(UnixListener::bind(&path).unwrap());
        let server = ControlServer::bind(&path).expect("a stale socket is replaced");
        let shown = path.display();
        assert_eq!(
            ControlServer::bind(&path).err().unwrap().to_string(),
            format!(
                "control socket {shown} is in use (is another supervisor running with --control {shown}?)"
            )
        );
        drop(Client::connect(&path));

        let file = dir.path().join("file");
        fs::write(&file, "keep").unwrap();
        assert_eq!(
            ControlServer::bind(&file).err().unwrap().to_string(),
            format!(
                "cannot bind control socket {}: a file that is not a socket is in the way",
                file.display()
            )
        );
        assert_eq!(fs::read_to_string(&file).unwrap(), "keep");

        // remove() spares a socket file that is no longer ours.
        fs::remove_file(&path).unwrap();
        let successor = ControlServer::bind(&path).unwrap();
        server.remove().unwrap();
        assert!(path.exists());
        successor.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn answers_requests_and_keeps_the_connection_open() {
        let (_dir, path, mut server) = bound();
        let mut client = Client::connect(&path);
        client.send("{\"command\":\"status\"}\n");
        let got = requests(&mut server, 1);
        assert_eq!(got[0].1, Command::Status);
        server.reply(got[0].0, &json!({"ok": true, "serving": 1}));
        assert_eq!(client.reply(), Some(json!({"ok": true, "serving": 1})));

        client.send("{\"command\": \"stop\", \"extra\": [1]}\r\n");
        let got = requests(&mut server, 1);
        assert_eq!(got[0].1, Command::Stop);
        server.reply(got[0].0, &json!({"ok": true}));
        assert_eq!(client.reply(), Some(json!({"ok": true})));
        assert_eq!(server.connections(), 1);
    }

    #[test]
    fn replies_leave_in_request_order() {
        let (_dir, path, mut server) = bound();
        let mut client = Client::connect(&path);
        client.send("{\"command\":\"restart\"}\n{\"command\":\"status\"}\n{\"command\":\"status\"}\n");
        let got = requests(&mut server, 3);
        let ids: Vec<RequestId> = got.iter().map(|&(id, _)| id).collect();
        assert_eq!(
            got.iter().map(|&(_, c)| c).collect::<Vec<_>>(),
            [Command::Restart, Command::Status, Command::Status]
        );
        server.reply(ids[2], &json!({"n": 2}));
        server.reply(ids[1], &json!({"n": 1}));
        assert!(client.nothing_yet(), "the restart must be answered first");
        server.reply(ids[0], &json!({"n": 0}));
        server.reply(ids[0], &json!({"n": "again"}));
        for n in 0..3 {
            assert_eq!(client.reply(), Some(json!({"n": n})));
        }
        assert!(client.nothing_yet(), "a request is answered once");
    }

    #[test]
    fn answers_garbage_and_unknown_commands_with_errors() {
        let (_dir, path, mut server) = bound();
        let mut client = Client::connect(&path);
        client.send("not json\n{\"command\":\"reboot\"}\n{\"x\":1}\n\n  \n{\"command\":\"status\"}\n");
        let got = requests(&mut server, 1);
        assert_eq!(got.len(), 1);
        server.reply(got[0].0, &json!({"ok": true}));
        let error = |text: &str| Some(json!({"ok": false, "error": text}));
        assert_eq!(client.reply(), error("request is not JSON: expected ident at line 1 column 2"));
        assert_eq!(client.reply(), error("unknown command \"reboot\": expected status, restart or stop"));
        assert_eq!(client.reply(), error("request has no \"command\" string"));
        assert_eq!(client.reply(), Some(json!({"ok": true})));
    }

    #[test]
    fn a_flood_is_read_as_it_is_answered() {
        let (_dir, path, mut server) = bound();
        let mut client = Client::connect(&path);
        let n = 5000;
        client.send(&"{\"command\":\"status\"}\n".repeat(n));
        let reader = thread::spawn(move || (0..n).all(|_| client.reply() == Some(json!({"ok": true}))));
        let mut answered = 0;
        while answered < n {
            let got = requests(&mut server, 1);
            assert!(got.len() < 4 * 1024, "read {} requests at once", got.len());
            got.iter().for_each(|&(id, _)| server.reply(id, &json!({"ok": true})));
            answered += got.len();
        }
        assert_eq!(answered, n);
        pump(&mut server, |s, _| s.conns.iter().all(|c| !c.io.has_output()));
        assert!(reader.join().unwrap());
    }

    #[test]
    fn closes_after_an_over_long_line_and_takes_one_at_the_limit() {
        let (_dir, path, mut server) = bound();
        let mut long = Client::connect(&path);
        long.send(&"a".repeat(MAX_LINE + 10));
        pump(&mut server, |s, _| s.connections() == 0);
        let error = format!("request line longer than {MAX_LINE} bytes");
        assert_eq!(long.reply(), Some(json!({"ok": false, "error": error})));
        assert_eq!(long.reply(), None);

        let mut request = String::from("{\"command\":\"status\",\"pad\":\"\"}");
        request.insert_str(request.len() - 2, &"p".repeat(MAX_LINE - request.len()));
        assert_eq!(request.len(), MAX_LINE);
        let mut limit = Client::connect(&path);
        limit.send(&(request + "\n"));
        assert_eq!(requests(&mut server, 1)[0].1, Command::Status);
    }

    #[test]
    fn closes_after_the_last_reply_once_the_client_half_closes() {
        let (_dir, path, mut server) = bound();
        let mut client = Client::connect(&path);
        // The last line needs no newline before the half-close.
        client.send("{\"command\":\"restart\"}\n{\"command\":\"status\"}");
        client.stream.shutdown(Shutdown::Write).unwrap();
        let got = requests(&mut server, 2);
        assert_eq!(server.poll_fds().len(), 1, "an idle half-closed connection is not polled");
        server.reply(got[0].0, &json!({"n": 0}));
        assert_eq!(server.connections(), 1, "a reply is still owed");
        server.reply(got[1].0, &json!({"n": 1}));
        assert_eq!(server.connections(), 0);
        assert_eq!(client.reply(), Some(json!({"n": 0})));
        assert_eq!(client.reply(), Some(json!({"n": 1})));
        assert_eq!(client.reply(), None);
    }

    #[test]
    fn a_client_that_leaves_before_its_reply_is_forgotten() {
        let (_dir, path, mut server) = bound();
        let mut client = Client::connect(&path);
        client.send("{\"command\":\"restart\"}\n");
        let got = requests(&mut server, 1);
        drop(client);
        server.reply(got[0].0, &json!({"ok": true}));
        assert_eq!(server.connections(), 0);
        server.reply(got[0].0, &json!({"ok": true}));
    }

    #[test]
    fn only_root_and_our_own_user_may_connect() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(peer_allowed(0, 0));
        assert!(!peer_allowed(1001, 1000));
        assert!(!peer_allowed(1000, 0));
        assert!(!peer_allowed(65534, 1000));
    }

    #[test]
    fn call_round_trip() {
        let (_dir, path, mut server) = bound();
        let supervisor = thread::spawn(move || {
            let got = requests(&mut server, 1);
            assert_eq!(got[0].1, Command::Restart);
            server.reply(got[0].0, &json!({"ok": true, "generation": 2}));
            // The client half-closed: the connection ends after the reply.
            pump(&mut server, |s, _| s.connections() == 0);
        });
        let reply: Value = call(&path, Command::Restart, Some(GUARD)).unwrap();
        assert_eq!(reply, json!({"ok": true, "generation": 2}));
        supervisor.join().unwrap();
    }

    #[test]
    fn call_errors_are_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let err = call::<Value>(&missing, Command::Status, Some(GUARD)).unwrap_err();
        let shown = missing.display();
        assert_eq!(
            err,
            Error {
                message: format!(
                    "cannot connect to control socket {shown}: No such file or directory (is the supervisor running with --control {shown}?)"
                ),
                code: 1
            }
        );
        // Bound but never serviced: the request waits in the backlog.
        let (_dir, path, _server) = bound();
        let err = call::<Value>(&path, Command::Status, Some(Duration::from_millis(200))).unwrap_err();
        assert_eq!(err.message, "no reply from the supervisor after 200ms");
    }

    #[test]
    fn stop_returns_once_the_supervisor_is_gone() {
        let (_dir, path, mut server) = bound();
        let client_path = path.clone();
        let client = thread::spawn(move || call::<Value>(&client_path, Command::Stop, Some(GUARD)));
        let got = requests(&mut server, 1);
        assert_eq!(got[0].1, Command::Stop);
        server.reply(got[0].0, &json!({"ok": true}));
        assert!(!client.is_finished(), "stop returned before the supervisor exited");
        drop(server);
        assert_eq!(client.join().unwrap(), Ok(json!({"ok": true})));

        // A refused stop returns at once.
        let server = ControlServer::bind(&path).unwrap();
        let mut server = server;
        let client_path = path.clone();
        let client = thread::spawn(move || call::<Value>(&client_path, Command::Stop, Some(GUARD)));
        let got = requests(&mut server, 1);
        server.reply(got[0].0, &json!({"ok": false, "error": "already stopping"}));
        assert_eq!(client.join().unwrap(), Err(Error::runtime("already stopping")));
    }
}
