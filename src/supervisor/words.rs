//! The supervisor's words: the text of the machine's events, failures and
//! status lines, for the log, the control socket and the service manager.
//!
//! The machine speaks in values (`machine/event.rs`); this is the one place
//! they become text. Lines that start_server 0.35 prints are reproduced
//! byte for byte (its §3.16 table), so log scrapers keep working; under
//! handover's own name, exits read as words, not raw wait statuses.
use std::fmt;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::machine::StatusLine;
use crate::machine::event::{Awaited, Event, ExitStatus, Failure, Hint, Pid, ReadyBy, Sighting};

/// The line as printed: start_server's exact text under its name;
/// under handover's, exits read as words, not raw wait statuses.
pub fn line(event: &Event, compat: bool) -> String {
    if compat {
        return event.to_string();
    }
    match event {
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

fn pid_list(pids: &[Pid]) -> String {
    let list: Vec<String> = pids.iter().map(Pid::to_string).collect();
    if list.is_empty() { "none".to_string() } else { list.join(",") }
}

/// `pid 12` or `pids 12,13`.
fn pids_phrase(pids: &[Pid]) -> String {
    match pids {
        [pid] => format!("pid {pid}"),
        _ => format!("pids {}", pid_list(pids)),
    }
}

/// The evidence of readiness: `READY=1`, `alive`, `waiting in epoll_wait
/// on fd 3` (`pid 813 waiting ...` when another process than the worker
/// was seen), `accepted a connection on fd 3`.
pub fn ready_by(how: ReadyBy, pids: &[Pid]) -> String {
    match how {
        ReadyBy::Notified => "READY=1".into(),
        ReadyBy::Alive => "alive".into(),
        ReadyBy::Seen { member, sighting } => {
            let who = if pids.contains(&member) { String::new() } else { format!("pid {member} ") };
            match sighting {
                Sighting::Waiting { call, fd } => format!("{who}waiting in {call} on fd {fd}"),
                Sighting::Accepted { fd } => format!("{who}accepted a connection on fd {fd}"),
            }
        }
    }
}

fn signal_name(signal: Signal) -> &'static str {
    signal.as_str().trim_start_matches("SIG")
}

/// A duration in words, to the millisecond: `1s 500ms`.
fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "exited with {code}"),
            ExitStatus::Signal { signal, core } => {
                let core = if core { " (core dumped)" } else { "" };
                match Signal::try_from(signal) {
                    Ok(sig) => write!(f, "killed by {}{core}", sig.as_str()),
                    Err(_) => write!(f, "killed by signal {signal}{core}"),
                }
            }
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hint::CommandNotFound => "exit 127 is how a shell or an exec wrapper says a command was not found",
            Hint::NotExecutable => "exit 126 is how a shell or an exec wrapper says a command is not executable",
            Hint::KilledFromOutside => "killed by SIGKILL from outside (out of memory?)",
            Hint::FailedDuringStartup => {
                "it failed during startup. If its log says \"Address already in use\", it binds the port itself: \
                 make it use the inherited socket (SERVER_STARTER_PORT, LISTEN_FDS or fd 3)"
            }
        })
    }
}

/// The reason in a failed restart's answer, its `STATUS=` line and the give-up line.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Exited { pid, status, hint: None } => write!(f, "worker {pid} {status}"),
            Failure::Exited { pid, status, hint: Some(hint) } => write!(f, "worker {pid} {status}; {hint}"),
            Failure::NotReady { after } => {
                write!(f, "not ready after {}", humantime::format_duration(*after))
            }
            Failure::SpawnFailed(error) => write!(f, "{error}"),
            Failure::Stopping => f.write_str("the supervisor is stopping"),
        }
    }
}

/// `STATUS=` for the service manager.
impl fmt::Display for StatusLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusLine::Serving { generation } => write!(f, "generation {generation} serving"),
            StatusLine::RestartFailed { generation, failure, serving } => write!(
                f,
                "restart to generation {generation} failed ({failure}); generation {} still serving",
                // None: every worker of the serving generation died meanwhile.
                serving.unwrap_or(0)
            ),
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
            Event::NowRunning { signal, old } => {
                let (signal, old) = (signal_name(*signal), pid_list(old));
                write!(f, "new worker is now running, sending {signal} to old workers:{old}")
            }
            Event::SleepingBeforeKill { secs } => {
                write!(f, "sleeping {secs} secs before killing old workers")
            }
            Event::KillingOld => f.write_str("killing old workers"),
            Event::AutoRestart { interval, forced } => {
                let forced = if *forced { "forced, " } else { "" };
                write!(f, "autorestart triggered ({forced}interval={interval})")
            }
            Event::ShutdownReceived { received, sending, pids } => {
                let (received, sending, pids) =
                    (signal_name(*received), signal_name(*sending), pid_list(pids));
                write!(f, "received {received}, sending {sending} to all workers:{pids}")
            }
            Event::WorkerDied { pid, status } => {
                write!(f, "worker {pid} died, status:{}", status.raw())
            }
            Event::Exiting => f.write_str("exiting"),
            Event::Ready { generation, pids, after, how } => {
                let (how, pids, after) = (ready_by(*how, pids), pids_phrase(pids), human(*after));
                write!(f, "generation {generation} ({pids}) is ready ({how} after {after})")
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
            Event::ReadyTimeout { generation, pids, after, awaited, serving } => {
                let (pids, after) = (pids_phrase(pids), human(*after));
                let serving =
                    if *serving { "the serving generation is untouched" } else { "no generation serves" };
                write!(
                    f,
                    "generation {generation} ({pids}) not ready after {after}; stopping it, {serving}"
                )?;
                f.write_str(match awaited {
                    Awaited::Notify => "",
                    Awaited::Learned => {
                        " (no READY=1: --ready auto waits for it since an earlier worker sent it)"
                    }
                    Awaited::AcceptingOrNotify => {
                        " (no READY=1, and never seen waiting for connections on an inherited listener)"
                    }
                    Awaited::Accepting => " (never seen waiting for connections on an inherited listener)",
                })
            }
            Event::ReadyLearned { pid, timeout } => {
                write!(
                    f,
                    "worker {pid} sent READY=1: later generations are switched to only when they send it too"
                )?;
                match timeout {
                    Some(t) => write!(f, ", within {} (--ready auto)", human(*t)),
                    None => f.write_str(" (--ready auto)"),
                }
            }
            Event::DrainTimeout { pid, after } => write!(
                f,
                "old worker {pid} still running {} after it was told to stop; sending KILL to its process group",
                human(*after)
            ),
            Event::UnreadyStopTimeout { pid, generation, after } => write!(
                f,
                "worker {pid} of generation {generation}, which never became ready, still running {} after it \
                 was told to stop; sending KILL to its process group (--ready-timeout)",
                human(*after)
            ),
            Event::StopTimeout { pids, after } => write!(
                f,
                "workers {} still running {} after shutdown began; sending KILL to their process groups",
                pid_list(pids),
                human(*after)
            ),
            Event::Forwarded { signal, pids } => {
                write!(f, "received {}, forwarding it to workers:{}", signal_name(*signal), pid_list(pids))
            }
            Event::StopOnExit { pid, status, code } => {
                write!(f, "worker {pid} {status}, which --stop-on-exit lists: stopping, exit code {code}")
            }
            Event::GaveUp { attempts, last } => write!(
                f,
                "the first generation failed to start {attempts} times in a row (last: {last}); giving up (--max-start-attempts)"
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

#[cfg(test)]
mod tests;
