//! The supervisor's stderr as a bounded buffer, written only as fast as
//! its reader takes it: a stalled terminal, a log command that stops
//! reading or a full pipe never block the poll loop.
//!
//! How a write is kept from blocking depends on what fd 2 is:
//! - a pipe, FIFO, terminal or other device: fd 2 is opened again through
//!   `/proc/self/fd/2`, which gives a separate open file of the same pipe
//!   or device, and that one alone is made non-blocking. The workers,
//!   which inherit fd 2 itself, keep a blocking one (O_NONBLOCK on a shared
//!   open file would hand them EAGAIN);
//! - a socket (journald's stdout stream): `send` with `MSG_DONTWAIT`;
//! - a regular file: a plain `write`, which does not wait for a reader.
//!   (If `/proc` cannot open fd 2 again, writes to it are plain too and
//!   may block on a stalled pipe: the one case this module cannot help;
//!   the log says so when fd 2 is set up.)
//!
//! Invariants and limits:
//! - The supervisor's own lines are kept up to `CAPACITY` bytes pending;
//!   beyond that they are dropped and counted, and the count is reported
//!   in a line of its own once the reader catches up.
//! - Captured worker lines are never dropped while the log has a reader:
//!   `--log-capture` reads the workers' pipes only while less than
//!   `HIGH_WATER` bytes are pending, so a stalled reader stalls the
//!   workers' own writes instead. While the `| COMMAND` logger is down
//!   (`lossy`), they are read on and kept up to `LOSSY_CAPACITY` bytes pending;
//!   records beyond that are dropped whole, counted and reported, so
//!   workers do not wait for a command that may be down for a while.
//! - A reader that is gone for good (EPIPE without a log command to start
//!   again, or any other write error) turns the sink off: pending bytes
//!   are discarded and counted, so no worker waits on a log nobody reads.
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, send};

/// Pending bytes beyond which the supervisor's own lines are dropped.
pub const CAPACITY: usize = 1 << 20;
/// Pending bytes below which captured output is read.
pub const HIGH_WATER: usize = 256 * 1024;
/// Pending bytes beyond which captured records are dropped while the log
/// command is down: less than `CAPACITY`, so the supervisor's own lines
/// (the count of those dropped among them) still have room.
pub const LOSSY_CAPACITY: usize = CAPACITY - 64 * 1024;

#[derive(Default)]
enum Target {
    /// A private non-blocking open file of the same pipe or device.
    Own(OwnedFd),
    /// fd 2 is a socket: `MSG_DONTWAIT` per call.
    Socket,
    /// fd 2 is a regular file.
    #[default]
    Plain,
    /// fd 2 is a pipe or device that could not be opened again: plain
    /// writes, which block while its reader stalls (`blocking_warning`).
    Blocking,
}

impl Target {
    fn inspect() -> Target {
        let Ok(stat) = nix::sys::stat::fstat(stderr_fd()) else { return Target::Plain };
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => return Target::Plain,
            libc::S_IFSOCK => return Target::Socket,
            _ => {}
        }
        let own = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open("/proc/self/fd/2");
        match own {
            Ok(file) => Target::Own(file.into()),
            Err(_) => Target::Blocking,
        }
    }
}

#[derive(Default)]
pub struct Sink {
    target: Target,
    pending: Vec<u8>,
    /// Bytes of `pending` already written.
    sent: usize,
    /// Own lines dropped since the last report.
    dropped: u64,
    /// The reader is gone: everything is discarded.
    off: bool,
    /// Bytes discarded since the sink went off.
    discarded: u64,
    /// The log command is down: captured records beyond `CAPACITY` go.
    lossy: bool,
    /// Captured records dropped since the last report.
    dropped_captured: u64,
}

impl Sink {
    pub fn new() -> Sink {
        Sink { target: Target::inspect(), ..Sink::default() }
    }

    /// Why writes may block, when they may: said once at start and after
    /// each retarget, so that a log that freezes the supervisor is explained.
    pub fn blocking_warning(&self) -> Option<&'static str> {
        matches!(self.target, Target::Blocking).then_some(
            "cannot open the log (fd 2) again through /proc/self/fd/2: \
             while its reader stalls, writing to it blocks the supervisor (mount /proc)",
        )
    }

    /// fd 2 now points elsewhere (a reopened log file, a new log command).
    pub fn retarget(&mut self) {
        self.target = Target::inspect();
        self.off = false;
    }

    fn len(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// The bytes not yet taken by the reader (a self-upgrade carries them).
    pub fn unsent(&self) -> &[u8] {
        &self.pending[self.sent..]
    }

    /// Whether captured output must wait for the log to take some.
    pub fn has_room(&self) -> bool {
        self.len() < HIGH_WATER
    }

    /// Whether captured output may be read now: with room, or while the
    /// log command is down (records beyond `CAPACITY` are dropped).
    pub fn may_capture(&self) -> bool {
        self.lossy || self.has_room()
    }

    /// The log command is down (`true`) or running again.
    pub fn set_lossy(&mut self, lossy: bool) {
        self.lossy = lossy;
    }

    /// One of the supervisor's own lines; dropped (and counted) when
    /// `CAPACITY` bytes are pending. False if dropped.
    pub fn own(&mut self, line: &[u8]) -> bool {
        let kept = self.queue(line, CAPACITY);
        self.dropped += u64::from(!kept && !self.off);
        kept
    }

    /// A captured record: kept (capture reads only with room), unless
    /// the log command is down and `LOSSY_CAPACITY` bytes are pending.
    pub fn captured(&mut self, record: &[u8]) {
        let kept = self.queue(record, if self.lossy { LOSSY_CAPACITY } else { usize::MAX });
        self.dropped_captured += u64::from(!kept && !self.off);
    }

    /// `bytes` pending, unless the sink is off (they are discarded) or
    /// they would make more than `limit` pending; whether they are.
    fn queue(&mut self, bytes: &[u8], limit: usize) -> bool {
        let kept = !self.off && self.len() + bytes.len() <= limit;
        if kept {
            self.pending.extend_from_slice(bytes);
        } else if self.off {
            self.discarded += bytes.len() as u64;
        }
        kept
    }

    /// Captured records dropped since the last call, once there is room to say so.
    pub fn take_dropped_captured(&mut self) -> Option<u64> {
        (self.dropped_captured > 0 && self.has_room()).then(|| std::mem::take(&mut self.dropped_captured))
    }

    /// Own lines dropped since the last call, once there is room to say so.
    pub fn take_dropped(&mut self) -> Option<u64> {
        (self.dropped > 0 && self.has_room()).then(|| std::mem::take(&mut self.dropped))
    }

    /// POLLOUT on what the pending bytes go to, while there are some.
    pub fn poll_fd(&self) -> Option<(BorrowedFd<'_>, PollFlags)> {
        if self.len() == 0 || self.off {
            return None;
        }
        let fd = match &self.target {
            Target::Own(fd) => fd.as_fd(),
            Target::Socket | Target::Plain | Target::Blocking => stderr_fd(),
        };
        Some((fd, PollFlags::POLLOUT))
    }

    /// Writes what the reader takes now. `restartable`: a broken pipe may
    /// be mended (a log command started again), so pending bytes are kept.
    pub fn flush(&mut self, restartable: bool) {
        while self.len() > 0 && !self.off {
            let bytes = &self.pending[self.sent..];
            let written = match &self.target {
                Target::Own(fd) => nix::unistd::write(fd, bytes),
                Target::Socket => {
                    send(libc::STDERR_FILENO, bytes, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL)
                }
                Target::Plain | Target::Blocking => nix::unistd::write(stderr_fd(), bytes),
            };
            match written {
                Ok(n) => self.sent += n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => break,
                Err(Errno::EPIPE) if restartable => break,
                Err(_) => {
                    self.off = true;
                    self.discarded += self.len() as u64;
                    self.sent = self.pending.len();
                }
            }
        }
        if self.len() == 0 {
            self.pending.clear();
            self.sent = 0;
            if self.pending.capacity() > HIGH_WATER {
                self.pending = Vec::new();
            }
        } else if self.sent > HIGH_WATER {
            self.pending.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// At exit: keeps writing for at most `within`, then gives up on the rest.
    pub fn finish(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            self.flush(false);
            let Some((fd, events)) = self.poll_fd() else { return };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            if poll(&mut [PollFd::new(fd, events)], timeout).is_err() {
                return;
            }
        }
    }
}

/// fd 2, for the life of the process.
static STDERR: LazyLock<io::Stderr> = LazyLock::new(io::stderr);

fn stderr_fd() -> BorrowedFd<'static> {
    STDERR.as_fd()
}

/// Captured records go to the sink.
impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.captured(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A sink writing to a pipe nobody reads yet, and the pipe's read end.
    fn stalled() -> (Sink, std::fs::File) {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        (Sink { target: Target::Own(write), ..Sink::default() }, read.into())
    }

    #[test]
    fn a_stalled_reader_costs_own_lines_counted_never_captured_ones() {
        let (mut sink, mut reader) = stalled();
        let line = [b'x'; 1000];
        let mut kept = 0;
        while sink.own(&line) {
            kept += 1;
            sink.flush(false);
        }
        assert!(kept * 1000 >= CAPACITY, "kept {kept} lines");
        assert!(!sink.has_room(), "captured output waits");
        assert!(!sink.own(&line));
        sink.captured(&line);
        assert_eq!(sink.take_dropped(), None, "no room to say so yet");
        // The reader catches up: everything pending arrives, in order.
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        while sink.poll_fd().is_some() {
            sink.flush(false);
            match reader.read(&mut chunk) {
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            }
        }
        while let Ok(n) = reader.read(&mut chunk) {
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got.len(), (kept + 1) * 1000, "own lines kept and the captured one");
        assert_eq!(sink.take_dropped(), Some(2));
        assert_eq!(sink.take_dropped(), None);
    }

    #[test]
    fn while_the_log_command_is_down_captured_records_beyond_the_bound_go_whole() {
        let (mut sink, mut reader) = stalled();
        sink.set_lossy(true);
        let record = [b'y'; 1000];
        while sink.may_capture() && sink.dropped_captured == 0 {
            sink.captured(&record);
            sink.flush(false);
        }
        assert!(sink.may_capture(), "read on while the command is down");
        sink.captured(&record);
        assert_eq!(sink.dropped_captured, 2);
        assert!(sink.own(&record), "the supervisor's own lines still have room");
        assert_eq!(sink.take_dropped_captured(), None, "no room to say so yet");
        sink.set_lossy(false);
        assert!(!sink.may_capture(), "a running command takes them first");
        let mut got = 0;
        let mut chunk = vec![0u8; 1 << 16];
        while sink.poll_fd().is_some() {
            sink.flush(false);
            while let Ok(n) = reader.read(&mut chunk) {
                assert!(chunk[..n].iter().all(|&b| b == b'y'));
                got += n;
            }
        }
        assert_eq!(got % 1000, 0, "whole records only");
        assert!(got <= LOSSY_CAPACITY + 64 * 1024 + 1000, "{got} bytes");
        assert_eq!(sink.take_dropped_captured(), Some(2));
    }

    #[test]
    fn a_reader_gone_for_good_turns_the_sink_off() {
        let (mut sink, reader) = stalled();
        drop(reader);
        assert!(sink.own(b"one\n"));
        sink.flush(true);
        assert!(sink.poll_fd().is_some(), "a log command may come back: kept");
        sink.flush(false);
        assert!(sink.poll_fd().is_none() && sink.off);
        sink.captured(b"two\n");
        assert!(sink.has_room(), "nothing waits on a log nobody reads");
        assert_eq!(sink.discarded, 8);
    }
}
