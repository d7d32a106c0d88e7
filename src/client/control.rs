//! The control socket's client: `handover restart|stop|status|upgrade
//! --control PATH`, and the drill's. It sends nothing to, and believes
//! nothing from, a socket that another user than root or ours listens on.
use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt};
use nix::unistd::geteuid;
use serde::de::DeserializeOwned;

use super::show;
use crate::error::{Error, Result, io_text};
use crate::wire::control::{Command, Request, decode, encode, peer_allowed};

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
    let fail = |what: &str, e: &io::Error| {
        Error::runtime(format!("cannot {what} control socket {shown}: {}", io_text(e)))
    };
    let mut stream = connect(path)?;
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
            return Err(Error::runtime(format!("{text} (see its log)")));
        }
        Err(e) if is_timeout(&e) => {
            return Err(Error::runtime(format!(
                "no reply from the supervisor on control socket {shown} after {} (see its log)",
                waited()
            )));
        }
        Err(e) => return Err(fail("read from", &e)),
    };
    let reply: T = decode(&line)?;
    if command == Command::Stop {
        loop {
            match read_line(&mut stream, deadline, &mut buf) {
                Ok(Some(_)) => {}
                Err(e) if is_timeout(&e) => {
                    let text = format!("supervisor still running after {}", waited());
                    return Err(Error::runtime(format!("{text} (see the supervisor's log)")));
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
    let mut stream = connect(path)?;
    stream
        .write_all(&encode(&Request::new(command)))
        .map_err(|e| Error::runtime(format!("cannot send to control socket {shown}: {}", io_text(&e))))
}

/// Connects to the control socket and checks who serves it: the user that
/// listens on it (`SO_PEERCRED`) must be root or ours. Anyone else could
/// have put a socket of theirs at the path (in a directory they can
/// write), and its replies would say whatever they like: "stopped",
/// "upgraded".
pub(super) fn connect(path: &Path) -> Result<UnixStream> {
    let shown = path.display();
    let stream = UnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                format!(" (is the supervisor running with --control {shown}?)")
            }
            ErrorKind::PermissionDenied => " (only its owner and root may use it)".into(),
            _ => String::new(),
        };
        Error::runtime(format!("cannot connect to control socket {shown}: {}{hint}", io_text(&e)))
    })?;
    let server = getsockopt(&stream, sockopt::PeerCredentials).map_err(|e| {
        Error::runtime(format!("cannot tell who serves control socket {shown}: {}", e.desc()))
    })?;
    trust(path, server.uid(), geteuid().as_raw())?;
    Ok(stream)
}

/// The refusal of a server running as `server_uid`, if we are not to
/// trust it.
fn trust(path: &Path, server_uid: u32, our_euid: u32) -> Result<()> {
    if peer_allowed(server_uid, our_euid) {
        return Ok(());
    }
    Err(Error::runtime(format!(
        "control socket {} is served by uid {server_uid}, not by this user or root; refusing to trust its replies",
        path.display()
    )))
}

/// The next line, with its `\n`, before `deadline`; None at end of stream.
pub(super) fn read_line(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusts_a_server_run_by_root_or_by_us_only() {
        let path = Path::new("/run/app/ctl");
        assert_eq!(trust(path, 1000, 1000), Ok(()));
        assert_eq!(trust(path, 0, 1000), Ok(()));
        assert_eq!(trust(path, 0, 0), Ok(()));
        let refused = "control socket /run/app/ctl is served by uid 65534, not by this user or root; refusing to trust its replies";
        assert_eq!(trust(path, 65534, 0), Err(Error::runtime(refused)));
        assert_eq!(trust(path, 65534, 1000).unwrap_err().code, 1);
    }
}
