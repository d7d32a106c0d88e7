//! The supervisor under test, a child of the drill, in one of two ways.
//!
//! By default it is the `handover` beside the drill's program, with a
//! private `--control` socket in the drill's temporary directory: restarts
//! are requests on that socket, each answered with its outcome and the
//! supervisor's own timings, and the listeners and worker pids are read
//! from its `status` replies, whatever its output options.
//!
//! With `--supervisor PROGRAM` it is any start_server-compatible program
//! (start_server itself, or handover driven as start_server is). The drill
//! adds `--status-file`, restarts with SIGHUP and times each restart by
//! watching that file every millisecond: the new generation listed is
//! "ready", only newer generations listed is "old gone". The listeners are
//! the `--port` and `--path` values; port 0 becomes a free port found here,
//! since start_server cannot bind port 0 itself (a port freed and taken
//! again: another process could win it in between).
//!
//! Restarts are `restart`'s business. Only handover, through its control
//! socket, can also be upgraded in place (`upgrade`): the drill checks its
//! pids around each upgrade and, when its log comes to the drill, that the
//! log kept its lines.
//!
//! A restart not done within its timeout is explained from the
//! supervisor's own account (`stuck`): which generation is still starting
//! or still draining, and which pids did not exit. Its output and its
//! workers' go to a file in the drill's directory (`output`), whose tail a
//! failure shows.
mod output;
mod proc;
mod restart;
mod stop;
mod stuck;
mod targets;
mod upgrade;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::load::Target;
use super::report::Idle;
use crate::client;
use crate::error::{Error, Result};
use crate::state::read_status;
use crate::wire::control::{self, Command as Request};
pub use output::{FILE_NAME as OUTPUT_FILE, Output};
use proc::{clock_ticks, usage};
use targets::{signal_listeners, target};
pub use upgrade::log_here;

/// How often the status file is read while a restart is timed.
const STATUS_POLL: Duration = Duration::from_millis(1);
/// How long the output may take to end once the supervisor has stopped.
const OUTPUT_END: Duration = Duration::from_secs(5);
/// handover's variable for its runtime directory (`state::runtime`).
const RUNTIME_DIR_ENV: &str = "HANDOVER_RUNTIME_DIR";
/// The longest runtime directory handover takes (its sockets' paths
/// must fit in `sun_path`).
const RUNTIME_DIR_MAX: usize = 60;
/// How long a `status` request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

enum Driver {
    /// This handover (`exe`), restarted and upgraded through its control socket.
    Control { socket: PathBuf, exe: PathBuf },
    /// A start_server-compatible program, restarted with SIGHUP.
    Signal { program: String, status: PathBuf, targets: Vec<Target> },
}

pub struct Subject {
    child: Child,
    /// Its output and its workers'.
    output: Output,
    driver: Driver,
    /// The signal that tells an old generation to stop (`--signal-on-hup`).
    stop_signal: String,
    /// Its `--stop-timeout`, when given.
    stop_timeout: Option<Duration>,
    /// Worker pids seen in the status file or `status` replies.
    seen: BTreeSet<i32>,
    /// The listeners of the last `status` reply (with `Driver::Control`).
    listeners: Vec<control::Listener>,
    dir: PathBuf,
    /// Whether `dir` is the user's (`--keep`), never removed.
    keep: bool,
}

impl Subject {
    /// Starts `program` (the handover beside the drill when `None`) with
    /// `args`, the supervisor options and the worker command, using `dir`
    /// for its files (and removing it when it stops, unless `keep`).
    pub fn start(
        program: Option<&OsStr>,
        args: &[OsString],
        dir: &Path,
        keep: bool,
        log_line: Option<&str>,
    ) -> Result<Subject, Error> {
        let (mut command, driver) = match program {
            None => {
                let exe = crate::cli::drill::beside_this_program(crate::cli::drill::HANDOVER)?;
                let socket = dir.join("control");
                let mut command = Command::new(&exe);
                command.arg("--control").arg(&socket).args(args);
                (command, Driver::Control { socket, exe })
            }
            Some(program) => {
                let (args, targets) = signal_listeners(args)?;
                let status = dir.join("status");
                // A kept directory may hold an earlier drill's file.
                let _ = std::fs::remove_file(&status);
                let mut command = Command::new(program);
                command.arg(format!("--status-file={}", status.display())).args(args);
                let program = program.to_string_lossy().into_owned();
                (command, Driver::Signal { program, status, targets })
            }
        };
        crate::sys::process::stop_with_parent(&mut command);
        // A process group of its own, which the drill may kill whole when
        // it must (`stop`), and which a terminal's ^C does not reach: the
        // drill stops it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // Its private runtime directory in the drill's, so that it goes
        // with it even when the supervisor had to be killed (unless the
        // user chose one, or the drill's path is too long for a socket's).
        if std::env::var_os(RUNTIME_DIR_ENV).is_none() && dir.as_os_str().len() <= RUNTIME_DIR_MAX {
            command.env(RUNTIME_DIR_ENV, dir);
        }
        let spawned = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let mut child = spawned.map_err(|e| match program {
            Some(p) => Error::new(
                2,
                format!(
                    "cannot run --supervisor {}: {e} (give its path, or install it)",
                    p.to_string_lossy()
                ),
            ),
            None => crate::cli::drill::missing(command.get_program().as_ref(), &e),
        })?;
        let mut streams: Vec<Box<dyn Read + Send>> = Vec::new();
        streams.extend(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
        streams.extend(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
        let output = match Output::start(dir, keep, streams, log_line) {
            Ok(output) => output,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        Ok(Subject {
            child,
            output,
            driver,
            stop_signal: stuck::stop_signal(args),
            stop_timeout: stuck::stop_timeout(args),
            seen: BTreeSet::new(),
            listeners: Vec::new(),
            dir: dir.to_path_buf(),
            keep,
        })
    }

    /// How long to wait for it to stop: `bound`, or longer when its own
    /// `--stop-timeout` needs more (10 s more).
    pub fn stop_bound(&self, bound: Duration) -> Duration {
        bound.max(self.stop_timeout.map_or(Duration::ZERO, |t| t.saturating_add(Duration::from_secs(10))))
    }

    /// The signal an old generation is told to stop with (`TERM`, `QUIT`).
    pub fn stop_signal(&self) -> &str {
        &self.stop_signal
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

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
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
        let Driver::Control { socket, .. } = &self.driver else { return None };
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

    /// Wait until the first generation serves (or the supervisor gave
    /// up); the error says why not, with code 2 when the supervisor
    /// refused its options (exited 2).
    pub fn wait_serving(&mut self, deadline: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                self.output.finish(OUTPUT_END);
                let code = if status.code() == Some(2) { 2 } else { 1 };
                let said = self.output.last_line_of(None).map(|l| format!(": {}", self.explain(&l)));
                let why =
                    format!("the supervisor exited ({status}) before serving{}", said.unwrap_or_default());
                return Err(Error::new(code, why));
            }
            if self.serving() {
                return Ok(());
            }
            if let Some(signal) = super::interrupted() {
                return Err(super::interruption(signal, "not yet serving"));
            }
            if start.elapsed() > deadline {
                let why =
                    self.control_status().and_then(|s| stuck::from_status(&s, deadline, &self.stop_signal));
                let why = why.unwrap_or_else(|| {
                    let line = self.output.last_line_of(None).map(|l| format!("; the last line: {l}"));
                    let after = stuck::seconds(deadline);
                    format!(
                        "no generation serving after {after} (see --startup-timeout){}",
                        line.unwrap_or_default()
                    )
                });
                return Err(Error::new(1, why));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The supervisor's peak resident set so far (VmHWM: its own pages and
    /// the shared ones it maps, the binary and libc) and its private part
    /// now (RssAnon), in KiB.
    pub fn memory(&mut self) -> (Option<u64>, Option<u64>) {
        self.live_pid().map_or((None, None), proc::memory)
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

    /// A failure's text with the supervisor's start-failure hint ("If its
    /// log says "Address already in use"...") kept only when the output
    /// said so; else the hint makes way for the worker's last line.
    fn explain(&self, text: &str) -> String {
        const HINT: &str = "; it failed during startup. If its log says";
        let Some((head, _)) = text.split_once(HINT) else { return text.to_owned() };
        // The worker's last words may still be on their way through the pipe.
        std::thread::sleep(Duration::from_millis(100));
        if self.output.address_in_use() {
            return text.to_owned();
        }
        let pid = head.split("worker ").nth(1).and_then(|rest| rest.split(' ').next()?.parse().ok());
        match self.output.last_line_of(pid) {
            Some(line) => format!("{head}; it failed during startup, its last line: {line}"),
            None => format!("{head}; it failed during startup, and wrote nothing"),
        }
    }
}
