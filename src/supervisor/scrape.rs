//! `--metrics-listen ADDR`: `GET /metrics` over HTTP/1.x, read-only, for
//! a Prometheus scraper. Off by default.
//!
//! Invariants, so that no client can cost the loop anything: the listener
//! and connections are non-blocking and polled with the rest; at most
//! `MAX_CONNS` connections are open (a newcomer closes the oldest); a
//! request head is at most `MAX_REQUEST` bytes (beyond: `431`, closed);
//! a connection gets `TIMEOUT` from its accept to be answered and to take
//! the answer (a slow or silent client is closed then); each answer is
//! one page, then the connection is closed (`Connection: close`). `GET
//! /metrics` is answered `200` with the page, another path `404`, another
//! method `405`. At most `MAX_CONNS` accepts per turn.
//!
//! Across `handover upgrade` the listening socket is carried (`Carry`):
//! nobody can take the address while the images change, and a scrape
//! waits in its backlog; the connections in hand are closed by the exec.
//! A new image given another `--metrics-listen` binds that one instead.
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result, io_text};
use crate::supervisor::carry::{Carry, Resuming, Written};

pub const MAX_CONNS: usize = 8;
pub const MAX_REQUEST: usize = 8 * 1024;
pub const TIMEOUT: Duration = Duration::from_secs(5);

struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Answered (the output is all there is to send).
    answered: bool,
    /// The client has sent all it will.
    eof: bool,
    /// All sent and our side shut down: what the client still sends is
    /// read and dropped until it closes (closing with unread input would
    /// reset the connection, and the answer could be lost).
    closing: bool,
    done: bool,
    deadline: Instant,
}

pub struct MetricsServer {
    listener: TcpListener,
    /// The address it was asked to listen on (port 0 stays 0).
    asked: SocketAddr,
    conns: Vec<Conn>,
}

/// What the upgrade's record holds of it: the listening socket and the
/// address it was asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsRecord {
    pub fd: RawFd,
    pub asked: SocketAddr,
}

impl Carry for MetricsServer {
    type Record = MetricsRecord;

    fn carry(&self, _: Written) -> MetricsRecord {
        MetricsRecord { fd: self.listener.as_raw_fd(), asked: self.asked }
    }

    fn fds(record: &MetricsRecord) -> Vec<RawFd> {
        vec![record.fd]
    }

    /// The carried socket, if this image listens on the address it was
    /// bound for; else the one this image asks for, bound now (and the
    /// carried one closed).
    fn resume(record: MetricsRecord, from: &mut Resuming, config: &Config) -> io::Result<MetricsServer> {
        let carried = TcpListener::from(from.fd(record.fd)?);
        match config.metrics_listen {
            Some(asked) if asked == record.asked => {
                carried.set_nonblocking(true)?;
                Ok(MetricsServer { listener: carried, asked, conns: Vec::new() })
            }
            Some(asked) => {
                drop(carried);
                MetricsServer::bind(asked).map_err(|e| io::Error::other(e.message))
            }
            None => Err(io::Error::other("--metrics-listen is not given any more")),
        }
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Asked {
    /// Not complete yet.
    More,
    Page,
    Answer(&'static str),
}

fn parse(input: &[u8]) -> Asked {
    let end = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| input.windows(2).position(|w| w == b"\n\n"));
    // A head is too large whether it came whole in one read or not.
    if end.unwrap_or(input.len()) > MAX_REQUEST {
        return Asked::Answer("431 Request Header Fields Too Large");
    } else if end.is_none() {
        return Asked::More;
    }
    let line = input.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => Asked::Page,
        (b"GET", _) => Asked::Answer("404 Not Found"),
        _ => Asked::Answer("405 Method Not Allowed"),
    }
}

fn response(status: &str, body: &str) -> Vec<u8> {
    let kind =
        if status.starts_with("200") { "text/plain; version=0.0.4; charset=utf-8" } else { "text/plain" };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body.as_bytes()].concat()
}

impl MetricsServer {
    pub fn bind(addr: SocketAddr) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::runtime(format!(
                "cannot listen for metrics on {addr}: {}; choose another --metrics-listen address",
                io_text(&e)
            ))
        })?;
        listener.set_nonblocking(true).map_err(|e| Error::runtime(e.to_string()))?;
        Ok(MetricsServer { listener, asked: addr, conns: Vec::new() })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let conns = self.conns.iter().map(|c| {
            let flags = if c.answered && !c.closing { PollFlags::POLLOUT } else { PollFlags::POLLIN };
            (c.stream.as_fd(), flags)
        });
        std::iter::once((self.listener.as_fd(), PollFlags::POLLIN)).chain(conns).collect()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.conns.iter().map(|c| c.deadline).min()
    }

    /// Accepts, reads and writes what is ready; closes what is done or
    /// late. Returns whether a connection waits for the page (`answer`).
    pub fn service(&mut self, now: Instant) -> bool {
        for _ in 0..MAX_CONNS {
            let Ok((stream, _)) = self.listener.accept() else { break };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.conns.len() >= MAX_CONNS {
                self.conns.remove(0);
            }
            let (input, output, deadline) = (Vec::new(), Vec::new(), now + TIMEOUT);
            let (answered, eof, closing, done) = (false, false, false, false);
            self.conns.push(Conn { stream, input, output, answered, eof, closing, done, deadline });
        }
        let mut wanted = false;
        for conn in &mut self.conns {
            if conn.closing {
                conn.read();
                continue;
            }
            if !conn.answered {
                conn.read();
                match parse(&conn.input) {
                    // Closed before a whole request: nothing to answer.
                    Asked::More => conn.done |= conn.eof,
                    Asked::Page => wanted = true,
                    Asked::Answer(status) => {
                        conn.output = response(status, &format!("{status}\n"));
                        conn.answered = true;
                    }
                }
            }
            conn.write();
        }
        self.conns.retain(|c| !c.done && now < c.deadline);
        wanted
    }

    /// Answers every connection that asked for the page.
    pub fn answer(&mut self, page: &str) {
        for conn in self.conns.iter_mut().filter(|c| !c.answered && parse(&c.input) == Asked::Page) {
            conn.output = response("200 OK", page);
            conn.answered = true;
            conn.write();
        }
        self.conns.retain(|c| !c.done);
    }
}

impl Conn {
    /// Reads what the client sends: the request, or once all is sent
    /// (`closing`) whatever follows, dropped; done at its end.
    fn read(&mut self) {
        let mut chunk = [0u8; 4096];
        while self.closing || self.input.len() <= MAX_REQUEST {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) if !self.closing => self.input.extend_from_slice(&chunk[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.done = true;
                    break;
                }
            }
        }
        self.done |= self.closing && self.eof;
    }

    fn write(&mut self) {
        while self.answered && !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(n) => drop(self.output.drain(..n)),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return self.done = true,
            }
        }
        if self.answered && self.output.is_empty() && !self.closing {
            self.closing = true;
            self.done |= self.stream.shutdown(std::net::Shutdown::Write).is_err();
            self.read();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_gets_the_page() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Asked::Page);
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.0\n\n"), Asked::Page);
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Asked::More);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Asked::Answer("404 Not Found"));
        assert_eq!(parse(b"POST /metrics HTTP/1.1\r\n\r\n"), Asked::Answer("405 Method Not Allowed"));
        let long = [&b"GET /metrics HTTP/1.1\r\nX: "[..], &[b'a'; MAX_REQUEST]].concat();
        assert_eq!(parse(&long), Asked::Answer("431 Request Header Fields Too Large"));
        // The same head complete, as one read brings it.
        let whole = [&long[..], b"\r\n\r\n"].concat();
        assert_eq!(parse(&whole), Asked::Answer("431 Request Header Fields Too Large"));
    }

    use crate::fuzz_tests::{Bytes, config, mutated};
    use proptest::prelude::*;

    const VALID: &[&str] = &[
        "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /metrics?x=1 HTTP/1.0\n\n",
        "HEAD / HTTP/1.1\r\n\r\n",
    ];

    proptest! {
        #![proptest_config(config(512))]

        /// Any bytes: no panic; the page only for a complete `GET /metrics`
        /// head; more is waited for only while under `MAX_REQUEST` bytes.
        #[test]
        fn fuzz_http_requests(Bytes(input) in mutated(VALID)) {
            let complete = input.windows(4).any(|w| w == b"\r\n\r\n") || input.windows(2).any(|w| w == b"\n\n");
            match parse(&input) {
                Asked::More => prop_assert!(!complete && input.len() <= MAX_REQUEST),
                Asked::Page => {
                    let first = input.split(|&b| b == b'\n').next().unwrap_or_default();
                    let has = |word: &[u8]| first.windows(word.len()).any(|w| w == word);
                    prop_assert!(complete && has(b"GET ") && has(b" /metrics"));
                }
                Asked::Answer(_) => {}
            }
        }
    }
}
