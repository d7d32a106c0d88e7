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
    let parse = |text: &[u8]| Head::parse(text).ok().map(|h| (h.status, h.length, h.chunked, h.keep_alive));
    assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"), Some((200, Some(12), false, true)));
    assert_eq!(parse(b"HTTP/1.0 404 Not Found\r\n\r\n"), Some((404, None, false, false)));
    assert_eq!(parse(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n"), Some((200, None, false, true)));
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
