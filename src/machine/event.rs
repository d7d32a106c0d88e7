//! What the supervisor has to say, as values.
//!
//! The state machine emits `Event`s; the event loop prints them. `Display`
//! gives the text. Lines that start_server 0.35 prints are reproduced byte
//! for byte (its §3.16 table), so log scrapers keep working; the rest are
//! handover's own and are `Event::is_extra()`: under the name `start_server`
//! only warnings among them are printed.
use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::io_text;

pub type Pid = i32;

/// How a process ended, as `waitpid` reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl ExitStatus {
    /// The shell's number for it: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal { signal, .. } => 128 + signal,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exited with {code}"),
            ExitStatus::Signal { signal, core } => {
                match Signal::try_from(signal) {
                    Ok(sig) => write!(f, "killed by {}", sig.as_str())?,
                    Err(_) => write!(f, "killed by signal {signal}")?,
                }
                if core {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
        }
    }
}

/// Why starting a worker failed before it could run the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnError {
    /// What failed: `exec /usr/bin/x`, `chdir /srv/app`, `fork`.
    pub what: String,
    pub errno: i32,
}

impl SpawnError {
    /// Exit code when the first generation cannot be started (126/127, as a shell).
    pub fn exit_code(&self) -> i32 {
        if self.errno == libc::ENOENT && !self.what.starts_with("chdir") { 127 } else { 126 }
    }
}

/// The worker cannot be run: 126 or 127, as a shell says it.
impl From<SpawnError> for crate::error::Error {
    fn from(e: SpawnError) -> Self {
        crate::error::Error::new(e.exit_code() as u8, e.to_string())
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let err = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "cannot {}: {}", self.what, io_text(&err))
    }
}

fn pid_list(pids: &[Pid]) -> String {
    if pids.is_empty() {
        return "none".to_string();
    }
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    list.join(",")
}

/// `pid 12` or `pids 12,13`.
fn pids_phrase(pids: &[Pid]) -> String {
    match pids {
        [pid] => format!("pid {pid}"),
        _ => format!("pids {}", pid_list(pids)),
    }
}

fn signal_name(signal: Signal) -> &'static str {
    signal.as_str().trim_start_matches("SIG")
}

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
    Ready { generation: u64, pids: Vec<Pid>, after: Duration, notified: bool },
    HupCoalesced { generation: u64 },
    SpawnFailed { generation: u64, error: SpawnError },
    Diagnosis { generation: u64, status: ExitStatus, hint: &'static str },
    ReadyTimeout { generation: u64, pids: Vec<Pid>, after: Duration },
    DrainTimeout { pid: Pid, after: Duration },
    StopTimeout { pids: Vec<Pid>, after: Duration },
    Forwarded { signal: Signal, pids: Vec<Pid> },
    IgnoredDuringShutdown { signal: Signal },
    FilesChanged,
    RestartRequested,
    StopOnExit { pid: Pid, status: ExitStatus, code: i32 },
    GaveUp { attempts: u32, reason: String },
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
                | Event::StopTimeout { .. }
                | Event::StopOnExit { .. }
                | Event::GaveUp { .. }
        )
    }
}

impl Event {
    /// The line as printed: start_server's exact text under its name;
    /// under handover's, exits read as words, not raw wait statuses.
    pub fn render(&self, compat: bool) -> String {
        if compat {
            return self.to_string();
        }
        match self {
            Event::FailedToStart { pid, status } => {
                format!("new worker {pid} seems to have failed to start: {status}")
            }
            Event::DiedUnexpectedly { pid, status } => {
                format!("worker {pid} died unexpectedly ({status}), restarting")
            }
            Event::OldDied { pid, status } => format!("old worker {pid} died ({status})"),
            Event::WorkerDied { pid, status } => format!("worker {pid} died ({status})"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StartingWorker { pid } => write!(f, "starting new worker {pid}"),
            Event::FailedToStart { pid, status } => {
                write!(f, "new worker {pid} seems to have failed to start, exit status:{}", status.raw())
            }
            Event::DiedUnexpectedly { pid, status } => {
                write!(f, "worker {pid} died unexpectedly with status:{}, restarting", status.raw())
            }
            Event::OldDied { pid, status } => {
                write!(f, "old worker {pid} died, status:{}", status.raw())
            }
            Event::ReceivedHup => f.write_str("received HUP, spawning a new worker"),
            Event::NowRunning { signal, old } => write!(
                f,
                "new worker is now running, sending {} to old workers:{}",
                signal_name(*signal),
                pid_list(old)
            ),
            Event::SleepingBeforeKill { secs } => {
                write!(f, "sleeping {secs} secs before killing old workers")
            }
            Event::KillingOld => f.write_str("killing old workers"),
            Event::AutoRestart { interval, forced } => {
                let forced = if *forced { "forced, " } else { "" };
                write!(f, "autorestart triggered ({forced}interval={interval})")
            }
            Event::ShutdownReceived { received, sending, pids } => write!(
                f,
                "received {}, sending {} to all workers:{}",
                signal_name(*received),
                signal_name(*sending),
                pid_list(pids)
            ),
            Event::WorkerDied { pid, status } => {
                write!(f, "worker {pid} died, status:{}", status.raw())
            }
            Event::Exiting => f.write_str("exiting"),
            Event::Ready { generation, pids, after, notified } => {
                let how = if *notified { "READY=1" } else { "alive" };
                write!(
                    f,
                    "generation {generation} ({}) is ready ({how} after {})",
                    pids_phrase(pids),
                    humantime::format_duration(round_ms(*after))
                )
            }
            Event::HupCoalesced { generation } => write!(
                f,
                "received HUP while generation {generation} is starting; one more restart will follow it"
            ),
            Event::SpawnFailed { generation, error } => {
                write!(f, "generation {generation} failed to start: {error}")
            }
            Event::Diagnosis { generation, status, hint } => {
                write!(f, "generation {generation} {status}: {hint}")
            }
            Event::ReadyTimeout { generation, pids, after } => write!(
                f,
                "generation {generation} ({}) not ready after {}; stopping it, the serving generation is untouched",
                pids_phrase(pids),
                humantime::format_duration(round_ms(*after))
            ),
            Event::DrainTimeout { pid, after } => write!(
                f,
                "old worker {pid} still running {} after it was told to stop; sending KILL to its process group",
                humantime::format_duration(round_ms(*after))
            ),
            Event::StopTimeout { pids, after } => write!(
                f,
                "workers {} still running {} after shutdown began; sending KILL to their process groups",
                pid_list(pids),
                humantime::format_duration(round_ms(*after))
            ),
            Event::Forwarded { signal, pids } => {
                write!(f, "received {}, forwarding it to workers:{}", signal_name(*signal), pid_list(pids))
            }
            Event::StopOnExit { pid, status, code } => {
                write!(f, "worker {pid} {status}, which --stop-on-exit lists: stopping, exit code {code}")
            }
            Event::GaveUp { attempts, reason } => write!(
                f,
                "the first generation failed to start {attempts} times in a row (last: {reason}); giving up (--max-start-attempts)"
            ),
            Event::FilesChanged => f.write_str("watched files changed, restarting"),
            Event::RestartRequested => {
                f.write_str("restart requested on the control socket, spawning a new worker")
            }
            Event::IgnoredDuringShutdown { signal } => {
                write!(f, "received {} while shutting down; ignored", signal_name(*signal))
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
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
    fn start_server_lines_are_byte_identical() {
        let table: Vec<(Event, &str)> = vec![
            (Event::StartingWorker { pid: 11009 }, "starting new worker 11009"),
            (
                Event::FailedToStart { pid: 11490, status: ExitStatus::Code(3) },
                "new worker 11490 seems to have failed to start, exit status:768",
            ),
            (
                Event::DiedUnexpectedly { pid: 11021, status: ExitStatus::Signal { signal: 9, core: false } },
                "worker 11021 died unexpectedly with status:9, restarting",
            ),
            (Event::OldDied { pid: 11009, status: ExitStatus::Code(0) }, "old worker 11009 died, status:0"),
            (Event::ReceivedHup, "received HUP, spawning a new worker"),
            (
                Event::NowRunning { signal: Signal::SIGTERM, old: vec![23398, 23469] },
                "new worker is now running, sending TERM to old workers:23398,23469",
            ),
            (
                Event::NowRunning { signal: Signal::SIGUSR1, old: vec![] },
                "new worker is now running, sending USR1 to old workers:none",
            ),
            (Event::SleepingBeforeKill { secs: 5 }, "sleeping 5 secs before killing old workers"),
            (Event::KillingOld, "killing old workers"),
            (Event::AutoRestart { interval: 3, forced: false }, "autorestart triggered (interval=3)"),
            (Event::AutoRestart { interval: 3, forced: true }, "autorestart triggered (forced, interval=3)"),
            (
                Event::ShutdownReceived {
                    received: Signal::SIGINT,
                    sending: Signal::SIGTERM,
                    pids: vec![11052],
                },
                "received INT, sending TERM to all workers:11052",
            ),
            (Event::WorkerDied { pid: 11052, status: ExitStatus::Code(0) }, "worker 11052 died, status:0"),
            (Event::Exiting, "exiting"),
        ];
        for (event, text) in table {
            assert_eq!(event.to_string(), text);
            assert!(!event.is_extra(), "{text}");
        }
    }

    #[test]
    fn exit_statuses_read_as_words() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exited with 3");
        let segv = ExitStatus::Signal { signal: 11, core: true };
        assert_eq!(segv.to_string(), "killed by SIGSEGV (core dumped)");
    }

    #[test]
    fn spawn_errors_map_to_shell_exit_codes() {
        let missing = SpawnError { what: "exec /nope".into(), errno: libc::ENOENT };
        assert_eq!(missing.exit_code(), 127);
        assert_eq!(missing.to_string(), "cannot exec /nope: No such file or directory");
        let denied = SpawnError { what: "exec /etc/passwd".into(), errno: libc::EACCES };
        assert_eq!(denied.exit_code(), 126);
    }
}
