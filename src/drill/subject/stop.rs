//! Stopping the supervisor under test, at the end or when the drill is
//! interrupted.
//!
//! It is asked to stop (control request, or SIGTERM as start_server is),
//! then waited for: up to the caller's bound at the end of a drill; once
//! the drill has been interrupted, up to its `--stop-timeout` and
//! [`INTERRUPT_GRACE`] more, or [`INTERRUPT_BOUND`] without one; after a
//! second signal, not at all. Past that, everything it started is killed:
//! it is stopped (SIGSTOP, so that it starts nothing more), its
//! descendants are found in /proc and killed with their process groups
//! (handover gives each worker one), with every worker pid seen, then its
//! own process group (the drill made one for it). The drill then waits,
//! bounded, for them to be gone, and removes its directory unless kept.
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::proc::{is_alive, with_descendants};
use super::{Driver, OUTPUT_END, Output, Subject, stuck};
use crate::client;
use crate::drill::{hurried, interrupted};
use crate::wire::control::{Command as Request, Stopping};

/// Once interrupted, how long the supervisor has to stop beyond its own
/// `--stop-timeout`.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// Once interrupted, how long a supervisor without `--stop-timeout` has.
const INTERRUPT_BOUND: Duration = Duration::from_secs(3);
/// How long killed processes may take to be gone.
const KILLED_GONE: Duration = Duration::from_secs(5);
/// How long the output may take to end once everything was killed.
const OUTPUT_END_KILLED: Duration = Duration::from_millis(500);

/// How a stop went.
pub struct Stopped {
    /// What it left behind or how it ended badly, for the report.
    pub leftovers: Vec<String>,
    pub output: Output,
    /// What the drill had to kill, as a phrase ("the supervisor (pid 5)
    /// and 2 of its processes (pids 6, 7)"); `None`: nothing.
    pub killed: Option<String>,
}

impl Subject {
    /// Stop it, waiting up to `bound` for it to exit (less once the drill
    /// is interrupted), then kill everything it started; what it left
    /// behind, if anything, its output once that has ended, and what had
    /// to be killed.
    pub fn stop(mut self, bound: Duration) -> Stopped {
        if !hurried() {
            self.control_status();
        }
        let supervisor = self.live_pid();
        // Its processes now, in case it exits and leaves them to init.
        let mut family = supervisor.map_or_else(Vec::new, |pid| with_descendants(&[pid.as_raw()]));
        if !hurried() {
            match &self.driver {
                Driver::Control { socket, .. } => {
                    // Its reply is not waited for here (it may come only
                    // once it has stopped): whether it exits is watched below.
                    let (socket, wait) = (socket.clone(), Some(bound));
                    std::thread::spawn(move || {
                        client::control::call::<Stopping>(&socket, Request::Stop, wait)
                    });
                }
                Driver::Signal { .. } => {
                    if let Some(pid) = supervisor {
                        let _ = kill(pid, Signal::SIGTERM);
                    }
                }
            }
        }
        let start = Instant::now();
        let mut limit = bound;
        let status = loop {
            if let Some(status) = self.exited() {
                break Some(status);
            }
            if interrupted().is_some() {
                limit = limit
                    .min(self.stop_timeout.map_or(INTERRUPT_BOUND, |t| t.saturating_add(INTERRUPT_GRACE)));
            }
            if hurried() || start.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut leftovers = Vec::new();
        let after = stuck::seconds(limit);
        match status {
            Some(s) if s.success() => {}
            Some(s) => leftovers.push(format!("the supervisor exited with {s}")),
            None => leftovers.push(format!(
                "the supervisor did not stop within {after} (killed): its workers did not exit on TERM? \
                 give it --stop-timeout"
            )),
        }
        family.extend(self.seen.iter().copied());
        let how = if status.is_none() { "was killed" } else { "stopped" };
        let seen: Vec<i32> = self.seen.iter().copied().filter(|&p| is_alive(p)).collect();
        let mut killed = if status.is_none() { self.kill_all(&family) } else { Vec::new() };
        let supervisor_pid = supervisor.map(Pid::as_raw);
        for pid in seen {
            leftovers.push(format!(
                "worker {pid} still running after the supervisor {how}: it does not exit on TERM; give \
                 the supervisor --stop-timeout DURATION to kill it"
            ));
            if !killed.contains(&pid) {
                killed.extend(kill_group(pid));
            }
        }
        // What it started that outlived it (a worker's children).
        kill_rest(family.into_iter().filter(|&p| Some(p) != supervisor_pid), &mut killed);
        wait_gone(&killed);
        let file = match &self.driver {
            Driver::Control { socket, .. } => ("control socket", socket),
            Driver::Signal { status, .. } => ("status file", status),
        };
        if file.1.exists() {
            leftovers.push(format!("{} {} left behind", file.0, file.1.display()));
        }
        self.output.finish(if killed.is_empty() { OUTPUT_END } else { OUTPUT_END_KILLED });
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        let why = if hurried() {
            "on a second signal, without waiting".to_owned()
        } else {
            format!("which did not stop within {after}")
        };
        let killed = describe(supervisor_pid, &killed, &why);
        Stopped { leftovers, output: self.output, killed }
    }

    /// Kills the supervisor and every process in `family` (its
    /// descendants and the workers seen), with their process groups; the
    /// pids killed.
    fn kill_all(&mut self, family: &[i32]) -> Vec<i32> {
        let mut killed = Vec::new();
        let supervisor = self.live_pid();
        if let Some(pid) = supervisor {
            // It starts nothing more while its processes are found and killed.
            let _ = kill(pid, Signal::SIGSTOP);
            killed.push(pid.as_raw());
        }
        let now = supervisor.map_or_else(Vec::new, |pid| with_descendants(&[pid.as_raw()]));
        // The supervisor is in `killed` already.
        kill_rest(now.into_iter().chain(family.iter().copied()), &mut killed);
        if let Some(pid) = supervisor {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
        }
        let _ = self.child.wait();
        killed
    }
}

/// SIGKILL to `pid` and to the process group it leads, if it leads one
/// (a group's id is its leader's pid, so no other process's group).
fn kill_group(pid: i32) -> Option<i32> {
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    kill(Pid::from_raw(pid), Signal::SIGKILL).ok().map(|()| pid)
}

/// [`kill_group`] for each of `pids` alive and not `killed` yet.
fn kill_rest(pids: impl IntoIterator<Item = i32>, killed: &mut Vec<i32>) {
    for pid in pids {
        if !killed.contains(&pid) && is_alive(pid) {
            killed.extend(kill_group(pid));
        }
    }
}

/// Waits, bounded, until none of `pids` is alive.
fn wait_gone(pids: &[i32]) {
    let start = Instant::now();
    while pids.iter().any(|&p| is_alive(p)) && start.elapsed() < KILLED_GONE {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// "killed the supervisor (pid 5) and 2 of its processes (pids 6, 7)",
/// then `why`; `None` when nothing was killed.
fn describe(supervisor: Option<i32>, killed: &[i32], why: &str) -> Option<String> {
    let (ours, theirs): (Vec<i32>, Vec<i32>) = killed.iter().partition(|&&p| Some(p) == supervisor);
    let list = |pids: &[i32]| pids.iter().map(i32::to_string).collect::<Vec<_>>().join(", ");
    let others = match theirs.len() {
        0 => None,
        1 => Some(format!("1 of its processes (pid {})", list(&theirs))),
        n => Some(format!("{n} of its processes (pids {})", list(&theirs))),
    };
    let what = match (ours.first(), others) {
        (None, None) => return None,
        (Some(pid), None) => format!("the supervisor (pid {pid})"),
        (Some(pid), Some(others)) => format!("the supervisor (pid {pid}) and {others}"),
        (None, Some(others)) => others.replacen(" of its", " of the supervisor's", 1),
    };
    Some(format!("killed {what}, {why}"))
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn what_was_killed_in_one_phrase() {
        let after = || "which did not stop within 3 s";
        assert_eq!(describe(Some(5), &[], after()), None);
        assert_eq!(
            describe(Some(5), &[5, 6, 7], after()).unwrap(),
            "killed the supervisor (pid 5) and 2 of its processes (pids 6, 7), which did not stop within 3 s"
        );
        assert_eq!(
            describe(None, &[6], after()).unwrap(),
            "killed 1 of the supervisor's processes (pid 6), which did not stop within 3 s"
        );
        assert_eq!(
            describe(Some(5), &[5], after()).unwrap(),
            "killed the supervisor (pid 5), which did not stop within 3 s"
        );
    }
}
