//! The demo worker: a small HTTP/1.1 server that survives hot restarts.
//!
//! It never binds anything: it serves the TCP and unix stream listeners a
//! supervisor passed down (Server::Starter, systemd or einhorn protocol, see
//! `support::inherited_fds`; UDP sockets are ignored with a note). Any GET
//! answers `200` with `hello from pid P generation G\n`; HEAD the same
//! without a body; other methods `405`. Keep-alive is honoured (HTTP/1.1 by
//! default, HTTP/1.0 with `Connection: keep-alive`), and so is
//! `Connection: close`. One thread per connection.
//!
//! The order that makes a restart seamless:
//! 1. install the SIGTERM/SIGINT handlers (a self-pipe woken poll loop),
//! 2. wait `--startup-delay`, then send `READY=1` and start accepting;
//! 3. on SIGTERM/SIGINT: close our copies of the listeners at once (queued
//!    connections stay in the shared kernel queue for the next generation),
//!    finish requests in flight and answer them with `Connection: close`,
//!    close idle keep-alive connections, wait for every connection thread,
//!    exit 0.
//!
//! Run: `handover --port 8080 -- target/debug/examples/hello`, then
//! `curl localhost:8080` and `kill -HUP <handover pid>`. Without inherited
//! sockets it exits 2 with a one-line explanation.
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, poll};
use signal_hook::consts::signal::{SIGINT, SIGTERM};
use socket2::Socket;

#[path = "support/mod.rs"]
mod support;
use support::Listener;
use support::say;

/// How often a connection thread looks at the stop flag while it waits.
const TICK: Duration = Duration::from_millis(100);
/// A new connection gets this long to send its first request, even while
/// stopping (it was accepted, so its request must be answered).
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

#[derive(Parser)]
#[command(name = "hello", about = "Demo HTTP worker for handover (serves inherited sockets)")]
struct Opts {
    /// Sleep this long before READY=1 and before accepting (a slow starter).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    startup_delay: u64,
    /// Do not print the start and exit lines (errors are still printed).
    #[arg(long)]
    quiet: bool,
    /// Print `hello: request N pid P generation G` on stdout for every
    /// request, before answering it (for `handover drill --log-line`).
    #[arg(long)]
    log_requests: bool,
    /// Send no READY=1, as most servers (readiness is then seen from
    /// outside, or judged alive after --interval).
    #[arg(long)]
    no_notify: bool,
}

struct Shared {
    stopping: AtomicBool,
    requests: AtomicU64,
    body: String,
    /// `--log-requests`: `pid P generation G`, for the request lines.
    log_requests: Option<String>,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let pid = std::process::id();
    let generation = support::generation();

    let inherited = support::inherited_fds();
    if inherited.is_empty() {
        say!(
            "hello: no inherited sockets (SERVER_STARTER_PORT, LISTEN_FDS or EINHORN_FD_COUNT); \
             run it under a supervisor, e.g. `handover --port 8080 -- {}`",
            std::env::args().next().unwrap_or_else(|| "hello".into())
        );
        return ExitCode::from(2);
    }
    let mut signals = match support::signal_pipe(&[SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            say!("hello: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };

    let mut listeners = Vec::new();
    let mut serving_on = Vec::new();
    for (name, fd) in inherited {
        match Listener::open(support::adopt(fd)) {
            (l @ (Listener::Tcp(_) | Listener::Unix(_)), what) => {
                serving_on.push(format!("fd {fd} ({what})"));
                listeners.push(l);
            }
            (_, what) => {
                say!("hello: ignoring fd {fd} ({name}, {what}): not a TCP or unix stream listener");
            }
        }
    }
    if listeners.is_empty() {
        say!("hello: none of the inherited sockets is a TCP or unix stream listener");
        return ExitCode::from(2);
    }
    let generation_note = format!("pid {pid} generation {generation}");
    if !opts.quiet {
        say!("hello: {generation_note} serving on {}", serving_on.join(", "));
    }

    // Handlers are installed: a TERM from now on is handled, not fatal.
    let delay_end = Instant::now() + Duration::from_millis(opts.startup_delay);
    let mut stop = false;
    while !stop && Instant::now() < delay_end {
        wait(&signals, &[], Some(delay_end));
        stop = signals.pending().next().is_some();
    }

    let shared = Arc::new(Shared {
        stopping: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        body: format!("hello from pid {pid} generation {generation}\n"),
        log_requests: opts.log_requests.then(|| generation_note.clone()),
    });
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    if !stop && !opts.no_notify {
        support::notify_ready();
    }
    while !stop {
        let readable = wait(&signals, &listeners, None);
        stop = signals.pending().next().is_some();
        if stop {
            break;
        }
        for i in readable {
            accept_all(&listeners[i], &shared, &mut threads);
        }
        threads.retain(|t| !t.is_finished());
    }

    shared.stopping.store(true, Ordering::SeqCst);
    drop(listeners);
    for t in threads {
        let _ = t.join();
    }
    if !opts.quiet {
        let n = shared.requests.load(Ordering::SeqCst);
        say!("hello: {generation_note} exiting after {n} requests");
    }
    ExitCode::SUCCESS
}

/// Polls the signal pipe and `listeners` until `deadline`; returns the
/// indices of the readable listeners.
fn wait(signals: &support::SignalPipe, listeners: &[Listener], deadline: Option<Instant>) -> Vec<usize> {
    let mut fds = vec![PollFd::new(signals.get_read().as_fd(), PollFlags::POLLIN)];
    fds.extend(listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)));
    match poll(&mut fds, support::poll_timeout(deadline)) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => {
            say!("hello: poll failed: {e}");
            std::process::exit(1)
        }
    }
    (0..listeners.len()).filter(|&i| fds[i + 1].revents().is_some_and(|r| !r.is_empty())).collect()
}

fn accept_all(listener: &Listener, shared: &Arc<Shared>, threads: &mut Vec<JoinHandle<()>>) {
    loop {
        let accepted: io::Result<Socket> = match listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| s.into()),
            Listener::Unix(l) => l.accept().map(|(s, _)| s.into()),
            _ => return,
        };
        match accepted {
            Ok(sock) => {
                let shared = Arc::clone(shared);
                let spawned = thread::Builder::new().name("connection".into()).spawn(move || {
                    if let Err(e) = serve(sock, &shared) {
                        say!("hello: connection error: {e}");
                    }
                });
                match spawned {
                    Ok(t) => threads.push(t),
                    Err(e) => say!("hello: cannot start a connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Nothing queued, or another generation took it first.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                say!("hello: accept on fd {} failed: {e}", listener.raw_fd());
                return;
            }
        }
    }
}

struct Request {
    head_only: bool,
    method_ok: bool,
    keep_alive: bool,
    http10: bool,
    body_len: usize,
}

/// Serves one connection until the client closes, asks to close, idles
/// out, or the worker stops.
fn serve(mut sock: Socket, shared: &Shared) -> io::Result<()> {
    sock.set_read_timeout(Some(TICK))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut served = 0u64;
    loop {
        // Read one request head; an idle connection closes once stopping.
        let mut last = Instant::now();
        let head_len = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_HEAD {
                return refuse(&mut sock, "431 Request Header Fields Too Large");
            }
            let stopping = shared.stopping.load(Ordering::SeqCst);
            if buf.is_empty() && served > 0 && stopping {
                return Ok(());
            }
            let limit = if served == 0 { FIRST_REQUEST_TIMEOUT } else { IDLE_TIMEOUT };
            if last.elapsed() > limit {
                return Ok(());
            }
            match read_some(&mut sock, &mut buf)? {
                Some(0) => return Ok(()),
                Some(_) => last = Instant::now(),
                None => {}
            }
        };
        let req = match parse(&buf[..head_len]) {
            Ok(req) => req,
            Err(status) => return refuse(&mut sock, status),
        };
        // Discard the body (if any), so the next request starts cleanly.
        let total = head_len + req.body_len;
        while buf.len() < total {
            if last.elapsed() > IDLE_TIMEOUT {
                return Ok(());
            }
            match read_some(&mut sock, &mut buf)? {
                Some(0) => return Ok(()),
                Some(_) => last = Instant::now(),
                None => {}
            }
        }
        buf.drain(..total);
        served += 1;
        let number = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(who) = &shared.log_requests {
            // One write per line, before the answer: an answered request
            // has always been logged.
            let line = format!("hello: request {number} {who}\n");
            io::stdout().lock().write_all(line.as_bytes())?;
        }

        let close = !req.keep_alive || shared.stopping.load(Ordering::SeqCst);
        let (status, body) = if req.method_ok {
            ("200 OK", shared.body.as_str())
        } else {
            ("405 Method Not Allowed", "only GET and HEAD\n")
        };
        let mut head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !req.method_ok {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        if close {
            head.push_str("Connection: close\r\n");
        } else if req.http10 {
            head.push_str("Connection: keep-alive\r\n");
        }
        head.push_str("\r\n");
        if !req.head_only {
            head.push_str(body);
        }
        sock.write_all(head.as_bytes())?;
        if close {
            let _ = sock.shutdown(std::net::Shutdown::Write);
            return Ok(());
        }
    }
}

/// One read into `buf`: `Some(0)` at end of stream, `None` when the read
/// timed out (time to look at the stop flag again).
fn read_some(sock: &mut Socket, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 4096];
    match sock.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(Some(n))
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Parses a request head (request line and headers, CRLF CRLF included).
/// The error is the status line to answer before closing.
fn parse(head: &[u8]) -> Result<Request, &'static str> {
    let head = std::str::from_utf8(head).map_err(|_| "400 Bad Request")?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(_target), Some(version), None) =
        (request_line.next(), request_line.next(), request_line.next(), request_line.next())
    else {
        return Err("400 Bad Request");
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err("505 HTTP Version Not Supported"),
    };
    let mut keep_alive = !http10;
    let mut body_len = 0;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or("400 Bad Request")?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            body_len = value.parse().map_err(|_| "400 Bad Request")?;
            if body_len > MAX_BODY {
                return Err("413 Content Too Large");
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("501 Not Implemented");
        }
    }
    Ok(Request {
        head_only: method == "HEAD",
        method_ok: method == "GET" || method == "HEAD",
        keep_alive,
        http10,
        body_len,
    })
}

/// Answers an error status with a short body, and closes.
fn refuse(sock: &mut Socket, status: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{status}\n",
        status.len() + 1
    );
    sock.write_all(head.as_bytes())?;
    let _ = sock.shutdown(std::net::Shutdown::Write);
    Ok(())
}
