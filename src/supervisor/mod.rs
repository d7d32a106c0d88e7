//! The supervisor at work: one poll(2) loop that turns signals, child
//! exits, READY=1 messages (sd_notify or einhorn's ack), control requests
//! and deadlines into inputs for the state machine, and performs the
//! effects it returns. Idle, it sleeps in poll with no timeout: it wakes
//! only for a signal, a message, or a deadline the machine asked for.
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::Config;
use crate::error::SpawnError;
use crate::error::{Error, Result};
use crate::listen::Listener;
use crate::machine::driver::{self, Perform, Step};
use crate::machine::event::{Event, ExitStatus, Hint};
use crate::machine::{Effect, Input, Machine, Moment};
use crate::state::{PidFile, StatusFile};
use capture::Capture;
use contain::Containment;
use control::ControlServer;
use einhorn::EinhornSocket;
use log::Log;
use logger::Logger;
use notify_socket::NotifySocket;
use signals::{SignalEvent, Signals};
use watch::Watcher;

pub mod capture;
pub mod carry;
mod contain;
mod control;
mod effects;
mod einhorn;
pub mod events;
mod inputs;
mod line_conn;
mod log;
mod logger;
pub mod metrics;
mod notify_socket;
mod observer;
pub mod output;
mod reaper;
mod replies;
pub mod scrape;
pub mod setup;
mod signals;
mod sink;
mod stream;
pub mod upgrade;
mod watch;
mod words;

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
    pub logger: Option<Logger>,
    /// `--log-capture`: the workers' output pipes.
    pub capture: Option<Capture>,
    /// `--watch`: file changes.
    pub watcher: Option<Watcher>,
    /// Workers told to stop that have exited while others of their process
    /// group live on: reported to the machine once the group is empty.
    pub lingering: Vec<(i32, ExitStatus)>,
    /// cgroups or sessions: what belongs to which worker.
    pub contain: Containment,
    /// READY=1 and acks from no worker's processes: ignored, counted.
    pub foreign_ready: u64,
    /// The generations' members and memory, as last looked at.
    pub census: contain::Census,
    /// A starting generation watched for accepting.
    pub observer: observer::Observer,
    /// The worker whose failed start was logged last (for the line that may follow).
    pub failed_pid: Option<i32>,
    /// A generation whose spawn failed in the batch being fed, and why.
    pub failed_spawn: Option<(u64, SpawnError)>,
    /// This image, and a self-upgrade under way.
    pub upgrades: upgrade::Upgrades,
    /// `--metrics-listen`: the metrics over HTTP.
    pub scrape: Option<scrape::MetricsServer>,
}

/// What a first start makes (`setup`) and the new image of an upgrade
/// takes over (`upgrade::resume`): the rest of a `Supervisor` begins the
/// same either way (`Supervisor::assemble`).
pub struct Parts {
    pub machine: Machine,
    pub listeners: Vec<Listener>,
    pub notify: NotifySocket,
    pub einhorn: EinhornSocket,
    pub control: Option<ControlServer>,
    pub signals: Signals,
    pub pid_file: Option<PidFile>,
    pub status_file: Option<StatusFile>,
    pub logger: Option<Logger>,
    /// Carried streams; none: a new `--log-capture` if asked for.
    pub capture: Option<Capture>,
    pub watcher: Option<Watcher>,
    pub lingering: Vec<(i32, ExitStatus)>,
    pub contain: Containment,
    pub upgrades: upgrade::Upgrades,
    pub scrape: Option<scrape::MetricsServer>,
}

impl Supervisor {
    /// The one way a supervisor is built, for a first start and a resume.
    pub fn assemble(config: Config, log: Log, p: Parts) -> Supervisor {
        Supervisor {
            capture: p.capture.or_else(|| config.capture.map(Capture::new)),
            config,
            log,
            listeners: p.listeners,
            notify: p.notify,
            einhorn: p.einhorn,
            control: p.control,
            signals: p.signals,
            machine: p.machine,
            pid_file: p.pid_file,
            status_file: p.status_file,
            logger: p.logger,
            watcher: p.watcher,
            lingering: p.lingering,
            contain: p.contain,
            foreign_ready: 0,
            census: Default::default(),
            observer: Default::default(),
            failed_pid: None,
            failed_spawn: None,
            upgrades: p.upgrades,
            scrape: p.scrape,
        }
    }
}

impl Perform for Supervisor {
    fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn perform(&mut self, effect: Effect) -> Step {
        match effect {
            // The worker's pid, or why it did not start, is the next input.
            Effect::Spawn { generation, index } => return Step::Then(self.spawn(generation, index)),
            Effect::Signal { pid, signal } if self.config.signal_group => {
                self.contain.signal_all(pid, signal)
            }
            Effect::Signal { pid, signal } => {
                let _ = kill(Pid::from_raw(pid), signal);
            }
            Effect::KillGroup { pid } => {
                let reaped = self.lingering.iter().any(|&(p, _)| p == pid);
                let escaped = self.contain.kill(pid, reaped);
                if !escaped.is_empty() {
                    let pids: Vec<String> = escaped.iter().map(i32::to_string).collect();
                    self.log.line(&format!(
                        "killed processes of worker {pid} outside its session: {}",
                        pids.join(",")
                    ));
                }
            }
            // Held until the orphans are stopped and the captured output
            // flushed, so that `exiting` stays the last line.
            Effect::Log(Event::Exiting) => {}
            Effect::Log(event @ Event::Diagnosis { generation, hint: Hint::FailedDuringStartup, .. }) => {
                self.log_event(&event);
                let exited = self.failed_pid.take();
                if let Some(line) = exited.and_then(|pid| self.observer.exited_unseen(generation, pid)) {
                    self.log.line(&line);
                }
            }
            Effect::Log(event @ Event::FailedToStart { pid, .. }) => {
                self.failed_pid = Some(pid);
                self.log_event(&event);
            }
            Effect::Log(event @ Event::Ready { .. }) => {
                if let Event::Ready { generation, pids, how, .. } = &event {
                    self.observer.ready(*generation, words::ready_by(*how, pids));
                }
                self.log_event(&event);
            }
            Effect::Log(event) => self.log_event(&event),
            Effect::WriteStatus(gens) => self.write_status(&gens),
            Effect::Notify(state) => notify_socket::upward(&state),
            Effect::Reply { request, outcome } => self.reply(request, &outcome),
            Effect::Exit(code) => {
                self.stop_orphans();
                if let Some(capture) = &mut self.capture {
                    capture.finish(&mut *self.log.sink());
                }
                self.clean_up();
                self.contain.finish();
                self.log_event(&Event::Exiting);
                self.publish_last();
                self.log.finish(EXIT_FLUSH);
                return Step::Exit(code);
            }
        }
        Step::Done
    }
}

/// The machine's clock, read now (`CLOCK_MONOTONIC`).
pub fn moment() -> Moment {
    Moment::from_nanos(crate::sys::clock::monotonic_ns())
}

/// A moment of the machine's clock as an `Instant`, the same clock.
pub fn instant(at: Moment) -> Instant {
    let (now, moment) = (Instant::now(), moment());
    let at = if at >= moment { now.checked_add(at - moment) } else { now.checked_sub(moment - at) };
    at.unwrap_or(now)
}

impl Supervisor {
    /// Runs the loop until the machine exits. `start`: a first start (not
    /// the new image of an upgrade, whose machine is under way).
    pub fn serve(&mut self, start: bool) -> Result<u8> {
        // A new image's first inputs: children that exited while the images
        // changed, reaped now (their SIGCHLD may have come before the handler).
        let first = if start { vec![Input::Start] } else { [self.child_exits(), vec![Input::Tick]].concat() };
        if let Some(code) = self.feed(moment(), first) {
            return Ok(exit_code(code));
        }
        loop {
            // Members of a lingering group may not be our children (no
            // subreaper): look again now and then while there are some.
            let lingering = (!self.lingering.is_empty()).then(|| Instant::now() + LINGER_CHECK);
            let deadlines = [
                self.machine.next_deadline().map(instant),
                self.control.as_ref().and_then(|c| c.next_deadline(Instant::now())),
                self.logger.as_ref().and_then(Logger::deadline),
                lingering,
                self.log.deadline(),
                self.upgrades.deadline(),
                self.observer.deadline(&self.machine, &self.listeners, &self.config.fds),
                self.scrape.as_ref().and_then(scrape::MetricsServer::deadline),
            ];
            // In milliseconds, rounded up: waking early would only spin.
            let wait =
                deadlines.into_iter().flatten().min().map(|at| at.saturating_duration_since(Instant::now()));
            let timeout = wait.map_or(PollTimeout::NONE, |wait| {
                PollTimeout::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX)
            });
            // Captured output is read only while the log has room for it
            // (or its command is down: then the sink drops beyond its bound).
            let capture = self.capture.as_ref().filter(|_| self.log.sink().may_capture());
            let sink = self.log.sink();
            let readable = [self.signals.fd(), self.notify.fd()].into_iter().chain(self.observer.poll_fd());
            let mut fds: Vec<PollFd> = (readable.chain(self.watcher.iter().map(Watcher::fd)))
                .map(|fd| (fd, PollFlags::POLLIN))
                .chain(self.einhorn.poll_fds())
                .chain(self.control.iter().flat_map(|c| c.poll_fds()))
                .chain(capture.into_iter().flat_map(|c| c.poll_fds()))
                .chain(sink.poll_fd())
                .chain(self.scrape.iter().flat_map(|s| s.poll_fds()))
                .map(|(fd, events)| PollFd::new(fd, events))
                .collect();
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::runtime(format!("poll failed: {e}"))),
            }
            drop(fds);
            drop(sink);
            self.log.flush();
            // Before exits are handled: a worker's last lines precede the line saying it exited.
            if let Some(capture) = &mut self.capture {
                let mut sink = self.log.sink();
                if sink.may_capture() {
                    capture.service(&mut *sink);
                }
            }
            self.log.flush();
            let mut inputs = Vec::new();
            for event in self.signals.drain() {
                match event {
                    SignalEvent::Child => inputs.extend(self.child_exits()),
                    SignalEvent::Terminate(signal) => inputs.push(Input::Terminate(signal)),
                    SignalEvent::Hup => inputs.push(Input::Hup),
                    // What `--on-usr1` says: reopen the log, forward it, or both.
                    SignalEvent::Forward(Signal::SIGUSR1) => inputs.extend(self.on_usr1().1),
                    SignalEvent::Forward(signal) => inputs.push(Input::Forward(signal)),
                }
            }
            self.restart_logger(Instant::now());
            self.upgrade_tick(Instant::now());
            self.log.tick(Instant::now());
            // Reported once the group is empty, or once it no longer has to
            // be (stopping without a stop timeout: the orphans' grace takes over).
            let (machine, contain) = (&self.machine, &self.contain);
            let (gone, still): (Vec<_>, Vec<_>) = (self.lingering.drain(..))
                .partition(|&(pid, _)| !contain.alive(pid) || !machine.told_to_stop(pid));
            self.lingering = still;
            inputs.extend(gone.into_iter().map(|(pid, status)| Input::Exited { pid, status }));
            self.contain.sweep();
            let ready = self.notify.receive().into_iter().filter(|m| m.ready).map(|m| m.pid);
            let acked: Vec<i32> = ready.chain(self.einhorn.service()).collect();
            inputs.extend(self.credit(acked));
            inputs.extend(self.control_requests());
            self.serve_metrics();
            if self.watcher.as_mut().is_some_and(Watcher::drain) {
                inputs.push(Input::Changed);
            }
            let interval = self.config.policy.interval;
            let (seen, lines) = self.observer.look(&self.machine, &self.contain, interval, Instant::now());
            lines.iter().for_each(|line| self.log.line(line));
            inputs.extend(seen);
            inputs.push(Input::Tick);
            if let Some(code) = self.feed(moment(), inputs) {
                return Ok(exit_code(code));
            }
            self.publish();
            // Every input handled: the one moment a verified upgrade may go.
            self.upgrade_now();
        }
    }

    /// Hand inputs to the machine and perform the effects (`driver::feed`).
    /// Returns the exit code once the machine says to exit.
    fn feed(&mut self, now: Moment, inputs: Vec<Input>) -> Option<i32> {
        self.failed_spawn = None;
        let code = driver::feed(self, now, inputs);
        self.note_outcome();
        code
    }
}

/// How often lingering process groups are looked at.
const LINGER_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// How long the last lines may take to be read at exit.
const EXIT_FLUSH: std::time::Duration = std::time::Duration::from_secs(2);

/// The machine's exit code as a process exit status (0..=255; anything
/// else, which config does not let through, is a runtime failure).
fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(crate::error::RUNTIME)
}
