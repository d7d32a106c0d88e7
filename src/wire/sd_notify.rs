//! sd_notify(3) datagrams as a worker sends them to the supervisor's
//! `NOTIFY_SOCKET`: newline-separated `NAME=value` lines.
//!
//! Pure: the socket that receives them, and the sender's pid the kernel
//! attaches, belong to the supervisor. Only `READY=1` and `STATUS=` mean
//! something here; every other line (`RELOADING=1`, `MAINPID=`, `READY=0`,
//! text without `=`) is ignored, so an unknown or future field never makes
//! a worker ready. When a datagram holds several `STATUS=` lines the last
//! one counts, as in systemd.

/// `READY=1`: the worker serves.
pub const READY: &str = "READY";
/// The only value of `READY` that means ready.
pub const READY_VALUE: &str = "1";
/// `STATUS=...`: free text describing the worker's state.
pub const STATUS: &str = "STATUS";

/// One datagram from a worker.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// The sender, as the kernel reported it.
    pub pid: i32,
    pub ready: bool,
    pub status: Option<String>,
}

/// `READY=1` and `STATUS=...` out of a newline-separated sd_notify datagram.
pub fn parse(pid: i32, text: &str) -> Message {
    let mut message = Message { pid, ready: false, status: None };
    for line in text.lines() {
        match line.split_once('=') {
            Some((READY, READY_VALUE)) => message.ready = true,
            Some((STATUS, status)) => message.status = Some(status.to_string()),
            _ => {}
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_and_status() {
        let m = parse(7, "STATUS=warming up\nREADY=1\n");
        assert_eq!(m, Message { pid: 7, ready: true, status: Some("warming up".into()) });
        assert!(!parse(7, "READY=0").ready);
        assert!(!parse(7, "RELOADING=1").ready);
    }

    #[test]
    fn golden_datagrams() {
        let none = |pid| Message { pid, ready: false, status: None };
        assert_eq!(parse(1, "READY=1"), Message { ready: true, ..none(1) });
        assert_eq!(parse(1, "MAINPID=5\nREADY=1\nX"), Message { ready: true, ..none(1) });
        assert_eq!(parse(2, ""), none(2));
        assert_eq!(parse(2, "READY\nREADY =1\nready=1\nREADY=1 "), none(2));
        let status = |text: &str| Some(text.to_string());
        assert_eq!(parse(3, "STATUS=a=b"), Message { status: status("a=b"), ..none(3) });
        assert_eq!(parse(3, "STATUS=one\nSTATUS=two"), Message { status: status("two"), ..none(3) });
        assert_eq!(parse(3, "STATUS="), Message { status: status(""), ..none(3) });
    }

    mod fuzz;
}
