//! The supervisor at work: one poll(2) loop that turns signals, child
//! exits, READY=1 messages (sd_notify or einhorn's ack), control requests
//! and deadlines into inputs for the state machine, and performs the
//! effects it returns. Idle, it sleeps in poll with no timeout: it wakes
//! only for a signal, a message, or a deadline the machine asked for.
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgid};

use serde_json::json;

use crate::config::Config;
use crate::error::Fatal;
use crate::listen::Listener;
use crate::machine::event::{Event, ExitStatus};
use crate::machine::{self, Effect, Input, Machine};
use crate::state::{self, PidFile, StatusFile};
use crate::sys::spawn;
use crate::wire::control::Command;
use crate::wire::env as protocol;
use capture::Capture;
use control::{ControlServer, RequestId};
use einhorn::EinhornSocket;
use notify::NotifySocket;
use signals::{SignalEvent, Signals};
use watch::Watcher;

pub mod capture;
mod control;
mod einhorn;
mod lines;
mod notify;
pub mod output;
mod reaper;
pub mod report;
pub mod setup;
mod signals;
mod watch;

/// How lines are printed: start_server's bare texts, or prefixed.
pub struct Log {
    pub compat: bool,
    /// `--log-format json`: our lines are JSON records like the workers'.
    pub json: bool,
}

impl Log {
    pub fn line(&self, text: &str) {
        let line = if self.json {
            let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
            format!(
                "{}\n",
                json!({"time": time, "source": "handover", "pid": std::process::id(), "line": text})
            )
        } else if self.compat {
            format!("{text}\n")
        } else {
            format!("handover[{}]: {text}\n", std::process::id())
        };
        // One write per line, so lines from several writers never interleave.
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    pub fn event(&self, event: &Event) {
        if !self.compat || !event.is_extra() || event.is_warning() {
            self.line(&event.render(self.compat));
        }
    }

    /// A line of handover's own, not printed under the name start_server.
    pub fn extra(&self, text: &str) {
        if !self.compat {
            self.line(text);
        }
    }
}

pub struct Supervisor {
    pub config: Config,
    pub log: Log,
    pub listeners: Vec<Listener>,
    pub notify: NotifySocket,
    pub einhorn: EinhornSocket,
    pub control: Option<ControlServer>,
    pub signals: Signals,
    pub machine: Machine,
    pub pid_file: Option<PidFile>,
    pub status_file: Option<StatusFile>,
    /// The `--log-file "| COMMAND"` process: the last child to go.
    pub logger: Option<i32>,
    /// `--log-capture`: the workers' output pipes.
    pub capture: Option<Capture>,
    /// `--watch`: file changes.
    pub watcher: Option<Watcher>,
}

impl Supervisor {
    pub fn serve(&mut self) -> Result<i32, Fatal> {
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
            let mut fds = vec![
                PollFd::new(self.signals.fd(), PollFlags::POLLIN),
                PollFd::new(self.notify.fd(), PollFlags::POLLIN),
            ];
            let sockets = (self.einhorn.poll_fds().into_iter())
                .chain(self.control.iter().flat_map(|c| c.poll_fds()))
                .chain(self.capture.iter().flat_map(|c| c.poll_fds()));
            fds.extend(sockets.map(|(fd, events)| PollFd::new(fd, events)));
            fds.extend(self.watcher.iter().map(|w| PollFd::new(w.fd(), PollFlags::POLLIN)));
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Fatal::new(1, format!("poll failed: {e}"))),
            }
            drop(fds);
            // Before exits are handled: a worker's last lines precede the line saying it exited.
            if let Some(capture) = &mut self.capture {
                capture.service(&mut std::io::stderr());
            }
            let mut inputs = Vec::new();
            for event in self.signals.drain() {
                match event {
                    SignalEvent::Child => inputs.extend(reap()),
                    SignalEvent::Terminate(signal) => inputs.push(Input::Terminate(signal)),
                    SignalEvent::Hup => inputs.push(Input::Hup),
                    SignalEvent::Forward(signal) => {
                        if signal == Signal::SIGUSR1 {
                            self.reopen_log();
                        }
                        inputs.push(Input::Forward(signal));
                    }
                }
            }
            let ready = self.notify.receive().into_iter().filter(|m| m.ready).map(|m| m.pid);
            let acked: Vec<i32> = ready.chain(self.einhorn.service()).collect();
            inputs.extend(acked.into_iter().map(|pid| Input::Ready { pid: group_leader(pid) }));
            inputs.extend(self.control_requests());
            if self.watcher.as_mut().is_some_and(Watcher::drain) {
                inputs.push(Input::Changed);
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
            let mut spawned = Vec::new();
            for effect in self.machine.handle(now, input) {
                match effect {
                    Effect::Spawn { generation, index } => spawned.push(self.spawn(generation, index)),
                    Effect::Signal { pid, signal } if self.config.signal_group => {
                        let _ = killpg(Pid::from_raw(pid), signal);
                    }
                    Effect::Signal { pid, signal } => {
                        let _ = kill(Pid::from_raw(pid), signal);
                    }
                    Effect::KillGroup { pid } => {
                        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    // Held until the orphans are stopped and the captured output
                    // flushed, so that `exiting` stays the last line.
                    Effect::Log(Event::Exiting) => {}
                    Effect::Log(event) => self.log.event(&event),
                    Effect::WriteStatus(gens) => self.write_status(&gens),
                    Effect::Notify(state) => notify::upward(&state),
                    Effect::Reply { request, outcome } => self.reply(request, &outcome),
                    Effect::Exit(code) => {
                        self.stop_orphans();
                        if let Some(capture) = &mut self.capture {
                            capture.finish(&mut std::io::stderr());
                        }
                        self.clean_up();
                        self.log.event(&Event::Exiting);
                        return Some(code);
                    }
                }
            }
            // A spawn's pid comes back as the next inputs, in spawn order.
            for input in spawned.into_iter().rev() {
                queue.push_front(input);
            }
        }
        None
    }

    fn spawn(&mut self, generation: u64, index: usize) -> Input {
        let env = self.worker_env(generation, index);
        let mut fds: Vec<(RawFd, RawFd)> = (self.listeners.iter())
            .zip(&self.config.fds)
            .map(|(l, &target)| (l.socket.as_raw_fd(), target))
            .collect();
        let pipes = match self.capture.as_mut().map(Capture::open).transpose() {
            Ok(pipes) => pipes,
            Err(e) => {
                self.log.line(&format!(
                    "cannot create log capture pipes ({e}); this worker's output goes unprefixed"
                ));
                None
            }
        };
        if let Some(p) = &pipes {
            fds.extend([(p.stdout.as_raw_fd(), 1), (p.stderr.as_raw_fd(), 2)]);
        }
        let request = spawn::Request {
            command: &self.config.command,
            env: &env,
            listen_pid: env.iter().any(|(k, _)| k == protocol::LISTEN_FDS),
            dir: self.config.dir.as_deref(),
            fds: &fds,
            credentials: self.config.credentials.as_ref(),
        };
        let result = spawn::spawn(&request);
        // Our copies of the write ends go now: a stream ends when the worker's do.
        let token = pipes.map(|p| p.token);
        if let (Some(capture), Some(token)) = (self.capture.as_mut(), token) {
            match &result {
                Ok(pid) => capture.attach(token, generation, pid.as_raw()),
                Err(_) => capture.abandon(token),
            }
        }
        match result {
            Ok(pid) => Input::Spawned { generation, index, pid: pid.as_raw() },
            Err(error) => Input::SpawnFailed { generation, index, error },
        }
    }

    /// The supervisor's startup environment, the envdir as it is now, then
    /// every protocol's variables.
    fn worker_env(&self, generation: u64, index: usize) -> Vec<(OsString, OsString)> {
        let mut env = self.config.base_env.clone();
        if let Some(dir) = &self.config.envdir {
            match state::read_envdir(dir) {
                Ok(loaded) => {
                    loaded.warnings.iter().for_each(|w| self.log.line(w));
                    env = state::overlay_env(&env, &loaded.vars);
                }
                Err(e) => self.log.line(&format!("{e}; using the startup environment")),
            }
        }
        let slots: Vec<protocol::Slot> = (self.listeners.iter())
            .zip(&self.config.fds)
            .map(|(l, &fd)| protocol::Slot { key: &l.key, name: l.spec.name.as_deref(), fd })
            .collect();
        let (name, value) = protocol::generation_env(generation);
        let mut vars = protocol::listener_env(&slots);
        vars.push((name.to_string(), value));
        vars.extend(protocol::worker_index_env(index));
        vars.push((protocol::NOTIFY_SOCKET.to_string(), self.notify.path().to_string_lossy().into_owned()));
        vars.extend(protocol::einhorn_env(&self.einhorn.path().to_string_lossy(), std::process::id()));
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

    /// Answer what can be answered at once; the rest become inputs.
    fn control_requests(&mut self) -> Vec<Input> {
        let Some(control) = self.control.as_mut() else { return Vec::new() };
        let (requests, lines) = control.service();
        lines.iter().for_each(|line| self.log.line(line));
        let mut inputs = Vec::new();
        let mut replies = Vec::new();
        for (id, command) in requests {
            match command {
                Command::Restart => inputs.push(Input::Restart { request: id.0 }),
                Command::Stop => {
                    replies.push((id, json!({"ok": true, "pid": std::process::id()})));
                    inputs.push(Input::Terminate(Signal::SIGTERM));
                }
                Command::Status => {
                    let fds = self.config.fds.iter().copied();
                    let listeners: Vec<(&Listener, i32)> = self.listeners.iter().zip(fds).collect();
                    replies.push((id, report::status(&self.machine, &listeners, Instant::now())));
                }
            }
        }
        if let Some(control) = self.control.as_mut() {
            replies.iter().for_each(|(id, reply)| control.reply(*id, reply));
        }
        inputs
    }

    fn reply(&mut self, request: machine::RequestId, outcome: &machine::Outcome) {
        if let Some(control) = self.control.as_mut() {
            control.reply(RequestId(request), &report::outcome(outcome));
        }
    }

    fn reopen_log(&self) {
        if let Some(target) = &self.config.log
            && let Err(e) = output::reopen(target)
        {
            self.log.line(&format!("{}; still writing to the old log", e.message));
        }
    }

    /// Whatever workers left behind (re-parented to us) goes too.
    fn stop_orphans(&mut self) {
        let keep: Vec<i32> = self.logger.into_iter().collect();
        let grace = self.config.policy.stop_timeout.unwrap_or(Duration::from_secs(10));
        let stopped = reaper::stop_orphans(&keep, grace);
        if !stopped.is_empty() {
            let pids: Vec<String> = stopped.iter().map(i32::to_string).collect();
            self.log.line(&format!("stopped processes the workers left behind: {}", pids.join(",")));
        }
    }

    /// Remove exactly the files this process created. The control socket
    /// stays open (its file gone) until the process exits, so a `stop`
    /// client sees its connection end only then.
    fn clean_up(&mut self) {
        if let Some(control) = self.control.as_mut() {
            control.flush();
            if let Err(e) = control.remove() {
                self.log.line(&format!("cannot remove the control socket: {e}"));
            }
        }
        if let Some(status) = self.status_file.take()
            && let Err(e) = status.remove()
        {
            self.log.line(&format!("cannot remove the status file: {e}"));
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

/// A worker's children may report for it: the sender's process group
/// leader is the worker (each worker leads its own group).
fn group_leader(pid: i32) -> i32 {
    getpgid(Some(Pid::from_raw(pid))).map_or(pid, Pid::as_raw)
}

/// Every child that has exited, as inputs.
fn reap() -> Vec<Input> {
    let mut exits = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                exits.push(Input::Exited { pid: pid.as_raw(), status: ExitStatus::Code(code) })
            }
            Ok(WaitStatus::Signaled(pid, signal, core)) => exits.push(Input::Exited {
                pid: pid.as_raw(),
                status: ExitStatus::Signal { signal: signal as i32, core },
            }),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    exits
}
