//! The `--log-file "| COMMAND"` process. It outlives every other child (it
//! gets their last lines). When it exits while the supervisor runs (`head
//! -n 5`, a crash), it is started again on the same pipe (`LogPipe`), so
//! workers never notice: what they write meanwhile waits in the pipe, and
//! with `--log-capture` in the supervisor's buffer (up to `sink::CAPACITY`
//! bytes; whole records beyond it are dropped, counted and reported).
//!
//! Back-off: a command that exits within `STEADY` of its start is started
//! again `FIRST_DELAY` after its start, then twice as long after each
//! further quick exit, up to `MAX_DELAY`; one that ran `STEADY` or longer
//! is started again at once and its delay starts over. Each exit is one
//! line in the log, so a command that keeps dying is reported once per
//! delay, and the loop sleeps in between.
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Supervisor;
use super::output::LogPipe;
use crate::config::{Config, LogTarget};
use crate::machine::event::ExitStatus;
use crate::supervisor::carry::{Carry, Resuming, Written};

/// The least time between two starts of the log command.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest time between two starts of a log command that keeps exiting.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A log command that ran this long before exiting is started again at once.
pub const STEADY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Logger {
    /// The running command, if any.
    pub pid: Option<i32>,
    started: Instant,
    /// When to start it again, once it has exited.
    restart_at: Option<Instant>,
    /// The least time from this start to the next one.
    delay: Duration,
    pipe: LogPipe,
}

impl Logger {
    /// Starts `command` on `pipe` (the supervisor's fds 1 and 2 lead to
    /// it), in the cgroup `cgroup` if given.
    pub fn start(
        command: &str,
        mut pipe: LogPipe,
        cgroup: Option<&std::path::Path>,
        now: Instant,
    ) -> crate::error::Result<Logger> {
        let pid = pipe.start(command, cgroup)?;
        pipe.install()?;
        Ok(Logger { pid: Some(pid), started: now, restart_at: None, delay: FIRST_DELAY, pipe })
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.restart_at
    }

    /// It has exited (or failed to start) at `now`: when to start it again.
    fn schedule(&mut self, now: Instant) -> Instant {
        if now.saturating_duration_since(self.started) >= STEADY {
            self.delay = FIRST_DELAY;
        }
        let at = now.max(self.started + self.delay);
        self.delay = (self.delay * 2).min(MAX_DELAY);
        self.restart_at = Some(at);
        at
    }
}

/// `starting it again`, with when if not at once.
fn again(at: Instant, now: Instant) -> String {
    match at.saturating_duration_since(now).as_millis() {
        0 => "starting it again".to_string(),
        ms => format!("starting it again in {}s", ms.div_ceil(1000)),
    }
}

impl Supervisor {
    /// Whether `pid` was the log command; if so its exit is handled here.
    pub(super) fn logger_exited(&mut self, pid: i32, status: ExitStatus, now: Instant) -> bool {
        let Some(logger) = self.logger.as_mut().filter(|l| l.pid == Some(pid)) else { return false };
        logger.pid = None;
        let at = logger.schedule(now);
        self.log.sink().set_lossy(true);
        let text = format!("the log command (pid {pid}) {status}; {}", again(at, now));
        let what = crate::wire::event::What::LoggerExited { status: status.to_string() };
        self.log.said(what, None, vec![pid], &text);
        true
    }

    /// Starts the log command again if it is time.
    pub(super) fn restart_logger(&mut self, now: Instant) {
        let (Some(logger), Some(LogTarget::Pipe(command))) = (self.logger.as_mut(), &self.config.log) else {
            return;
        };
        if logger.restart_at.is_none_or(|at| now < at) {
            return;
        }
        match logger.pipe.start(command, self.contain.logger_cgroup().as_deref()) {
            Ok(pid) => {
                (logger.pid, logger.started, logger.restart_at) = (Some(pid), now, None);
                self.log.sink().set_lossy(false);
            }
            Err(e) => {
                logger.started = now;
                let at = logger.schedule(now);
                self.log.line(&format!("{}; {}", e.message, again(at, now)));
            }
        }
    }
}

/// What a self-upgrade carries of the log command: its process, times
/// and pipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoggerRecord {
    pub pid: Option<i32>,
    /// Offsets from the record's writing, ns.
    pub started: i64,
    pub restart_at: Option<i64>,
    /// The log pipe's read end and the command's stdout and stderr
    /// (absent from older records).
    #[serde(default)]
    pub pipe: Option<[RawFd; 3]>,
    /// The least time between this start and the next, in ms.
    #[serde(default)]
    pub delay_ms: u64,
}

impl Carry for Logger {
    type Record = LoggerRecord;

    fn carry(&self, at: Written) -> LoggerRecord {
        LoggerRecord {
            pid: self.pid,
            started: at.offset(self.started),
            restart_at: self.restart_at.map(|t| at.offset(t)),
            pipe: Some(self.pipe.fds()),
            delay_ms: self.delay.as_millis() as u64,
        }
    }

    fn fds(record: &LoggerRecord) -> Vec<RawFd> {
        record.pipe.into_iter().flatten().collect()
    }

    /// The pipe's fds are carried (a record of an older handover has
    /// none: the read end is opened again through /proc).
    fn resume(record: LoggerRecord, from: &mut Resuming, _: &Config) -> std::io::Result<Logger> {
        let pipe = match record.pipe {
            Some([read, stdout, stderr]) => {
                LogPipe::resume(from.fd(read)?, from.fd(stdout)?, from.fd(stderr)?)
            }
            None => LogPipe::from_fd1()?,
        };
        let (at, delay) =
            (from.written, Duration::from_millis(record.delay_ms).clamp(FIRST_DELAY, MAX_DELAY));
        let (started, restart_at) = (at.instant(record.started), record.restart_at.map(|t| at.instant(t)));
        Ok(Logger { pid: record.pid, started, restart_at, delay, pipe })
    }
}
