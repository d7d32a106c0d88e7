//! The lifecycle policy as a pure state machine.
//!
//! `Machine::handle(now, input)` returns the effects to perform; it makes no
//! syscalls and reads no clock, so every rule below is tested by tables.
//! The event loop feeds it inputs (signals, exits, READY=1, timer ticks),
//! performs the effects, and sleeps until `next_deadline()`.
//!
//! Invariants:
//! - At most one generation is starting (`candidate`) at a time. A HUP during
//!   a start is coalesced into one pending restart, taken as soon as the
//!   start ends; any spawn satisfies all HUPs received before it.
//! - A probation window is never shortened by a signal: alive-readiness is
//!   `spawned_at + interval`, whatever else arrives meanwhile.
//! - The serving generation is signalled only after its successor is ready;
//!   a successor that fails leaves it untouched.
//! - Spawns happen at most once per `interval`, except a restart asked for
//!   by an operator, which starts at once.
//! - Once stopping, nothing is spawned.
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::event::{Event, ExitStatus, Pid, SpawnError};

/// When a new worker counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyMode {
    /// start_server: still alive `interval` after the spawn.
    Alive,
    /// `READY=1` on the notify socket.
    Notify,
    /// `READY=1` if it comes first, else alive after `interval`.
    Auto,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub interval: Duration,
    pub ready: ReadyMode,
    /// Notify mode: give up on a worker not ready by then.
    pub ready_timeout: Option<Duration>,
    pub kill_old_delay: Duration,
    pub drain_timeout: Option<Duration>,
    pub stop_timeout: Option<Duration>,
    pub signal_on_hup: Signal,
    pub signal_on_term: Signal,
    pub auto_restart: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Start,
    Spawned {
        generation: u64,
        pid: Pid,
    },
    SpawnFailed {
        generation: u64,
        error: SpawnError,
    },
    Exited {
        pid: Pid,
        status: ExitStatus,
    },
    /// `READY=1` from this worker (or a process in its group).
    Ready {
        pid: Pid,
    },
    Hup,
    /// TERM or INT: graceful shutdown.
    Terminate(Signal),
    /// Any other catchable signal: passed on to the serving generation.
    Forward(Signal),
    /// A deadline may have passed.
    Tick,
}

/// Messages for the supervisor's own service manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upward {
    Ready,
    Reloading,
    Stopping,
    Status(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Spawn {
        generation: u64,
    },
    Signal {
        pid: Pid,
        signal: Signal,
    },
    /// SIGKILL to the worker's whole process group.
    KillGroup {
        pid: Pid,
    },
    Log(Event),
    WriteStatus(Vec<(u64, Pid)>),
    Notify(Upward),
    Exit(i32),
}

#[derive(Clone, Debug)]
struct Worker {
    generation: u64,
    pid: Pid,
}

#[derive(Clone, Debug)]
struct Candidate {
    generation: u64,
    /// None between `Effect::Spawn` and `Input::Spawned`.
    pid: Option<Pid>,
    spawned_at: Instant,
}

#[derive(Clone, Debug)]
struct Old {
    generation: u64,
    pid: Pid,
    /// Kill-old-delay: when to send `signal_on_hup`.
    signal_at: Option<Instant>,
    signalled_at: Option<Instant>,
    /// Set once SIGKILL went to the group.
    killed: bool,
}

#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    generation: u64,
    current: Option<Worker>,
    candidate: Option<Candidate>,
    old: Vec<Old>,
    pending_restart: bool,
    /// A respawn or a retry waiting for the rate limit.
    next_spawn_at: Option<Instant>,
    last_spawn_at: Option<Instant>,
    /// When the serving generation became ready (auto-restart clock).
    last_ready_at: Option<Instant>,
    announced: bool,
    reloading: bool,
    stopping: Option<Stopping>,
}

#[derive(Debug)]
struct Stopping {
    since: Instant,
    killed: bool,
}

impl Machine {
    pub fn new(policy: Policy) -> Machine {
        Machine {
            policy,
            generation: 0,
            current: None,
            candidate: None,
            old: Vec::new(),
            pending_restart: false,
            next_spawn_at: None,
            last_spawn_at: None,
            last_ready_at: None,
            announced: false,
            reloading: false,
            stopping: None,
        }
    }

    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Start => self.spawn(now, &mut fx),
            Input::Spawned { generation, pid } => {
                if let Some(c) = self
                    .candidate
                    .as_mut()
                    .filter(|c| c.generation == generation)
                {
                    c.pid = Some(pid);
                    fx.push(Effect::Log(Event::StartingWorker { pid }));
                }
            }
            Input::SpawnFailed { generation, error } => {
                self.spawn_failed(now, generation, error, &mut fx)
            }
            Input::Exited { pid, status } => self.exited(now, pid, status, &mut fx),
            Input::Ready { pid } => {
                let waiting = self.policy.ready != ReadyMode::Alive && self.stopping.is_none();
                if waiting && self.candidate.as_ref().is_some_and(|c| c.pid == Some(pid)) {
                    self.ready(now, true, &mut fx);
                }
            }
            Input::Hup => self.hup(now, &mut fx),
            Input::Terminate(signal) => self.terminate(now, signal, &mut fx),
            Input::Forward(signal) => {
                let pids: Vec<Pid> = self.current.iter().map(|w| w.pid).collect();
                fx.extend(pids.iter().map(|&pid| Effect::Signal { pid, signal }));
                fx.push(Effect::Log(Event::Forwarded { signal, pids }));
            }
            Input::Tick => self.tick(now, &mut fx),
        }
        fx
    }

    /// The earliest instant at which a `Tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadlines: Vec<Instant> = Vec::new();
        if let Some(stopping) = &self.stopping {
            if !stopping.killed {
                deadlines.extend(self.policy.stop_timeout.map(|t| stopping.since + t));
            }
        } else {
            deadlines.extend(self.next_spawn_at);
            if let Some(c) = self.candidate.as_ref().filter(|c| c.pid.is_some()) {
                deadlines.extend(self.candidate_deadline(c));
            }
            deadlines.extend(self.auto_restart_at());
        }
        for old in &self.old {
            deadlines.extend(old.signal_at);
            if !old.killed {
                let drain = self.policy.drain_timeout;
                deadlines.extend(old.signalled_at.zip(drain).map(|(at, t)| at + t));
            }
        }
        deadlines.into_iter().min()
    }

    /// Live generations for the status file: serving and draining.
    fn status(&self) -> Effect {
        let mut gens: Vec<(u64, Pid)> =
            self.current.iter().map(|w| (w.generation, w.pid)).collect();
        gens.extend(self.old.iter().map(|o| (o.generation, o.pid)));
        gens.sort_unstable();
        Effect::WriteStatus(gens)
    }

    fn spawn(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.generation += 1;
        self.candidate = Some(Candidate {
            generation: self.generation,
            pid: None,
            spawned_at: now,
        });
        self.last_spawn_at = Some(now);
        self.next_spawn_at = None;
        self.pending_restart = false;
        fx.push(Effect::Spawn {
            generation: self.generation,
        });
    }

    /// Spawn again, no sooner than one interval after the last spawn.
    fn schedule_spawn(&mut self, now: Instant) {
        let earliest = self.last_spawn_at.map_or(now, |t| t + self.policy.interval);
        self.next_spawn_at = Some(earliest.max(now));
    }

    fn begin_restart(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.mark_reloading(fx);
        self.spawn(now, fx);
    }

    /// Tell the service manager a reload is under way, once per reload.
    fn mark_reloading(&mut self, fx: &mut Vec<Effect>) {
        if !self.reloading && self.announced {
            self.reloading = true;
            fx.push(Effect::Notify(Upward::Reloading));
        }
    }

    fn candidate_deadline(&self, c: &Candidate) -> Option<Instant> {
        match self.policy.ready {
            ReadyMode::Alive | ReadyMode::Auto => Some(c.spawned_at + self.policy.interval),
            ReadyMode::Notify => self.policy.ready_timeout.map(|t| c.spawned_at + t),
        }
    }

    fn auto_restart_at(&self) -> Option<Instant> {
        let interval = self.policy.auto_restart?;
        let idle =
            self.current.is_some() && self.candidate.is_none() && self.next_spawn_at.is_none();
        let since = self.last_ready_at.filter(|_| idle)?;
        Some(if self.old.is_empty() {
            since + interval
        } else {
            since + 2 * interval
        })
    }

    fn ready(&mut self, now: Instant, notified: bool, fx: &mut Vec<Effect>) {
        let Some(Candidate {
            generation,
            pid: Some(pid),
            spawned_at,
        }) = self.candidate.take()
        else {
            return;
        };
        self.last_ready_at = Some(now);
        let after = now - spawned_at;
        fx.push(Effect::Log(Event::Ready {
            generation,
            pid,
            after,
            notified,
        }));
        if let Some(prev) = self.current.replace(Worker { generation, pid }) {
            self.old.push(Old {
                generation: prev.generation,
                pid: prev.pid,
                signal_at: None,
                signalled_at: None,
                killed: false,
            });
            self.retire_old(now, fx);
        }
        fx.push(self.status());
        if !self.announced || self.reloading {
            self.announced = true;
            self.reloading = false;
            fx.push(Effect::Notify(Upward::Ready));
        }
        let status = format!("generation {generation} serving (pid {pid})");
        fx.push(Effect::Notify(Upward::Status(status)));
        if self.pending_restart {
            self.begin_restart(now, fx);
        }
    }

    /// Tell every old worker not yet told to stop, now or after the delay.
    fn retire_old(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let signal = self.policy.signal_on_hup;
        let waiting = |o: &&mut Old| o.signalled_at.is_none() && o.signal_at.is_none();
        let pids: Vec<Pid> = self.old.iter_mut().filter(waiting).map(|o| o.pid).collect();
        fx.push(Effect::Log(Event::NowRunning { signal, old: pids }));
        let delay = self.policy.kill_old_delay;
        if delay.is_zero() {
            fx.push(Effect::Log(Event::KillingOld));
        } else {
            fx.push(Effect::Log(Event::SleepingBeforeKill {
                secs: delay.as_secs(),
            }));
        }
        for old in self.old.iter_mut().filter(waiting) {
            if delay.is_zero() {
                old.signalled_at = Some(now);
                fx.push(Effect::Signal {
                    pid: old.pid,
                    signal,
                });
            } else {
                old.signal_at = Some(now + delay);
            }
        }
    }

    fn hup(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        if self.stopping.is_some() {
            fx.push(Effect::Log(Event::IgnoredDuringShutdown {
                signal: Signal::SIGHUP,
            }));
            return;
        }
        if let Some(generation) = self.candidate.as_ref().map(|c| c.generation) {
            self.pending_restart = true;
            fx.push(Effect::Log(Event::HupCoalesced { generation }));
            self.mark_reloading(fx);
            return;
        }
        fx.push(Effect::Log(Event::ReceivedHup));
        self.mark_reloading(fx);
        // A scheduled respawn or retry will run the newest code anyway.
        if self.next_spawn_at.is_none() {
            self.spawn(now, fx);
        }
    }

    fn terminate(&mut self, now: Instant, received: Signal, fx: &mut Vec<Effect>) {
        if self.stopping.is_some() {
            fx.push(Effect::Log(Event::IgnoredDuringShutdown {
                signal: received,
            }));
            return;
        }
        let sending = if received == Signal::SIGINT {
            Signal::SIGTERM
        } else {
            self.policy.signal_on_term
        };
        let pids = self.live_pids();
        fx.push(Effect::Log(Event::ShutdownReceived {
            received,
            sending,
            pids: pids.clone(),
        }));
        fx.push(Effect::Notify(Upward::Stopping));
        fx.extend(pids.iter().map(|&pid| Effect::Signal {
            pid,
            signal: sending,
        }));
        self.stopping = Some(Stopping {
            since: now,
            killed: false,
        });
        self.next_spawn_at = None;
        self.pending_restart = false;
        for old in &mut self.old {
            old.signal_at = None;
            old.signalled_at.get_or_insert(now);
        }
        self.finish_if_done(fx);
    }

    fn live_pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self.current.iter().map(|w| w.pid).collect();
        pids.extend(self.old.iter().map(|o| o.pid));
        pids.extend(self.candidate.iter().filter_map(|c| c.pid));
        pids.sort_unstable();
        pids
    }

    fn finish_if_done(&mut self, fx: &mut Vec<Effect>) {
        if self.stopping.is_some() && self.live_pids().is_empty() && self.candidate.is_none() {
            fx.push(Effect::Log(Event::Exiting));
            fx.push(Effect::Exit(0));
        }
    }

    fn spawn_failed(
        &mut self,
        now: Instant,
        generation: u64,
        error: SpawnError,
        fx: &mut Vec<Effect>,
    ) {
        if self
            .candidate
            .as_ref()
            .is_none_or(|c| c.generation != generation)
        {
            return;
        }
        self.candidate = None;
        let code = error.exit_code();
        fx.push(Effect::Log(Event::SpawnFailed { generation, error }));
        if self.stopping.is_some() {
            self.finish_if_done(fx);
        } else if !self.announced && self.current.is_none() {
            // The first generation cannot even be executed: a config error.
            fx.push(Effect::Exit(code));
        } else {
            self.schedule_spawn(now);
        }
    }

    fn exited(&mut self, now: Instant, pid: Pid, status: ExitStatus, fx: &mut Vec<Effect>) {
        if let Some(c) = self.candidate.as_ref().filter(|c| c.pid == Some(pid)) {
            let generation = c.generation;
            let lived = now - c.spawned_at;
            self.candidate = None;
            if self.stopping.is_some() {
                fx.push(Effect::Log(Event::WorkerDied { pid, status }));
                return self.finish_if_done(fx);
            }
            fx.push(Effect::Log(Event::FailedToStart { pid, status }));
            if let Some(hint) = diagnose(status, lived, self.policy.interval) {
                fx.push(Effect::Log(Event::Diagnosis {
                    generation,
                    status,
                    hint,
                }));
            }
            self.schedule_spawn(now);
        } else if self.current.as_ref().is_some_and(|w| w.pid == pid) {
            self.current = None;
            if self.stopping.is_some() {
                fx.push(Effect::Log(Event::WorkerDied { pid, status }));
                fx.push(self.status());
                return self.finish_if_done(fx);
            }
            fx.push(Effect::Log(Event::DiedUnexpectedly { pid, status }));
            fx.push(self.status());
            if self.candidate.is_none() {
                self.schedule_spawn(now);
            }
        } else if let Some(at) = self.old.iter().position(|o| o.pid == pid) {
            self.old.remove(at);
            let event = if self.stopping.is_some() {
                Event::WorkerDied { pid, status }
            } else {
                Event::OldDied { pid, status }
            };
            fx.push(Effect::Log(event));
            fx.push(self.status());
            self.finish_if_done(fx);
        }
    }

    fn tick(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        self.tick_old(now, fx);
        if let Some(stopping) = &mut self.stopping {
            let due = self
                .policy
                .stop_timeout
                .filter(|t| stopping.since + *t <= now);
            if let Some(after) = due.filter(|_| !stopping.killed) {
                stopping.killed = true;
                let pids = self.live_pids();
                fx.push(Effect::Log(Event::StopTimeout {
                    pids: pids.clone(),
                    after,
                }));
                fx.extend(pids.into_iter().map(|pid| Effect::KillGroup { pid }));
            }
            return;
        }
        let due = self.candidate.as_ref().filter(|c| c.pid.is_some());
        if due
            .and_then(|c| self.candidate_deadline(c))
            .is_some_and(|at| at <= now)
        {
            match self.policy.ready {
                ReadyMode::Alive | ReadyMode::Auto => self.ready(now, false, fx),
                ReadyMode::Notify => self.ready_timed_out(now, fx),
            }
        }
        if self.next_spawn_at.is_some_and(|at| at <= now) {
            self.spawn(now, fx);
        }
        if self.auto_restart_at().is_some_and(|at| at <= now) {
            let interval = self.policy.auto_restart.unwrap_or_default().as_secs();
            let forced = !self.old.is_empty();
            fx.push(Effect::Log(Event::AutoRestart { interval, forced }));
            self.begin_restart(now, fx);
        }
    }

    fn tick_old(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let signal = self.policy.signal_on_hup;
        if self
            .old
            .iter()
            .any(|o| o.signal_at.is_some_and(|at| at <= now))
        {
            fx.push(Effect::Log(Event::KillingOld));
        }
        for old in &mut self.old {
            if old.signal_at.is_some_and(|at| at <= now) {
                old.signal_at = None;
                old.signalled_at = Some(now);
                fx.push(Effect::Signal {
                    pid: old.pid,
                    signal,
                });
            }
            let Some(drain) = self.policy.drain_timeout else {
                continue;
            };
            if let Some(at) = old
                .signalled_at
                .filter(|at| !old.killed && *at + drain <= now)
            {
                old.killed = true;
                fx.push(Effect::Log(Event::DrainTimeout {
                    pid: old.pid,
                    after: now - at,
                }));
                fx.push(Effect::KillGroup { pid: old.pid });
            }
        }
    }

    /// A notify-mode worker that never said READY=1: stop it like an old
    /// worker, and try again.
    fn ready_timed_out(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        let Some(Candidate {
            generation,
            pid: Some(pid),
            spawned_at,
        }) = self.candidate.take()
        else {
            return;
        };
        fx.push(Effect::Log(Event::ReadyTimeout {
            generation,
            pid,
            after: now - spawned_at,
        }));
        fx.push(Effect::Signal {
            pid,
            signal: Signal::SIGTERM,
        });
        self.old.push(Old {
            generation,
            pid,
            signal_at: None,
            signalled_at: Some(now),
            killed: false,
        });
        fx.push(self.status());
        self.schedule_spawn(now);
    }
}

/// A hint for a worker that did not survive its start, where one is clear.
fn diagnose(status: ExitStatus, lived: Duration, interval: Duration) -> Option<&'static str> {
    match status {
        ExitStatus::Code(127) => Some("the shell could not find a command (exit 127)"),
        ExitStatus::Code(126) => Some("a command is not executable (exit 126)"),
        ExitStatus::Signal {
            signal: libc::SIGKILL,
            ..
        } => Some("killed by SIGKILL from outside (out of memory?)"),
        ExitStatus::Code(code) if code != 0 && lived < interval => Some(
            "it failed during startup. If its log says \"Address already in use\", it binds the port itself: \
             make it use the inherited socket (SERVER_STARTER_PORT, LISTEN_FDS or fd 3)",
        ),
        _ => None,
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
