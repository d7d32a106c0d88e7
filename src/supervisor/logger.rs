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
use std::time::{Duration, Instant};

use super::Supervisor;
use super::output::LogPipe;
use crate::config::LogTarget;
use crate::machine::event::ExitStatus;
use crate::supervisor::upgrade::record::LoggerRecord;
use crate::supervisor::upgrade::{Carried, instant, offset};

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

    /// What a self-upgrade carries over (times as offsets from `now`).
    pub fn carry(&self, now: Instant) -> LoggerRecord {
        LoggerRecord {
            pid: self.pid,
            started: offset(self.started, now),
            restart_at: self.restart_at.map(|at| offset(at, now)),
            pipe: Some(self.pipe.fds()),
            delay_ms: self.delay.as_millis() as u64,
        }
    }

    /// The logger as the previous image left it; the pipe's fds are taken
    /// from `fds` (a record of an older handover has none: the read end is
    /// opened again through /proc).
    pub fn resume(record: &LoggerRecord, fds: &mut Carried, now: Instant) -> std::io::Result<Logger> {
        let pipe = match record.pipe {
            Some([read, stdout, stderr]) => LogPipe::resume(fds.fd(read)?, fds.fd(stdout)?, fds.fd(stderr)?),
            None => LogPipe::from_fd1()?,
        };
        let delay = Duration::from_millis(record.delay_ms).clamp(FIRST_DELAY, MAX_DELAY);
        let restart_at = record.restart_at.map(|at| instant(at, now));
        Ok(Logger { pid: record.pid, started: instant(record.started, now), restart_at, delay, pipe })
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
