//! einhorn's readiness dialect: the socket workers find in
//! `EINHORN_SOCK_PATH`, where a `worker:ack` means what `READY=1` means.
//!
//! What einhorn-aware workers send: one message per line on a unix stream
//! connection, then they close it; none of them waits for an answer.
//!
//! | client | bytes |
//! |---|---|
//! | Ruby `Einhorn::Worker.ack!` (einhorn's own) | YAML with `%` and `\n` escaped: `---%0Acommand: worker:ack%0Apid: 1234%0A` + `\n` (newer versions add `keep-open: ...`) |
//! | early einhorn (JSON transport; acks marked response-less) | `{"command":"worker:ack","pid":1234}` + `\n` |
//! | Node `einhorn` | `encodeURI("---\ncommand: worker:ack\npid: 1234")` + `\n` |
//! | goji `bind`, Python (baseplate) | `{"command": "worker:ack", "pid": 1234}` + `\n` |
//! | go-einhorn | `{"comand":"worker:ack","Pid":1234}` + `\n` + `\n` (sic: its struct tag misspells `command`; einhorn itself never counted these acks) |
//!
//! einhorn answers nothing to an ack and closes the connection; it answers
//! any other command with a `{"message": ...}` line in the same encoding.
//! Every client above acks only when `EINHORN_MASTER_PID` is its parent's
//! pid (goji ignores the `EINHORN_FD_*` sockets otherwise), so the
//! supervisor sets it along with `EINHORN_SOCK_PATH`.
//!
//! What this module does:
//! - Decodes JSON and percent-escaped YAML flat mappings (every row
//!   above), and takes `comand` for `command` and `Pid` for `pid`.
//! - An ack counts for the pid the kernel reports for the peer
//!   (`SO_PEERCRED`, taken when it connected), not the pid it claims:
//!   anything that can reach the socket can claim any pid, the kernel's is
//!   the process that connected (the event loop maps it to its process
//!   group, as for NOTIFY_SOCKET senders, so a worker's child may ack for
//!   it). The claimed pid is used only when the kernel has none (a peer in
//!   another pid namespace reads as 0).
//! - No reply to an ack, and the connection stays open until the worker
//!   closes it: closing first would fail go-einhorn's second write with
//!   EPIPE. Any other command, or a line that is no message, is answered
//!   with one einhorn-style `{"message":...}` line saying so; the
//!   connection stays usable. A line over 64 KiB closes it.
//! - `EINHORN_SOCK_FD` (einhorn `-g`) is not offered: workers fall back to
//!   the path, which every client above reads first or only.
//!
//! Invariants: the socket is mode 0600, in a private directory the caller
//! owns; its file is removed on drop. Non-blocking throughout; at most 256
//! connections, each polled only while it wants something.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;
use nix::sys::socket::{getsockopt, sockopt};
use serde_json::{Value, json};

use crate::supervisor::lines::{LineConn, listen_at};

pub const ACK: &str = "worker:ack";
const MAX_CONNECTIONS: usize = 256;

/// One decoded einhorn message: the fields this module reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub command: Option<String>,
    pub pid: Option<i32>,
}

/// A message out of one line, in any dialect above; None if it is none.
pub fn decode(line: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(line).ok()?.trim();
    if let Some(message) = from_json(text) {
        return Some(message);
    }
    let unescaped = percent_decode(text)?;
    from_json(&unescaped).or_else(|| from_yaml(&unescaped))
}

fn from_json(text: &str) -> Option<Message> {
    let Value::Object(map) = serde_json::from_str(text).ok()? else {
        return None;
    };
    let field = |names: [&str; 2]| names.iter().find_map(|n| map.get(*n));
    let command = field(["command", "comand"]).and_then(Value::as_str);
    let pid = match field(["pid", "Pid"]) {
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Some(Message { command: command.map(str::to_owned), pid: pid.filter(|&p| p > 0) })
}

/// A flat YAML mapping, as Ruby's `YAML.dump` writes a hash of scalars.
fn from_yaml(text: &str) -> Option<Message> {
    let mut message = Message { command: None, pid: None };
    let mut fields = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line == "---" || line == "..." || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(':')?;
        let value = unquote(value.trim());
        match key.trim() {
            "command" | "comand" => message.command = Some(value.to_owned()),
            "pid" | "Pid" => message.pid = value.parse().ok().filter(|&p: &i32| p > 0),
            _ => {}
        }
        fields += 1;
    }
    (fields > 0).then_some(message)
}

fn unquote(value: &str) -> &str {
    let quoted = |q: char| value.len() >= 2 && value.starts_with(q) && value.ends_with(q);
    if quoted('\'') || quoted('"') { &value[1..value.len() - 1] } else { value }
}

/// `%XX` escapes undone (einhorn escapes `%` and `\n`, encodeURI more);
/// a `%` not followed by two hex digits stays as it is.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if bytes[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whose readiness an ack reports: the kernel's peer pid, else the claim.
pub fn ack_pid(peer: Option<i32>, claimed: Option<i32>) -> Option<i32> {
    peer.filter(|&p| p > 0).or(claimed.filter(|&p| p > 0))
}

/// One answer line in einhorn's transport: JSON (which einhorn's YAML
/// reader takes too) with `%` and `\n` escaped.
pub fn encode_reply(message: &str) -> Vec<u8> {
    let json = json!({ "message": message }).to_string();
    let mut line = json.replace('%', "%25").replace('\n', "%0A").into_bytes();
    line.push(b'\n');
    line
}

fn answer(message: Option<Message>) -> Option<String> {
    match message {
        Some(Message { command: Some(command), .. }) if command == ACK => None,
        Some(Message { command: Some(command), .. }) => {
            Some(format!("handover does not implement the einhorn command {command:?}; it only takes {ACK}"))
        }
        Some(Message { command: None, .. }) => {
            Some("no \"command\" in the message; handover only takes worker:ack".to_string())
        }
        None => Some("could not parse the message; handover only takes worker:ack".to_string()),
    }
}

struct Conn {
    io: LineConn,
    /// The connecting process, as the kernel saw it.
    peer_pid: Option<i32>,
}

pub struct EinhornSocket {
    listener: UnixListener,
    path: PathBuf,
    conns: Vec<Conn>,
    /// `accept` failed (EMFILE...): the listener is left out of the next poll.
    accept_paused: bool,
}

impl EinhornSocket {
    /// Binds at `path`, which should be in a private directory; mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<EinhornSocket> {
        Ok(EinhornSocket {
            listener: listen_at(path, 0o600)?,
            path: path.to_owned(),
            conns: Vec::new(),
            accept_paused: false,
        })
    }

    /// The value of the workers' `EINHORN_SOCK_PATH`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every fd the poll loop must watch, with the events to ask for.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let mut fds = Vec::with_capacity(self.conns.len() + 1);
        if !self.accept_paused && self.conns.len() < MAX_CONNECTIONS {
            fds.push((self.listener.as_fd(), PollFlags::POLLIN));
        }
        for conn in &self.conns {
            let flags = conn.io.interest(true);
            if !flags.is_empty() {
                fds.push((conn.io.stream().as_fd(), flags));
            }
        }
        fds
    }

    /// Accepts and reads what is ready without blocking; returns the pids
    /// that acked (see the module header for which pid). Call after every poll.
    pub fn service(&mut self) -> Vec<i32> {
        let mut acks = Vec::new();
        self.accept_paused = false;
        self.accept();
        for conn in &mut self.conns {
            conn.io.fill();
            // A line over 64 KiB ends the connection (`lines` stops reading).
            for line in conn.io.lines().0 {
                let message = decode(&line);
                match answer(message.clone()) {
                    Some(text) => conn.io.queue(&encode_reply(&text)),
                    None => acks.extend(ack_pid(conn.peer_pid, message.and_then(|m| m.pid))),
                }
            }
            conn.io.flush();
        }
        // Closed by the worker (or for a long line): once the answers are out.
        self.conns.retain(|c| !c.io.broken && (!c.io.eof || c.io.has_output()));
        acks
    }

    fn accept(&mut self) {
        while self.conns.len() < MAX_CONNECTIONS {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => {
                    continue;
                }
                Err(_) => {
                    self.accept_paused = true;
                    break;
                }
            };
            let peer_pid = getsockopt(&stream, sockopt::PeerCredentials).ok().map(|cred| cred.pid());
            if let Ok(io) = LineConn::new(stream) {
                self.conns.push(Conn { io, peer_pid });
            }
        }
    }

    #[cfg(test)]
    fn connections(&self) -> usize {
        self.conns.len()
    }
}

impl Drop for EinhornSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use nix::poll::{PollFd, PollTimeout, poll};

    const GUARD: Duration = Duration::from_secs(10);

    fn pump(socket: &mut EinhornSocket, mut done: impl FnMut(&EinhornSocket, &[i32]) -> bool) -> Vec<i32> {
        let mut acks = Vec::new();
        loop {
            acks.extend(socket.service());
            if done(socket, &acks) {
                return acks;
            }
            let wanted = socket.poll_fds();
            let mut fds: Vec<PollFd> = wanted.iter().map(|&(fd, ev)| PollFd::new(fd, ev)).collect();
            let ready = poll(&mut fds, PollTimeout::try_from(GUARD).unwrap()).unwrap();
            assert!(ready > 0, "no progress within {GUARD:?}");
        }
    }

    fn bound() -> (tempfile::TempDir, EinhornSocket) {
        let dir = tempfile::tempdir().unwrap();
        let socket = EinhornSocket::bind(&dir.path().join("einhorn")).unwrap();
        (dir, socket)
    }

    fn me() -> i32 {
        std::process::id() as i32
    }

    const GO_EINHORN: &str = "{\"comand\":\"worker:ack\",\"Pid\":1234}\n";
    const GOJI: &str = "{\"command\": \"worker:ack\", \"pid\": 1234}\n";
    const RUBY: &str = "---%0Acommand: worker:ack%0Apid: 1234%0A\n";
    const RUBY_KEEP_OPEN: &str = "---%0Acommand: worker:ack%0Apid: 1234%0Akeep-open: true%0A\n";
    const RUBY_JSON: &str = "{\"command\":\"worker:ack\",\"pid\":1234}\n";
    const NODE: &str = "---%0Acommand:%20worker:ack%0Apid:%201234\n";

    #[test]
    fn decodes_what_every_known_client_sends() {
        let ack = Some(Message { command: Some(ACK.to_string()), pid: Some(1234) });
        for sent in [GO_EINHORN, GOJI, RUBY, RUBY_KEEP_OPEN, RUBY_JSON, NODE] {
            assert_eq!(decode(sent.trim_end().as_bytes()), ack, "{sent}");
        }
        assert_eq!(decode(b"---%0Acommand: 'worker:ack'%0Apid: \"1234\"%0A"), ack);
        assert_eq!(decode(b"{\"command\":\"worker:ack\",\"pid\":\"1234\"}"), ack);
        assert_eq!(
            decode(b"{\"command\":\"ehlo\",\"user\":\"ops\"}"),
            Some(Message { command: Some("ehlo".into()), pid: None })
        );
        assert_eq!(decode(b"{\"command\":\"worker:ack\",\"pid\":-1}").unwrap().pid, None);
        assert_eq!(decode(b"hello"), None);
        assert_eq!(decode(b"[1,2]"), None);
        assert_eq!(decode(b"\xff\xfe"), None);
        assert_eq!(percent_decode("100%"), Some("100%".into()));
        assert_eq!(percent_decode("%zz%41"), Some("%zzA".into()));
    }

    #[test]
    fn the_kernels_pid_wins_over_the_claim() {
        assert_eq!(ack_pid(Some(77), Some(1234)), Some(77));
        assert_eq!(ack_pid(Some(0), Some(1234)), Some(1234));
        assert_eq!(ack_pid(None, Some(1234)), Some(1234));
        assert_eq!(ack_pid(None, None), None);
        assert_eq!(ack_pid(Some(0), None), None);
    }

    #[test]
    fn replies_in_einhorns_transport() {
        assert_eq!(encode_reply("100% \"x\"\nnext"), b"{\"message\":\"100%25 \\\"x\\\"\\nnext\"}\n".to_vec());
    }

    #[test]
    fn binds_private_and_removes_its_file_on_drop() {
        let (_dir, socket) = bound();
        let path = socket.path().to_owned();
        let meta = fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn go_einhorn_acks_with_its_exact_bytes() {
        let (_dir, mut socket) = bound();
        let mut worker = UnixStream::connect(socket.path()).unwrap();
        // go-einhorn: json.Encoder (line and newline), then one more newline.
        worker.write_all(GO_EINHORN.as_bytes()).unwrap();
        assert_eq!(pump(&mut socket, |_, acks| !acks.is_empty()), [me()]);
        worker.write_all(b"\n").expect("still open after the ack");
        drop(worker);
        pump(&mut socket, |s, _| s.connections() == 0);
    }

    #[test]
    fn every_dialect_acks_for_the_connecting_process() {
        let (_dir, mut socket) = bound();
        for sent in [GOJI, RUBY, RUBY_KEEP_OPEN, RUBY_JSON, NODE] {
            let mut worker = UnixStream::connect(socket.path()).unwrap();
            worker.write_all(sent.as_bytes()).unwrap();
            drop(worker);
            let acks = pump(&mut socket, |s, acks| !acks.is_empty() && s.connections() == 0);
            assert_eq!(acks, [me()], "{sent}");
        }
    }

    #[test]
    fn other_commands_get_an_answer_and_the_connection_stays_usable() {
        let (_dir, mut socket) = bound();
        let mut worker = UnixStream::connect(socket.path()).unwrap();
        worker.set_read_timeout(Some(GUARD)).unwrap();
        let mut reader = BufReader::new(worker.try_clone().unwrap());
        worker.write_all(b"{\"command\":\"ehlo\",\"user\":\"ops\"}\nnonsense\n").unwrap();
        let answered = |s: &EinhornSocket, _: &[i32]| s.conns.first().is_some_and(|c| !c.io.has_output());
        assert!(pump(&mut socket, answered).is_empty());
        let mut lines = [String::new(), String::new()];
        for line in &mut lines {
            reader.read_line(line).unwrap();
        }
        assert_eq!(
            lines,
            [
                "{\"message\":\"handover does not implement the einhorn command \\\"ehlo\\\"; it only takes worker:ack\"}\n",
                "{\"message\":\"could not parse the message; handover only takes worker:ack\"}\n",
            ]
        );
        worker.write_all(GOJI.as_bytes()).unwrap();
        assert_eq!(pump(&mut socket, |_, acks| !acks.is_empty()), [me()]);
    }

    #[test]
    fn an_over_long_line_closes_the_connection() {
        let (_dir, mut socket) = bound();
        let mut worker = UnixStream::connect(socket.path()).unwrap();
        worker.write_all(&vec![b'a'; crate::supervisor::lines::MAX_LINE + 1]).unwrap();
        let acks = pump(&mut socket, |s, _| s.connections() == 0);
        assert!(acks.is_empty());
        worker.set_read_timeout(Some(GUARD)).unwrap();
        assert_eq!(std::io::Read::read(&mut worker, &mut [0u8; 1]).unwrap(), 0);
    }
}
