//! The `--log-file "| COMMAND"` process. It outlives every other child (it
//! gets their last lines). When it exits while the supervisor runs (`head
//! -n 5`, a crash), it is started again, at most once per `RESTART_EVERY`:
//! fds 1 and 2 then lead to the new one, so the next workers do not die of
//! SIGPIPE, and the lines pending meanwhile (the sink keeps them across a
//! broken pipe of a restartable log) go to the new one.
use std::time::{Duration, Instant};

use super::{Supervisor, output};
use crate::machine::event::ExitStatus;
use crate::supervisor::upgrade::record::LoggerRecord;
use crate::supervisor::upgrade::{instant, offset};

/// The least time between two starts of the log command.
pub const RESTART_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Logger {
    /// The running command, if any.
    pub pid: Option<i32>,
    started: Instant,
    /// When to start it again, once it has exited.
    restart_at: Option<Instant>,
}

impl Logger {
    pub fn started(pid: i32, now: Instant) -> Logger {
        Logger { pid: Some(pid), started: now, restart_at: None }
    }

    /// What a self-upgrade carries over (times as offsets from `now`).
    pub fn carry(&self, now: Instant) -> LoggerRecord {
        LoggerRecord {
            pid: self.pid,
            started: offset(self.started, now),
            restart_at: self.restart_at.map(|at| offset(at, now)),
        }
    }

    pub fn resume(record: &LoggerRecord, now: Instant) -> Logger {
        let restart_at = record.restart_at.map(|at| instant(at, now));
        Logger { pid: record.pid, started: instant(record.started, now), restart_at }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.restart_at
    }
}

impl Supervisor {
    /// Whether `pid` was the log command; if so its exit is handled here.
    pub(super) fn logger_exited(&mut self, pid: i32, status: ExitStatus, now: Instant) -> bool {
        let Some(logger) = self.logger.as_mut().filter(|l| l.pid == Some(pid)) else { return false };
        logger.pid = None;
        logger.restart_at = Some(now.max(logger.started + RESTART_EVERY));
        self.log.line(&format!("the log command (pid {pid}) {status}; starting it again"));
        true
    }

    /// Starts the log command again if it is time.
    pub(super) fn restart_logger(&mut self, now: Instant) {
        let (Some(logger), Some(target)) = (self.logger.as_mut(), &self.config.log) else { return };
        if logger.restart_at.is_none_or(|at| now < at) {
            return;
        }
        match output::redirect(target) {
            Ok(pid) => {
                *logger = Logger { pid, started: now, restart_at: None };
                self.log.retarget(true);
            }
            Err(e) => {
                logger.restart_at = Some(now + RESTART_EVERY);
                self.log.line(&format!("{}; trying again in {}s", e.message, RESTART_EVERY.as_secs()));
            }
        }
    }
}
