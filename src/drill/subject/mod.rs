//! The supervisor under test, a child of the drill, in one of two ways.
//!
//! By default it is this handover binary with a private `--control` socket
//! in the drill's temporary directory: restarts are requests on that
//! socket, each answered with its outcome and the supervisor's own timings,
//! and the listeners and worker pids are read from its `status` replies,
//! whatever its output options.
//!
//! With `--supervisor PROGRAM` it is any start_server-compatible program
//! (start_server itself, or handover driven as start_server is). The drill
//! adds `--status-file`, restarts with SIGHUP and times each restart by
//! watching that file every millisecond: the new generation listed is
//! "ready", only newer generations listed is "old gone". The listeners are
//! the `--port` and `--path` values; port 0 becomes a free port found here,
//! since start_server cannot bind port 0 itself (a port freed and taken
//! again: another process could win it in between).
mod targets;

use std::collections::{BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use super::load::Target;
use super::report::{Idle, RestartRecord};
use crate::client;
use crate::error::{Context, Error, Result};
use crate::state::read_status;
use crate::wire::control::{self, Command as Request, Stopping};
use targets::{signal_listeners, target};

/// How often the status file is read while a restart is timed.
const STATUS_POLL: Duration = Duration::from_millis(1);
/// Lines of the supervisor's output kept: the tail a failure shows.
const KEPT_LINES: usize = 1000;
/// How long a `status` request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

enum Driver {
    /// This handover, restarted through its control socket.
    Control { socket: PathBuf },
    /// A start_server-compatible program, restarted with SIGHUP.
    Signal { program: String, status: PathBuf, targets: Vec<Target> },
}

pub struct Subject {
    child: Child,
    /// The last `KEPT_LINES` lines of its output, for failure messages.
    lines: Arc<Mutex<VecDeque<String>>>,
    driver: Driver,
    /// Worker pids seen in the status file or `status` replies.
    seen: BTreeSet<i32>,
    /// The listeners of the last `status` reply (with `Driver::Control`).
    listeners: Vec<control::Listener>,
    dir: PathBuf,
}

impl Subject {
    /// Starts `program` (this handover when `None`) with `args`, the
    /// supervisor options and the worker command, using `dir` for its files.
    pub fn start(program: Option<&OsStr>, args: &[OsString], dir: &Path) -> Result<Subject, Error> {
        let (mut command, driver) = match program {
            None => {
                let exe = std::env::current_exe().context(|| "cannot find handover itself".into())?;
                let socket = dir.join("control");
                let mut command = Command::new(exe);
                command.arg("--control").arg(&socket).args(args);
                (command, Driver::Control { socket })
            }
            Some(program) => {
                let (args, targets) = signal_listeners(args)?;
                let status = dir.join("status");
                let mut command = Command::new(program);
                command.arg(format!("--status-file={}", status.display())).args(args);
                let program = program.to_string_lossy().into_owned();
                (command, Driver::Signal { program, status, targets })
            }
        };
        crate::sys::process::stop_with_parent(&mut command);
        let spawned = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let mut child = spawned.map_err(|e| match program {
            Some(p) => Error::new(
                2,
                format!(
                    "drill: cannot run --supervisor {}: {e} (give its path, or install it)",
                    p.to_string_lossy()
                ),
            ),
            None => Error::runtime(format!("cannot start the supervisor: {e}")),
        })?;
        let lines: Arc<Mutex<VecDeque<String>>> = Arc::default();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut kept = lines.lock().unwrap();
                    if kept.len() == KEPT_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        Ok(Subject {
            child,
            lines,
            driver,
            seen: BTreeSet::new(),
            listeners: Vec::new(),
            dir: dir.to_path_buf(),
        })
    }

    /// What is under test and how it is restarted, for the report.
    pub fn describe(&self) -> String {
        match &self.driver {
            Driver::Control { .. } => "handover (restarts through its control socket)".into(),
            Driver::Signal { program, .. } => {
                format!("{program} (restarts by SIGHUP, timed from its status file)")
            }
        }
    }

    /// Its pid while it runs (or is a zombie not yet waited for, so the pid
    /// cannot have been reused); `None` once it has been reaped.
    fn live_pid(&mut self) -> Option<Pid> {
        self.exited().is_none().then(|| Pid::from_raw(self.child.id() as i32))
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().iter().cloned().collect()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of its log, for a failure message.
    pub fn tail(&self) -> String {
        let lines = self.lines();
        let start = lines.len().saturating_sub(8);
        lines[start..].join("\n")
    }

    /// The stream listeners to load.
    pub fn targets(&self) -> Vec<Target> {
        match &self.driver {
            Driver::Signal { targets, .. } => targets.clone(),
            Driver::Control { .. } => self.listeners.iter().filter_map(|l| target(&l.address)).collect(),
        }
    }

    /// The supervisor's `status` reply, remembering its listeners and
    /// every pid seen.
    fn control_status(&mut self) -> Option<control::Status> {
        let Driver::Control { socket } = &self.driver else { return None };
        let status: control::Status =
            client::control::call(socket, Request::Status, Some(STATUS_TIMEOUT)).ok()?;
        self.seen.extend(status.generations.iter().flat_map(|g| g.pids.iter().copied()));
        self.listeners.clone_from(&status.listeners);
        Some(status)
    }

    /// The generations in the status file, remembering every pid seen.
    fn status(&mut self) -> Vec<(u64, u32)> {
        let Driver::Signal { status, .. } = &self.driver else { return Vec::new() };
        let generations = read_status(status).unwrap_or_default();
        self.seen.extend(generations.iter().map(|&(_, pid)| pid as i32));
        generations
    }

    /// Whether the first generation serves yet: the control socket says so,
    /// or the status file lists it.
    fn serving(&mut self) -> bool {
        match &self.driver {
            Driver::Control { .. } => (self.control_status())
                .is_some_and(|s| s.generations.iter().any(|g| g.phase == control::Phase::Serving)),
            Driver::Signal { .. } => !self.status().is_empty(),
        }
    }

    /// Wait until the first generation serves (or the supervisor gave up).
    pub fn wait_serving(&mut self, deadline: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(Error::new(
                    1,
                    format!("the supervisor exited ({status}) before serving:\n{}", self.tail()),
                ));
            }
            if self.serving() {
                return Ok(());
            }
            if let Some(signal) = super::interrupted() {
                return Err(super::interruption(signal));
            }
            if start.elapsed() > deadline {
                return Err(Error::new(
                    1,
                    format!("generation 1 not serving after {deadline:?}:\n{}", self.tail()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One hot restart, given up after `timeout`.
    pub fn restart(&mut self, number: usize, timeout: Duration) -> RestartRecord {
        match &self.driver {
            Driver::Control { socket } => {
                let record = restart_by_control(socket, number, timeout);
                self.control_status();
                record
            }
            Driver::Signal { .. } => self.restart_by_signal(number, timeout),
        }
    }

    fn restart_by_signal(&mut self, number: usize, timeout: Duration) -> RestartRecord {
        let newest = self.status().iter().map(|g| g.0).max().unwrap_or(0);
        let requested_at = Instant::now();
        let mut record = RestartRecord::pending(number, requested_at);
        let sent = match self.live_pid() {
            Some(pid) => kill(pid, Signal::SIGHUP).map_err(|e| e.to_string()),
            None => Err("it has exited".to_string()),
        };
        if let Err(e) = sent {
            record.error = Some(format!("cannot signal the supervisor: {e}"));
            return record;
        }
        let mut ready_at = None;
        record.error = loop {
            let generations = self.status();
            let now = Instant::now();
            record.answered_at = now;
            if ready_at.is_none() && generations.iter().any(|g| g.0 > newest) {
                ready_at = Some(now);
                record.ready_after = Some(now - requested_at);
            }
            if let (Some(ready), false) = (ready_at, generations.is_empty())
                && generations.iter().all(|g| g.0 > newest)
            {
                record.old_gone_after = Some(now - ready);
                record.generation = generations.iter().map(|g| g.0).max();
                record.ok = true;
                break None;
            }
            if let Some(status) = self.exited() {
                break Some(format!("the supervisor exited ({status}):\n{}", self.tail()));
            }
            if super::interrupted().is_some() {
                break Some("interrupted".into());
            }
            if now - requested_at > timeout {
                break Some(match ready_at {
                    None => format!("no new generation after {timeout:?}:\n{}", self.tail()),
                    Some(_) => format!("the old generation still listed after {timeout:?}"),
                });
            }
            std::thread::sleep(STATUS_POLL);
        };
        record
    }

    /// The supervisor's peak resident set so far (VmHWM: its own pages and
    /// the shared ones it maps, the binary and libc) and its private part
    /// now (RssAnon), in KiB.
    pub fn memory(&mut self) -> (Option<u64>, Option<u64>) {
        let Some(pid) = self.live_pid() else { return (None, None) };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse().ok()
        };
        (field("VmHWM:"), field("RssAnon:"))
    }

    /// The supervisor's CPU time and wake-ups over `period` of doing nothing.
    pub fn idle(&mut self, period: Duration) -> Option<Idle> {
        let before = usage(self.live_pid()?)?;
        if !super::pause(period) {
            return None;
        }
        let after = usage(self.live_pid()?)?;
        Some(Idle {
            seconds: period.as_secs_f64(),
            cpu_ms: (after.0 - before.0) as f64 * 1000.0 / clock_ticks() as f64,
            wakeups: after.1 - before.1,
        })
    }

    /// Stop it (control request, or SIGTERM as for start_server); what it
    /// left behind, if anything.
    pub fn stop(mut self) -> Vec<String> {
        self.control_status();
        match &self.driver {
            Driver::Control { socket } => {
                let stop =
                    client::control::call::<Stopping>(socket, Request::Stop, Some(Duration::from_secs(60)));
                drop(stop);
            }
            Driver::Signal { .. } => {
                if let Some(pid) = self.live_pid() {
                    let _ = kill(pid, Signal::SIGTERM);
                }
            }
        }
        let start = Instant::now();
        let mut leftovers = Vec::new();
        let status = loop {
            if let Some(status) = self.exited() {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        match status {
            Some(s) if s.success() => {}
            Some(s) => leftovers.push(format!("the supervisor exited with {s}")),
            None => leftovers.push("the supervisor did not stop within 60 s (killed)".into()),
        }
        for pid in self.seen.iter().copied() {
            if is_alive(pid) {
                leftovers.push(format!("worker {pid} still running"));
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let file = match &self.driver {
            Driver::Control { socket } => ("control socket", socket),
            Driver::Signal { status, .. } => ("status file", status),
        };
        if file.1.exists() {
            leftovers.push(format!("{} {} left behind", file.0, file.1.display()));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        leftovers
    }
}

fn restart_by_control(socket: &Path, number: usize, timeout: Duration) -> RestartRecord {
    let requested_at = Instant::now();
    let reply = client::control::call::<control::Restarted>(socket, Request::Restart, Some(timeout));
    let answered_at = Instant::now();
    let ms = |ms: f64| Duration::from_secs_f64(ms.max(0.0) / 1000.0);
    match reply {
        Ok(done) => RestartRecord {
            ok: true,
            generation: Some(done.generation),
            ready_after: Some(ms(done.spawn_to_ready_ms)),
            old_gone_after: done.signal_to_old_gone_ms.map(ms),
            answered_at,
            error: None,
            ..RestartRecord::pending(number, requested_at)
        },
        Err(e) => RestartRecord {
            answered_at,
            error: Some(e.message),
            ..RestartRecord::pending(number, requested_at)
        },
    }
}

fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

/// CPU clock ticks (user + system) and context switches of a process,
/// summed over its threads.
fn usage(pid: Pid) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let mut switches = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        switches += status
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some((ticks, switches))
}

fn clock_ticks() -> i64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_usage() {
        let (_, switches) = usage(Pid::this()).unwrap();
        assert!(switches > 0);
        assert!(clock_ticks() > 0);
    }
}
