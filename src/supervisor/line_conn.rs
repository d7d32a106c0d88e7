//! Line-oriented unix stream sockets, shared by the control socket and
//! einhorn's ack socket: a listener created with its final mode before
//! anyone can connect, and connections that cut input into lines and write
//! output as the peer takes it, never blocking the supervisor's loop.

use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sys::socket::{MsgFlags, send};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Socket, Type};

use crate::config::Config;
use crate::state::SafeDir;
use crate::supervisor::carry::{Carry, Resuming, Written, hex};

const BACKLOG: i32 = 128;
/// The longest request line, without its `\n`.
pub const MAX_LINE: usize = 64 * 1024;
/// Unsent output per connection before it stops being read (the control
/// socket then drops it: it does not read its replies).
pub const MAX_OUTPUT: usize = 1 << 20;
/// Empty buffers larger than this are given back.
const SPARE: usize = 64 * 1024;

/// A unix stream socket at `path`, created with mode `mode` in its
/// checked directory (`SafeDir::bind_socket`) before anyone can connect,
/// close-on-exec and non-blocking.
pub(crate) fn listen_at(path: &Path, mode: u32) -> io::Result<UnixListener> {
    let (dir, name) = SafeDir::parent_of(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    let identity = dir.bind_socket(&socket, &name, mode, None, None)?;
    let finish = || {
        socket.listen(BACKLOG)?;
        socket.set_nonblocking(true)
    };
    if let Err(e) = finish() {
        let _ = dir.remove_if(&name, identity);
        return Err(e);
    }
    Ok(UnixListener::from(socket))
}

/// The connections waiting on `listener`, at most `max` (so a client that
/// connects without end cannot keep the loop here), and the error that
/// stopped accepting (EMFILE...), if one did.
pub(crate) fn accept_up_to(listener: &UnixListener, max: usize) -> (Vec<UnixStream>, Option<io::Error>) {
    let mut streams = Vec::new();
    for _ in 0..max {
        match listener.accept() {
            Ok((stream, _)) => streams.push(stream),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => {}
            Err(e) => return (streams, Some(e)),
        }
    }
    (streams, None)
}

/// What to poll: `listener` if given, and every connection that wants
/// something (with whether its owner wants its input).
pub(crate) fn poll_set<'a>(
    listener: Option<&'a UnixListener>,
    conns: impl Iterator<Item = (&'a LineConn, bool)>,
) -> Vec<(BorrowedFd<'a>, PollFlags)> {
    let listener = listener.map(|l| (l.as_fd(), PollFlags::POLLIN));
    let conns = conns.map(|(c, read)| (c.stream.as_fd(), c.interest(read))).filter(|(_, f)| !f.is_empty());
    listener.into_iter().chain(conns).collect()
}

/// An accepted connection: input cut into lines, output written as the
/// peer takes it.
pub(crate) struct LineConn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// The peer has half-closed (or we stopped reading): no more input.
    pub eof: bool,
    /// A read or write failed: drop the connection.
    pub broken: bool,
}

impl LineConn {
    pub fn new(stream: UnixStream) -> io::Result<LineConn> {
        stream.set_nonblocking(true)?;
        Ok(LineConn { stream, input: Vec::new(), output: Vec::new(), eof: false, broken: false })
    }

    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Whether to read more: open, and the peer is not flooding us.
    pub fn can_read(&self) -> bool {
        let full = self.input.len() > MAX_LINE || self.output.len() >= MAX_OUTPUT;
        !self.eof && !self.broken && !full
    }

    /// Bytes queued and not yet taken by the peer.
    pub fn unsent(&self) -> usize {
        self.output.len()
    }

    /// Reads what is there, stopping once a full line's worth is buffered;
    /// whether any byte came.
    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let mut heard = false;
        while self.can_read() {
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    heard = true;
                    self.input.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.broken = true,
            }
        }
        heard
    }

    /// At most `max` complete non-blank lines buffered, without `\n` or
    /// `\r` (at EOF also the unterminated rest; the rest stay buffered,
    /// `has_line`); true if a line over `MAX_LINE` came next, and then no
    /// more input is read.
    pub fn lines(&mut self, max: usize) -> (Vec<Vec<u8>>, bool) {
        let (lines, too_long) = take_lines(&mut self.input, self.eof, max);
        if too_long {
            self.input.clear();
            self.eof = true;
        }
        (lines, too_long)
    }

    /// A complete line (or, at end of input, the rest) is buffered.
    pub fn has_line(&self) -> bool {
        self.input.contains(&b'\n') || (self.eof && !self.input.is_empty())
    }

    pub fn queue(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Writes what the socket takes now; never blocks, never raises SIGPIPE.
    /// Whether the peer took any byte.
    pub fn flush(&mut self) -> bool {
        let mut taken = false;
        while !self.output.is_empty() && !self.broken {
            let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
            match send(self.stream.as_raw_fd(), &self.output, flags) {
                Ok(n) => {
                    taken |= n > 0;
                    drop(self.output.drain(..n));
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(_) => self.broken = true,
            }
        }
        // A burst's buffers go back once sent, not kept for the connection's life.
        for buffer in [&mut self.output, &mut self.input] {
            if buffer.is_empty() && buffer.capacity() > SPARE {
                *buffer = Vec::new();
            }
        }
        taken
    }

    /// The events to poll for, if any (`read`: the owner wants input).
    pub fn interest(&self, read: bool) -> PollFlags {
        let mut flags = PollFlags::empty();
        flags.set(PollFlags::POLLIN, read && self.can_read());
        flags.set(PollFlags::POLLOUT, self.unsent() > 0 && !self.broken);
        flags
    }
}

/// Cuts at most `max` complete non-blank lines off the front of `input`,
/// without `\n` or `\r` (at `eof` also the unterminated rest); true if a
/// line over `MAX_LINE` comes next (it stays in `input`).
fn take_lines(input: &mut Vec<u8>, eof: bool, max: usize) -> (Vec<Vec<u8>>, bool) {
    let (mut lines, mut start) = (Vec::new(), 0);
    let too_long = loop {
        if lines.len() >= max {
            break false;
        }
        let rest = &input[start..];
        let end = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => end,
            None if rest.len() > MAX_LINE => break true,
            None if eof && !rest.is_empty() => rest.len(),
            None => break false,
        };
        if end > MAX_LINE {
            break true;
        }
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            lines.push(line.to_vec());
        }
        start = (start + end + 1).min(input.len());
    };
    input.drain(..start);
    (lines, too_long)
}

/// What a self-upgrade carries of a connection: the fd, buffers and state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnRecord {
    pub fd: RawFd,
    #[serde(with = "hex")]
    pub input: Vec<u8>,
    #[serde(with = "hex")]
    pub output: Vec<u8>,
    pub eof: bool,
}

impl Carry for LineConn {
    type Record = ConnRecord;

    fn carry(&self, _: Written) -> ConnRecord {
        let (input, output) = (self.input.clone(), self.output.clone());
        ConnRecord { fd: self.stream.as_raw_fd(), input, output, eof: self.eof }
    }

    fn fds(record: &ConnRecord) -> Vec<RawFd> {
        vec![record.fd]
    }

    fn resume(record: ConnRecord, from: &mut Resuming, _: &Config) -> io::Result<LineConn> {
        let mut conn = LineConn::new(UnixStream::from(from.fd(record.fd)?))?;
        (conn.input, conn.output, conn.eof) = (record.input, record.output, record.eof);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests;
