use std::fs;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::control::call;
use crate::error::Error;
use serde_json::{Value, json};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use super::throttle::THROTTLE;
use super::*;
use crate::wire::control::Command;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
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
        let (requests, logs) = server.service(Instant::now());
        assert!(logs.is_empty(), "{logs:?}");
        got.extend(requests.into_iter().map(|(id, request)| (id, request.command)));
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
        format!("control socket {shown} is in use (is another supervisor running with --control {shown}?)")
    );
    drop(Client::connect(&path));

    let file = dir.path().join("file");
    fs::write(&file, "keep").unwrap();
    assert_eq!(
        ControlServer::bind(&file).err().unwrap().to_string(),
        format!("cannot bind control socket {}: a file that is not a socket is in the way", file.display())
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
    assert_eq!(server.conns.len(), 1);
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
    assert_eq!(
        client.reply(),
        error(
            "unknown command \"reboot\": expected status, restart, stop, upgrade, reopen, events, follow or metrics"
        )
    );
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
    pump(&mut server, |s, _| s.conns.iter().all(|c| c.io.unsent() == 0));
    assert!(reader.join().unwrap());
}

#[test]
fn closes_after_an_over_long_line_and_takes_one_at_the_limit() {
    let (_dir, path, mut server) = bound();
    let mut long = Client::connect(&path);
    long.send(&"a".repeat(MAX_LINE + 10));
    pump(&mut server, |s, _| s.conns.is_empty());
    let error = format!("request line longer than {MAX_LINE} bytes");
    assert_eq!(long.reply(), Some(json!({"ok": false, "error": error})));
    assert_eq!(long.reply(), None);

    let mut request = String::from("{\"command\":\"status\",\"pad\":\"\"}");
    request.insert_str(request.len() - 2, &"p".repeat(MAX_LINE - request.len()));
    assert_eq!(request.len(), MAX_LINE);
    let mut limit = Client::connect(&path);
    limit.send(&(request + "\n"));
    let got = requests(&mut server, 1);
    assert_eq!(got[0].1, Command::Status);
    server.reply(got[0].0, &json!({"ok": true}));
    assert_eq!(limit.reply(), Some(json!({"ok": true})), "a line at the limit is answered");
    assert_eq!(server.conns.len(), 1, "and its connection kept");
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
    assert_eq!(server.conns.len(), 1, "a reply is still owed");
    server.reply(got[1].0, &json!({"n": 1}));
    assert_eq!(server.conns.len(), 0);
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
    // A process another test forks may hold a copy of the client's socket
    // until it execs: the connection ends when the last copy closes.
    pump(&mut server, |s, _| s.conns.is_empty());
    // A reply to a request whose client is gone goes nowhere: not to the
    // next client, whose own reply comes alone.
    let mut next = Client::connect(&path);
    next.send("{\"command\":\"status\"}\n");
    let status = requests(&mut server, 1);
    server.reply(got[0].0, &json!({"ok": true, "to": "gone"}));
    assert!(next.nothing_yet(), "the reply to a client that left went to another");
    server.reply(status[0].0, &json!({"ok": true, "to": "next"}));
    assert_eq!(next.reply(), Some(json!({"ok": true, "to": "next"})));
    assert!(next.nothing_yet());
    assert_eq!(server.conns.len(), 1);
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
        pump(&mut server, |s, _| s.conns.is_empty());
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
    let shown = path.display();
    assert_eq!(
        err.message,
        format!("no reply from the supervisor on control socket {shown} after 200ms (see its log)")
    );
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

#[test]
fn repeated_log_lines_are_throttled_with_a_count() {
    let start = Instant::now();
    let mut throttle = Throttle::default();
    assert_eq!(throttle.admit(start), Some(0));
    assert_eq!(throttle.admit(start + Duration::from_secs(1)), None);
    assert_eq!(throttle.admit(start + Duration::from_secs(2)), None);
    assert_eq!(throttle.admit(start + THROTTLE), Some(2), "the two held back are counted");
    assert_eq!(throttle.admit(start + 3 * THROTTLE), Some(0));
}

/// Issue 17, failure 13: clients waiting on restarts fill their own bound,
/// not the table; one more is refused at once, and `status` and `stop`
/// still get in, even with every other slot taken by idle clients.
mod limits;
