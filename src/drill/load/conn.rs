//! One load connection's client: connect, send, read and frame one
//! response, classify what happened (the rules are in `load`'s header).
//! Owns its buffer and its connection; nothing here is shared.
use std::io::{self, Read};
use std::ops::Range;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::{Mode, Outcome, Target};

/// Response heads, chunk-size lines and raw `expect` prefixes must fit.
const BUF_SIZE: usize = 64 * 1024;

/// A blocking connect bounded by SO_SNDTIMEO (Linux applies it to connect:
/// EINPROGRESS for TCP, EAGAIN for a unix listener with a full backlog).
/// A connect interrupted by a signal is resumed: on Linux calling it again
/// waits for the same connection (EISCONN if it is already up).
fn connect(target: &Target, timeout: Duration) -> io::Result<Socket> {
    let (domain, addr) = match target {
        Target::Tcp(a) => (Domain::for_address(*a), SockAddr::from(*a)),
        Target::Unix(p) => (Domain::UNIX, SockAddr::unix(p)?),
    };
    let socket = Socket::new(domain, Type::STREAM, None)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    if let Target::Tcp(_) = target {
        socket.set_tcp_nodelay(true)?;
    }
    loop {
        match socket.connect(&addr) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EISCONN) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(socket)
}

/// Sends all of `buf`; MSG_NOSIGNAL: a peer that closed is EPIPE, never
/// SIGPIPE, whatever the process's disposition.
fn send_all(socket: &Socket, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match socket.send_with_flags(buf, libc::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why reading a response stopped short.
enum Fail {
    Io(io::Error),
    Eof,
    Slow,
    Malformed(&'static str),
}

/// One connection's client: the request bytes, the connection, the buffer.
pub struct Client<'a> {
    target: &'a Target,
    mode: &'a Mode,
    timeout: Duration,
    request: Vec<u8>,
    conn: Option<Socket>,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes of the current response read so far.
    got: usize,
    deadline: Instant,
}

impl<'a> Client<'a> {
    pub fn new(target: &'a Target, mode: &'a Mode, timeout: Duration) -> Client<'a> {
        let request = match mode {
            Mode::Http { path, keepalive, .. } => {
                let host = match target {
                    Target::Tcp(a) => a.to_string(),
                    Target::Unix(_) => "localhost".into(),
                };
                let connection = if *keepalive { "keep-alive" } else { "close" };
                format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n")
                    .into_bytes()
            }
            Mode::Raw { send, .. } => send.clone(),
        };
        let buf = vec![0; BUF_SIZE].into_boxed_slice();
        Client {
            target,
            mode,
            timeout,
            request,
            conn: None,
            buf,
            start: 0,
            end: 0,
            got: 0,
            deadline: Instant::now(),
        }
    }

    /// One request: its outcome and whether it was retried.
    pub fn request(&mut self, started: Instant) -> (Outcome, bool) {
        self.deadline = started + self.timeout;
        let reused = self.conn.is_some();
        match self.attempt() {
            // Reset before any of the response: a reused connection was
            // found closed, and the request is sent again on a fresh one.
            Outcome::Reset if reused => {
                self.deadline = Instant::now() + self.timeout;
                (self.attempt(), true)
            }
            outcome => (outcome, false),
        }
    }

    /// One attempt: `Reset` when the connection was closed or reset before
    /// any of the response came.
    fn attempt(&mut self) -> Outcome {
        if self.start != self.end {
            self.conn = None; // bytes nobody asked for: start afresh
        }
        (self.start, self.end, self.got) = (0, 0, 0);
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => match connect(self.target, self.timeout) {
                Ok(conn) => conn,
                Err(e) => return io_outcome(&e, 0),
            },
        };
        if let Err(e) = send_all(&conn, &self.request) {
            return io_outcome(&e, 0);
        }
        let result = match self.mode {
            Mode::Http { expect_status, keepalive, .. } => self.http(&mut conn, *expect_status, *keepalive),
            Mode::Raw { expect, .. } => self.raw(&mut conn, expect),
        };
        match result {
            Ok((outcome, keep)) => {
                if keep {
                    self.conn = Some(conn);
                }
                outcome
            }
            Err(Fail::Slow) => Outcome::Timeout,
            Err(Fail::Malformed(what)) => Outcome::Other(what.into()),
            Err(Fail::Eof) if self.got == 0 => Outcome::Reset,
            Err(Fail::Eof) => Outcome::ShortRead,
            Err(Fail::Io(e)) => io_outcome(&e, self.got),
        }
    }

    /// Reads one response: its outcome and whether the connection may be
    /// reused.
    fn http(&mut self, conn: &mut Socket, expect: u16, keepalive: bool) -> Result<(Outcome, bool), Fail> {
        let head_end = loop {
            if let Some(i) = find(&self.buf[self.start..self.end], b"\r\n\r\n") {
                break self.start + i + 4;
            }
            self.fill(conn)?;
        };
        let head = Head::parse(&self.buf[self.start..head_end])?;
        self.start = head_end;
        let bodiless = head.status < 200 || head.status == 204 || head.status == 304;
        let mut keep = keepalive && head.keep_alive;
        match (bodiless, head.chunked, head.length) {
            (true, _, _) => {}
            (false, true, _) => self.chunked(conn)?,
            (false, false, Some(length)) => self.skip(conn, length)?,
            (false, false, None) => {
                keep = false; // the body ends with the stream
                loop {
                    (self.start, self.end) = (0, 0);
                    match self.fill(conn) {
                        Ok(()) => {}
                        Err(Fail::Eof) => break,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let outcome = if head.status == expect { Outcome::Ok } else { Outcome::BadStatus(head.status) };
        Ok((outcome, keep))
    }

    fn chunked(&mut self, conn: &mut Socket) -> Result<(), Fail> {
        loop {
            let line = self.line(conn)?;
            let line = &self.buf[line];
            let digits = line.split(|&b| b == b';' || b == b' ').next().unwrap_or(&[]);
            let text = std::str::from_utf8(digits).map_err(|_| Fail::Malformed("bad chunk size"))?;
            let size = u64::from_str_radix(text, 16).map_err(|_| Fail::Malformed("bad chunk size"))?;
            if size == 0 {
                while !self.line(conn)?.is_empty() {} // trailers
                return Ok(());
            }
            self.skip(conn, size)?;
            if !self.line(conn)?.is_empty() {
                return Err(Fail::Malformed("chunk not followed by CRLF"));
            }
        }
    }

    /// The next CRLF-terminated line, consumed: where it is in the buffer
    /// (valid until the next fill), without its CRLF.
    fn line(&mut self, conn: &mut Socket) -> Result<Range<usize>, Fail> {
        loop {
            if let Some(i) = find(&self.buf[self.start..self.end], b"\r\n") {
                let line = self.start..self.start + i;
                self.start += i + 2;
                return Ok(line);
            }
            self.fill(conn)?;
        }
    }

    /// Consumes `left` bytes.
    fn skip(&mut self, conn: &mut Socket, mut left: u64) -> Result<(), Fail> {
        while left > 0 {
            if self.start == self.end {
                self.fill(conn)?;
            }
            let take = left.min((self.end - self.start) as u64);
            self.start += take as usize;
            left -= take;
        }
        Ok(())
    }

    fn raw(&mut self, conn: &mut Socket, expect: &[u8]) -> Result<(Outcome, bool), Fail> {
        if expect.is_empty() {
            if self.request.is_empty() {
                return Ok((Outcome::Ok, false));
            }
            return match self.fill(conn) {
                Ok(()) | Err(Fail::Eof) => Ok((Outcome::Ok, false)),
                Err(e) => Err(e),
            };
        }
        loop {
            let have = &self.buf[..self.end.min(expect.len())];
            if have != &expect[..have.len()] {
                return Ok((Outcome::BadStatus(0), false));
            }
            if have.len() == expect.len() {
                return Ok((Outcome::Ok, false));
            }
            self.fill(conn)?;
        }
    }

    /// Reads more into the buffer (compacting it first when full).
    fn fill(&mut self, conn: &mut Socket) -> Result<(), Fail> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(Fail::Malformed("response line or head over 64 KiB"));
            }
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        // The clock is read only when a response takes more than one read.
        if self.got > 0 && Instant::now() > self.deadline {
            return Err(Fail::Slow);
        }
        loop {
            match conn.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(Fail::Eof),
                Ok(n) => {
                    self.end += n;
                    self.got += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Fail::Io(e)),
            }
        }
    }
}

/// What a response head says.
struct Head {
    status: u16,
    length: Option<u64>,
    chunked: bool,
    keep_alive: bool,
}

impl Head {
    fn parse(head: &[u8]) -> Result<Head, Fail> {
        let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = lines.next().unwrap_or(&[]);
        let http10 = status_line.starts_with(b"HTTP/1.0 ");
        let code = match status_line {
            [b'H', b'T', b'T', b'P', b'/', b'1', b'.', _, b' ', a, b, c, ..] => [*a, *b, *c],
            _ => return Err(Fail::Malformed("malformed status line")),
        };
        if !code.iter().all(u8::is_ascii_digit) {
            return Err(Fail::Malformed("malformed status line"));
        }
        let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let mut parsed = Head { status, length: None, chunked: false, keep_alive: !http10 };
        for line in lines {
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"content-length") {
                let text = std::str::from_utf8(value).ok();
                parsed.length =
                    Some(text.and_then(|t| t.parse().ok()).ok_or(Fail::Malformed("bad Content-Length"))?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let last = value.rsplit(|&b| b == b',').next().unwrap_or(&[]).trim_ascii();
                parsed.chunked = last.eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        parsed.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        parsed.keep_alive = true;
                    }
                }
            }
        }
        Ok(parsed)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An io error as an outcome; `got` is how many response bytes had arrived.
fn io_outcome(e: &io::Error, got: usize) -> Outcome {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Outcome::Refused,
        ConnectionReset | BrokenPipe | ConnectionAborted if got == 0 => Outcome::Reset,
        ConnectionReset | BrokenPipe | ConnectionAborted => Outcome::ShortRead,
        WouldBlock | TimedOut => Outcome::Timeout,
        _ if e.raw_os_error() == Some(libc::EINPROGRESS) => Outcome::Timeout,
        _ => Outcome::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
