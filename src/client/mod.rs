//! Client modes that work from the pid and status files: `restart`
//! (start_server `--restart`), `stop` (`--stop`) and `status`.
//!
//! Invariants:
//! - The pid file is opened (`PidFileWatch`) BEFORE the supervisor is
//!   signalled, and its lock tells whether the supervisor is alive: an
//!   unlocked pid file is stale, and we refuse to signal the pid it names
//!   (it may belong to an unrelated process by now). start_server signalled
//!   it anyway. A locked one is trusted only while the pid it names holds
//!   the lock (`PidFileWatch::holder`): a worker that took the lock over
//!   after the supervisor died is named in one line, never signalled.
//! - `restart` succeeds when the status file lists exactly one generation
//!   and it is at least the one after the highest generation seen before
//!   the HUP. start_server waited for exactly that number, forever, so one
//!   failed probation (which uses up a number) hung it (quirk Q6). It fails
//!   when the supervisor exits meanwhile, and after `timeout`.
//! - `stop` returns once the supervisor has exited (its lock is released),
//!   which is what old `start_server --stop` users and t/12 rely on.
//! - Every error is one line; `Error::code` is 1 for a runtime
//!   failure and 2 for a usage error.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

pub mod control;
pub mod events;
pub mod show;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Serialize;

use crate::error::{Error, io_text};
use crate::state::{self, PidFileWatch};

/// How often `restart` re-reads the status file.
const POLL: Duration = Duration::from_millis(50);
/// How long `restart` tolerates a missing status file (it is replaced by
/// rename, so it should never be missing).
const MISSING_GRACE: Duration = Duration::from_secs(1);

/// `60s` for whole seconds, humantime's `1s 500ms` otherwise.
pub fn show(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// `cannot {what} {path}: {why}`.
fn failed(what: &str, path: &Path, e: &io::Error) -> Error {
    Error::runtime(format!("cannot {what} {}: {}", path.display(), io_text(e)))
}

fn lock_error(path: &Path, e: io::Error) -> Error {
    failed("lock pid file", path, &e)
}

/// Opens the pid file and checks that a live supervisor holds it.
fn open_live(pid_file: &Path) -> Result<(PidFileWatch, u32), Error> {
    let watch = PidFileWatch::open(pid_file).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound { " (is the supervisor running?)" } else { "" };
        Error::runtime(format!("cannot open pid file {}: {}{hint}", pid_file.display(), io_text(&e)))
    })?;
    let pid = watch.read_pid()?;
    if !watch.is_locked().map_err(|e| lock_error(pid_file, e))? {
        return Err(Error::runtime(format!(
            "pid file {} is stale (pid {pid}, not locked): no supervisor is running; remove the file",
            pid_file.display()
        )));
    }
    watch.holder(pid)?;
    Ok((watch, pid))
}

/// Signals the supervisor; with `gone_ok`, one that exited meanwhile is no error.
fn signal(pid: u32, sig: Signal, gone_ok: bool) -> Result<(), Error> {
    match kill(Pid::from_raw(pid as i32), sig) {
        Err(Errno::ESRCH) if gone_ok => Ok(()),
        sent => sent.map_err(|e| Error::runtime(format!("cannot signal supervisor pid {pid}: {}", e.desc()))),
    }
}

/// `generations 3,4 still running`, `generation 3 still running`, ...
fn still_running(gens: &[(u64, u32)]) -> String {
    let list: Vec<String> = gens.iter().map(|(g, _)| g.to_string()).collect();
    match list.len() {
        0 => "no generation is running".to_string(),
        1 => format!("generation {} still running", list[0]),
        _ => format!("generations {} still running", list.join(",")),
    }
}

/// Sends SIGHUP and returns at once: `handover restart` without `--wait`.
pub fn hup(pid_file: &Path) -> Result<u32, Error> {
    let (_watch, pid) = open_live(pid_file)?;
    signal(pid, Signal::SIGHUP, false)?;
    Ok(pid)
}

/// Sends SIGHUP and waits until one generation newer than the current one
/// serves alone. Returns that generation. `progress` gets one-line notes.
pub fn restart(
    pid_file: &Path,
    status_file: &Path,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<u64, Error> {
    let status_error = |e: io::Error| failed("read status file", status_file, &e);
    let (watch, pid) = open_live(pid_file)?;
    let mut last = state::read_status(status_file).map_err(status_error)?;
    let Some(&(current, _)) = last.last() else {
        return Err(Error::runtime(format!("no active generation in status file {}", status_file.display())));
    };
    let target = current + 1;
    signal(pid, Signal::SIGHUP, false)?;
    progress(&format!(
        "sent SIGHUP to supervisor pid {pid}; waiting for generation {target} or later to serve alone"
    ));
    let start = Instant::now();
    let mut missing_since = None;
    loop {
        match state::read_status(status_file) {
            Ok(gens) => {
                missing_since = None;
                if let [(generation, _)] = gens[..]
                    && generation >= target
                {
                    return Ok(generation);
                }
                if gens != last {
                    progress(&still_running(&gens));
                    last = gens;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let since = *missing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > MISSING_GRACE {
                    return Err(Error::runtime(format!(
                        "status file {} disappeared during the restart",
                        status_file.display()
                    )));
                }
            }
            Err(e) => return Err(status_error(e)),
        }
        if !watch.is_locked().map_err(|e| lock_error(pid_file, e))? {
            return Err(Error::runtime(format!(
                "supervisor exited during the restart (pid {pid}); see its log"
            )));
        }
        if start.elapsed() >= timeout {
            return Err(Error::runtime(format!(
                "restart not finished after {}: {} (see the supervisor's log)",
                show(timeout),
                still_running(&last)
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Sends SIGTERM and returns once the supervisor has exited. `announce`
/// gets the supervisor's pid just before the signal is sent.
pub fn stop(pid_file: &Path, timeout: Option<Duration>, announce: impl FnOnce(u32)) -> Result<(), Error> {
    let (watch, pid) = open_live(pid_file)?;
    announce(pid);
    // Exited on its own meanwhile: the wait returns at once.
    signal(pid, Signal::SIGTERM, true)?;
    match timeout {
        None => watch.wait().map_err(|e| lock_error(pid_file, e))?,
        Some(t) => match watch.wait_timeout(t) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::runtime(format!(
                    "supervisor pid {pid} still running after {} (see the supervisor's log)",
                    show(t)
                )));
            }
            Err(e) => return Err(lock_error(pid_file, e)),
        },
    }
    wait_gone(pid);
    Ok(())
}

/// The lock goes when the supervisor's files are closed, a moment before
/// the kernel marks it exited: wait for that too (bounded), so whoever runs
/// after `stop` finds the process gone.
pub fn wait_gone(pid: u32) {
    let stat = format!("/proc/{pid}/stat");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        let Ok(text) = std::fs::read_to_string(&stat) else {
            return;
        };
        let state = text.rsplit(')').next().unwrap_or("").trim_start();
        if state.starts_with('Z') || state.starts_with('X') {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    pub generation: u64,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The pid in the pid file, if there is one and it is readable.
    pub pid: Option<u32>,
    /// With a pid file: its lock is held. Without: the status file exists
    /// (it is removed at a clean exit, but a crashed supervisor leaves it).
    pub running: bool,
    pub generations: Vec<Generation>,
    /// A status file left by a supervisor that is gone (killed): its
    /// generations, and which of their pids still run (orphans).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<StaleGeneration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleGeneration {
    pub generation: u64,
    pub pid: u32,
    pub alive: bool,
}

impl Status {
    pub fn to_text(&self) -> String {
        let mut text = match (self.pid, self.running) {
            (Some(pid), true) => format!("supervisor pid {pid} running\n"),
            (Some(pid), false) => format!("supervisor pid {pid} not running (stale pid file)\n"),
            (None, true) => "supervisor running\n".to_string(),
            (None, false) => "supervisor not running\n".to_string(),
        };
        if self.running && self.generations.is_empty() {
            text.push_str("no active generation\n");
        }
        for g in &self.generations {
            text.push_str(&format!("generation {}  pid {}\n", g.generation, g.pid));
        }
        if !self.stale.is_empty() {
            text.push_str("the status file is stale: its supervisor is gone\n");
        }
        for g in &self.stale {
            let state = if g.alive { "still running, orphaned" } else { "gone" };
            text.push_str(&format!("generation {}  pid {}  {state}\n", g.generation, g.pid));
        }
        text
    }
}

/// Reports what the pid and status files say. Missing files mean "not
/// running", not an error.
pub fn status(pid_file: Option<&Path>, status_file: Option<&Path>) -> Result<Status, Error> {
    if pid_file.is_none() && status_file.is_none() {
        return Err(Error::usage("status needs --pid-file or --status-file"));
    }
    let (gens, status_exists) = match status_file {
        None => (Vec::new(), false),
        Some(path) => match state::read_status(path) {
            Ok(gens) => (gens, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), false),
            Err(e) => return Err(failed("read status file", path, &e)),
        },
    };
    let (pid, running) = match pid_file {
        None => (None, status_exists),
        Some(path) => match PidFileWatch::open(path) {
            Ok(watch) => {
                let pid = watch.read_pid().ok();
                let locked = watch.is_locked().map_err(|e| lock_error(path, e))?;
                // Locked by anyone but the pid it names: not a live supervisor.
                if let (true, Some(pid)) = (locked, pid) {
                    watch.holder(pid)?;
                }
                (pid, locked)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (None, false),
            Err(e) => return Err(failed("open pid file", path, &e)),
        },
    };
    // With a pid file, an unlocked one means the status file is a dead
    // supervisor's: its generations are not served by anyone.
    if pid_file.is_some() && !running {
        let alive = |pid: u32| kill(Pid::from_raw(pid as i32), None).is_ok();
        let stale =
            gens.into_iter().map(|(generation, pid)| StaleGeneration { generation, pid, alive: alive(pid) });
        return Ok(Status { pid, running, generations: Vec::new(), stale: stale.collect() });
    }
    let generations = gens.into_iter().map(|(generation, pid)| Generation { generation, pid }).collect();
    Ok(Status { pid, running, generations, stale: Vec::new() })
}

#[cfg(test)]
mod tests;
