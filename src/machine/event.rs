//! What the supervisor has to say, as values.
//!
//! The state machine emits `Event`s and explains failures with `Failure`
//! and `Hint`; it never builds text. The event loop prints them: the words
//! are in `supervisor/words.rs`. Lines that start_server 0.35 prints are
//! reproduced there byte for byte; the rest are handover's own and are
//! `Event::is_extra()`: under the name `start_server` only warnings among
//! them are printed.
//!
//! `ExitStatus`, `SpawnError`, `Hint` and `Failure` are also written in
//! machine snapshots (`snapshot.rs`), by their serde names: renaming a
//! variant or a field breaks the snapshots of older handovers.
//!
//! `SpawnError` is `crate::error`'s (the layer below both `sys`, which
//! makes it, and the machine, which carries it and reads its exit code).
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

pub use crate::error::SpawnError;

pub type Pid = i32;

/// How a process ended, as `waitpid` reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal { signal: i32, core: bool },
}

impl ExitStatus {
    /// The raw `wait(2)` status, as start_server prints it (`768` for exit 3).
    pub fn raw(self) -> i32 {
        match self {
            ExitStatus::Code(code) => (code & 0xff) << 8,
            ExitStatus::Signal { signal, core } => signal | if core { 0x80 } else { 0 },
        }
    }

    /// The shell's number for it: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal { signal, .. } => 128 + signal,
        }
    }
}

/// A likely cause for a worker that did not survive its start, where one is clear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hint {
    /// Exit 127: the shell could not find a command.
    CommandNotFound,
    /// Exit 126: a command is not executable.
    NotExecutable,
    /// SIGKILL from outside, the out-of-memory killer's way.
    KilledFromOutside,
    /// A non-zero exit within the first interval: often a worker that binds
    /// the port itself instead of using the inherited socket.
    FailedDuringStartup,
}

/// Why a starting generation failed, or why a restart will not happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// One of its workers exited before the generation was ready.
    Exited { pid: Pid, status: ExitStatus, hint: Option<Hint> },
    /// Notify mode: no `READY=1` from every worker within the ready timeout.
    NotReady { after: Duration },
    /// A worker could not be started at all.
    SpawnFailed(SpawnError),
    /// The supervisor is stopping: no generation will be started.
    Stopping,
}

/// What a process of a starting worker was seen doing with a listener
/// (`fd`: the listener's, as the workers have it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighting {
    /// Blocked in this call (`accept`, `epoll_wait`, ...) on a set that holds it.
    Waiting { call: &'static str, fd: i32 },
    /// Holding a connection accepted from it.
    Accepted { fd: i32 },
}

/// How a generation was found ready: the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyBy {
    /// `READY=1` or an einhorn ack.
    Notified,
    /// Alive after the interval.
    Alive,
    /// Process `member` seen accepting.
    Seen { member: Pid, sighting: Sighting },
}

/// What a generation that missed `--ready-timeout` was waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awaited {
    /// `READY=1` (notify mode).
    Notify,
    /// `READY=1`, because an earlier worker sent it (auto mode).
    Learned,
    /// Seen accepting, or `READY=1` (auto mode).
    AcceptingOrNotify,
    /// Seen accepting (accepting mode).
    Accepting,
}

/// A line of the log. `ReadyTimeout::awaited`: what was waited for,
/// `serving`: whether another generation serves meanwhile;
/// `ReadyLearned`: worker `pid`
/// was the first to send it, so from now on new workers must too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    // start_server's own lines.
    StartingWorker { pid: Pid },
    FailedToStart { pid: Pid, status: ExitStatus },
    DiedUnexpectedly { pid: Pid, status: ExitStatus },
    OldDied { pid: Pid, status: ExitStatus },
    ReceivedHup,
    NowRunning { signal: Signal, old: Vec<Pid> },
    SleepingBeforeKill { secs: u64 },
    KillingOld,
    AutoRestart { interval: u64, forced: bool },
    ShutdownReceived { received: Signal, sending: Signal, pids: Vec<Pid> },
    WorkerDied { pid: Pid, status: ExitStatus },
    Exiting,
    // handover's own lines.
    Ready { generation: u64, pids: Vec<Pid>, after: Duration, how: ReadyBy },
    HupCoalesced { generation: u64 },
    SpawnFailed { generation: u64, error: SpawnError },
    Diagnosis { generation: u64, status: ExitStatus, hint: Hint },
    ReadyTimeout { generation: u64, pids: Vec<Pid>, after: Duration, awaited: Awaited, serving: bool },
    ReadyLearned { pid: Pid, timeout: Option<Duration> },
    DrainTimeout { pid: Pid, after: Duration },
    UnreadyStopTimeout { pid: Pid, generation: u64, after: Duration },
    StopTimeout { pids: Vec<Pid>, after: Duration },
    Forwarded { signal: Signal, pids: Vec<Pid> },
    IgnoredDuringShutdown { signal: Signal },
    FilesChanged,
    RestartRequested,
    StopOnExit { pid: Pid, status: ExitStatus, code: i32 },
    GaveUp { attempts: u32, last: Failure },
}

impl Event {
    /// Not a start_server line.
    pub fn is_extra(&self) -> bool {
        !matches!(
            self,
            Event::StartingWorker { .. }
                | Event::FailedToStart { .. }
                | Event::DiedUnexpectedly { .. }
                | Event::OldDied { .. }
                | Event::ReceivedHup
                | Event::NowRunning { .. }
                | Event::SleepingBeforeKill { .. }
                | Event::KillingOld
                | Event::AutoRestart { .. }
                | Event::ShutdownReceived { .. }
                | Event::WorkerDied { .. }
                | Event::Exiting
        )
    }

    /// Something went wrong: printed under every name.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Event::SpawnFailed { .. }
                | Event::Diagnosis { .. }
                | Event::ReadyTimeout { .. }
                | Event::DrainTimeout { .. }
                | Event::UnreadyStopTimeout { .. }
                | Event::StopTimeout { .. }
                | Event::StopOnExit { .. }
                | Event::GaveUp { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_statuses_match_start_server() {
        assert_eq!(ExitStatus::Code(3).raw(), 768);
        assert_eq!(ExitStatus::Code(255).raw(), 65280);
        assert_eq!(ExitStatus::Code(0).raw(), 0);
        let kill = ExitStatus::Signal { signal: 9, core: false };
        assert_eq!(kill.raw(), 9);
    }

    #[test]
    fn start_server_lines_are_not_extra() {
        assert!(!Event::Exiting.is_extra());
        assert!(Event::FilesChanged.is_extra() && !Event::FilesChanged.is_warning());
        let gave_up = Event::GaveUp { attempts: 3, last: Failure::Stopping };
        assert!(gave_up.is_extra() && gave_up.is_warning());
    }
}
