//! Worker output through pipes that handover owns (`--log-capture`).
//!
//! Before each spawn, `open` makes a close-on-exec pipe per stream; the
//! spawn module `dup2`s the write ends onto the worker's fds 1 and 2 and
//! the caller drops its own copies at once, so a stream ends (read returns
//! 0) exactly when the worker and every process that inherited the pipe
//! from it have closed it. A stream is read until then, across any number
//! of generation switches: a restart never closes a pipe, so no line is
//! lost there, and whatever a killed worker had written is still read.
//!
//! Records, one per line, each written with a single `write_all`, so they
//! never interleave with other writers' lines (with capture on, handover
//! is the only writer; a pipe keeps writes atomic only up to 4 KiB):
//!
//! - text: `[gen 2 pid 1234 stdout] the line`; the line's bytes go out as
//!   they came (invalid UTF-8 included), without the `\n` and a `\r` right
//!   before it, except control characters, written visibly (`\x1b`, see
//!   `escape::controls`) so that a line cannot overprint its prefix. A
//!   marker after the stream name, inside the brackets, tells a record that is not a whole line: `[gen 2 pid 1234 stdout continued]`
//!   or `[gen 2 pid 1234 stdout partial]`. `grep 'pid 1234 stdout'` finds
//!   them all; handover's own lines start with `handover[PID]: ` instead.
//! - json: `{"time":"2026-11-26T12:00:00.123Z","generation":2,"pid":1234,
//!   "stream":"stdout","line":"..."}`, plus `"continued":true` or
//!   `"partial":true`. `time` is when handover read the line (UTC,
//!   milliseconds). Invalid UTF-8 becomes U+FFFD: JSON strings cannot
//!   carry raw bytes. serde_json escapes C0 controls (`\u001b`), so a
//!   record is always one line.
//!
//! `continued`: the line is longer than `MAX_PIECE` (16 KiB) and goes on in
//! this stream's next record; pieces are cut at a UTF-8 character boundary
//! where there is one, and the last piece carries no marker. `partial`: the
//! stream ended (or handover shut down) before the line's `\n`.
//!
//! Invariants and limits:
//!
//! - Back-pressure, never loss: only the read end is non-blocking (the two
//!   ends are separate open files, so O_NONBLOCK on one leaves the other
//!   blocking). A worker writing faster than handover reads blocks in
//!   write(2). The flip side: a stalled supervisor stalls its workers'
//!   logging, and a dead one gives them EPIPE. Writes to the log itself
//!   block, as the supervisor's own lines do.
//! - Fairness: `service` reads at most `READ_BUDGET` (64 KiB) per stream per
//!   call; poll is level-triggered, so the rest is read on the next turn,
//!   after every other stream and event has had its turn.
//! - Bounded memory: between calls a stream holds at most `MAX_PIECE + 1`
//!   bytes waiting for their `\n`.
//! - A stream is read only once `attach` has named its worker, so every
//!   record carries the right generation and pid; until then its bytes
//!   wait in the kernel's pipe.
//! - The order of a worker's stdout lines relative to its stderr lines is
//!   not kept: they are two pipes. Lines of one stream keep their order.

mod escape;

use std::borrow::Cow;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::PollFlags;
use nix::unistd::{pipe2, read};
use serde::Serialize;

/// The longest record's line, in bytes; longer lines are cut into pieces.
pub const MAX_PIECE: usize = 16 * 1024;
/// Bytes read from one stream per `service` call.
pub const READ_BUDGET: usize = 64 * 1024;
/// Bytes read from one stream by `finish`: the largest pipe an unprivileged
/// process gets (`/proc/sys/fs/pipe-max-size`), so a writer that never
/// stops cannot hold up shutdown.
pub const FINISH_BUDGET: usize = 1024 * 1024;

pub use crate::config::options::LogFormat as Format;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Stdout,
    Stderr,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Stdout => "stdout",
            Which::Stderr => "stderr",
        }
    }
}

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole line.
    Line,
    /// A piece of an over-long line, which goes on in the next record.
    Continued,
    /// The end of a line whose `\n` never came.
    Partial,
}

/// Whose stream a record comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label {
    pub generation: u64,
    pub pid: i32,
    pub which: Which,
}

/// Names the pipes of one spawn between `open` and `attach`/`abandon`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token(u64);

/// The write ends for one worker: blocking, close-on-exec.
pub struct Pipes {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub token: Token,
}

#[derive(Serialize)]
struct Record<'a> {
    time: String,
    generation: u64,
    pid: i32,
    stream: &'static str,
    line: Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    partial: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    continued: bool,
}

/// One record, with its `\n`, into `buf` (cleared first).
pub fn encode(format: Format, time: SystemTime, label: Label, line: &[u8], kind: Kind, buf: &mut Vec<u8>) {
    buf.clear();
    match format {
        Format::Text => {
            let marker = match kind {
                Kind::Line => "",
                Kind::Continued => " continued",
                Kind::Partial => " partial",
            };
            let Label { generation, pid, which } = label;
            let _ = write!(buf, "[gen {generation} pid {pid} {}{marker}] ", which.name());
            escape::controls(line, buf);
        }
        Format::Json => {
            let record = Record {
                time: humantime::format_rfc3339_millis(time).to_string(),
                generation: label.generation,
                pid: label.pid,
                stream: label.which.name(),
                line: String::from_utf8_lossy(line),
                partial: kind == Kind::Partial,
                continued: kind == Kind::Continued,
            };
            // Cannot fail: plain fields into a Vec.
            let _ = serde_json::to_writer(&mut *buf, &record);
        }
    }
    buf.push(b'\n');
}

/// Cuts a byte stream into records. Between calls `pending` holds no `\n`
/// and at most `MAX_PIECE` bytes of line, plus a `\r` its `\n` may follow.
#[derive(Default)]
struct Splitter {
    pending: Vec<u8>,
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Where to cut a line longer than `MAX_PIECE`: at most 3 bytes earlier,
/// so as not to split a UTF-8 character.
fn piece_len(rest: &[u8]) -> usize {
    let mut cut = MAX_PIECE;
    while cut > MAX_PIECE - 3 && rest.get(cut).is_some_and(|&b| b & 0xC0 == 0x80) {
        cut -= 1;
    }
    cut
}

impl Splitter {
    fn push(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8], Kind)) {
        // `pending` holds no `\n`, so only the new bytes are searched.
        let mut searched = self.pending.len();
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        loop {
            let newline = self.pending[searched..].iter().position(|&b| b == b'\n').map(|i| searched + i);
            searched = newline.unwrap_or(self.pending.len());
            let line = strip_cr(&self.pending[start..searched]);
            if line.len() > MAX_PIECE {
                let cut = piece_len(&self.pending[start..]);
                emit(&self.pending[start..start + cut], Kind::Continued);
                start += cut;
            } else if let Some(end) = newline {
                emit(line, Kind::Line);
                start = end + 1;
                searched = start;
            } else {
                break;
            }
        }
        self.pending.drain(..start);
    }

    fn flush(&mut self, emit: &mut impl FnMut(&[u8], Kind)) {
        // Longer than a piece only by the `\r` a `\n` never followed: cut it as `push` would.
        let cut = if self.pending.len() > MAX_PIECE { piece_len(&self.pending) } else { 0 };
        if cut > 0 {
            emit(&self.pending[..cut], Kind::Continued);
        }
        if self.pending.len() > cut {
            emit(&self.pending[cut..], Kind::Partial);
        }
        self.pending.clear();
    }
}

struct Stream {
    token: Token,
    which: Which,
    /// (generation, pid), once attached.
    owner: Option<(u64, i32)>,
    /// The read end, non-blocking.
    fd: OwnedFd,
    splitter: Splitter,
}

impl Stream {
    /// Reads at most `budget` bytes; false once the stream has ended (every
    /// writer gone, or a read error).
    fn fill(&mut self, scratch: &mut [u8], budget: usize, emit: &mut impl FnMut(&[u8], Kind)) -> bool {
        let mut left = budget;
        while left > 0 {
            let want = left.min(scratch.len());
            match read(&self.fd, &mut scratch[..want]) {
                Ok(0) => return false,
                Ok(n) => {
                    left -= n;
                    self.splitter.push(&scratch[..n], emit);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return true,
                Err(_) => return false,
            }
        }
        true
    }
}

/// A close-on-exec pipe whose read end alone is non-blocking.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    fcntl(&read, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((read, write))
}

pub struct Capture {
    format: Format,
    streams: Vec<Stream>,
    next_token: u64,
    scratch: Vec<u8>,
    record: Vec<u8>,
}

impl Capture {
    pub fn new(format: Format) -> Capture {
        Capture {
            format,
            streams: Vec::new(),
            next_token: 0,
            scratch: vec![0; READ_BUDGET],
            record: Vec::new(),
        }
    }

    /// Before a spawn: a pipe per stream. The caller hands the write ends to
    /// the worker as fds 1 and 2 and drops its own copies right after the
    /// spawn, whether it worked or not; then `attach` or `abandon`.
    pub fn open(&mut self) -> io::Result<Pipes> {
        let (out_read, stdout) = pipe()?;
        let (err_read, stderr) = pipe()?;
        let token = Token(self.next_token);
        self.next_token += 1;
        for (which, fd) in [(Which::Stdout, out_read), (Which::Stderr, err_read)] {
            self.streams.push(Stream { token, which, owner: None, fd, splitter: Splitter::default() });
        }
        Ok(Pipes { stdout, stderr, token })
    }

    /// After the spawn: whose pipes these are. Their streams are read from now on.
    pub fn attach(&mut self, token: Token, generation: u64, pid: i32) {
        let mut found = false;
        for stream in self.streams.iter_mut().filter(|s| s.token == token) {
            debug_assert!(stream.owner.is_none(), "attached twice");
            stream.owner = Some((generation, pid));
            found = true;
        }
        debug_assert!(found, "attach with an unknown token");
    }

    /// The spawn failed: close the read ends.
    pub fn abandon(&mut self, token: Token) {
        self.streams.retain(|s| s.token != token);
    }

    /// POLLIN on every attached stream.
    pub fn poll_fds(&self) -> Vec<(BorrowedFd<'_>, PollFlags)> {
        let attached = self.streams.iter().filter(|s| s.owner.is_some());
        attached.map(|s| (s.fd.as_fd(), PollFlags::POLLIN)).collect()
    }

    /// Reads what is there (at most `READ_BUDGET` per stream) and writes
    /// every complete line to `out`; closes the streams that ended, their
    /// last unterminated line flushed as `partial`. Never blocks on a pipe.
    pub fn service(&mut self, out: &mut impl Write) {
        self.drain(out, READ_BUDGET, false);
    }

    /// At shutdown: reads what is there (at most `FINISH_BUDGET` per
    /// stream), flushes every unterminated line as `partial`, closes all.
    pub fn finish(&mut self, out: &mut impl Write) {
        self.drain(out, FINISH_BUDGET, true);
        self.streams.clear();
    }

    fn drain(&mut self, out: &mut impl Write, budget: usize, closing: bool) {
        let Capture { format, streams, scratch, record, .. } = self;
        streams.retain_mut(|stream| {
            let Some((generation, pid)) = stream.owner else { return true };
            let label = Label { generation, pid, which: stream.which };
            let now = SystemTime::now();
            let mut emit = |line: &[u8], kind: Kind| {
                encode(*format, now, label, line, kind, record);
                // One write per record; a log that fails is no reason to stop reading.
                let _ = out.write_all(record);
            };
            let open = stream.fill(scratch, budget, &mut emit);
            if !open || closing {
                stream.splitter.flush(&mut emit);
            }
            open
        });
    }
}

pub mod carry;

#[cfg(test)]
mod tests;
