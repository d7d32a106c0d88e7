//! The supervisor: set-up, then one poll(2) loop that turns signals, child
//! exits, READY=1 messages and deadlines into inputs for the state machine,
//! and performs the effects it returns.
//!
//! Set-up order matters: the pid file is locked first (a second instance
//! fails before touching anything), then sockets are bound, then signal
//! handlers installed, then output redirected and the process daemonized.
//! Any failure undoes what was done: no pid file, socket file or process
//! is left behind. Idle, the loop sleeps in poll with no timeout: it wakes
//! only for a signal, a message, or a deadline the machine asked for.
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid};

use crate::config::Config;
use crate::event::{Event, ExitStatus};
use crate::files::{self, PidFile, StatusFile};
use crate::listen::{self, Listener};
use crate::machine::{Effect, Input, Machine};
use crate::notify::{self, NotifySocket};
use crate::signals::{SignalEvent, Signals};
use crate::{output, protocol, spawn};

/// A failure that ends the supervisor: one line and an exit code.
#[derive(Debug)]
pub struct Fatal {
    pub message: String,
    pub code: i32,
}

impl Fatal {
    pub fn new(code: i32, message: impl Into<String>) -> Fatal {
        Fatal {
            message: message.into(),
            code,
        }
    }
}

/// How lines are printed: start_server's bare texts, or prefixed.
pub struct Log {
    pub compat: bool,
}

impl Log {
    pub fn line(&self, text: &str) {
        let line = if self.compat {
            format!("{text}\n")
        } else {
            format!("handover[{}]: {text}\n", std::process::id())
        };
        // One write per line, so lines from several writers never interleave.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    pub fn event(&self, event: &Event) {
        if !self.compat || !event.is_extra() || event.is_warning() {
            self.line(&event.to_string());
        }
    }

    /// A line of handover's own, not printed under the name start_server.
    pub fn extra(&self, text: &str) {
        if !self.compat {
            self.line(text);
        }
    }
}

struct Supervisor {
    config: Config,
    log: Log,
    listeners: Vec<Listener>,
    notify: NotifySocket,
    signals: Signals,
    machine: Machine,
    pid_file: Option<PidFile>,
    status_file: Option<StatusFile>,
}

/// Run until stopped; returns the exit code.
pub fn run(config: Config) -> Result<i32, Fatal> {
    let log = Log {
        compat: config.compat,
    };
    let program = &config.command[0];
    spawn::check(program, &config.base_env, config.dir.as_deref())
        .map_err(|e| Fatal::new(e.exit_code(), e.to_string()))?;
    if config.compat {
        // start_server's banner, on the terminal even with --log-file.
        let pid = std::process::id();
        let _ = writeln!(
            std::io::stderr(),
            "start_server (pid:{pid}) starting now..."
        );
    }
    let mut pid_file = match &config.pid_file {
        Some(path) => Some(PidFile::acquire(path).map_err(|e| Fatal::new(1, e.to_string()))?),
        None => None,
    };
    let undo = |pid_file: Option<PidFile>, listeners: &[Listener]| {
        listeners.iter().for_each(|l| drop(l.remove_file()));
        if let Some(pid_file) = pid_file {
            let _ = pid_file.remove();
        }
    };
    let listeners = match listen::bind_all(&config.listeners, config.backlog) {
        Ok(listeners) => listeners,
        Err(e) => {
            undo(pid_file, &[]);
            return Err(Fatal::new(1, e.to_string()));
        }
    };
    let setup = (|| -> Result<(NotifySocket, Signals), Fatal> {
        let notify = NotifySocket::bind()
            .map_err(|e| Fatal::new(1, format!("cannot create the notify socket: {e}")))?;
        let signals = Signals::install()
            .map_err(|e| Fatal::new(1, format!("cannot install signal handlers: {e}")))?;
        if let Some(target) = &config.log {
            output::redirect(target)?;
        }
        if config.daemonize {
            output::detach()?;
        }
        Ok((notify, signals))
    })();
    let (notify, signals) = match setup {
        Ok(parts) => parts,
        Err(e) => {
            undo(pid_file, &listeners);
            return Err(e);
        }
    };
    if let Some(pid_file) = &mut pid_file
        && let Err(e) = pid_file.write_pid(std::process::id())
    {
        log.line(&format!("cannot write the pid file: {e}"));
    }
    for (listener, fd) in listeners.iter().zip(&config.fds) {
        if listener.replaced_stale
            && let Some(path) = &listener.created_path
        {
            log.line(&format!("removing existing socket file:{}", path.display()));
        }
        if listener.spec.pin.is_some() {
            log.line(&format!("socket is duplicated to file descriptor {fd}"));
        }
        log.extra(&format!(
            "listening on {} as fd {fd} ({})",
            listener.local, listener.key
        ));
    }
    let status_file = config.status_file.as_deref().map(StatusFile::new);
    let machine = Machine::new(config.policy.clone());
    let mut supervisor = Supervisor {
        config,
        log,
        listeners,
        notify,
        signals,
        machine,
        pid_file,
        status_file,
    };
    supervisor.serve()
}

impl Supervisor {
    fn serve(&mut self) -> Result<i32, Fatal> {
        if let Some(code) = self.feed(Instant::now(), vec![Input::Start]) {
            return Ok(code);
        }
        loop {
            let timeout = match self.machine.next_deadline() {
                None => PollTimeout::NONE,
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    // Round up: waking early would only spin.
                    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128);
                    PollTimeout::try_from(ms as i32).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [
                PollFd::new(self.signals.fd(), PollFlags::POLLIN),
                PollFd::new(self.notify.fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Fatal::new(1, format!("poll failed: {e}"))),
            }
            let mut inputs = Vec::new();
            for event in self.signals.drain() {
                match event {
                    SignalEvent::Child => inputs.extend(reap()),
                    SignalEvent::Terminate(signal) => inputs.push(Input::Terminate(signal)),
                    SignalEvent::Hup => inputs.push(Input::Hup),
                    SignalEvent::Forward(signal) => inputs.push(Input::Forward(signal)),
                }
            }
            for message in self.notify.receive().into_iter().filter(|m| m.ready) {
                // A worker's children report for it: map the sender to its group leader.
                let pid =
                    getpgid(Some(Pid::from_raw(message.pid))).map_or(message.pid, Pid::as_raw);
                inputs.push(Input::Ready { pid });
            }
            inputs.push(Input::Tick);
            if let Some(code) = self.feed(Instant::now(), inputs) {
                return Ok(code);
            }
        }
    }

    /// Hand inputs to the machine and perform the effects, including the
    /// inputs that effects produce (a spawn reports its pid). Returns the
    /// exit code once the machine says to exit.
    fn feed(&mut self, now: Instant, inputs: Vec<Input>) -> Option<i32> {
        let mut queue: VecDeque<Input> = inputs.into();
        while let Some(input) = queue.pop_front() {
            for effect in self.machine.handle(now, input) {
                match effect {
                    Effect::Spawn { generation } => queue.push_front(self.spawn(generation)),
                    Effect::Signal { pid, signal } => {
                        let _ = kill(Pid::from_raw(pid), signal);
                    }
                    Effect::KillGroup { pid } => {
                        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    Effect::Log(event) => self.log.event(&event),
                    Effect::WriteStatus(gens) => self.write_status(&gens),
                    Effect::Notify(state) => notify::upward(&state),
                    Effect::Exit(code) => {
                        self.clean_up();
                        return Some(code);
                    }
                }
            }
        }
        None
    }

    fn spawn(&mut self, generation: u64) -> Input {
        let env = self.worker_env(generation);
        let fds: Vec<(RawFd, RawFd)> = (self.listeners.iter())
            .zip(&self.config.fds)
            .map(|(l, &target)| (l.socket.as_raw_fd(), target))
            .collect();
        let request = spawn::Request {
            command: &self.config.command,
            env: &env,
            listen_pid: env.iter().any(|(k, _)| k == protocol::LISTEN_FDS),
            dir: self.config.dir.as_deref(),
            fds: &fds,
        };
        match spawn::spawn(&request) {
            Ok(pid) => Input::Spawned {
                generation,
                pid: pid.as_raw(),
            },
            Err(error) => Input::SpawnFailed { generation, error },
        }
    }

    /// The supervisor's startup environment, the envdir as it is now, then
    /// every protocol's variables.
    fn worker_env(&self, generation: u64) -> Vec<(OsString, OsString)> {
        let mut env = self.config.base_env.clone();
        if let Some(dir) = &self.config.envdir {
            match files::read_envdir(dir) {
                Ok(loaded) => {
                    loaded.warnings.iter().for_each(|w| self.log.line(w));
                    env = files::overlay_env(&env, &loaded.vars);
                }
                Err(e) => self
                    .log
                    .line(&format!("{e}; using the startup environment")),
            }
        }
        let slots: Vec<protocol::Slot> = (self.listeners.iter())
            .zip(&self.config.fds)
            .map(|(l, &fd)| protocol::Slot {
                key: &l.key,
                name: l.spec.name.as_deref(),
                fd,
            })
            .collect();
        let (name, value) = protocol::generation_env(generation);
        let mut vars = protocol::listener_env(&slots);
        vars.push((name.to_string(), value));
        vars.push((
            protocol::NOTIFY_SOCKET.to_string(),
            self.notify.path().to_string_lossy().into_owned(),
        ));
        for (name, value) in vars {
            env.retain(|(k, _)| *k != *name);
            env.push((name.into(), value.into()));
        }
        env
    }

    fn write_status(&mut self, gens: &[(u64, i32)]) {
        if let Some(status) = &mut self.status_file {
            let gens: Vec<(u64, u32)> = gens.iter().map(|&(g, p)| (g, p as u32)).collect();
            if let Err(e) = status.write(&gens) {
                self.log.line(&format!("cannot write the status file: {e}"));
            }
        }
    }

    /// Remove exactly the files this process created.
    fn clean_up(&mut self) {
        if let Some(status) = self.status_file.take()
            && let Err(e) = status.remove()
        {
            self.log
                .line(&format!("cannot remove the status file: {e}"));
        }
        for listener in &self.listeners {
            if let Err(e) = listener.remove_file() {
                self.log.line(&format!("cannot remove socket file: {e}"));
            }
        }
        if let Some(pid_file) = self.pid_file.take()
            && let Err(e) = pid_file.remove()
        {
            self.log.line(&format!("cannot remove the pid file: {e}"));
        }
    }
}

/// Every child that has exited, as inputs.
fn reap() -> Vec<Input> {
    let mut exits = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => exits.push(Input::Exited {
                pid: pid.as_raw(),
                status: ExitStatus::Code(code),
            }),
            Ok(WaitStatus::Signaled(pid, signal, core)) => exits.push(Input::Exited {
                pid: pid.as_raw(),
                status: ExitStatus::Signal {
                    signal: signal as i32,
                    core,
                },
            }),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    exits
}
