//! einhorn's readiness dialect: the socket workers find in
//! `EINHORN_SOCK_PATH`, where a `worker:ack` means what `READY=1` means.
//! The messages, in every client's dialect, and the replies are read and
//! written by `wire::einhorn`; this module owns the socket.
//!
//! Every einhorn client acks only when `EINHORN_MASTER_PID` is its parent's
//! pid (goji ignores the `EINHORN_FD_*` sockets otherwise), so the
//! supervisor sets it along with `EINHORN_SOCK_PATH`.
//!
//! What this module does:
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
//!   the path, which every client reads first or only.
//!
//! Invariants: the socket is mode 0600, in a private directory the caller
//! owns; its file is removed on drop. Non-blocking throughout; at most 256
//! connections, each polled only while it wants something. With 256 open
//! (workers that connect and say nothing, or keep their connection for
//! life), a new one takes the place of the one silent the longest, so an
//! ack always gets in.

use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::poll::PollFlags;
use nix::sys::socket::{getsockopt, sockopt};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::supervisor::carry::{Carry, Resuming, Written};
use crate::supervisor::line_conn::ConnRecord;
use crate::supervisor::line_conn::{LineConn, accept_up_to, listen_at, poll_set};
use crate::wire::einhorn::{ack_pid, answer, decode, encode_reply};

const MAX_CONNECTIONS: usize = 256;

struct Peer {
    io: LineConn,
    /// The connecting process, as the kernel saw it.
    peer_pid: Option<i32>,
    /// When it last sent a byte (or connected), in `EinhornSocket::tick`s.
    heard: u64,
}

pub struct EinhornSocket {
    listener: UnixListener,
    path: PathBuf,
    conns: Vec<Peer>,
    /// `accept` failed (EMFILE...): the listener is left out of the next poll.
    accept_paused: bool,
    /// Counts connections made and inputs heard: orders them by recency.
    tick: u64,
}

impl EinhornSocket {
    /// Binds at `path`, which should be in a private directory; mode 0600.
    pub fn bind(path: &Path) -> std::io::Result<EinhornSocket> {
        let listener = listen_at(path, 0o600)?;
        Ok(EinhornSocket {
            listener,
            path: path.to_owned(),
            conns: Vec::new(),
            accept_paused: false,
            tick: 0,
        })
    }

    /// The value of the workers' `EINHORN_SOCK_PATH`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every fd the poll loop must watch, with the events to ask for.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let listener = (!self.accept_paused).then_some(&self.listener);
        poll_set(listener, self.conns.iter().map(|c| (&c.io, true)))
    }

    /// Accepts and reads what is ready without blocking; returns the pids
    /// that acked (see the module header for which pid). Call after every poll.
    pub fn service(&mut self) -> Vec<i32> {
        let mut acks = Vec::new();
        self.accept();
        for conn in &mut self.conns {
            if conn.io.fill() {
                self.tick += 1;
                conn.heard = self.tick;
            }
            // A line over 64 KiB ends the connection (`lines` stops reading).
            for line in conn.io.lines(usize::MAX).0 {
                let message = decode(&line);
                match answer(message.as_ref()) {
                    Some(text) => conn.io.queue(&encode_reply(&text)),
                    None => acks.extend(ack_pid(conn.peer_pid, message.and_then(|m| m.pid))),
                }
            }
            conn.io.flush();
        }
        // Closed by the worker (or for a long line): once the answers are out.
        self.conns.retain(|c| !c.io.broken && (!c.io.eof || c.io.unsent() > 0));
        acks
    }

    /// Takes waiting connections, at most `MAX_CONNECTIONS` per call.
    fn accept(&mut self) {
        let (streams, failed) = accept_up_to(&self.listener, MAX_CONNECTIONS);
        self.accept_paused = failed.is_some();
        for stream in streams {
            let peer_pid = getsockopt(&stream, sockopt::PeerCredentials).ok().map(|cred| cred.pid());
            if let Ok(io) = LineConn::new(stream) {
                if self.conns.len() >= MAX_CONNECTIONS {
                    let silent =
                        (self.conns.iter().enumerate()).min_by_key(|(_, c)| c.heard).map(|(at, _)| at);
                    silent.map(|at| self.conns.swap_remove(at));
                }
                self.tick += 1;
                self.conns.push(Peer { io, peer_pid, heard: self.tick });
            }
        }
    }
}

impl Drop for EinhornSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What a self-upgrade carries of the einhorn socket: the listener and
/// every connection with its peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EinhornRecord {
    pub fd: RawFd,
    pub path: PathBuf,
    pub conns: Vec<(ConnRecord, Option<i32>)>,
}

impl Carry for EinhornSocket {
    type Record = EinhornRecord;

    fn carry(&self, at: Written) -> EinhornRecord {
        let conns = self.conns.iter().map(|c| (c.io.carry(at), c.peer_pid)).collect();
        EinhornRecord { fd: self.listener.as_raw_fd(), path: self.path.clone(), conns }
    }

    fn fds(record: &EinhornRecord) -> Vec<RawFd> {
        let conns = record.conns.iter().map(|(c, _)| c.fd);
        std::iter::once(record.fd).chain(conns).collect()
    }

    fn resume(record: EinhornRecord, from: &mut Resuming, config: &Config) -> std::io::Result<EinhornSocket> {
        let listener = UnixListener::from(from.fd(record.fd)?);
        let conns = (record.conns.into_iter())
            .map(|(conn, peer_pid)| {
                Ok(Peer { io: LineConn::resume(conn, from, config)?, peer_pid, heard: 0 })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(EinhornSocket { listener, path: record.path, conns, accept_paused: false, tick: 0 })
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

    use crate::wire::einhorn::sent::{GO_EINHORN, GOJI, NODE, RUBY, RUBY_JSON, RUBY_KEEP_OPEN};

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
        pump(&mut socket, |s, _| s.conns.is_empty());
    }

    #[test]
    fn every_dialect_acks_for_the_connecting_process() {
        let (_dir, mut socket) = bound();
        for sent in [GOJI, RUBY, RUBY_KEEP_OPEN, RUBY_JSON, NODE] {
            let mut worker = UnixStream::connect(socket.path()).unwrap();
            worker.write_all(sent.as_bytes()).unwrap();
            drop(worker);
            let acks = pump(&mut socket, |s, acks| !acks.is_empty() && s.conns.is_empty());
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
        let answered = |s: &EinhornSocket, _: &[i32]| s.conns.first().is_some_and(|c| !c.io.unsent() > 0);
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
    fn a_full_table_makes_room_for_an_ack_by_closing_the_longest_silent() {
        let (_dir, mut socket) = bound();
        // One at a time: the listen backlog is shorter than the table.
        let mut silent = Vec::new();
        for n in 1..=MAX_CONNECTIONS {
            silent.push(UnixStream::connect(socket.path()).unwrap());
            pump(&mut socket, |s, _| s.conns.len() == n);
        }
        let mut worker = UnixStream::connect(socket.path()).unwrap();
        worker.write_all(GOJI.as_bytes()).unwrap();
        assert_eq!(pump(&mut socket, |_, acks| !acks.is_empty()), [me()]);
        assert_eq!(socket.conns.len(), MAX_CONNECTIONS);
        // The first silent one made room: it reads the end of its connection.
        silent[0].set_read_timeout(Some(GUARD)).unwrap();
        assert_eq!(std::io::Read::read(&mut &silent[0], &mut [0u8; 1]).unwrap(), 0);
    }

    #[test]
    fn an_over_long_line_closes_the_connection() {
        let (_dir, mut socket) = bound();
        let mut worker = UnixStream::connect(socket.path()).unwrap();
        worker.write_all(&vec![b'a'; crate::supervisor::line_conn::MAX_LINE + 1]).unwrap();
        let acks = pump(&mut socket, |s, _| s.conns.is_empty());
        assert!(acks.is_empty());
        worker.set_read_timeout(Some(GUARD)).unwrap();
        assert_eq!(std::io::Read::read(&mut worker, &mut [0u8; 1]).unwrap(), 0);
    }
}
