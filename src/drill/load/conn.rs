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

/// One attempt's result: `Stale` is a reused connection found closed.
enum Attempt {
    Done(Outcome),
    Stale,
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
            Attempt::Done(outcome) => (outcome, false),
            Attempt::Stale if reused => {
                self.deadline = Instant::now() + self.timeout;
                match self.attempt() {
                    Attempt::Done(outcome) => (outcome, true),
                    Attempt::Stale => (Outcome::Reset, true),
                }
            }
            Attempt::Stale => (Outcome::Reset, false),
        }
    }

    fn attempt(&mut self) -> Attempt {
        if self.start != self.end {
            self.conn = None; // bytes nobody asked for: start afresh
        }
        (self.start, self.end, self.got) = (0, 0, 0);
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => match connect(self.target, self.timeout) {
                Ok(conn) => conn,
                Err(e) => return Attempt::Done(io_outcome(&e, 0)),
            },
        };
        if let Err(e) = send_all(&conn, &self.request) {
            return match io_outcome(&e, 0) {
                Outcome::Reset => Attempt::Stale,
                outcome => Attempt::Done(outcome),
            };
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
                Attempt::Done(outcome)
            }
            Err(Fail::Slow) => Attempt::Done(Outcome::Timeout),
            Err(Fail::Malformed(what)) => Attempt::Done(Outcome::Other(what.into())),
            Err(Fail::Eof) if self.got == 0 => Attempt::Stale,
            Err(Fail::Eof) => Attempt::Done(Outcome::ShortRead),
            Err(Fail::Io(e)) => match io_outcome(&e, self.got) {
                Outcome::Reset => Attempt::Stale,
                outcome => Attempt::Done(outcome),
            },
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
mod tests {
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::thread;

    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";
    const SECOND: Duration = Duration::from_secs(1);

    /// A server on a free loopback port: `handle(i, stream)` serves the
    /// i-th connection on a thread of its own.
    fn server(handle: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = Arc::new(handle);
        thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let handle = Arc::clone(&handle);
                thread::spawn(move || handle(i, stream.unwrap()));
            }
        });
        Target::Tcp(addr)
    }

    /// Reads one request head; false at the end of the stream.
    fn read_request(stream: &mut impl Read) -> bool {
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return false,
            }
        }
        true
    }

    /// Answers every request on the connection with `reply`.
    fn answer_all(reply: &'static [u8]) -> impl Fn(usize, TcpStream) {
        move |_, mut s| {
            while read_request(&mut s) {
                s.write_all(reply).unwrap();
            }
        }
    }

    fn http(keepalive: bool) -> Mode {
        Mode::Http { path: "/".into(), expect_status: 200, keepalive }
    }

    fn one(target: &Target, mode: &Mode) -> (Outcome, bool) {
        Client::new(target, mode, SECOND).request(Instant::now())
    }

    #[test]
    fn a_closed_port_is_refused() {
        let addr: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert_eq!(one(&Target::Tcp(addr), &http(false)), (Outcome::Refused, false));
    }

    #[test]
    fn a_unix_socket_nobody_listens_on_is_refused_and_a_missing_one_is_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap()); // the file stays
        assert_eq!(one(&Target::Unix(path.clone()), &http(false)), (Outcome::Refused, false));
        std::fs::remove_file(&path).unwrap();
        let (outcome, _) = one(&Target::Unix(path), &http(false));
        assert!(matches!(&outcome, Outcome::Other(text) if text.contains("No such file")), "{outcome:?}");
    }

    #[test]
    fn a_reset_before_any_byte_of_the_response_is_reset() {
        let target = server(|_, mut s| {
            read_request(&mut s);
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        });
        assert_eq!(one(&target, &http(false)), (Outcome::Reset, false));
        assert_eq!(one(&target, &http(true)), (Outcome::Reset, false), "a fresh connection is not retried");
    }

    #[test]
    fn another_status_is_bad_status() {
        let target = server(answer_all(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"));
        assert_eq!(one(&target, &http(false)), (Outcome::BadStatus(500), false));
    }

    #[test]
    fn part_of_a_head_or_of_a_body_is_a_short_read() {
        for partial in
            [&b"HTTP/1.1 200 OK\r\nContent-Le"[..], b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]
        {
            let target = server(move |_, mut s| {
                read_request(&mut s);
                s.write_all(partial).unwrap();
            });
            assert_eq!(one(&target, &http(true)), (Outcome::ShortRead, false));
        }
    }

    #[test]
    fn no_answer_within_the_timeout_is_timeout() {
        let target = server(|_, mut s| {
            read_request(&mut s);
            let _ = s.read(&mut [0u8; 1]); // until the client gives up
        });
        let mode = http(true);
        let mut client = Client::new(&target, &mode, Duration::from_millis(50));
        assert_eq!(client.request(Instant::now()), (Outcome::Timeout, false));
    }

    #[test]
    fn keep_alive_reuses_the_connection_through_chunked_bodies() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&accepted);
        let target = server(move |i, s| {
            seen.fetch_add(1, SeqCst);
            answer_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n1\r\n\n\r\n0\r\nX-Trailer: 1\r\n\r\n",
            )(i, s)
        });
        let mode = http(true);
        let mut client = Client::new(&target, &mode, SECOND);
        for _ in 0..3 {
            assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
        }
        assert_eq!(accepted.load(SeqCst), 1);
    }

    #[test]
    fn a_response_that_asks_to_close_closes_and_http_1_0_reads_to_the_end() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&accepted);
        let target = server(move |i, mut s| {
            seen.fetch_add(1, SeqCst);
            read_request(&mut s);
            let reply: &[u8] = match i {
                0 => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Close\r\n\r\nok",
                _ => b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the stream",
            };
            s.write_all(reply).unwrap();
        });
        let mode = http(true);
        let mut client = Client::new(&target, &mode, SECOND);
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
        assert_eq!(accepted.load(SeqCst), 2, "no retry: the server said it would close");
    }

    #[test]
    fn a_keep_alive_connection_closed_between_requests_is_retried_once() {
        // Connection 0 answers once and closes; connection 1 answers all,
        // connection 2 closes at once.
        let target = server(|i, mut s| match i {
            0 => {
                read_request(&mut s);
                s.write_all(OK).unwrap();
            }
            1 => answer_all(OK)(i, s),
            _ => drop(s),
        });
        let mode = http(true);
        let mut client = Client::new(&target, &mode, SECOND);
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, true));
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));

        let target = server(|i, mut s| {
            if i == 0 {
                read_request(&mut s);
                s.write_all(OK).unwrap();
            }
        });
        let mut client = Client::new(&target, &mode, SECOND);
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
        assert_eq!(client.request(Instant::now()), (Outcome::Reset, true), "the retry failed too");
    }

    #[test]
    fn malformed_responses_are_other() {
        let target = server(answer_all(b"SSH-2.0-OpenSSH\r\n\r\n"));
        assert_eq!(one(&target, &http(false)), (Outcome::Other("malformed status line".into()), false));
        let target = server(|_, mut s| {
            read_request(&mut s);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            let _ = s.write_all(&vec![b'x'; BUF_SIZE]);
        });
        let (outcome, _) = one(&target, &http(false));
        assert_eq!(outcome, Outcome::Other("response line or head over 64 KiB".into()));
    }

    #[test]
    fn http_over_a_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            while read_request(&mut s) {
                s.write_all(OK).unwrap();
            }
        });
        let (target, mode) = (Target::Unix(path), http(true));
        let mut client = Client::new(&target, &mode, SECOND);
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
        assert_eq!(client.request(Instant::now()), (Outcome::Ok, false));
    }

    #[test]
    fn raw_mode_checks_the_prefix_of_the_reply() {
        let target = server(|_, mut s| {
            let mut line = [0u8; 5];
            if s.read_exact(&mut line).is_ok() {
                let _ = s.write_all(if &line == b"PING\n" { b"PONG and more\n" } else { b"ERR\n" });
            }
        });
        let raw = |send: &[u8], expect: &[u8]| Mode::Raw { send: send.into(), expect: expect.into() };
        assert_eq!(one(&target, &raw(b"PING\n", b"PONG")), (Outcome::Ok, false));
        assert_eq!(one(&target, &raw(b"PANG\n", b"PONG")), (Outcome::BadStatus(0), false));
        assert_eq!(one(&target, &raw(b"PANG\n", b"")), (Outcome::Ok, false), "any reply");
        assert_eq!(one(&target, &raw(b"", b"")), (Outcome::Ok, false), "connect only");
        let closes = server(|_, mut s| {
            let _ = s.read(&mut [0u8; 5]);
        });
        assert_eq!(one(&closes, &raw(b"PING\n", b"")), (Outcome::Ok, false), "a clean close");
        assert_eq!(one(&closes, &raw(b"PING\n", b"PONG")), (Outcome::Reset, false), "closed, no byte");
        let short = server(|_, mut s| {
            let _ = s.read(&mut [0u8; 5]);
            let _ = s.write_all(b"PO");
        });
        assert_eq!(one(&short, &raw(b"PING\n", b"PONG")), (Outcome::ShortRead, false));
    }

    #[test]
    fn heads() {
        let parse =
            |text: &[u8]| Head::parse(text).ok().map(|h| (h.status, h.length, h.chunked, h.keep_alive));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Some((200, Some(12), false, true))
        );
        assert_eq!(parse(b"HTTP/1.0 404 Not Found\r\n\r\n"), Some((404, None, false, false)));
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n"),
            Some((200, None, false, true))
        );
        assert_eq!(parse(b"HTTP/1.1 204\r\nConnection: x, close\r\n\r\n"), Some((204, None, false, false)));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some((200, None, true, true))
        );
        assert_eq!(parse(b"HTTP/1.1 2x0 OK\r\n\r\n"), None);
        assert_eq!(parse(b"HTTP/2 200\r\n\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), None);
    }

    #[test]
    fn io_errors() {
        let e = |kind| io::Error::from(kind);
        assert_eq!(io_outcome(&e(io::ErrorKind::ConnectionRefused), 0), Outcome::Refused);
        assert_eq!(io_outcome(&e(io::ErrorKind::BrokenPipe), 0), Outcome::Reset);
        assert_eq!(io_outcome(&e(io::ErrorKind::ConnectionReset), 3), Outcome::ShortRead);
        assert_eq!(io_outcome(&e(io::ErrorKind::WouldBlock), 3), Outcome::Timeout);
        assert_eq!(io_outcome(&io::Error::from_raw_os_error(libc::EINPROGRESS), 0), Outcome::Timeout);
        let other = io_outcome(&io::Error::from_raw_os_error(libc::EADDRNOTAVAIL), 0);
        assert!(matches!(other, Outcome::Other(text) if text.contains("os error 99")));
    }
}
