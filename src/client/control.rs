//! The control socket's client: `handover restart|stop|status --control PATH`.
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::show;
use crate::error::{Error, Result, io_text};
use crate::wire::control::{Command, Request, decode, encode};

fn runtime(message: String) -> Error {
    Error::runtime(message)
}

/// Sends one request and returns the supervisor's reply as `T`, or its
/// refusal (`"ok":false`) as an `Error`. For `stop`, also waits until the
/// supervisor has exited (the connection ends). `timeout` bounds the whole
/// call; None waits.
pub fn call<T: DeserializeOwned>(path: &Path, command: Command, timeout: Option<Duration>) -> Result<T> {
    request(path, &Request::new(command), timeout)
}

/// `call` with a whole request (`upgrade` has fields of its own).
pub fn request<T: DeserializeOwned>(path: &Path, request: &Request, timeout: Option<Duration>) -> Result<T> {
    let command = request.command;
    let deadline = timeout.map(|t| Instant::now() + t);
    let waited = || show(timeout.unwrap_or_default());
    let shown = path.display();
    let fail =
        |what: &str, e: &io::Error| runtime(format!("cannot {what} control socket {shown}: {}", io_text(e)));
    let mut stream = UnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                format!(" (is the supervisor running with --control {shown}?)")
            }
            ErrorKind::PermissionDenied => " (only its owner and root may use it)".into(),
            _ => String::new(),
        };
        runtime(format!("cannot connect to control socket {shown}: {}{hint}", io_text(&e)))
    })?;
    // `stop` keeps its side open: the end of the connection says the supervisor is gone.
    (stream.write_all(&encode(request)))
        .and_then(|()| match command {
            Command::Stop => Ok(()),
            _ => stream.shutdown(Shutdown::Write),
        })
        .map_err(|e| fail("send to", &e))?;
    let mut buf = Vec::new();
    let line = match read_line(&mut stream, deadline, &mut buf) {
        Ok(Some(line)) => line,
        Ok(None) => {
            let text = "the supervisor closed the control connection without a reply";
            return Err(runtime(format!("{text} (see its log)")));
        }
        Err(e) if is_timeout(&e) => {
            return Err(runtime(format!("no reply from the supervisor after {}", waited())));
        }
        Err(e) => return Err(fail("read from", &e)),
    };
    let reply: T = decode(&line).map_err(runtime)?;
    if command == Command::Stop {
        loop {
            match read_line(&mut stream, deadline, &mut buf) {
                Ok(Some(_)) => {}
                Err(e) if is_timeout(&e) => {
                    let text = format!("supervisor still running after {}", waited());
                    return Err(runtime(format!("{text} (see the supervisor's log)")));
                }
                // The end, or ECONNRESET: the supervisor is gone.
                _ => break,
            }
        }
    }
    Ok(reply)
}

/// Sends one request and returns without waiting for its answer
/// (`handover restart` without `--wait`).
pub fn send(path: &Path, command: Command) -> Result<()> {
    let shown = path.display();
    let mut stream = UnixStream::connect(path).map_err(|e| {
        runtime(format!(
            "cannot connect to control socket {shown}: {} (is the supervisor running with --control {shown}?)",
            io_text(&e)
        ))
    })?;
    stream
        .write_all(&encode(&Request::new(command)))
        .map_err(|e| runtime(format!("cannot send to control socket {shown}: {}", io_text(&e))))
}

/// The next line, with its `\n`, before `deadline`; None at end of stream.
fn read_line(
    stream: &mut UnixStream,
    deadline: Option<Instant>,
    buf: &mut Vec<u8>,
) -> io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            return Ok(Some(buf.drain(..=end).collect()));
        }
        let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(left)?;
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
