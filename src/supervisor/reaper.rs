//! Processes the supervisor inherits and must not leave behind.
//!
//! handover is a child subreaper (`PR_SET_CHILD_SUBREAPER`), or init in a
//! container: a worker's children that are orphaned or daemonize (double
//! fork) are re-parented to it. While it runs, the event loop's
//! `waitpid(-1)` reaps them when they exit. At a clean stop, once the
//! workers are gone, `stop_orphans` signals whatever is still its child and
//! waits for it, so nothing a worker started outlives the supervisor.
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::contain::our_children;
use crate::machine::Input;
use crate::machine::event::ExitStatus;
use crate::sys::process::{self, Ended};

/// Whether any process is left in process group `pgid` (one we may not
/// signal counts: it is there).
pub fn group_alive(pgid: i32) -> bool {
    !matches!(nix::sys::signal::killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH))
}

/// Become the reaper of orphaned descendants.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

fn reap_all() {
    while let Ok(Some(_)) = process::reap_one() {}
}

/// SIGTERM every remaining child but `keep`, then SIGKILL after `grace`;
/// returns the pids that were stopped. Children that appear meanwhile
/// (re-parented grandchildren) are treated the same.
pub fn stop_orphans(keep: &[i32], grace: Duration) -> Vec<i32> {
    let start = Instant::now();
    let mut told: Vec<i32> = Vec::new();
    loop {
        reap_all();
        let mut left = our_children(keep);
        left.sort_unstable();
        if left.is_empty() || start.elapsed() > grace + Duration::from_secs(5) {
            return told;
        }
        let signal = if start.elapsed() >= grace { Signal::SIGKILL } else { Signal::SIGTERM };
        for &pid in &left {
            if signal == Signal::SIGKILL || !told.contains(&pid) {
                let _ = kill(Pid::from_raw(pid), signal);
                if !told.contains(&pid) {
                    told.push(pid);
                }
            }
        }
        // Polling /proc: these processes are not ours to be told about.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every child that has exited, as inputs.
pub fn reap() -> Vec<Input> {
    let mut exits = Vec::new();
    while let Ok(Some((pid, ended))) = process::reap_one() {
        let status = match ended {
            Ended::Code(code) => ExitStatus::Code(code),
            Ended::Signal { signal, core } => ExitStatus::Signal { signal, core },
        };
        exits.push(Input::Exited { pid, status });
    }
    exits
}
